import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { join } from "node:path"
import { SharedService } from "@quiesce/shared-service"
import {
  bin,
  client,
  eventually,
  isAlive,
  type Mode,
  node,
  nodeArgs,
  processesWith,
  quiesce,
  quiesceExit,
  serviceCommand,
  spawnMode,
  starts,
  stops,
  freePort,
  testService,
  uniqueName
} from "./util.ts"

/** `quiesce run` with the demo service on a port quiesce picks, up to and including `--`. */
const runArgs = (name: string, log: string, grace = "200ms") => [
  "run",
  "--name",
  name,
  "--service",
  serviceCommand(log),
  "--port",
  "auto",
  "--grace",
  grace,
  "--"
]

/** `quiesce run` with a service that never listens (ready once it has stayed alive a moment), without `--`. */
const quietArgs = (name: string, grace = "0") => ["run", "-n", name, "-s", "sleep 30", "--grace", grace]

/** `quiesce run` whose service never passes its readiness probe (it answers 404 there), with a command that exits 0. */
const neverReady = (name: string, log: string, port: number, startTimeout: string) => [
  "run",
  // The errors are what these tests read; the progress lines a wait prints are tested on their own.
  "--quiet",
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

/**
 * Runs `argv` under a pseudo-terminal (util-linux `script`): types Ctrl-C once the command says
 * `waiting`, and once the output shows `handled`, sends SIGTERM to the terminal's process
 * (`script`'s child: the shell, which exec'd quiesce) and notes its command line then.
 */
const underTerminal = (argv: ReadonlyArray<string>, env: Record<string, string>, handled: string) =>
  Effect.callback<{ code: number | null; output: string; command: ReadonlyArray<string> }>((resume) => {
    // `exec`: whatever $SHELL `script` picks (dash without one), quiesce is its child, not a shell.
    const line = "exec " + argv.map((word) => `'${word.replace(/'/g, "'\\''")}'`).join(" ")
    const child = ChildProcess.spawn("script", ["-qec", line, "/dev/null"], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...env }
    })
    let output = ""
    let command: ReadonlyArray<string> = []
    let stage = 0
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      // The command's own line ("waiting" alone on it, after the progress line was erased), not
      // quiesce's progress line ("quiesce: waiting for …").
      if (stage === 0 && /(^|\n|\x1b\[2K)waiting\r?\n/.test(output)) {
        stage = 1
        child.stdin.write("\x03")
      } else if (stage === 1 && output.includes(handled)) {
        stage = 2
        const pid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(" ")[0])
        command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
        process.kill(pid, "SIGTERM")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.on("close", (code) => resume(Effect.succeed({ code, output, command })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

// Each test uses its own service name, so they can run while other suites use the machine.
describe("quiesce run", { timeout: 120_000 }, () => {
  it.live("becomes the command: same process, the kernel counts it as the client, no quiesce process stays", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("exec")
      const q = yield* quiesce([...runArgs(name, log), "sh", "-c", 'echo "pid $$"; read line; exit 0'], { env })
      const line = yield* q.line("pid ")
      assert.strictEqual(Number(line.slice("pid ".length)), q.pid, "the command runs in quiesce's own process")
      assert.strictEqual(readFileSync(`/proc/${q.pid}/comm`, "utf8").trim(), "sh", "no Node left in it")
      assert.deepStrictEqual(processesWith(bin, name), [], "nor anywhere else")
      const status = JSON.parse((yield* quiesceExit(["status", name, "--json"], { env })).stdout)
      assert.strictEqual(status.clients, 1, "the exec'd command holds the reference")
      yield* q.closeStdin
      assert.strictEqual((yield* q.exit).code, 0)
      yield* eventually("the service to stop after its grace period", () => !isAlive(status.pid))
    }))

  it.live("a SIGKILLed quiesce run is its command: nothing of it is left running, the service stops", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("orphan")
      // A shell as the command, its $0 the marker: it would outlive a parent SIGKILLed under it
      // (and its `sleep` outlives it, as a shell's child does when the shell is killed).
      const marker = uniqueName("marker")
      const command = ["sh", "-c", 'echo "holding $QUIESCE_SERVICE_PID"; sleep 30 </dev/null >/dev/null 2>&1; :', marker]
      const q = yield* quiesce([...runArgs(name, log), ...command], { env })
      const servicePid = Number((yield* q.line("holding")).slice("holding ".length))
      // Until its `sleep` has exec'd: a child forked but not yet exec'd still has the shell's
      // command line (the marker), and would be taken for the shell itself.
      yield* eventually("the command's sleep to start", () => {
        try {
          return readFileSync(`/proc/${q.pid}/task/${q.pid}/children`, "utf8").trim().split(" ").filter((c) => c !== "")
            .some((c) => readFileSync(`/proc/${c}/comm`, "utf8").trim() === "sleep")
        } catch {
          return false
        }
      })
      yield* q.kill("SIGKILL")
      assert.strictEqual((yield* q.exited).signal, "SIGKILL")
      assert.deepStrictEqual(processesWith(marker), [], "no process of the command survived")
      yield* eventually("the service to stop", () => !isAlive(servicePid))
    }))

  it.live("the command gets what it would get if run directly: signal dispositions and mask, blocking stdio, no extra descriptors", () =>
    Effect.gen(function*() {
      const { env, name } = yield* testService("direct")
      // Node ignores SIGPIPE and SIGXFSZ and leaves a pipe it used non-blocking; both would
      // survive the exec. The listing shows every open descriptor (3 is the listing's own).
      const probe = 'grep -E "^Sig(Blk|Ign)" /proc/self/status; for fd in 0 1 2; do grep "^flags" /proc/self/fdinfo/$fd; done; ls /proc/self/fd'
      const direct = ChildProcess.spawnSync("sh", ["-c", probe], { stdio: ["pipe", "pipe", "pipe"], encoding: "utf8" })
      assert.strictEqual(direct.status, 0, direct.stderr)
      const result = yield* quiesceExit([...quietArgs(name), "sh", "-c", probe], { env })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, direct.stdout)
    }))

  for (const mode of ["exec", "spawn"] as const) {
    it.live(`${mode}: passes the command's exit status through (127 for a command that does not exist)`, () =>
      Effect.gen(function*() {
        const { env, log, name } = yield* testService("exit")
        const seven = yield* quiesceExit([...runArgs(name, log), node, client, "exit", "7"], { env, mode })
        assert.strictEqual(seven.code, 7, seven.stderr)
        const zero = yield* quiesceExit([...runArgs(name, log), node, client, "exit", "0"], { env, mode })
        assert.strictEqual(zero.code, 0, zero.stderr)
        const killed = yield* quiesceExit(
          [...runArgs(name, log), node, "-e", "process.kill(process.pid, 'SIGKILL')"],
          { env, mode }
        )
        if (mode === "exec") {
          assert.strictEqual(killed.signal, "SIGKILL", "the parent sees the command's own death, as if it had run it")
        } else {
          assert.strictEqual(killed.code, 128 + 9, "a command killed by signal N: 128 + N, as a shell reports it")
        }
        const missing = yield* quiesceExit([...runArgs(name, log), "no-such-command-quiesce"], { env, mode })
        assert.strictEqual(missing.code, 127)
        assert.match(missing.stderr.trim(), /^quiesce: cannot run "no-such-command-quiesce": command not found$/)
      }))
  }

  it.live("a command that cannot run: 126 or 127 before anything starts; a file with no #! runs under /bin/sh", () =>
    Effect.gen(function*() {
      const { dir, env, log, name } = yield* testService("cannot")
      const file = (path: string, text: string, mode: number) => {
        writeFileSync(join(dir, path), text)
        chmodSync(join(dir, path), mode)
        return join(dir, path)
      }
      mkdirSync(join(dir, "a-directory"))
      const cases: ReadonlyArray<readonly [string, number, string]> = [
        ["no-such-command-quiesce", 127, "command not found"],
        [join(dir, "no-such-file"), 127, "no such file"],
        [file("not-executable", "#!/bin/sh\nexit 0\n", 0o644), 126, "permission denied"],
        [join(dir, "a-directory"), 126, "permission denied"],
        [file("bad-interpreter", "#!/no/such/interpreter\nexit 0\n", 0o755), 126, `bad interpreter "/no/such/interpreter"`]
      ]
      for (const [command, code, reason] of cases) {
        const result = yield* quiesceExit([...runArgs(name, log), command], { env })
        assert.strictEqual(result.code, code, result.stderr)
        assert.strictEqual(result.stderr.trim(), `quiesce: cannot run ${JSON.stringify(command)}: ${reason}`)
      }
      assert.strictEqual(starts(log).length, 0, "no service was started for a command that cannot run")
      const script = file("no-shebang", `echo "sh ran $0 $1"\n`, 0o755)
      const result = yield* quiesceExit([...quietArgs(name), script, "arg"], { env })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, `sh ran ${script} arg\n`)
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

  for (const mode of ["exec", "spawn"] as const satisfies ReadonlyArray<Mode>) {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      it.live(`${mode}: ${signal} sent to quiesce reaches the command, which exits with its own code`, () =>
        Effect.gen(function*() {
          const { env, log, name } = yield* testService("sig")
          const q = yield* quiesce([...runArgs(name, log), node, client, "signals"], { env, mode })
          yield* q.line("waiting")
          yield* q.kill(signal)
          const exit = yield* q.exit
          assert.include(q.stdout(), `got ${signal}`)
          assert.strictEqual(exit.code, signal === "SIGINT" ? 42 : 55, q.stderr())
        }))
    }
  }

  it.live("exec: under a terminal, Ctrl-C reaches the command once, from the terminal itself", () =>
    Effect.gen(function*() {
      // quiesce runs in the terminal's foreground process group; once it has become the
      // command, the kernel delivers ^C to the command and nothing else can deliver it a second
      // time (a doubled Ctrl-C reads as "force quit" to many tools). SIGTERM then ends it with
      // its own code: 40 + the SIGINTs it counted.
      const { env, log, name } = yield* testService("tty")
      const result = yield* underTerminal([node, ...nodeArgs, bin, ...runArgs(name, log), node, client, "count-sigint"], env, "SIGINT")
      assert.deepStrictEqual(result.command.slice(1, 3), [client, "count-sigint"], "the terminal's process is the command itself")
      assert.include(result.output, "got 1 SIGINT", result.output)
      assert.strictEqual(result.code, 41, result.output)
    }))

  it.live("spawn: a terminal's Ctrl-C is not forwarded again (the terminal already delivered it)", () =>
    Effect.gen(function*() {
      // The fallback path without execve, where the command is quiesce's child, in quiesce's
      // foreground process group: the kernel delivers ^C to both. Forwarding it as well would
      // double it; two deliveries usually coalesce into one pending signal, so to observe a
      // forwarded one deterministically the command runs in its own session (`setsid`), out of
      // the terminal's reach: it must get no SIGINT at all. SIGTERM, which no terminal sends, is
      // still forwarded and ends it.
      const { env, log, name } = yield* testService("tty")
      const argv = [node, ...nodeArgs, ...spawnMode, bin, ...runArgs(name, log), "setsid", node, client, "count-sigint"]
      // The terminal echoes ^C when it raises SIGINT.
      const result = yield* underTerminal(argv, env, "^C")
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

  it.live("a service that is not ready in time: one line naming the probe, then its output; exit 124, service killed", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("notready")
      const port = yield* freePort
      const result = yield* quiesceExit(neverReady(name, log, port, "1500ms"), { env })
      assert.strictEqual(result.code, 124, result.stderr)
      const [first, ...rest] = result.stderr.trim().split("\n")
      assert.match(
        first!,
        new RegExp(`^quiesce: service "${name}" was not ready at http://127\\.0\\.0\\.1:${port}/never-ready after 1\\.5s \\(last probe: .*answered 404, expected 200-399\\)$`)
      )
      // The demo service says it started: its output is shown, not just named.
      assert.strictEqual(rest[0], `quiesce: its last output (all of it: quiesce logs ${name}):`)
      assert.match(rest.slice(1).join("\n"), /^  \| demo-service .* started pid=\d+ port=/m)
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
      // quiesce became the command: this kills the command, and with it the only holder of its reference.
      yield* victim.kill("SIGKILL")
      yield* victim.exit
      yield* other.closeStdin
      assert.strictEqual((yield* other.exit).code, 0)
      yield* eventually("the service to stop", () => !isAlive(servicePid))
      assert.strictEqual(starts(log).length, 1)
      assert.strictEqual(stops(log).length, 1)
    }))
})

describe("where quiesce's options end, and readiness without a probe", { timeout: 120_000 }, () => {
  it.live("options end at the first word that is not one of them: the command keeps its own -p and -n", () =>
    Effect.gen(function*() {
      const { env, name } = yield* testService("argv")
      const plain = yield* quiesceExit([...quietArgs(name), "printf", "%s|", "-p", "7", "-n", "hi"], { env })
      assert.strictEqual(plain.code, 0, plain.stderr)
      assert.strictEqual(plain.stdout, "-p|7|-n|hi|")
      // `--` ends them too, and a later `--` (or --help) is the command's.
      const dashed = yield* quiesceExit([...quietArgs(name), "--", "printf", "%s|", "--", "--help", "-s", "x"], { env })
      assert.strictEqual(dashed.code, 0, dashed.stderr)
      assert.strictEqual(dashed.stdout, "--|--help|-s|x|")
      // A value that starts with '-' is the flag's (as getopt reads it), and the flags may come in any order.
      const echo = yield* quiesceExit(["run", "--grace", "0", "-s", "sleep 30", "-n", name, "echo", "-n", "hello"], { env })
      assert.strictEqual(echo.code, 0, echo.stderr)
      assert.strictEqual(echo.stdout, "hello")
    }))

  it.live("with neither --ready nor --port, the service is ready once it has stayed alive: no port is invented or probed", () =>
    Effect.gen(function*() {
      const { env, name } = yield* testService("alive")
      // `sleep` listens nowhere: a probe of any port would wait out the whole start timeout.
      const result = yield* quiesceExit([...quietArgs(name, "30s"), "--start-timeout", "20s", node, client, "env"], { env })
      assert.strictEqual(result.code, 0, result.stderr)
      const seen = JSON.parse(result.stdout)
      assert.strictEqual(seen.name, name)
      assert.isUndefined(seen.port, "no QUIESCE_SERVICE_PORT for a service without a port")
      // The next run (within the grace period) joins it: with nothing to probe, a live process is healthy.
      const again = yield* quiesceExit([...quietArgs(name, "30s"), "--start-timeout", "20s", node, client, "env"], { env })
      assert.strictEqual(again.code, 0, again.stderr)
      assert.strictEqual(JSON.parse(again.stdout).pid, seen.pid, "the same service, not a restarted one")
      // A service that dies within that moment fails the start at once (not at the start timeout).
      const other = `${name}-dead`
      const dead = yield* quiesceExit(["run", "-n", other, "-s", "exit 3", "--start-timeout", "1m", "true"], { env })
      yield* Effect.ignore(SharedService.remove(other))
      assert.strictEqual(dead.code, 125, dead.stderr)
      assert.match(dead.stderr.trim(), new RegExp(`^quiesce: service "${other}" failed to start: .*exited with status 3 before it was ready`))
    }))
})

describe("the service's output, its port, its lock: what a failed start shows", { timeout: 120_000 }, () => {
  it.live("a service that fails to start: its exit status or signal and its last output (stderr too) on quiesce's stderr, exit 125", () =>
    Effect.gen(function*() {
      const { env, name } = yield* testService("failing")
      const service = "echo 'bad-setting-7: unknown option' >&2; echo 'to stdout'; exit 3"
      const result = yield* quiesceExit(["run", "-n", name, "-s", service, "--start-timeout", "1m", "true"], { env })
      assert.strictEqual(result.code, 125, result.stderr)
      assert.strictEqual(result.stdout, "")
      assert.deepStrictEqual(result.stderr.trimEnd().split("\n").slice(1), [
        `quiesce: its last output (all of it: quiesce logs ${name}):`,
        "  | bad-setting-7: unknown option",
        "  | to stdout"
      ])
      assert.match(result.stderr, new RegExp(`^quiesce: service "${name}" failed to start: the service process \\d+ exited with status 3 before it was ready\n`))
      // A signal is named as such.
      const killed = yield* quiesceExit(["run", "-n", name, "-s", "sh -c 'kill -KILL $$'", "true"], { env })
      assert.strictEqual(killed.code, 125, killed.stderr)
      assert.match(killed.stderr, /failed to start: the service process \d+ killed by SIGKILL before it was ready\n/)
      assert.include(killed.stderr, `quiesce: the service printed nothing (quiesce logs ${name})`)
    }))

  it.live("quiesce logs prints what the service wrote; --follow also sees a later line and ends when the service stops", () =>
    Effect.gen(function*() {
      const { dir, env, name } = yield* testService("logs")
      const fifo = join(dir, "next-line")
      ChildProcess.execFileSync("mkfifo", [fifo])
      // The service prints one line, then whatever the test writes into the fifo, then waits.
      const service = `sh -c 'echo first-line-of-service; cat ${fifo}; exec sleep 60'`
      const holder = yield* quiesce(["run", "-n", name, "-s", service, "--grace", "0", node, client, "hold"], { env })
      yield* holder.line("holding")
      const once = yield* quiesceExit(["logs", name], { env })
      assert.strictEqual(once.code, 0, once.stderr)
      assert.include(once.stdout, "first-line-of-service\n")
      const follow = yield* quiesce(["logs", name, "--follow"], { env })
      yield* follow.line("first-line-of-service")
      // Blocks until the service's cat has the fifo open, then the line is in the log.
      ChildProcess.execFileSync("sh", ["-c", `echo a-later-line > '${fifo}'`])
      yield* follow.line("a-later-line")
      // Ctrl-C (SIGINT) ends a --follow as it ends any command: 128 + 2.
      const interrupted = yield* quiesce(["logs", name, "-f"], { env })
      yield* interrupted.line("a-later-line")
      yield* interrupted.kill("SIGINT")
      assert.strictEqual((yield* interrupted.exit).code, 130, interrupted.stderr())
      // The last client leaves (grace 0): the service stops, and so does --follow.
      yield* holder.closeStdin
      assert.strictEqual((yield* holder.exit).code, 0)
      const ended = yield* follow.exit
      assert.strictEqual(ended.code, 0, follow.stderr())
      assert.include(follow.stderr(), `quiesce: service "${name}" has stopped`)
      // Stopped, its last instance's output is still there, said to be so.
      const after = yield* quiesceExit(["logs", name], { env })
      assert.strictEqual(after.code, 0, after.stderr)
      assert.include(after.stdout, "a-later-line")
      assert.match(after.stderr, new RegExp(`^quiesce: service "${name}" is not running; its last instance's output \\(.*${name}\\.log\\.1\\):`))
    }))

  it.live("quiesce logs of a name with no log, or an invalid name: one line, exit 125 or 2", () =>
    Effect.gen(function*() {
      const { env, name } = yield* testService("nolog")
      const none = yield* quiesceExit(["logs", name], { env })
      assert.strictEqual(none.code, 125)
      assert.match(none.stderr, new RegExp(`^quiesce: service "${name}" has no log: neither .*${name}\\.log nor .*${name}\\.log\\.1 exists\n$`))
      const bad = yield* quiesceExit(["logs", "../etc"], { env })
      assert.strictEqual(bad.code, 2)
      assert.strictEqual(bad.stderr.trim().split("\n").length, 1, bad.stderr)
      assert.include(bad.stderr, "Invalid value for argument <name>")
    }))

  it.live("a foreign listener on the service's port: refused before anything starts, naming the holder, exit 122", () =>
    Effect.gen(function*() {
      const { dir, env, name } = yield* testService("portinuse")
      const port = yield* freePort
      const foreign = createServer()
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => void foreign.listen(port, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.callback<void>((resume) => void foreign.close(() => resume(Effect.void)))
      )
      const marker = join(dir, "service-ran")
      const service = `touch '${marker}'; exec sleep 30`
      // A start timeout of a minute: had quiesce waited for readiness, the test would time out first.
      for (const target of [["--port", String(port)], ["--ready", `tcp:127.0.0.1:${port}`]]) {
        const result = yield* quiesceExit(["run", "-n", name, "-s", service, ...target, "--start-timeout", "1m", "true"], { env })
        assert.strictEqual(result.code, 122, result.stderr)
        assert.strictEqual(result.stdout, "")
        const lines = result.stderr.trimEnd().split("\n")
        assert.strictEqual(lines.length, 2, result.stderr)
        assert.match(lines[0]!, new RegExp(`^quiesce: port ${port} of service "${name}" is already in use by pid ${process.pid} \\(.+\\)$`))
        assert.strictEqual(lines[1], "quiesce: stop that process, or give the service another port (--port auto picks a free one)")
        assert.isFalse(existsSync(marker), "the service never ran")
      }
    }))

  it.live("a stopped quiesce holding the startup lock: the next one names it after its lock timeout, exit 123", () =>
    Effect.gen(function*() {
      const { env, log, name } = yield* testService("locked")
      const port = yield* freePort
      // The first one starts a service that never becomes ready, and is stopped while it waits (under the lock).
      const first = yield* quiesce(neverReady(name, log, port, "1m"), { env })
      yield* eventually("the service to start", () => starts(log).length === 1)
      yield* first.kill("SIGSTOP")
      yield* Effect.addFinalizer(() => first.kill("SIGKILL"))
      // Its lock timeout: start timeout 1s + stop timeout 1s + 5s.
      const second = yield* quiesceExit(["run", "-q", "-n", name, "-s", "sleep 30", "--start-timeout", "1s", "--stop-timeout", "1s", "true"], { env })
      assert.strictEqual(second.code, 123, second.stderr)
      assert.deepStrictEqual(second.stderr.trimEnd().split("\n"), [
        `quiesce: service "${name}": pid ${first.pid} (stopped) held its startup lock for 7s`,
        `quiesce: pid ${first.pid} is stopped: continue it (kill -CONT ${first.pid}) or end it`
      ])
    }))

  it.live("an unusable runtime directory: what is wrong with it and what to do, exit 125", () =>
    Effect.gen(function*() {
      const { dir, name } = yield* testService("rundir")
      const file = join(dir, "not-a-directory")
      writeFileSync(file, "")
      const result = yield* quiesceExit(["run", "-n", name, "-s", "sleep 30", "true"], { env: { QUIESCE_RUNTIME_DIR: file } })
      assert.strictEqual(result.code, 125, result.stderr)
      const lines = result.stderr.trimEnd().split("\n")
      assert.strictEqual(lines.length, 2, result.stderr)
      assert.match(lines[0]!, new RegExp(`^quiesce: service "${name}": the runtime directory ${file} is unusable: .+`))
      assert.strictEqual(lines[1], "quiesce: set QUIESCE_RUNTIME_DIR to a directory of your own (default: $XDG_RUNTIME_DIR/quiesce)")
    }))
})

describe("quiesce status, list, stop", { timeout: 120_000 }, () => {
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

describe("bad arguments", { timeout: 120_000 }, () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>, RegExp]> = [
    ["a --name without --service", ["run", "--name", "x", "--", "true"], /--name goes with --service/],
    ["a --service without --name", ["run", "--service", "true", "--", "true"], /--service needs --name/],
    ["config services without --", ["run", "db", "npm", "test"], /put -- between the services and the command/],
    ["an option after the services", ["run", "db", "--grace", "1s", "--", "true"], /options go before the services: --grace/],
    ["no service before --", ["run", "--", "--", "true"], /name the services/],
    ["a missing command", ["run", "--name", "x", "--service", "true"], /Missing required argument: command/],
    ["a bad name", ["run", "--name", "a b", "--service", "true", "--", "true"], /--name: "a b"/],
    ["a bad --ready", ["run", "--name", "x", "--service", "true", "--ready", "tcp:x", "--", "true"], /--ready/],
    ["a bad --port", ["run", "-n", "x", "-s", "true", "--port", "70000", "--", "true"], /--port: "70000"/],
    ["a bad --grace", ["run", "-n", "x", "-s", "true", "--grace", "soon", "--", "true"], /--grace: "soon"/],
    [
      "a negative --start-timeout",
      ["run", "-n", "x", "-s", "true", "--start-timeout", "-1s", "true"],
      /Invalid value for flag --start-timeout: "-1s"\. Expected: a duration of 0 or more/
    ],
    ["a misspelt flag", ["run", "--nme", "x", "-s", "true", "true"], /Unrecognized flag: --nme; did you mean --name\?/],
    ["a misspelt subcommand", ["stauts", "x"], /Unknown subcommand "stauts"; did you mean status\?/],
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

  it.live("--help shows the usage with where options end, the defaults, the name rule and examples", () =>
    Effect.gen(function*() {
      const result = yield* quiesceExit(["run", "--help"])
      assert.strictEqual(result.code, 0)
      assert.include(result.stdout, "quiesce run [flags] [NAME... --] <command> [args...]")
      assert.include(result.stdout, "options end at the first word that is not one of them")
      assert.include(result.stdout, "once the service has stayed alive for 500ms")
      assert.include(result.stdout, "https://")
      assert.include(result.stdout, "1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
      assert.include(result.stdout, "EXAMPLES")
      assert.include(result.stdout, "--start-timeout")
    }))
})
