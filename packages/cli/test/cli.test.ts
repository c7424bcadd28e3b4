import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { readFileSync } from "node:fs"
import {
  bin,
  client,
  eventually,
  isAlive,
  node,
  nodeArgs,
  quiesce,
  quiesceExit,
  serviceCommand,
  starts,
  stops,
  freePort,
  testService
} from "./util.ts"

const runArgs = (name: string, log: string, grace = "200ms") => [
  "run",
  "--name",
  name,
  "--service",
  serviceCommand(log),
  "--grace",
  grace,
  "--"
]

/** `quiesce run` whose service never passes its readiness probe (it answers 404 there), with a command that exits 0. */
const neverReady = (name: string, log: string, port: number, startTimeout: string) => [
  "run",
  "--name",
  name,
  "--service",
  serviceCommand(log),
  "--ready",
  `http://127.0.0.1:${port}/never-ready`,
  "--start-timeout",
  startTimeout,
  "--",
  node,
  client,
  "exit",
  "0"
]

// Each test uses its own service name, so they can run while other suites use the machine.
describe("quiesce run", { timeout: 60_000 }, () => {
  it.live("passes the command's exit code through (128 + N for signal N, 127 for a command that does not exist)", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("exit")
      const seven = yield* quiesceExit([...runArgs(name, log), node, client, "exit", "7"], { env })
      assert.strictEqual(seven.code, 7, seven.stderr)
      const zero = yield* quiesceExit([...runArgs(name, log), node, client, "exit", "0"], { env })
      assert.strictEqual(zero.code, 0, zero.stderr)
      const killed = yield* quiesceExit(
        [...runArgs(name, log), node, "-e", "process.kill(process.pid, 'SIGKILL')"],
        { env }
      )
      assert.strictEqual(killed.code, 128 + 9, "a command killed by signal N: 128 + N, as a shell reports it")
      const missing = yield* quiesceExit([...runArgs(name, log), "no-such-command-quiesce"], { env })
      assert.strictEqual(missing.code, 127)
      assert.match(missing.stderr.trim(), /^quiesce: cannot run "no-such-command-quiesce": command not found$/)
    }))

  it.live("gives the command the service's name, pid and port", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("env")
      const result = yield* quiesceExit([...runArgs(name, log), node, client, "get"], { env })
      assert.strictEqual(result.code, 0, result.stderr)
      const served = JSON.parse(result.stdout.trim().replace(/^served /, ""))
      const service = served.service
      assert.deepStrictEqual(served.env, { name, pid: String(service.pid), port: String(service.port) })
      const started = starts(log)
      assert.strictEqual(started.length, 1)
      assert.include(started[0]!, `pid=${service.pid} port=${service.port}`)
    }))

  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it.live(`forwards ${signal} to the command and exits with the command's code`, () =>
      Effect.gen(function*() {
        const { env, log, name } = yield* testService("sig")
        const q = yield* quiesce([...runArgs(name, log), node, client, "signals"], { env })
        yield* q.line("waiting")
        yield* q.kill(signal)
        const exit = yield* q.exit
        assert.include(q.stdout(), `got ${signal}`)
        assert.strictEqual(exit.code, signal === "SIGINT" ? 42 : 55, q.stderr())
      }))
  }

  it.live("a terminal's Ctrl-C is not forwarded again (the terminal already delivered it)", () =>
    Effect.gen(function*() {
      // Under a pseudo-terminal (util-linux `script`) quiesce is in the terminal's foreground
      // process group, so the kernel delivers ^C to it and to the command it runs. Forwarding
      // it as well would double it; two deliveries usually coalesce into one pending signal,
      // so to observe a forwarded one deterministically the command runs in its own session
      // (`setsid`), out of the terminal's reach: it must get no SIGINT at all. SIGTERM, which
      // no terminal sends, is still forwarded and ends it.
      const { env, log, name } = yield* testService("tty")
      // `exec`: whatever $SHELL `script` picks (dash without one), quiesce is its child, not a shell.
      const line = "exec " + [node, ...nodeArgs, bin, ...runArgs(name, log), "setsid", node, client, "count-sigint"]
        .map((word) => `'${word.replace(/'/g, "'\\''")}'`)
        .join(" ")
      const result = yield* Effect.callback<{ code: number | null; output: string }>((resume) => {
        const child = ChildProcess.spawn("script", ["-qec", line, "/dev/null"], {
          stdio: ["pipe", "pipe", "pipe"],
          env: { ...process.env, ...env }
        })
        let output = ""
        let stage = 0
        child.stdout.on("data", (chunk: Buffer) => {
          output += chunk.toString()
          if (stage === 0 && output.includes("waiting")) {
            stage = 1
            child.stdin.write("\x03")
          } else if (stage === 1 && output.includes("^C")) {
            // The terminal has processed the ^C (it echoes it when it raises SIGINT).
            stage = 2
            // `script`'s child is the shell, which exec'd quiesce.
            const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim()
            process.kill(Number(children.split(" ")[0]), "SIGTERM")
          }
        })
        child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
        child.on("close", (code) => resume(Effect.succeed({ code, output })))
        return Effect.sync(() => void child.kill("SIGKILL"))
      })
      assert.include(result.output, "got 0 SIGINT", result.output)
      assert.strictEqual(result.code, 40, result.output)
    }))

  it.live("a signal while the service is starting interrupts the start: the service is killed, exit 143", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("startsig")
      // The service starts but never passes its readiness probe (it answers 404 there).
      const port = yield* freePort
      const q = yield* quiesce(neverReady(name, log, port, "1m"), { env })
      yield* eventually("the service to start", () => starts(log).length === 1)
      assert.strictEqual(q.stdout(), "", "the command has not run")
      const servicePid = Number(/pid=(\d+)/.exec(starts(log)[0]!)![1])
      yield* q.kill("SIGTERM")
      const exit = yield* q.exit
      assert.strictEqual(exit.code, 143, q.stderr())
      yield* eventually("the half-started service to be killed", () => !isAlive(servicePid))
    }))

  it.live("a service that is not ready in time: one line naming the probe, exit 125, service killed", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("notready")
      const port = yield* freePort
      const result = yield* quiesceExit(neverReady(name, log, port, "1500ms"), { env })
      assert.strictEqual(result.code, 125)
      assert.match(
        result.stderr.trim(),
        new RegExp(`^quiesce: service "${name}" was not ready at http://127\\.0\\.0\\.1:${port}/never-ready after 1\\.5s \\(last probe: .*answered 404\\); its output is in .*${name}\\.log$`)
      )
      const servicePid = Number(/pid=(\d+)/.exec(starts(log)[0]!)![1])
      yield* eventually("the service to be killed", () => !isAlive(servicePid))
    }))

  it.live("several concurrent runs share one service, which stops after the last one leaves", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("share")
      const holders = yield* Effect.forEach(
        [1, 2, 3, 4],
        () => quiesce([...runArgs(name, log), node, client, "hold"], { env }),
        { concurrency: "unbounded" }
      )
      const envs = yield* Effect.forEach(holders, (q) => q.line("holding"), { concurrency: "unbounded" })
      const pids = new Set(envs.map((line) => JSON.parse(line.slice("holding ".length)).pid))
      assert.strictEqual(pids.size, 1, "one service for all")
      assert.strictEqual(starts(log).length, 1, "started exactly once")
      const servicePid = Number([...pids][0])
      assert.isTrue(isAlive(servicePid))
      // All but the last leave: the service stays.
      for (const q of holders.slice(0, 3)) {
        yield* q.closeStdin
        assert.strictEqual((yield* q.exit).code, 0)
      }
      assert.isTrue(isAlive(servicePid))
      assert.strictEqual(stops(log).length, 0)
      yield* holders[3]!.closeStdin
      assert.strictEqual((yield* holders[3]!.exit).code, 0)
      yield* eventually("the service to stop after its grace period", () => !isAlive(servicePid))
      assert.strictEqual(stops(log).length, 1)
    }))

  it.live("a SIGKILLed run releases its reference: the service stops after grace", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("kill")
      const victim = yield* quiesce([...runArgs(name, log), node, client, "hold"], { env })
      const other = yield* quiesce([...runArgs(name, log), node, client, "hold"], { env })
      const line = yield* victim.line("holding")
      yield* other.line("holding")
      const servicePid = Number(JSON.parse(line.slice("holding ".length)).pid)
      yield* victim.kill("SIGKILL")
      yield* victim.exit
      // Its command sees stdin close (the pipe's writer died with quiesce) and exits too.
      yield* other.closeStdin
      assert.strictEqual((yield* other.exit).code, 0)
      yield* eventually("the service to stop", () => !isAlive(servicePid))
      assert.strictEqual(starts(log).length, 1)
      assert.strictEqual(stops(log).length, 1)
    }))
})

describe("quiesce status, list, stop", { timeout: 60_000 }, () => {
  it.live("status and list, as JSON and for people, match reality while held and after", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("status")
      const holder = yield* quiesce([...runArgs(name, log), node, client, "hold"], { env })
      const seen = JSON.parse((yield* holder.line("holding")).slice("holding ".length))
      const held = yield* quiesceExit(["status", name, "--json"], { env })
      assert.strictEqual(held.code, 0, held.stderr)
      const status = JSON.parse(held.stdout)
      assert.strictEqual(status.name, name)
      assert.strictEqual(status.state, "running")
      assert.strictEqual(status.pid, Number(seen.pid))
      assert.strictEqual(status.port, Number(seen.port))
      assert.isTrue(isAlive(status.pid))
      if (status.clients !== null) assert.strictEqual(status.clients, 1)
      const listed = JSON.parse((yield* quiesceExit(["list", "--json"], { env })).stdout)
      assert.isTrue(listed.some((s: { name: string; pid: number }) => s.name === name && s.pid === status.pid))
      // The human table (`ls` is `list`): a header, then this test's only service.
      const table = yield* quiesceExit(["ls"], { env })
      assert.strictEqual(table.code, 0, table.stderr)
      const rows = table.stdout.trim().split("\n")
      assert.match(rows[0]!, /^NAME\s+STATE\s+PID\s+PORT\s+CLIENTS\s+UPTIME\s+COMMAND$/)
      assert.match(rows[1]!, new RegExp(`^${name}\\s+running\\s+${status.pid}\\s+${status.port}\\s`))
      assert.strictEqual(rows.length, 2, table.stdout)
      const human = yield* quiesceExit(["status", name], { env })
      assert.strictEqual(human.code, 0, human.stderr)
      assert.include(human.stdout, `${name}: running`)
      yield* holder.closeStdin
      yield* holder.exit
      yield* eventually("the service to stop", () => !isAlive(status.pid))
      const after = yield* quiesceExit(["status", name, "--json"], { env })
      assert.strictEqual(after.code, 1)
      assert.strictEqual(JSON.parse(after.stdout).state, "stopped")
    }))

  it.live("stop NAME stops a held service now", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("stop")
      const holder = yield* quiesce([...runArgs(name, log, "3s"), node, client, "hold"], { env })
      const seen = JSON.parse((yield* holder.line("holding")).slice("holding ".length))
      const stopped = yield* quiesceExit(["stop", name, "--json"], { env })
      assert.strictEqual(stopped.code, 0, stopped.stderr)
      const report = JSON.parse(stopped.stdout)
      assert.strictEqual(report.stopped, true)
      assert.strictEqual(report.pid, Number(seen.pid))
      assert.isFalse(isAlive(Number(seen.pid)))
      yield* holder.closeStdin
      yield* holder.exit
      const again = yield* quiesceExit(["stop", name], { env })
      assert.strictEqual(again.code, 1)
      assert.include(again.stdout, "was not running")
    }))
})

describe("bad arguments", { timeout: 60_000 }, () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, RegExp]> = [
    ["a missing --service", ["run", "--name", "x", "--", "true"], /Missing required flag: --service/],
    ["a missing command", ["run", "--name", "x", "--service", "true"], /Missing required argument: command/],
    ["a bad name", ["run", "--name", "a b", "--service", "true", "--", "true"], /--name: "a b"/],
    ["a bad --ready", ["run", "--name", "x", "--service", "true", "--ready", "tcp:x", "--", "true"], /--ready/],
    ["a bad --port", ["run", "-n", "x", "-s", "true", "--port", "70000", "--", "true"], /--port: "70000"/],
    ["a bad --grace", ["run", "-n", "x", "-s", "true", "--grace", "soon", "--", "true"], /--grace: "soon"/],
    ["an unknown flag", ["run", "-n", "x", "-s", "true", "--bogus", "--", "true"], /--bogus/],
    ["an unknown subcommand", ["frobnicate"], /Unknown subcommand "frobnicate"/],
    ["status without a name", ["status"], /Missing required argument: name/]
  ]
  for (const [label, args, pattern] of cases) {
    it.live(`${label}: one line on stderr, exit code 2, nothing started`, () =>
      Effect.gen(function*() {
        const result = yield* quiesceExit(args)
        assert.strictEqual(result.code, 2)
        const lines = result.stderr.trim().split("\n")
        assert.strictEqual(lines.length, 1, result.stderr)
        assert.match(lines[0]!, pattern)
        assert.strictEqual(result.stdout, "")
      }))
  }

  it.live("--help shows the usage and examples", () =>
    Effect.gen(function*() {
      const result = yield* quiesceExit(["run", "--help"])
      assert.strictEqual(result.code, 0)
      assert.include(result.stdout, "quiesce run [flags] <command...>")
      assert.include(result.stdout, "EXAMPLES")
      assert.include(result.stdout, "--start-timeout")
    }))
})
