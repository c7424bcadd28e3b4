/**
 * The PostgreSQL backend (`RefCounter.postgres`) against a throw-away cluster on loopback
 * (`test/pg/cluster.ts`, run as a child process; `QUIESCE_PG_URL` uses a server of your own):
 *
 * acquire + release of a running service by a client that is not its supervisor (the service is
 * started and supervised by another process, `test/fixtures/pgclient.ts`, as on another machine):
 * startup lock, owner probe, hint, registration (the shared lock), the standby it starts, and
 * the release — against the bare advisory-lock round trip on the same server, in the same run:
 * `pg_advisory_lock_shared` + `pg_advisory_unlock_shared` on one session (two statements).
 */
import * as PgConnection from "@effect/sql-pg/PgConnection"
import { RefCounter, SharedService } from "@quiesce/shared-service"
import { Duration, Effect, Exit, Redacted, Scope } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { compare, formatNs, percentiles } from "../../../bench/harness.ts"

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url))
const node = (file: string, args: ReadonlyArray<string>) =>
  spawn(process.execPath, ["--conditions=@quiesce/source", "--no-warnings", file, ...args], { stdio: ["pipe", "pipe", "inherit"] })
const firstLine = (child: ReturnType<typeof node>, pred: (line: string) => boolean) =>
  new Promise<string>((resolve, reject) => {
    let buf = ""
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString()
      for (const line of buf.split("\n")) if (pred(line)) resolve(line)
    })
    child.on("exit", (code) => reject(new Error(`exited with ${code}`)))
  })

let url = process.env["QUIESCE_PG_URL"]
const cluster = url === undefined ? node(here("../test/pg/cluster.ts"), []) : undefined
if (cluster !== undefined) url = JSON.parse(await firstLine(cluster, (l) => l.startsWith("{"))).url as string

const name = `bench-pg-${Math.random().toString(36).slice(2, 8)}`
const dir = mkdtempSync(join(tmpdir(), "quiesce-pgbench-"))
// The supervisor: another process starts the service and keeps it up (5-minute grace).
const supervisor = node(here("../test/fixtures/pgclient.ts"), [JSON.stringify({ url, name, machine: "bench", startsDir: dir, ttlMs: 300_000 })])
await firstLine(supervisor, (l) => l.includes('"ready"'))
supervisor.stdin!.write(`acquire ${name}\n`)
await firstLine(supervisor, (l) => l.includes('"acquired"'))

const scope = Effect.runSync(Scope.make())
const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Scope.provide(effect, scope))

const rc = await run(RefCounter.makePostgres({ url: url! }))
const service = SharedService.makeUnsafe({
  name,
  start: Effect.die("the bench's client never starts it"),
  stop: () => Effect.void,
  idleTimeToLive: Duration.minutes(5)
})
const acquireRelease = Effect.scoped(Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, rc))
const hot = async (n: number) => {
  for (let i = 0; i < n; i++) await Effect.runPromise(acquireRelease)
}

const conn = await run(PgConnection.make({ url: Redacted.make(url!) }))
const lockPair = Effect.andThen(conn.query("SELECT pg_advisory_lock_shared(1, 2)"), conn.query("SELECT pg_advisory_unlock_shared(1, 2)"))
const raw = async (n: number) => {
  for (let i = 0; i < n; i++) await Effect.runPromise(lockPair)
}

await hot(100)
await raw(100)
const perOp = async (f: (n: number) => Promise<void>, n: number) => {
  const samples: Array<number> = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    await f(1)
    samples.push(Number(process.hrtime.bigint() - t))
  }
  return percentiles(samples)
}
const hotP = await perOp(hot, 400)
const rawP = await perOp(raw, 400)
console.log("PostgreSQL backend, acquire+release of a running service (a client that does not supervise it), per op:")
console.log(`  SharedService: p50 ${formatNs(hotP.p50)}  p90 ${formatNs(hotP.p90)}  p99 ${formatNs(hotP.p99)}`)
console.log(`  bare advisory-lock round trip (lock_shared + unlock_shared): p50 ${formatNs(rawP.p50)}  p90 ${formatNs(rawP.p90)}  p99 ${formatNs(rawP.p99)}`)
console.log(`  p50 ratio ${(hotP.p50 / rawP.p50).toFixed(2)}×`)

await compare({
  title: "PostgreSQL acquire+release (service up) vs bare advisory-lock round trip",
  subject: { name: "SharedService (postgres)", run: hot },
  baseline: { name: "pg_advisory_lock_shared + unlock", run: raw },
  iterations: 20
})

await Effect.runPromise(Scope.close(scope, Exit.void))
supervisor.kill("SIGKILL")
cluster?.stdin!.end()

