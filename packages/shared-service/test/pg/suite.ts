/**
 * What the PostgreSQL tests share: a throw-away cluster for the file (`pg/cluster.ts`), counters
 * on it (each opens sessions of its own: two in one process are two clients to the server), a
 * `make` service that records its starts and stops, and a raw session for what no client would do.
 */
import { afterAll, beforeAll } from "@effect/vitest"
import * as PgConnection from "@effect/sql-pg/PgConnection"
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { Effect, Redacted } from "effect"
import type { Cluster } from "./cluster.ts"
import { startCluster } from "./cluster.ts"

/** Starts a cluster before the file's tests and stops it after them. */
export const pgSuite = () => {
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

  return { cluster: () => cluster, counter, recorded, as, raw, eventually }
}
