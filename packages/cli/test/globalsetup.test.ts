/**
 * `GlobalSetup.services` as a project uses it: vitest processes running the fixture project
 * (`fixtures/globalsetup/`: a `globalSetup` file that is `export default GlobalSetup.services(["db"])`
 * and a test that queries the database where `QUIESCE_DB_PORT` says), sharing one real
 * PostgreSQL defined in the project's `quiesce.config.json`. The runners hold it in-process:
 * one killed with SIGKILL drops its reference (the kernel's SEM_UNDO), and the server stops
 * after its grace period once the last runner is gone.
 *
 * PostgreSQL is Debian's (`/usr/lib/postgresql/<version>/bin`), run as the `postgres` user when
 * the tests run as root. Without it the tests fail, saying what to install.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit } from "effect"
import type { Scope } from "effect"
import * as ChildProcess from "node:child_process"
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { bin as bin_, eventually, freePort, isAlive, node, nodeArgs } from "./util.ts"

const fixture = join(import.meta.dirname, "fixtures", "globalsetup")
const vitest = join(import.meta.dirname, "..", "..", "..", "node_modules", ".bin", "vitest")

/** Debian's PostgreSQL binaries (the newest version installed), or a failure saying what is missing. */
const pgBin = (): string => {
  const have = (dir: string) => ["initdb", "postgres", "psql"].every((bin) => existsSync(join(dir, bin)))
  let versions: Array<string> = []
  try {
    versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))
  } catch {
    // not installed there
  }
  const dir = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).find(have)
  if (dir === undefined) {
    throw new Error(
      "PostgreSQL's initdb, postgres and psql were not found in /usr/lib/postgresql/*/bin: GlobalSetup's tests run a real " +
        "PostgreSQL server (Debian: apt-get install postgresql)"
    )
  }
  return dir
}

/**
 * The user the runners (and so PostgreSQL, which refuses root) run as when the tests run as
 * root: `postgres`. A service is the runner's child and must be its user's: quiesce counts only
 * its own user's processes as the service's (the port's owner, what a stop signals).
 */
const runnerUser = (): { readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  try {
    const id = (flag: string) => Number(ChildProcess.execFileSync("id", [flag, "postgres"]).toString().trim())
    return { uid: id("-u"), gid: id("-g") }
  } catch {
    throw new Error("the tests run as root and there is no postgres user to run PostgreSQL (and its clients) as (Debian's postgresql package creates it)")
  }
}

/** `file args` as the runner user. */
const asRunner = (file: string, args: ReadonlyArray<string>): [string, Array<string>] =>
  runnerUser() === undefined ? [file, [...args]] : ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", file, ...args]]

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

/** Runs `file args` as the runner user to completion. */
const runAs = (file: string, args: ReadonlyArray<string>, options: { readonly env: Record<string, string>; readonly cwd?: string }) =>
  Effect.callback<Exited & { readonly stdout: string }>((resume) => {
    const [command, argv] = asRunner(file, args)
    const child = ChildProcess.spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env }, cwd: options.cwd })
    let stdout = ""
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString()
      output += chunk.toString()
    })
    child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()))
    child.on("close", (code, signal) => resume(Effect.succeed({ code, signal, output, stdout })))
  })

interface Project {
  /** The project's directory (its `quiesce.config.json`), where the runners run. */
  readonly dir: string
  readonly port: number
  /** One line per start of the server, written by the service command before it execs postgres. */
  readonly starts: string
  /** Where the runners' tests record what they saw, and the files they wait for. */
  readonly state: string
  /** The runners' environment: the project's runtime directory, a home of the runner user's. */
  readonly env: Record<string, string>
  /** `quiesce ARGS`, as the runners' user, in the project's runtime directory. */
  readonly quiesce: (args: ReadonlyArray<string>) => Effect.Effect<Exited & { readonly stdout: string }>
}

/**
 * A fresh cluster (initdb) and a project whose `quiesce.config.json` defines `db` as its server
 * on a free port, with a runtime directory of its own (so `db` is this test's alone). When the
 * scope closes: the service stopped if it still runs, its semaphore set removed, the files gone.
 */
const project: Effect.Effect<Project, never, Scope.Scope> = Effect.gen(function*() {
  const bin = pgBin()
  const user = runnerUser()
  const base = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "quiesce-globalsetup-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const [runtime, pg, dir, state, home] = ["runtime", "pg", "project", "state", "home"].map((name) => join(base, name)) as [string, string, string, string, string]
  for (const d of [runtime, pg, dir, state, home]) mkdirSync(d, { mode: 0o700 })
  if (user !== undefined) for (const d of [base, runtime, pg, dir, state, home]) chownSync(d, user.uid, user.gid)
  const [initdb, initdbArgs] = asRunner(join(bin, "initdb"), ["-D", join(pg, "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
  ChildProcess.execFileSync(initdb, initdbArgs, { stdio: "pipe", cwd: pg })
  const port = yield* freePort
  const starts = join(state, "starts")
  writeFileSync(
    join(dir, "quiesce.config.json"),
    JSON.stringify(
      {
        services: {
          db: {
            command: `echo "$$" >> ${shellQuote(starts)} && exec ${shellQuote(join(bin, "postgres"))} -D ${shellQuote(join(pg, "data"))} ` +
              `-p ${port} -k ${shellQuote(pg)} -c listen_addresses=127.0.0.1 -c fsync=off`,
            ready: `tcp:127.0.0.1:${port}`,
            grace: "1s",
            startTimeout: "60s",
            stopSignal: "SIGINT"
          }
        }
      },
      null,
      2
    )
  )
  const env = { QUIESCE_RUNTIME_DIR: runtime, HOME: home }
  const quiesce = (args: ReadonlyArray<string>) => runAs(node, [...nodeArgs, bin_, ...args], { env })
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* quiesce(["stop", "db"])
      // Semaphore sets outlive their processes by design: this test's is removed.
      yield* runAs(node, [...nodeArgs, "--input-type=module", "-e", removeSet], { env, cwd: import.meta.dirname })
    })
  )
  return { dir, port, starts, state, env, quiesce }
})

const removeSet = `import { Effect } from "effect"
await Effect.runPromise(Effect.ignore(SharedService.remove("db")))`

/**
 * `vitest run --root <fixture>` in the project's directory, as runner `id` (its test records
 * `<state>/<id>.json`, then waits for `waitFor`). A process group of its own, SIGKILLed with
 * the scope (its workers too).
 */
const runner = (p: Project, id: string, options: { readonly waitFor: string; readonly args?: ReadonlyArray<string> }) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const env: Record<string, string> = {}
      // Not this test's own vitest's (its worker id, its pool) nor an outer quiesce run's.
      for (const [key, value] of Object.entries(process.env)) {
        if (value !== undefined && !/^(VITEST|QUIESCE_|NODE_COMPILE_CACHE)/.test(key)) env[key] = value
      }
      // The config loaded by Node itself: vite's default loader writes next to it, in the source tree.
      const [command, args] = asRunner(process.execPath, [vitest, "run", "--root", fixture, "--configLoader", "native", ...(options.args ?? [])])
      const child = ChildProcess.spawn(command, args, {
        cwd: p.dir,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...env,
          ...p.env,
          NODE_OPTIONS: "--conditions=@quiesce/source",
          GLOBALSETUP_PG_BIN: pgBin(),
          GLOBALSETUP_STATE: p.state,
          GLOBALSETUP_RUNNER: id,
          GLOBALSETUP_WAIT_FOR: options.waitFor,
          GLOBALSETUP_CACHE_DIR: join(p.state, `cache-${id}`),
          NO_COLOR: "1"
        }
      })
      let output = ""
      child.stdout.on("data", (chunk: Buffer) => void (output += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => void (output += chunk.toString()))
      const closed = Deferred.makeUnsafe<Exited>()
      child.on("exit", (code, signal) => Deferred.doneUnsafe(closed, Exit.succeed({ code, signal, output })))
      return { child, runner: { pid: child.pid!, exit: Deferred.await(closed), output: () => output } satisfies Runner }
    }),
    ({ child }) =>
      Effect.sync(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {
          // the group is gone
        }
      })
  ).pipe(Effect.map(({ runner }) => runner))

interface Runner {
  readonly pid: number
  /** Its exit status and output, once it has exited. */
  readonly exit: Effect.Effect<Exited>
  readonly output: () => string
}

interface Seen {
  readonly port: string
  readonly pid: string
  readonly startedAt: string
}

/** What runner `id`'s test saw, once it has connected; its output in the failure if it exits first. */
const seen = (p: Project, r: Runner, id: string) =>
  Effect.gen(function*() {
    const file = join(p.state, `${id}.json`)
    let exited: { code: number | null; output: string } | undefined
    yield* Effect.forkChild(Effect.map(r.exit, (e) => (exited = e)))
    yield* eventually(`runner ${id} to connect`, () => existsSync(file) || exited !== undefined, 90_000).pipe(
      Effect.catchDefect((defect) => Effect.die(new Error(`${defect}\n${r.output()}`)))
    )
    if (!existsSync(file)) return yield* Effect.die(new Error(`runner ${id} exited with ${exited?.code} before connecting:\n${exited?.output}`))
    return JSON.parse(readFileSync(file, "utf8")) as Seen
  })

const passed = (id: string, exit: { readonly code: number | null; readonly output: string }) => {
  assert.strictEqual(exit.code, 0, `runner ${id} failed:\n${exit.output}`)
  assert.match(exit.output, /1 passed/, `runner ${id}:\n${exit.output}`)
}

const lines = (file: string): ReadonlyArray<string> =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((line) => line !== "") : []

const status = (p: Project) =>
  Effect.map(p.quiesce(["status", "db", "--json"]), (exit) => {
    try {
      return { code: exit.code, ...(JSON.parse(exit.stdout) as { readonly state: string; readonly clients: number | null }) }
    } catch {
      throw new Error(`quiesce status db --json: ${exit.output}`)
    }
  })

const clients = (p: Project) => Effect.map(status(p), (s) => s.clients)

/** Polls an Effect's value until `ok`, for what only the kernel tells (a dead runner's reference gone). */
const eventuallyEffect = <A>(what: string, effect: Effect.Effect<A>, ok: (a: A) => boolean, timeoutMillis = 30_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    for (;;) {
      const value = yield* effect
      if (ok(value)) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}: last ${JSON.stringify(value)}`))
      yield* Effect.sleep(100)
    }
  })

/** After the last runner: the server exits once the grace period has passed, and quiesce says so. */
const stopsAfterGrace = (p: Project, pid: number) =>
  Effect.gen(function*() {
    yield* eventually("PostgreSQL to stop after its grace period", () => !isAlive(pid), 30_000)
    const s = yield* status(p)
    assert.strictEqual(s.state, "stopped")
    assert.strictEqual(s.code, 1)
  })

const serverPid = (s: Seen): number => {
  const pid = Number(s.pid)
  assert.strictEqual(readFileSync(`/proc/${pid}/comm`, "utf8").trim(), "postgres", `QUIESCE_DB_PID ${s.pid} is not postgres`)
  return pid
}

describe("GlobalSetup.services as vitest's globalSetup, with PostgreSQL", () => {
  it.live("three concurrent vitest runs share one server, which stops after the last", () =>
    Effect.gen(function*() {
      const p = yield* project
      const go = join(p.state, "go")
      // One on vitest's other pool: its workers are threads, which get process.env as it is when they start.
      const ids = ["a", "b", "c"] as const
      const runners = yield* Effect.forEach(ids, (id) => runner(p, id, { waitFor: go, ...(id === "c" ? { args: ["--pool=threads"] } : {}) }))
      const views = yield* Effect.forEach(ids, (id, i) => seen(p, runners[i]!, id), { concurrency: "unbounded" })
      // All three hold it at once, each its own reference.
      assert.strictEqual(yield* clients(p), 3)
      for (const view of views) assert.deepStrictEqual(view, views[0], "every runner sees the same server")
      assert.strictEqual(views[0]!.port, String(p.port))
      const pid = serverPid(views[0]!)
      writeFileSync(go, "")
      const exits = yield* Effect.forEach(runners, (r) => r.exit, { concurrency: "unbounded" })
      exits.forEach((exit, i) => passed(ids[i]!, exit))
      assert.strictEqual(lines(p.starts).length, 1, "PostgreSQL started once")
      yield* stopsAfterGrace(p, pid)
      assert.strictEqual(lines(p.starts).length, 1)
    }), 120_000)

  it.live("a runner killed with SIGKILL mid-run drops its reference; the others pass and the server stops after them", () =>
    Effect.gen(function*() {
      const p = yield* project
      const go = join(p.state, "go")
      // The victim starts the server (it runs first) and waits for a file that never comes.
      const victim = yield* runner(p, "victim", { waitFor: join(p.state, "never") })
      const first = yield* seen(p, victim, "victim")
      const pid = serverPid(first)
      const others = yield* Effect.forEach(["a", "b"], (id) => runner(p, id, { waitFor: go }))
      const views = yield* Effect.forEach(["a", "b"], (id, i) => seen(p, others[i]!, id), { concurrency: "unbounded" })
      for (const view of views) assert.deepStrictEqual(view, first)
      assert.strictEqual(yield* clients(p), 3)
      process.kill(victim.pid, "SIGKILL")
      const killed = yield* victim.exit
      assert.strictEqual(killed.signal, "SIGKILL")
      // Its reference went with it; the server, which it started, serves the others.
      yield* eventuallyEffect("the killed runner's reference to be dropped", clients(p), (n) => n === 2)
      assert.isTrue(isAlive(pid), "PostgreSQL outlives the runner that started it")
      writeFileSync(go, "")
      const exits = yield* Effect.forEach(others, (r) => r.exit, { concurrency: "unbounded" })
      exits.forEach((exit, i) => passed(["a", "b"][i]!, exit))
      assert.strictEqual(lines(p.starts).length, 1, "PostgreSQL started once")
      yield* stopsAfterGrace(p, pid)
    }), 120_000)
})
