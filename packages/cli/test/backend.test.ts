/**
 * `quiesce run` with services shared through PostgreSQL (a config file's `backend`, or
 * `--backend`): started and stopped by the user's commands, held by database sessions, the last
 * client out stopping the service after the grace period. A real server (Debian's package), the
 * "remote" service a background Python http.server that `start` launches and `stop` kills.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startPostgres } from "./postgres.ts"
import { eventually, freePort, processesWith, quiesce, quiesceExit, tempDir, uniqueName } from "./util.ts"

let database: { readonly url: string; readonly stop: () => Promise<void> }
const databaseDir = mkdtempSync(join(tmpdir(), "quiesce-backend-"))

beforeAll(async () => {
  const port = await Effect.runPromise(freePort)
  database = await startPostgres(databaseDir, port)
}, 90_000)

afterAll(async () => {
  await database?.stop()
  rmSync(databaseDir, { recursive: true, force: true })
})

/** A project whose one service is started by a command that launches http.server in the background. */
const project = (options: { readonly backend?: string; readonly grace?: string }) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    chmodSync(dir, 0o755)
    const runtime = join(dir, "runtime")
    mkdirSync(runtime, { mode: 0o700 })
    const name = uniqueName("remote")
    const port = yield* freePort
    const starts = join(dir, "starts")
    const pids = join(dir, "pids")
    // A failed test leaves no server behind (a passing one has had it stopped by quiesce).
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (!existsSync(pids)) return
        for (const pid of readFileSync(pids, "utf8").split("\n").filter((l) => l !== "")) {
          try {
            process.kill(Number(pid), "SIGKILL")
          } catch {
            // stopped already
          }
        }
      })
    )
    const service = {
      start: `echo start >> '${starts}'; python3 -m http.server --bind 127.0.0.1 ${port} --directory '${dir}' >/dev/null 2>&1 & echo $! | tee -a '${pids}'`,
      stop: `kill "$QUIESCE_START_OUTPUT"`,
      host: "127.0.0.1",
      port,
      ready: `http://127.0.0.1:${port}/`,
      grace: options.grace ?? "300ms",
      startTimeout: "20s"
    }
    writeFileSync(join(dir, "quiesce.config.json"), JSON.stringify({
      ...(options.backend === undefined ? {} : { backend: options.backend }),
      services: { [name]: service }
    }))
    writeFileSync(join(dir, "hello.txt"), "hello\n")
    const N = name.toUpperCase().replace(/[^A-Z0-9]/g, "_")
    return {
      dir,
      name,
      port,
      N,
      env: { QUIESCE_RUNTIME_DIR: runtime, QUIESCE_TEST_DB: database.url },
      starts: () => existsSync(starts) ? readFileSync(starts, "utf8").split("\n").filter((l) => l !== "").length : 0
    }
  })

/** Whether something listens on 127.0.0.1:`port` (the background server). */
const listening = (port: number): boolean => {
  const hex = port.toString(16).toUpperCase().padStart(4, "0")
  return readFileSync("/proc/net/tcp", "utf8").split("\n").some((line) => line.includes(`:${hex} 00000000:0000 0A`))
}

describe("services shared through PostgreSQL", { timeout: 120_000 }, () => {
  it.live("a run of several clients, one of which leaves early: the service outlives it and stops a grace period after the last", () =>
    Effect.gen(function*() {
      const p = yield* project({ backend: "${QUIESCE_TEST_DB}", grace: "2s" })
      const early = yield* quiesce(["run", "-q", p.name, "--", "true"], { env: p.env, cwd: p.dir })
      const late = yield* quiesce(["run", "-q", p.name, "--", "sh", "-c", "sleep 2; echo done"], { env: p.env, cwd: p.dir })
      assert.strictEqual((yield* early.exit).code, 0, early.stderr())
      assert.strictEqual((yield* late.exit).code, 0, late.stderr())
      assert.strictEqual(p.starts(), 1)
      // The last one out waited for the grace period and ran `stop` (no orphan): the server,
      // SIGTERMed by it, goes a moment later.
      yield* eventually("the server to be stopped", () => !listening(p.port), 10_000)
    }))

  it.live("concurrent runs share one start; each sees its host and port; the last one out stops it after the grace", () =>
    Effect.gen(function*() {
      const p = yield* project({ backend: "${QUIESCE_TEST_DB}" })
      const runs = yield* Effect.forEach([1, 2, 3], () =>
        quiesce(["run", "-q", p.name, "--", "sh", "-c", `curl -s "http://$QUIESCE_${p.N}_HOST:$QUIESCE_${p.N}_PORT/hello.txt"; sleep 1`], {
          env: p.env,
          cwd: p.dir
        }))
      const results = yield* Effect.forEach(runs, (q) => q.exit, { concurrency: "unbounded" })
      for (const [i, result] of results.entries()) assert.strictEqual(result.code, 0, runs[i]!.stderr())
      for (const q of runs) assert.strictEqual(q.stdout(), "hello\n")
      assert.strictEqual(p.starts(), 1, "exactly one start")
      yield* eventually("the service to be stopped", () => !listening(p.port), 30_000)
    }))

  it.live("--backend instead of the file's; a SIGKILLed client's reference is dropped at once", () =>
    Effect.gen(function*() {
      const p = yield* project({ grace: "200ms" })
      const marker = String(100_000 + p.port)
      const holder = yield* quiesce(["run", "-q", "--backend", database.url, p.name, "--", "sh", "-c", `echo held; exec sleep ${marker}`], {
        env: p.env,
        cwd: p.dir
      })
      yield* holder.line("held")
      const joiner = yield* quiesceExit(["run", "-q", "--backend", database.url, p.name, "--", "true"], { env: p.env, cwd: p.dir })
      assert.strictEqual(joiner.code, 0, joiner.stderr)
      // status and list read the database's record (the kernel's know nothing of it).
      const shown = JSON.parse((yield* quiesceExit(["status", p.name, "--json", "--backend", database.url], { env: p.env })).stdout)
      assert.strictEqual(shown.state, "running")
      assert.strictEqual(shown.clients, 1)
      assert.strictEqual(shown.port, p.port)
      const listed = JSON.parse((yield* quiesceExit(["list", "--json", "--backend", database.url], { env: p.env })).stdout)
      assert.isTrue(listed.some((s: { name: string }) => s.name === p.name))
      assert.strictEqual(p.starts(), 1)
      // The supervising client dies with its command: no one holds the service any more, and the
      // next client finds it unsupervised and replaces it.
      yield* holder.kill("SIGKILL")
      yield* holder.exited
      // quiesce stayed the command's parent (its session holds the reference): the command dies with it.
      yield* eventually("the SIGKILLed client's command to die with it", () => processesWith("sleep", marker).length === 0)
      // (Its server was left running, unsupervised: the next one stops it with the recorded
      // start output, then starts its own.)
      const after = yield* quiesceExit(["run", "-q", "--backend", database.url, p.name, "--", "true"], { env: p.env, cwd: p.dir })
      assert.strictEqual(after.code, 0, after.stderr)
      assert.strictEqual(p.starts(), 2)
      yield* eventually("the second instance to be stopped after its grace", () => !listening(p.port), 30_000)
    }))

  it.live("a session lost while the command runs is said at once; the command runs on", () =>
    Effect.gen(function*() {
      const p = yield* project({ backend: "${QUIESCE_TEST_DB}" })
      // Learnt by the session's heartbeat, within its keepalive idle time (10 s by default).
      const run = yield* quiesce(["run", "-q", p.name, "--", "sh", "-c", "echo held; sleep 18; echo finished"], { env: p.env, cwd: p.dir })
      yield* run.line("held")
      // The server ends every client session of the database (as a restart or a cut network would).
      const psql = process.getBuiltinModule("node:child_process").execFileSync
      psql("psql", [database.url, "-Atc", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'"])
      const exit = yield* run.exit
      assert.strictEqual(exit.code, 0, run.stderr())
      assert.include(run.stdout(), "finished")
      assert.match(run.stderr(), new RegExp(`quiesce: .*; the command runs on, but "${p.name}" may be stopped or replaced under it`))
    }))

  it.live("no backend: a one-line error naming the file; an unreachable one: exit 125 saying so", () =>
    Effect.gen(function*() {
      const p = yield* project({})
      const none = yield* quiesceExit(["run", p.name, "--", "true"], { env: p.env, cwd: p.dir })
      assert.strictEqual(none.code, 2, none.stderr)
      assert.match(none.stderr, /quiesce\.config\.json: services\..*\.start: a service with start is shared through a database: set backend/)
      const unreachable = yield* quiesceExit(["run", "-q", "--backend", "postgres://postgres@127.0.0.1:1/postgres", p.name, "--", "true"], {
        env: p.env,
        cwd: p.dir
      })
      assert.strictEqual(unreachable.code, 125, unreachable.stderr)
      assert.match(unreachable.stderr, /unreachable/)
      assert.strictEqual(p.starts(), 0)
    }))
})
