/**
 * `RefCounter.postgres` against a real PostgreSQL (a throw-away cluster on loopback, `pg/cluster.ts`).
 * Each `RefCounter` opens sessions of its own, so two of them in one test process are two
 * clients as far as the server can tell (the machine tests, `postgres.machines.test.ts`, use
 * real processes in network namespaces).
 */
import { assert, describe, it } from "@effect/vitest"
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { Cause, Duration, Effect, Exit, Fiber, Scope } from "effect"
import { pgSuite } from "./pg/suite.ts"
import { uniqueName } from "./util.ts"

const { as, cluster: theCluster, counter, eventually, raw, recorded } = pgSuite()

describe("RefCounter.postgres", () => {
  it.live("a reference per holding client, counted in pg_locks; one start; stopped after the last release", () =>
    Effect.gen(function*() {
      const [a, b, observer] = [yield* counter(), yield* counter(), yield* counter()]
      const { log, service } = recorded(uniqueName("pg-basic"))
      const sa = yield* Scope.make()
      const sb = yield* Scope.make()
      const ha = yield* as(a)(Scope.provide(SharedService.acquire(service), sa))
      const hb = yield* as(b)(Scope.provide(SharedService.acquire(service), sb))
      assert.isTrue(ha.started)
      assert.isFalse(hb.started)
      assert.strictEqual(hb.info.instanceId, ha.info.instanceId)
      assert.strictEqual(yield* as(observer)(SharedService.count(service)), 2)
      // Fibers of one client share its one reference.
      const hb2 = yield* as(b)(Scope.provide(SharedService.acquire(service), sb))
      assert.isFalse(hb2.started)
      assert.strictEqual(yield* as(observer)(SharedService.count(service)), 2)
      const status = yield* as(observer)(SharedService.inspect(service.name))
      assert.strictEqual(status.state, "ready")
      assert.isTrue(status.hasSupervisor)
      assert.include((yield* as(observer)(SharedService.list)).map((s) => s.name), service.name)
      yield* Scope.close(sa, Exit.void)
      assert.strictEqual(yield* as(observer)(SharedService.count(service)), 1)
      assert.deepStrictEqual(log, ["start"], "a's supervisor keeps the service while b holds it")
      yield* Scope.close(sb, Exit.void)
      assert.isTrue(yield* eventually(Effect.sync(() => log.length === 2), 10_000))
      assert.deepStrictEqual(log, ["start", "stop"])
      const after = yield* as(observer)(SharedService.inspect(service.name))
      assert.strictEqual(after.state, "stopped")
      assert.strictEqual(after.count, 0)
    }).pipe(Effect.scoped), 60_000)

  it.live("keys derive from (namespace, name): the same name in two namespaces is two services", () =>
    Effect.gen(function*() {
      const [x, y] = [yield* counter("team-x"), yield* counter("team-y")]
      const name = uniqueName("pg-ns")
      const one = recorded(name)
      const two = recorded(name)
      const hx = yield* as(x)(SharedService.acquire(one.service))
      const hy = yield* as(y)(SharedService.acquire(two.service))
      assert.isTrue(hx.started)
      assert.isTrue(hy.started)
      assert.strictEqual(yield* as(x)(SharedService.count(one.service)), 1)
      assert.strictEqual(yield* as(y)(SharedService.count(two.service)), 1)
    }).pipe(Effect.scoped), 60_000)

  it.live("a reference whose session is terminated: the handle learns it (SessionLost), the server no longer counts it, and the process acquires again once it has released", () =>
    Effect.gen(function*() {
      const [a, observer] = [yield* counter(), yield* counter()]
      const { service } = recorded(uniqueName("pg-lost"), { idleTimeToLive: Duration.seconds(30) })
      const q = yield* raw
      const s1 = yield* Scope.make()
      const handle = yield* as(a)(Scope.provide(SharedService.acquire(service), s1))
      const lost = yield* Effect.forkChild(handle.lost)
      // The holder's reference session: the one granted the name's shared lock.
      const holders = yield* q(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted AND classid =
           (SELECT id FROM quiesce_shared_service WHERE name = $1)::oid`,
        [service.name]
      )
      assert.strictEqual(holders.length, 1)
      yield* q(`SELECT pg_terminate_backend($1)`, [holders[0]!["pid"]])
      const error = yield* Fiber.join(lost)
      assert.strictEqual(error._tag, "SessionLost")
      assert.strictEqual(yield* as(observer)(SharedService.count(service)), 0)
      // The process's remaining handles share the lost reference: new ones are refused...
      const refused = yield* Effect.exit(as(a)(Effect.scoped(SharedService.acquire(service))))
      assert.isTrue(Exit.isFailure(refused) && Cause.squash(refused.cause) instanceof Error)
      assert.strictEqual(Exit.isFailure(refused) ? (Cause.squash(refused.cause) as { _tag?: string })._tag : "", "SessionLost")
      // ...until they are released; then it holds a fresh reference.
      yield* Scope.close(s1, Exit.void)
      const again = yield* as(a)(SharedService.acquire(service))
      assert.strictEqual(again.info.instanceId, handle.info.instanceId)
      assert.strictEqual(yield* as(observer)(SharedService.count(service)), 1)
    }).pipe(Effect.scoped), 60_000)

  it.live("the startup lock held by another session: LockTimeout after lockTimeout", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* counter(), yield* counter()]
      const { service } = recorded(uniqueName("pg-locked"), { lockTimeout: Duration.millis(1500) })
      // Create the name's row, then hold its startup lock from a foreign session.
      yield* a.open(service.name)
      const q = yield* raw
      assert.lengthOf(yield* q(`SELECT id FROM quiesce_shared_service WHERE name = $1`, [service.name]), 1)
      yield* q(`SELECT pg_advisory_lock((SELECT id FROM quiesce_shared_service WHERE name = $1), $2)`, [service.name, 0x51530001])
      const started = Date.now()
      const exit = yield* Effect.exit(as(b)(Effect.scoped(SharedService.acquire(service))))
      assert.isTrue(Exit.isFailure(exit))
      assert.strictEqual(Exit.isFailure(exit) ? (Cause.squash(exit.cause) as { _tag?: string })._tag : "", "LockTimeout")
      assert.isAtLeast(Date.now() - started, 1400)
    }).pipe(Effect.scoped), 60_000)

  it.live("forceStop from another client retires the supervisor through the table: it runs its service's stop", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* counter(), yield* counter()]
      const { log, service } = recorded(uniqueName("pg-force"), { idleTimeToLive: Duration.minutes(5) })
      yield* as(a)(Effect.scoped(SharedService.acquire(service)))
      assert.deepStrictEqual(log, ["start"])
      assert.isTrue(yield* as(b)(SharedService.forceStop(service.name, { timeout: "5 seconds" })))
      assert.deepStrictEqual(log, ["start", "stop"])
      assert.strictEqual((yield* as(b)(SharedService.inspect(service.name))).state, "stopped")
      // And the next acquisition starts a fresh generation.
      assert.isTrue((yield* as(b)(Effect.scoped(SharedService.acquire(service)))).started)
    }).pipe(Effect.scoped), 60_000)

  it.live("a supervisor that does not answer a retire has its session terminated; the retiring client sweeps its service with the definition's stop", () =>
    Effect.gen(function*() {
      const [a, b] = [yield* counter(), yield* counter()]
      const name = uniqueName("pg-stuck")
      // b's health check fails: it retires a's generation. a's stop never returns (a hung
      // supervisor), so b terminates its owner session and sweeps the service itself.
      let healthy = true
      const log: Array<string> = []
      const service = SharedService.makeUnsafe({
        name,
        start: Effect.sync(() => {
          log.push("start")
          return ServiceInfo.make({ pid: 1 })
        }),
        stop: () => Effect.suspend(() => (log.push("stop"), log.filter((l) => l === "stop").length === 1 ? Effect.never : Effect.void)),
        healthCheck: () => healthy ? Effect.void : Effect.fail("down"),
        idleTimeToLive: Duration.minutes(5),
        stopTimeout: Duration.millis(500)
      })
      yield* as(a)(Effect.scoped(SharedService.acquire(service)))
      healthy = false
      const h = yield* as(b)(SharedService.acquire(service))
      assert.isTrue(h.started)
      assert.deepStrictEqual(log, ["start", "stop", "stop", "start"])
    }).pipe(Effect.scoped), 60_000)

  it.live("a command service is refused on the PostgreSQL counter (its supervisor would be a local process)", () =>
    Effect.gen(function*() {
      const a = yield* counter()
      const service = yield* SharedService.command({ name: uniqueName("pg-cmd"), command: "sleep 30" })
      const exit = yield* Effect.exit(as(a)(Effect.scoped(SharedService.acquire(service))))
      assert.strictEqual(Exit.isFailure(exit) ? (Cause.squash(exit.cause) as { _tag?: string })._tag : "", "StartFailed")
    }).pipe(Effect.scoped), 60_000)

  it.live("typed errors: an unreachable server, an unknown role", () =>
    Effect.gen(function*() {
      const closed = theCluster().port + 1000
      const unreachable = yield* Effect.exit(RefCounter.makePostgres({ url: `postgres://postgres@127.0.0.1:${closed}/postgres` }))
      assert.strictEqual(Exit.isFailure(unreachable) ? (Cause.squash(unreachable.cause) as { _tag?: string })._tag : "", "DatabaseUnreachable")
      const auth = yield* Effect.exit(RefCounter.makePostgres({ url: theCluster().tcpUrl("127.0.0.1").replace("postgres@", "nosuchrole@") }))
      assert.strictEqual(Exit.isFailure(auth) ? (Cause.squash(auth.cause) as { _tag?: string })._tag : "", "AuthenticationFailed")
    }).pipe(Effect.scoped), 60_000)
})
