/**
 * The lease of a shared ref's slots, in one thread and without real time: several views of one
 * shared ref stand for threads (each claims its own slot), and a view's lease checks are driven
 * with synthetic times through its `observe`, the function its timers call. The lease is an
 * hour, so no real heartbeat or check timer fires during a test; a view "whose heartbeat
 * stopped" is simply one whose `beat` is not called.
 *
 * Real worker threads (terminated, throwing, busy-looping) are in dead-workers.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Logger } from "effect"
import { RundownRef } from "@quiesce/rundown"
import { internals, type SharedViewInternals } from "./internals.ts"

const LEASE = 3_600_000
const QUARTER = LEASE / 4

const settle = Effect.repeat(Effect.yieldNow, { times: 5 })

/** Another view of the same ref: what another thread would build with `fromShared`. */
const view = (ref: RundownRef.SharedRundownRef) => RundownRef.fromSharedUnsafe(ref.handle)

/** `steps` lease checks by `watcher`, a quarter lease of its own running time apart. */
const look = (watcher: SharedViewInternals, steps: number) => {
  let now = watcher.observedAt
  if (now < 0) watcher.observe(now = performance.now())
  for (let i = 0; i < steps; i++) watcher.observe(now += QUARTER)
}

const defectOf = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined

/**
 * A ref with one reference held by another thread (`holder`, a view whose heartbeat only moves
 * when a test calls its `beat`) and a rundown begun here, whose wait has had its first look.
 */
const heldAndRunningDown = (around: (wait: Effect.Effect<void>) => Effect.Effect<void> = (wait) => wait) =>
  Effect.gen(function*() {
    const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE })
    const holder = view(ref)
    const guard = yield* RundownRef.tryAcquire(holder)
    const waiter = yield* Effect.forkChild(around(RundownRef.waitForRundown(ref)))
    yield* settle
    return { ref, holder, guard, waiter }
  })

const collectLogs = () => {
  const messages: Array<string> = []
  const logger = Logger.make((options) => messages.push(String(options.message)))
  return { messages, layer: Logger.layer([logger]) }
}

describe("shared ref leases", () => {
  it.effect("a holder whose heartbeat stopped is dropped once a rundown waits for it, after the lease and no sooner", () =>
    Effect.gen(function*() {
      const logs = collectLogs()
      const { guard, ref, waiter } = yield* heldAndRunningDown(Effect.provide(logs.layer))
      // The wait looked at once; four more looks a quarter lease apart make exactly one lease.
      look(internals(ref), 4)
      yield* settle
      assert.isUndefined(waiter.pollUnsafe(), "quiet for exactly the lease: not yet")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunningDown", count: 1 })
      look(internals(ref), 1)
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
      assert.strictEqual(logs.messages.length, 1)
      assert.match(logs.messages[0]!, /dropped 1 reference\(s\).*3600000 ms lease/)

      // The holder comes back (it was only blocked): it is told, and nothing changes.
      const release = yield* Effect.exit(guard.release)
      const defect = defectOf(release)
      assert.instanceOf(defect, Error)
      assert.strictEqual((defect as { _tag?: string })._tag, "RundownLeaseError")
      assert.match(String((defect as Error).message), /3600000 ms lease/)
      assert.isFalse(guard.releaseUnsafe(), "the guard counts as released")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }))

  it.effect("a live holder, whose heartbeat moves, keeps its references however long the rundown waits", () =>
    Effect.gen(function*() {
      const { guard, holder, ref, waiter } = yield* heldAndRunningDown()
      for (let i = 0; i < 20; i++) {
        look(internals(ref), 3)
        internals(holder).beat()
      }
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* guard.release
      yield* Fiber.join(waiter)
    }))

  it.effect("time this thread did not run counts for half a lease at most (a stopped process)", () =>
    Effect.gen(function*() {
      const { guard, ref, waiter } = yield* heldAndRunningDown()
      const watcher = internals(ref)
      // A hundred leases without a look (this thread, or the whole process, was stopped)...
      watcher.observe(watcher.observedAt + 100 * LEASE)
      // ...then two on-time looks: half a lease plus two quarters, not more than the lease.
      look(watcher, 2)
      yield* settle
      assert.isUndefined(waiter.pollUnsafe(), "the holder gets its chance to beat after the stop")
      look(watcher, 1)
      yield* Fiber.join(waiter)
      assert.strictEqual(Exit.isFailure(yield* Effect.exit(guard.release)), true)
    }))

  it.effect("without a rundown a quiet holder keeps its references; a quiet idle slot is taken back", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE, slots: 2 })
      const holder = view(ref)
      const idle = view(ref)
      const guard = yield* RundownRef.tryAcquire(holder)
      yield* (yield* RundownRef.tryAcquire(idle)).release
      // Both slots are claimed: a third thread cannot get one.
      const third = view(ref)
      const refused = yield* Effect.exit(RundownRef.protect(third, Effect.void))
      assert.strictEqual((defectOf(refused) as { _tag?: string })._tag, "RundownSlotsError")
      assert.match(String((defectOf(refused) as Error).message), /All 2 slots/)

      look(internals(ref), 10)
      // The idle slot was reclaimed and the third thread gets it; the holder kept its reference.
      assert.strictEqual(yield* RundownRef.protect(third, Effect.succeed("in")), "in")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 })
      yield* guard.release
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 0 })
    }))

  it.effect("a thread back after its slot went to another thread cannot take the other's references", () =>
    Effect.gen(function*() {
      const { guard: mine, holder: stalled, ref, waiter } = yield* heldAndRunningDown()
      const other = view(ref)
      look(internals(ref), 5)
      yield* Fiber.join(waiter)
      yield* RundownRef.reInit(ref)
      // The freed slot (the lowest) goes to the other thread.
      const stalledSlot = internals(stalled).at
      const theirs = yield* RundownRef.tryAcquire(other)
      assert.strictEqual(internals(other).at, stalledSlot)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 })

      assert.strictEqual((defectOf(yield* Effect.exit(mine.release)) as { _tag?: string })._tag, "RundownLeaseError")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 }, "the other's reference is intact")
      // The stalled thread acquires again, in a slot of its own.
      const again = yield* RundownRef.tryAcquire(stalled)
      assert.notStrictEqual(internals(stalled).at, internals(other).at)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 2 })

      const drain = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      yield* theirs.release
      yield* settle
      assert.isUndefined(drain.pollUnsafe(), "still waits for the stalled thread's new reference")
      yield* again.release
      yield* Fiber.join(drain)
    }))

  it.effect("protect on a thread that loses its slot during the effect dies with RundownLeaseError", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE })
      const stalled = view(ref)
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const user = yield* Effect.forkChild(
        RundownRef.protect(stalled, Deferred.succeed(entered, undefined).pipe(Effect.andThen(Deferred.await(gate))))
      )
      yield* Deferred.await(entered)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      look(internals(ref), 5)
      yield* Fiber.join(waiter)
      yield* Deferred.succeed(gate, undefined)
      const exit = yield* Fiber.await(user)
      assert.strictEqual((defectOf(exit) as { _tag?: string })._tag, "RundownLeaseError")
      // Its heartbeat finds out too, and its next acquisition (refused: the ref is run down) is clean.
      internals(stalled).beat()
      assert.strictEqual(internals(stalled).gen, 0)
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(stalled)))._tag, "RundownInProgressError")
    }))

  it("bad options and damaged headers are refused", () => {
    assert.throws(() => RundownRef.makeSharedUnsafe({ slots: 0 }), RangeError, /slots must be an integer/)
    assert.throws(() => RundownRef.makeSharedUnsafe({ slots: 1.5 }), RangeError, /slots/)
    assert.throws(() => RundownRef.makeSharedUnsafe({ leaseMillis: 5 }), RangeError, /leaseMillis must be/)
    const good = RundownRef.makeSharedUnsafe({ slots: 2 }).handle
    const damaged = new SharedArrayBuffer(good.buffer.byteLength)
    new Int32Array(damaged).set(new Int32Array(good.buffer))
    new Int32Array(damaged)[2] = 3 // the slot count no longer matches the size
    assert.throws(() => RundownRef.fromSharedUnsafe({ ...good, buffer: damaged }), /bytes \(expected .* for 3 slots\)/)
    new Int32Array(damaged)[2] = 0
    assert.throws(() => RundownRef.fromSharedUnsafe({ ...good, buffer: damaged }), /header is damaged/)
    new Int32Array(damaged)[1] = 0
    assert.throws(() => RundownRef.fromSharedUnsafe({ ...good, buffer: damaged }), /no magic word/)
  })
})
