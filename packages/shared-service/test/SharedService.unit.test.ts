/**
 * The state machine, against the in-memory RefCounter (simulated processes) and TestClock.
 * A simulated service is "running" while its hint exists and names a live pid (this process).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { RefCounter, ServiceInfo, SharedService, SharedServiceError } from "@quiesce/shared-service"

process.env["QUIESCE_RUNTIME_DIR"] = mkdtempSync(join(tmpdir(), "quiesce-unit-"))

const uniqueName = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`

/** A simulated service: start/stop counters, and a switch for the health check. */
const fakeService = (name: string, options?: Partial<SharedService.Options<never, never>>) => {
  const stats = { starts: 0, stops: 0, checks: 0, recovers: 0, healthy: true }
  const service = SharedService.makeUnsafe<never, never>({
    name,
    start: Effect.sync(() => {
      stats.starts++
      return ServiceInfo.make({ pid: process.pid, port: 1000 + stats.starts })
    }),
    stop: () =>
      Effect.sync(() => {
        stats.stops++
        rmSync(join(SharedService.runtimeDirectory(), `${name}.json`), { force: true })
      }),
    healthCheck: () =>
      Effect.suspend(() => {
        stats.checks++
        return stats.healthy ? Effect.void : Effect.fail("down")
      }),
    ...options
  })
  return { service, stats }
}

const inProcess = (p: RefCounter.MemoryProcess) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, RefCounter.RefCounter, p)

describe("SharedService (in-memory kernel)", () => {
  it.effect("starts once; one kernel reference per process however many handles", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("once")
      const { service, stats } = fakeService(name)
      const h1 = yield* inProcess(a)(SharedService.acquire(service))
      const h2 = yield* inProcess(a)(SharedService.acquire(service))
      const h3 = yield* inProcess(b)(SharedService.acquire(service))
      assert.strictEqual(stats.starts, 1)
      assert.isTrue(h1.started)
      assert.isFalse(h2.started)
      assert.isFalse(h3.started)
      assert.strictEqual(h3.info.instanceId, h1.info.instanceId)
      assert.strictEqual(kernel.countOf(name), 2)
      // Only b (a process's first handle) ran the health check; a's second handle is local.
      assert.strictEqual(stats.checks, 1)
    }).pipe(Effect.scoped))

  it.effect("concurrent fibers of many processes: exactly one start", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const name = uniqueName("race")
      const { service, stats } = fakeService(name, {
        start: Effect.sleep(Duration.millis(10)).pipe(
          Effect.andThen(Effect.sync(() => {
            stats.starts++
            return ServiceInfo.make({ pid: process.pid })
          }))
        )
      })
      const procs = Array.from({ length: 8 }, () => kernel.process())
      const fiber = yield* Effect.forkChild(
        Effect.forEach(
          procs.flatMap((p) => [p, p]),
          (p) => inProcess(p)(SharedService.acquire(service)),
          { concurrency: "unbounded" }
        )
      )
      yield* TestClock.adjust(Duration.millis(10))
      const handles = yield* Fiber.join(fiber)
      assert.strictEqual(stats.starts, 1)
      assert.strictEqual(handles.filter((h) => h.started).length, 1)
      assert.strictEqual(kernel.countOf(name), 8)
    }).pipe(Effect.scoped))

  it.effect("releasing the last handle of a process drops its reference", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const p = kernel.process()
      const name = uniqueName("release")
      const { service } = fakeService(name)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* inProcess(p)(SharedService.acquire(service))
        yield* Effect.scoped(inProcess(p)(SharedService.acquire(service)))
        assert.strictEqual(kernel.countOf(name), 1)
      }))
      assert.strictEqual(kernel.countOf(name), 0)
      assert.strictEqual(yield* inProcess(p)(SharedService.count(service)), 0)
    }))

  it.effect("an unhealthy generation is replaced: its supervisor stops it, the next client starts a new one", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("replace")
      const { service, stats } = fakeService(name)
      const first = yield* inProcess(a)(SharedService.acquire(service))
      stats.healthy = false
      const second = yield* inProcess(b)(SharedService.acquire(service))
      assert.isTrue(second.started)
      assert.strictEqual(stats.stops, 1, "the old one was stopped before the new one started")
      assert.strictEqual(stats.starts, 2)
      assert.notStrictEqual(second.info.instanceId, first.info.instanceId)
      assert.strictEqual((yield* SharedService.readHint(name))?.instanceId, second.info.instanceId)
      assert.strictEqual(kernel.countOf(name), 2, "a still holds its (stopped) reference; b holds the new one")
    }).pipe(Effect.scoped))

  it.effect("recover brings it back within the generation; a failing recover is RecoveryFailed and registers nothing", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b, c] = [kernel.process(), kernel.process(), kernel.process()]
      const name = uniqueName("recover")
      let recovers = 0
      let fixable = true
      const { service, stats } = fakeService(name, {
        recover: () =>
          Effect.suspend(() => {
            recovers++
            if (!fixable) return Effect.fail("still broken" as never)
            stats.healthy = true
            return Effect.succeed(ServiceInfo.make({ pid: process.pid, port: 2000 + recovers }))
          })
      })
      const first = yield* inProcess(a)(SharedService.acquire(service))
      stats.healthy = false
      const second = yield* inProcess(b)(SharedService.acquire(service))
      assert.isTrue(second.started, "restarted by its recover")
      assert.strictEqual(recovers, 1)
      assert.strictEqual(second.info.port, 2001)
      assert.strictEqual(second.info.instanceId, first.info.instanceId, "same generation")
      assert.strictEqual((yield* SharedService.readHint(name))?.port, 2001, "the hint records the recovered service")
      stats.healthy = false
      fixable = false
      const err = yield* Effect.flip(inProcess(c)(SharedService.acquire(service)))
      assert.strictEqual(err._tag, "RecoveryFailed")
      assert.strictEqual(kernel.countOf(name), 2, "the failed client registered nothing")
    }).pipe(Effect.scoped))

  it.effect("LockTimeout after lockTimeout on the Effect clock", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("locktimeout")
      const { service } = fakeService(name, { lockTimeout: Duration.seconds(5) })
      const counter = yield* a.open(name)
      yield* counter.lock(Duration.seconds(1))
      const fiber = yield* Effect.forkChild(Effect.exit(inProcess(b)(SharedService.acquire(service))))
      yield* TestClock.adjust(Duration.millis(4999))
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust(Duration.millis(1))
      const exit = yield* Fiber.join(fiber)
      const err = yield* Effect.flip(exit)
      assert.strictEqual(err._tag, "LockTimeout")
      assert.strictEqual((err as { timeoutMillis: number }).timeoutMillis, 5000)
      // The service name is in `service`; `name` stays the error's class name, so printing works.
      assert.strictEqual((err as { service: string }).service, name)
      assert.strictEqual(err.name, "LockTimeout")
      assert.strictEqual(String(err), `LockTimeout: ${err.message}`)
      assert.include(err.message, `"${name}"`)
    }).pipe(Effect.scoped))

  it.effect("a crashed lock holder releases the lock at once", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("crash-lock")
      const { service, stats } = fakeService(name)
      const counter = yield* a.open(name)
      yield* counter.lock(Duration.seconds(1))
      const fiber = yield* Effect.forkChild(inProcess(b)(SharedService.acquire(service)))
      yield* Effect.yieldNow
      assert.isUndefined(fiber.pollUnsafe())
      yield* a.crash
      const handle = yield* Fiber.join(fiber)
      assert.isTrue(handle.started)
      assert.strictEqual(stats.starts, 1)
    }).pipe(Effect.scoped))

  it.effect("a failed or timed-out start registers nothing and frees the lock", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("startfail")
      const slow = SharedService.makeUnsafe({
        name,
        start: Effect.never,
        startTimeout: Duration.seconds(3)
      })
      const fiber = yield* Effect.forkChild(Effect.exit(inProcess(a)(SharedService.acquire(slow))))
      yield* TestClock.adjust(Duration.seconds(3))
      const err = yield* Effect.flip(yield* Fiber.join(fiber))
      assert.strictEqual(err._tag, "StartFailed")
      assert.strictEqual((err as { timeoutMillis?: number }).timeoutMillis, 3000)
      assert.strictEqual(kernel.countOf(name), 0)
      const failing = SharedService.makeUnsafe({ name, start: Effect.fail("boom" as const) })
      const err2 = yield* Effect.flip(inProcess(b)(SharedService.acquire(failing)))
      assert.strictEqual(err2, "boom")
      // The lock is free: a healthy definition starts at once.
      const { service } = fakeService(name)
      const handle = yield* inProcess(b)(SharedService.acquire(service))
      assert.isTrue(handle.started)
    }).pipe(Effect.scoped))

  it.effect("a refused registration (the +1 fails) registers nothing and frees the lock", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("refused")
      const { service } = fakeService(name, { lockTimeout: Duration.seconds(1) })
      // As semop does when the +1 is refused (ERANGE at SEMVMX): the operation is atomic, so
      // nothing is registered and the lock is still held.
      const refusing: RefCounter.RefCounter = {
        ...a,
        open: (n) =>
          Effect.map(a.open(n), (c): RefCounter.Counter => ({
            ...c,
            register: Effect.fail(new SharedServiceError.LimitExceeded({ service: n, syscall: "semop(register)", errno: 34, code: "ERANGE" }))
          }))
      }
      const err = yield* Effect.flip(Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, refusing))
      assert.strictEqual(err._tag, "LimitExceeded")
      assert.strictEqual(kernel.countOf(name), 0)
      // The lock is free: the next process gets it at once, not a LockTimeout.
      const fiber = yield* Effect.forkChild(Effect.exit(inProcess(b)(SharedService.acquire(service))))
      yield* TestClock.adjust(Duration.seconds(1))
      const exit = yield* Fiber.join(fiber)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
      assert.strictEqual(kernel.countOf(name), 1)
    }).pipe(Effect.scoped))

  it.effect("interrupting a waiting acquire leaves nothing registered", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("interrupt")
      const { service } = fakeService(name)
      const counter = yield* a.open(name)
      yield* counter.lock(Duration.seconds(1))
      const fiber = yield* Effect.forkChild(inProcess(b)(SharedService.acquire(service)))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(fiber)
      yield* counter.unlock
      assert.strictEqual(kernel.countOf(name), 0)
      // And b can still acquire (its in-process mutex was released).
      const handle = yield* inProcess(b)(SharedService.acquire(service))
      assert.isTrue(handle.started)
    }).pipe(Effect.scoped))

  it.effect("in-process supervisor: stops idleTimeToLive after the last release; a client in the grace period keeps it", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("reaper")
      const { service, stats } = fakeService(name, { reaper: "in-process", idleTimeToLive: Duration.seconds(10) })
      yield* Effect.scoped(inProcess(a)(SharedService.acquire(service)))
      assert.strictEqual(kernel.countOf(name), 0)
      yield* TestClock.adjust(Duration.seconds(9))
      assert.strictEqual(stats.stops, 0)
      // b arrives in the grace period: the running service is kept, not restarted.
      yield* Effect.scoped(Effect.gen(function*() {
        const h = yield* inProcess(b)(SharedService.acquire(service))
        assert.isFalse(h.started)
        yield* TestClock.adjust(Duration.seconds(5))
        assert.strictEqual(stats.stops, 0, "kept while b holds it")
      }))
      // The grace period runs from b's release, not from a's.
      yield* TestClock.adjust(Duration.seconds(9))
      assert.strictEqual(stats.stops, 0)
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Effect.yieldNow
      assert.strictEqual(stats.stops, 1)
      assert.strictEqual(stats.starts, 1)
      assert.isUndefined(yield* SharedService.readHint(name))
    }))

  it.effect("a crashed holder's reference is dropped, so the supervisor stops the service", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("crash-holder")
      const { service, stats } = fakeService(name, { reaper: "in-process", idleTimeToLive: Duration.seconds(1) })
      yield* Effect.scoped(inProcess(a)(SharedService.acquire(service)))
      // b acquires in a scope that never closes, then "crashes".
      const never = yield* Scope.make()
      yield* inProcess(b)(SharedService.acquire(service)).pipe(Scope.provide(never))
      assert.strictEqual(kernel.countOf(name), 1)
      yield* b.crash
      yield* TestClock.adjust(Duration.seconds(1))
      yield* Effect.yieldNow
      assert.strictEqual(kernel.countOf(name), 0)
      assert.strictEqual(stats.stops, 1)
    }))

  it.effect("layer: holds the service for the layer's lifetime and provides the handle", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const p = kernel.process()
      const name = uniqueName("layer")
      const { service, stats } = fakeService(name)
      class Db extends Context.Service<Db, SharedService.ServiceHandle>()("test/Db") {}
      const port = yield* Effect.gen(function*() {
        const db = yield* Db
        assert.strictEqual(kernel.countOf(name), 1)
        return db.info.port
      }).pipe(Effect.provide(SharedService.layer(Db, service)), inProcess(p))
      assert.strictEqual(port, 1001)
      assert.strictEqual(stats.starts, 1)
      assert.strictEqual(kernel.countOf(name), 0, "released with the layer")
    }))

  it.effect("an unsupported platform says so, with a typed error", () =>
    Effect.gen(function*() {
      const { service } = fakeService(uniqueName("unsupported"))
      const err = yield* Effect.flip(
        SharedService.acquire(service).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.unsupported("win32")))
      )
      assert.strictEqual(err._tag, "UnsupportedPlatform")
      assert.strictEqual((err as { platform: string }).platform, "win32")
    }).pipe(Effect.scoped))

  it.effect("invalid names fail with InvalidName", () =>
    Effect.gen(function*() {
      for (const bad of ["", ".hidden", "-x", "a/b", "a b", "x".repeat(65), "ü", "a\u0000b"]) {
        const err = yield* Effect.flip(SharedService.make({ name: bad, start: Effect.die("unused") }))
        assert.strictEqual(err._tag, "InvalidName", JSON.stringify(bad))
        assert.isTrue(Schema.is(Schema.String)(err.reason))
      }
      assert.isUndefined(SharedService.validateName("pg-16_dev.1"))
    }))

  it.effect("definitions: another fingerprint held by a client is DefinitionMismatch and untouched; in its grace period it is replaced", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b, c] = [kernel.process(), kernel.process(), kernel.process()]
      const name = uniqueName("definition")
      const define = (fingerprint: string | undefined) => {
        const stats = { starts: 0, stops: 0 }
        const service = SharedService.makeUnsafe({
          name,
          reaper: "in-process",
          idleTimeToLive: Duration.seconds(10),
          fingerprint,
          start: Effect.sync(() => {
            stats.starts++
            return ServiceInfo.make({ pid: process.pid, metadata: { definition: String(fingerprint) } })
          }),
          stop: () => Effect.sync(() => void stats.stops++)
        })
        return { service, stats }
      }
      const x = define("x")
      const y = define("y")
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const held = yield* inProcess(a)(SharedService.acquire(x.service))
        const err = yield* Effect.flip(inProcess(b)(SharedService.acquire(y.service)))
        assert.instanceOf(err, SharedServiceError.DefinitionMismatch)
        const mismatch = err as SharedServiceError.DefinitionMismatch
        assert.strictEqual(mismatch.service, name)
        assert.strictEqual(mismatch.running, "x")
        assert.strictEqual(mismatch.requested, "y")
        assert.strictEqual(mismatch.clients, 1)
        assert.deepStrictEqual(mismatch.metadata, { definition: "x" })
        assert.match(mismatch.message, /runs another definition \(fingerprint x, not y\) for 1 client/)
        assert.strictEqual(kernel.countOf(name), 1, "b registered nothing")
        assert.strictEqual(x.stats.stops, 0, "the running generation was not touched")
        assert.strictEqual((yield* SharedService.readHint(name))?.instanceId, held.info.instanceId)
        // The same process, holding x, asks for y: refused without the protocol (its own reference is one of the clients).
        const own = yield* Effect.flip(inProcess(a)(SharedService.acquire(y.service)))
        assert.strictEqual(own._tag, "DefinitionMismatch")
        assert.strictEqual((own as SharedServiceError.DefinitionMismatch).clients, 1)
        // The same definition joins; so does a client without a fingerprint.
        assert.isFalse((yield* inProcess(c)(SharedService.acquire(x.service))).started)
        assert.isFalse((yield* inProcess(c)(SharedService.acquire(define(undefined).service))).started)
        return held
      }))
      assert.strictEqual(kernel.countOf(name), 0)
      // In its grace period nobody holds it: b replaces it with y.
      yield* TestClock.adjust(Duration.seconds(5))
      assert.strictEqual(x.stats.stops, 0)
      const replacing = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const h = yield* inProcess(b)(SharedService.acquire(y.service))
        assert.strictEqual((yield* inProcess(b)(SharedService.inspect(name))).fingerprint, "y")
        return h
      })))
      // x's supervisor hears the retire between the slices of its wait (on the test clock).
      for (let i = 0; i < 100 && replacing.pollUnsafe() === undefined; i++) yield* TestClock.adjust(Duration.millis(100))
      const second = yield* Fiber.join(replacing)
      assert.isTrue(second.started)
      assert.notStrictEqual(second.info.instanceId, first.info.instanceId)
      assert.strictEqual(x.stats.stops, 1, "x's generation was stopped (by its own supervisor) before y started")
      assert.strictEqual(y.stats.starts, 1)
    }))

  it.effect("definitions: a generation that recorded no fingerprint is another definition to a client with one", () =>
    Effect.gen(function*() {
      const kernel = RefCounter.memoryKernel()
      const [a, b] = [kernel.process(), kernel.process()]
      const name = uniqueName("unfingerprinted")
      const plain = fakeService(name, { reaper: "in-process" })
      const marked = fakeService(name, { reaper: "in-process", fingerprint: "v2" })
      yield* inProcess(a)(SharedService.acquire(plain.service))
      const err = yield* Effect.flip(inProcess(b)(SharedService.acquire(marked.service)))
      assert.strictEqual(err._tag, "DefinitionMismatch")
      assert.isUndefined((err as SharedServiceError.DefinitionMismatch).running)
      assert.strictEqual((err as SharedServiceError.DefinitionMismatch).requested, "v2")
      assert.strictEqual(plain.stats.stops, 0)
      assert.strictEqual(marked.stats.starts, 0)
    }).pipe(Effect.scoped))
})
