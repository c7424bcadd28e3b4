/**
 * Services defined in a config file, used by name, against real services nobody here wrote:
 * PostgreSQL (Debian's package, ready by `cmd:pg_isready` and by `log:`), Python's
 * `http.server`; two services in one run; `up` and `down`; the service's output and the progress
 * lines; a config file with a typo.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { QuiesceConfig } from "@quiesce/cli"
import { SharedService } from "@quiesce/shared-service"
import { postgresCluster } from "./postgres.ts"
import {
  eventually,
  freePort,
  isAlive,
  quiesce,
  quiesceExit,
  serviceCommand,
  starts,
  stops,
  tempDir,
  uniqueName
} from "./util.ts"

/**
 * A project directory with `config` as its quiesce.config.json (or under package.json's
 * "quiesce" key), and its own runtime directory; every service it defines is stopped (and its
 * semaphore set removed) when the scope closes.
 */
const project = (services: Record<string, Record<string, unknown>>, options?: { readonly packageJson?: boolean }) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const runtime = join(dir, "runtime")
    mkdirSync(runtime, { mode: 0o700 })
    chmodSync(dir, 0o755)
    const env = { QUIESCE_RUNTIME_DIR: runtime }
    const config = { services }
    if (options?.packageJson === true) {
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "app", private: true, quiesce: config }, null, 2))
    } else {
      writeFileSync(join(dir, "quiesce.config.json"), JSON.stringify(config, null, 2))
    }
    yield* Effect.addFinalizer(() =>
      Effect.forEach(Object.keys(services), (name) =>
        Effect.gen(function*() {
          yield* Effect.scoped(Effect.flatMap(quiesce(["stop", name], { env }), (q) => q.exit))
          yield* Effect.ignore(SharedService.remove(name))
        }), { discard: true })
    )
    return { dir, env, runtime }
  })

const status = (name: string, env: Record<string, string>) =>
  Effect.map(quiesceExit(["status", name, "--json"], { env }), (result) => JSON.parse(result.stdout))

describe("services from a config file", { timeout: 120_000 }, () => {
  it.live("a typo: one line naming the file, the path in it and the problem; exit 2; nothing started", () =>
    Effect.gen(function*() {
      const name = uniqueName("typo")
      const { dir, env } = yield* project({ [name]: { comand: "sleep 100" } })
      const result = yield* quiesceExit(["run", name, "--", "true"], { env, cwd: join(dir) })
      assert.strictEqual(result.code, 2, result.stderr)
      assert.strictEqual(
        result.stderr,
        `quiesce: ${join(dir, "quiesce.config.json")}: services.${name}.comand: unknown key; did you mean "command"?\n`
      )
      // A wrong value, in package.json, found from a subdirectory.
      const other = uniqueName("badport")
      const second = yield* project({ [other]: { command: "sleep 100", port: 70000 } }, { packageJson: true })
      const sub = join(second.dir, "src", "deep")
      mkdirSync(sub, { recursive: true })
      const bad = yield* quiesceExit(["run", other, "--", "true"], { env: second.env, cwd: sub })
      assert.strictEqual(bad.code, 2, bad.stderr)
      assert.strictEqual(
        bad.stderr,
        `quiesce: ${join(second.dir, "package.json")}: quiesce.services.${other}.port: Expected a value between 1 and 65535\n`
      )
      assert.strictEqual((yield* status(other, second.env)).state, "stopped")
      // A directory that is not there: in the file's terms, before anything starts.
      const third = uniqueName("nocwd")
      const nowhere = yield* project({ [third]: { command: "sleep 100", cwd: "no/such/dir" } })
      const lost = yield* quiesceExit(["run", third, "--", "true"], { env: nowhere.env, cwd: nowhere.dir })
      assert.strictEqual(lost.code, 2, lost.stderr)
      assert.strictEqual(lost.stderr, `quiesce: ${join(nowhere.dir, "quiesce.config.json")}: services.${third}.cwd: ${join(nowhere.dir, "no/such/dir")} is not a directory\n`)
    }))

  it.live("two services in one run: each one's coordinates in the environment, one start each, both stop after the run", () =>
    Effect.gen(function*() {
      const a = uniqueName("two-a")
      const b = uniqueName("two-b")
      const logs = yield* tempDir
      const { dir, env } = yield* project({
        [a]: { command: serviceCommand(join(logs, "a.log")), port: "auto", grace: "200ms" },
        [b]: { command: serviceCommand(join(logs, "b.log")), port: "auto", grace: "200ms" }
      })
      const ask = (variable: string) =>
        `fetch("http://127.0.0.1:" + process.env.${variable} + "/").then((r) => r.json()).then((s) => console.log(JSON.stringify(s)))`
      const [A, B] = [a, b].map((n) => n.toUpperCase().replace(/[^A-Z0-9]/g, "_"))
      const result = yield* quiesceExit([
        "run",
        a,
        b,
        "--",
        "sh",
        "-c",
        `node -e '${ask(`QUIESCE_${A}_PORT`)}' && node -e '${ask(`QUIESCE_${B}_PORT`)}' && echo "pids $QUIESCE_${A}_PID $QUIESCE_${B}_PID single=\${QUIESCE_SERVICE_NAME-unset}"`
      ], { env, cwd: dir })
      assert.strictEqual(result.code, 0, result.stderr)
      const [first, second, pids] = result.stdout.trim().split("\n")
      assert.strictEqual(JSON.parse(first!).name, a)
      assert.strictEqual(JSON.parse(second!).name, b)
      assert.strictEqual(pids, `pids ${JSON.parse(first!).pid} ${JSON.parse(second!).pid} single=unset`)
      assert.strictEqual(starts(join(logs, "a.log")).length, 1)
      assert.strictEqual(starts(join(logs, "b.log")).length, 1)
      const unknown = yield* quiesceExit(["run", a, "nope", "--", "true"], { env, cwd: dir })
      assert.strictEqual(unknown.code, 2, unknown.stderr)
      assert.include(unknown.stderr, `services: no service "nope" (defined: ${a}, ${b})`)
      yield* eventually("both to stop after their grace", () =>
        stops(join(logs, "a.log")).length === 1 && stops(join(logs, "b.log")).length === 1)
    }))

  it.live("the second service failing releases the first: nothing is left running", () =>
    Effect.gen(function*() {
      const a = uniqueName("rel-a")
      const b = uniqueName("rel-b")
      const logs = yield* tempDir
      const { dir, env } = yield* project({
        [a]: { command: serviceCommand(join(logs, "a.log")), port: "auto", grace: "0" },
        [b]: { command: "echo broken; exit 3" }
      })
      const result = yield* quiesceExit(["run", "-q", a, b, "--", "echo", "never"], { env, cwd: dir })
      assert.strictEqual(result.code, 125, result.stderr)
      assert.match(result.stderr, new RegExp(`^quiesce: service "${b}" failed to start: .*exited with status 3`))
      assert.strictEqual(result.stdout, "")
      yield* eventually("the first to be released and stopped", () => stops(join(logs, "a.log")).length === 1)
    }))

  it.live("Python's http.server: ready by an http probe with the expected status; --service-output prefix shows its lines", () =>
    Effect.gen(function*() {
      const name = uniqueName("python")
      const port = yield* freePort
      const www = yield* tempDir
      writeFileSync(join(www, "index.html"), "hello from python\n")
      const { dir, env } = yield* project({
        [name]: {
          command: `python3 -m http.server --bind 127.0.0.1 ${port} --directory '${www}'`,
          // A path it does not serve: ready when it answers 404.
          ready: `http://127.0.0.1:${port}/missing`,
          expect: "404",
          grace: "200ms"
        }
      })
      const result = yield* quiesceExit([
        "run",
        "--service-output",
        "prefix",
        name,
        "--",
        "sh",
        "-c",
        `curl -s http://127.0.0.1:${port}/index.html; sleep 0.5`
      ], { env, cwd: dir })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, "hello from python\n")
      assert.match(result.stderr, new RegExp(`\\[${name}\\] .*"GET /missing HTTP/1\\.1" 404`))
      assert.match(result.stderr, new RegExp(`\\[${name}\\] .*"GET /index\\.html HTTP/1\\.1" 200`))
      assert.notInclude(result.stderr, "quiesce supervisor", "the supervisor's own lines are left out")
    }))

  it.live("PostgreSQL: ready by cmd:pg_isready and by log:, used through its port, stopped after the grace period", () =>
    Effect.gen(function*() {
      const name = uniqueName("pg")
      const port = yield* freePort
      const cluster = postgresCluster(yield* tempDir, port)
      const { dir, env } = yield* project({
        [name]: {
          command: cluster.command,
          port,
          ready: [`cmd:pg_isready -h 127.0.0.1 -p ${port}`, "log:database system is ready to accept connections"],
          grace: "500ms",
          startTimeout: "60s"
        }
      })
      const P = name.toUpperCase().replace(/[^A-Z0-9]/g, "_")
      const result = yield* quiesceExit([
        "run",
        name,
        "--",
        "sh",
        "-c",
        `psql -h 127.0.0.1 -p "$QUIESCE_${P}_PORT" -U postgres -Atc 'select 40 + 2'`
      ], { env, cwd: dir })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(result.stdout, "42\n")
      const pid = Number(readFileSync(join(cluster.data, "postmaster.pid"), "utf8").split("\n")[0])
      yield* eventually("PostgreSQL to stop after the grace period", () => !isAlive(pid), 30_000)
      assert.strictEqual((yield* status(name, env)).state, "stopped")
    }))

  it.live("up holds a service between commands, down releases it; up twice is up once", () =>
    Effect.gen(function*() {
      const name = uniqueName("up")
      const logs = yield* tempDir
      const { dir, env } = yield* project({
        [name]: { command: serviceCommand(join(logs, "s.log")), port: "auto", grace: "200ms" }
      })
      const up = yield* quiesceExit(["up", name], { env, cwd: dir })
      assert.strictEqual(up.code, 0, up.stderr)
      assert.match(up.stdout, new RegExp(`^${name} is up, held by pid \\d+`))
      const again = yield* quiesceExit(["up", name], { env, cwd: dir })
      assert.match(again.stdout, new RegExp(`^${name} is already up`))
      // Commands come and go; the service stays.
      for (let i = 0; i < 2; i++) {
        const run = yield* quiesceExit(["run", name, "--", "true"], { env, cwd: dir })
        assert.strictEqual(run.code, 0, run.stderr)
      }
      yield* Effect.sleep(500)
      assert.strictEqual(starts(join(logs, "s.log")).length, 1)
      assert.strictEqual(stops(join(logs, "s.log")).length, 0, "held by up past its grace period")
      const held = yield* status(name, env)
      assert.strictEqual(held.clients, 1)
      const down = yield* quiesceExit(["down", name], { env, cwd: dir })
      assert.strictEqual(down.code, 0, down.stderr)
      assert.include(down.stdout, `${name} released`)
      yield* eventually("the service to stop after down and its grace", () => stops(join(logs, "s.log")).length === 1)
      const twice = yield* quiesceExit(["down", name], { env, cwd: dir })
      assert.include(twice.stdout, `${name} was not up`)
    }))

  it.live("up of a service that cannot start: its error and exit code, nothing held", () =>
    Effect.gen(function*() {
      const name = uniqueName("upfail")
      const { dir, env } = yield* project({ [name]: { command: "echo no database here >&2; exit 4" } })
      const up = yield* quiesceExit(["up", name], { env, cwd: dir })
      assert.strictEqual(up.code, 125, up.stderr)
      assert.include(up.stderr, `service "${name}" failed to start`)
      assert.include(up.stderr, "no database here")
      const down = yield* quiesceExit(["down", name], { env, cwd: dir })
      assert.include(down.stdout, `${name} was not up`)
    }))

  it.live("concurrent ups start one holder; up of several is all or nothing", () =>
    Effect.gen(function*() {
      const name = uniqueName("upmany")
      const bad = uniqueName("upbad")
      const logs = yield* tempDir
      const { dir, env } = yield* project({
        [name]: { command: serviceCommand(join(logs, "s.log")), port: "auto", grace: "200ms" },
        [bad]: { command: "exit 4" }
      })
      const ups = yield* Effect.forEach([1, 2, 3], () => quiesceExit(["up", name], { env, cwd: dir }), { concurrency: "unbounded" })
      for (const up of ups) assert.strictEqual(up.code, 0, up.stderr)
      assert.strictEqual(ups.filter((up) => / is up, held by pid /.test(up.stdout)).length, 1, ups.map((u) => u.stdout).join(""))
      // The others waited for that one's holder, and name it.
      const pids = ups.map((up) => /held by pid (\d+)/.exec(up.stdout)?.[1])
      assert.strictEqual(new Set(pids).size, 1, ups.map((u) => u.stdout).join(""))
      yield* eventually("the one holder to hold it", () => starts(join(logs, "s.log")).length === 1)
      const down = yield* quiesceExit(["down", name], { env, cwd: dir })
      assert.strictEqual(down.code, 0, down.stderr)
      yield* eventually("the service to stop: no other holder is left", () => stops(join(logs, "s.log")).length === 1)
      // The second fails: the first, started by this up, is released too.
      const both = yield* quiesceExit(["up", name, bad], { env, cwd: dir })
      assert.strictEqual(both.code, 125, both.stderr)
      yield* eventually("the first to be released and stopped", () => stops(join(logs, "s.log")).length === 2)
      assert.include((yield* quiesceExit(["down", name], { env, cwd: dir })).stdout, `${name} was not up`)
    }))

  it.live("a config that is not a regular file (a FIFO, /dev/zero) is refused at once, not read", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const fifo = join(dir, "quiesce.config.json")
      execFileSync("mkfifo", [fifo])
      const result = yield* quiesceExit(["run", "x", "--", "true"], { cwd: dir })
      assert.strictEqual(result.code, 2, result.stderr)
      assert.strictEqual(result.stderr, `quiesce: ${fifo}: is not a regular file\n`)
      const zero = yield* quiesceExit(["run", "--config", "/dev/zero", "x", "--", "true"], { cwd: dir })
      assert.strictEqual(zero.stderr, "quiesce: /dev/zero: is not a regular file\n")
    }))

  it.live("progress: plain lines when waiting takes a while and stderr is not a terminal; nothing with --quiet", () =>
    Effect.gen(function*() {
      const name = uniqueName("progress")
      const port = yield* freePort
      const logs = yield* tempDir
      const { dir, env } = yield* project({
        [name]: { command: `sleep 1.5; exec ${serviceCommand(join(logs, "s.log"))}`, port, grace: "0" }
      })
      const shown = yield* quiesceExit(["run", name, "--", "true"], { env, cwd: dir })
      assert.strictEqual(shown.code, 0, shown.stderr)
      assert.match(shown.stderr, new RegExp(`^quiesce: waiting for ${name}: tcp:localhost:${port}\n`))
      assert.match(shown.stderr, new RegExp(`quiesce: ${name} is ready \\(\\d`))
      yield* eventually("the service to stop", () => stops(join(logs, "s.log")).length === 1)
      const quiet = yield* quiesceExit(["run", "--quiet", name, "--", "true"], { env, cwd: dir })
      assert.strictEqual(quiet.code, 0, quiet.stderr)
      assert.strictEqual(quiet.stderr, "")
    }))
})

describe("config file validation", () => {
  const decode = (services: unknown) => () =>
    QuiesceConfig.decode(JSON.stringify({ services }), "/srv/app/quiesce.config.json")

  it("a service name is what the kernel objects accept, and nothing else", () => {
    assert.doesNotThrow(decode({ "db-1.main_x": { command: "x" } }))
    assert.throws(decode({ "a b": { command: "x" } }), /services: "a b" is not a service name/)
    assert.throws(decode({ ".hidden": { command: "x" } }), /is not a service name/)
  })

  it("each field's problem, at its path", () => {
    const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
      [{ db: {} }, /services\.db: needs a command \(a local service\) or a start command/],
      [{ db: { command: "x", start: "y" } }, /services\.db: has both command and start/],
      [{ db: { command: "x", host: "h" } }, /services\.db\.host: only a service with start/],
      [{ db: { start: "x" } }, /services\.db\.start: a service with start is shared through a database: set backend/],
      [{ db: { command: "x", ready: ["tcp:1", "bogus"] } }, /services\.db\.ready\[1\]: Expected .*got "bogus"$/],
      [{ db: { command: "x", ready: "log:(" } }, /services\.db\.ready: Expected/],
      [{ db: { command: "x", expect: "700" } }, /services\.db\.expect: Expected/],
      [{ db: { command: "x", grace: "5" } }, /services\.db\.grace: Expected a duration/],
      [{ db: { command: "x", stopSignal: "SIGFOO" } }, /services\.db\.stopSignal: Expected a signal name/],
      [{ db: { command: "x", output: "tty" } }, /services\.db\.output: Expected/],
      [{ db: { command: "x", env: { A: 1 } } }, /services\.db\.env\.A: Expected string/],
      [{ db: { command: "x", outptu: "file" } }, /services\.db\.outptu: unknown key; did you mean "output"\?$/],
      [{ db: { command: "x", env: { "A=B": "1" } } }, /services\.db\.env\["A=B"\]: not a variable name/],
      [{ db: { command: "x", env: { A: "a\0b" } } }, /services\.db\.env\.A: Expected a value without NUL/]
    ]
    for (const [services, pattern] of cases) {
      assert.throws(decode(services), pattern, JSON.stringify(services))
    }
    assert.throws(
      () => QuiesceConfig.decode(JSON.stringify({ backend: "${QUIESCE_TEST_UNSET_VARIABLE}", services: {} }), "/a/quiesce.config.json"),
      /^\/a\/quiesce\.config\.json: backend: \$\{QUIESCE_TEST_UNSET_VARIABLE\} is not set in the environment$/
    )
    assert.throws(
      () => QuiesceConfig.decode(`{ "services": { "db": { "command": "x", "grace": 1e400 } } }`, "/a/quiesce.config.json"),
      /services\.db\.grace: /
    )
    assert.throws(
      () => QuiesceConfig.decode(`{ "services": { "db": { "command": "x", } } }`, "/a/quiesce.config.json"),
      /^\/a\/quiesce\.config\.json: not valid JSON \(.*line 1 column/
    )
  })

  it("relative paths are the file's directory's, and the fingerprint tells checkouts apart", () => {
    const one = QuiesceConfig.decode(JSON.stringify({ services: { db: { command: "x", cwd: "db" } } }), "/home/a/app/quiesce.config.json")
    const two = QuiesceConfig.decode(JSON.stringify({ services: { db: { command: "x", cwd: "db" } } }), "/home/a/app2/quiesce.config.json")
    assert.strictEqual(one.services.get("db")!.cwd, "/home/a/app/db")
    assert.notStrictEqual(QuiesceConfig.fingerprint(one.services.get("db")!), QuiesceConfig.fingerprint(two.services.get("db")!))
  })
})

describe("identity", { timeout: 120_000 }, () => {
  it.live("another definition of a running service: refused with both shown while held (exit 121), replaced once nobody holds it", () =>
    Effect.gen(function*() {
      const name = uniqueName("identity")
      const logs = yield* tempDir
      const one = yield* project({ [name]: { command: serviceCommand(join(logs, "one.log")), port: "auto", grace: "3s" } })
      const two = yield* project({ [name]: { command: serviceCommand(join(logs, "two.log")), port: "auto", grace: "3s" } })
      // Both checkouts' runs see one runtime directory, as one user's do.
      const env = one.env
      const holder = yield* quiesce(["run", "-q", name, "--", "sh", "-c", "echo held; sleep 100"], { env, cwd: one.dir })
      yield* holder.line("held")
      const refused = yield* quiesceExit(["run", "-q", name, "--", "echo", "never"], { env, cwd: two.dir })
      assert.strictEqual(refused.code, 121, refused.stderr)
      const lines = refused.stderr.trimEnd().split("\n")
      assert.strictEqual(lines[0], `quiesce: service "${name}" is running with another definition, for 1 client:`)
      assert.include(lines[1]!, `"cwd":"${one.dir}"`)
      assert.include(lines[2]!, `"cwd":"${two.dir}"`)
      assert.strictEqual(refused.stdout, "")
      const held = yield* status(name, env)
      assert.strictEqual(held.clients, 1, "the running instance is untouched")
      assert.strictEqual(starts(join(logs, "one.log")).length, 1)
      assert.strictEqual(stops(join(logs, "one.log")).length, 0)
      assert.match(held.fingerprint, /^[0-9a-f]{16}$/)
      // Its holder leaves; within the grace period, the other definition replaces it.
      yield* holder.kill("SIGTERM")
      yield* holder.exited
      const replaced = yield* quiesceExit(["run", "-q", name, "--", "true"], { env, cwd: two.dir })
      assert.strictEqual(replaced.code, 0, replaced.stderr)
      assert.strictEqual(stops(join(logs, "one.log")).length, 1)
      assert.strictEqual(starts(join(logs, "two.log")).length, 1)
      assert.notStrictEqual((yield* status(name, env)).fingerprint, held.fingerprint)
    }))

  it.live("stopSignal: whoever stops the service asks with it (here SIGINT, which a plain shell service would ignore)", () =>
    Effect.gen(function*() {
      const name = uniqueName("stopsig")
      const out = yield* tempDir
      const got = join(out, "got")
      const { dir, env } = yield* project({
        [name]: {
          command: `trap 'echo INT > ${got}; exit 0' INT; trap 'echo TERM > ${got}; exit 0' TERM; while :; do sleep 0.1; done`,
          grace: "0",
          stopSignal: "SIGINT",
          stopTimeout: "5s"
        }
      })
      const run = yield* quiesceExit(["run", "-q", name, "--", "true"], { env, cwd: dir })
      assert.strictEqual(run.code, 0, run.stderr)
      yield* eventually("the service to be asked to stop", () => existsSync(got), 20_000)
      assert.strictEqual(readFileSync(got, "utf8"), "INT\n")
    }))
})
