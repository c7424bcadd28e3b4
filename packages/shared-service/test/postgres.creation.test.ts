/**
 * `RefCounter.postgres` against a real PostgreSQL — the creation race alone, on a cluster of its own (in the
 * same file as the other tests, its uncommitted INSERT did not block the client's: not understood yet,
 * see the note of issue 13), (a throw-away cluster on loopback, `pg/cluster.ts`).
 * Each `RefCounter` opens sessions of its own, so two of them in one test process are two
 * clients as far as the server can tell (the machine tests, `postgres.machines.test.ts`, use
 * real processes in network namespaces).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as PgConnection from "@effect/sql-pg/PgConnection"
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { Effect, Fiber, Redacted } from "effect"
import type { Cluster } from "./pg/cluster.ts"
import { startCluster } from "./pg/cluster.ts"
import { uniqueName } from "./util.ts"

let cluster: Cluster

beforeAll(async () => {
  cluster = await startCluster({ listen: ["127.0.0.1"] })
}, 120_000)

afterAll(async () => {
  await cluster?.stop()
}, 60_000)

const keepalive = { idle: "1 second", interval: "1 second", count: 2 } as const
const counter = (namespace?: string) =>
  RefCounter.makePostgres({ url: cluster.tcpUrl("127.0.0.1"), keepalive, ...(namespace === undefined ? {} : { namespace }) })

/** A `make` service recording its starts and stops. */
const recorded = (name: string, extra: Partial<SharedService.Options<never, never>> = {}) => {
  const log: Array<string> = []
  const service = SharedService.makeUnsafe({
    name,
    start: Effect.sync(() => {
      log.push("start")
      return ServiceInfo.make({ pid: 1, metadata: { n: String(log.length) } })
    }),
    stop: () => Effect.sync(() => void log.push("stop")),
    ...extra
  })
  return { service, log }
}

const as = (rc: RefCounter.RefCounter) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, RefCounter.RefCounter, rc)

/** A raw session of the test's own, for what no client would do (terminating backends, holding locks). */
const raw = Effect.flatMap(
  Effect.suspend(() => PgConnection.make({ url: Redacted.make(cluster.tcpUrl("127.0.0.1")) })),
  (c) => Effect.succeed((sql: string, params: ReadonlyArray<unknown> = []) => Effect.map(Effect.orDie(c.query(sql, params)), (r) => r.rows))
)

const eventually = (check: Effect.Effect<boolean>, millis: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      if (yield* check) return true
      yield* Effect.sleep("20 millis")
    }
    return yield* check
  })

describe("RefCounter.postgres: row creation", () => {
  it.live("a client creating a name's row while another's creation is not yet committed gets that same row", () =>
    Effect.gen(function*() {
      const a = yield* counter("race-ns")
      const { log, service } = recorded(uniqueName("pg-first"))
      // Another client's creation of the row, not yet committed: ours waits on it, then must find it.
      const q = yield* raw
      yield* q("BEGIN")
      yield* q(`INSERT INTO quiesce_shared_service (namespace, name) VALUES ('race-ns', $1)`, [service.name])
      const acquiring = yield* Effect.forkChild(as(a)(SharedService.acquire(service)))
      assert.isTrue(
        yield* eventually(
          // Exactly the sessions our uncommitted INSERT blocks (other tests' sessions may wait too).
          Effect.map(q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid)) AND query LIKE '%INSERT INTO quiesce_shared_service%'`), (r) =>
            r[0]!["n"] === 1),
          20_000
        ),
        "our creation waits on theirs"
      )
      yield* q("COMMIT")
      const handle = yield* Fiber.join(acquiring)
      assert.isTrue(handle.started)
      assert.deepStrictEqual(log, ["start"])
      assert.strictEqual(yield* as(a)(SharedService.count(service)), 1, "the reference is on the committed row's keys")
    }).pipe(Effect.scoped), 60_000)

})
