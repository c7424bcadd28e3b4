/**
 * The spec's guarantees, one by one, for the in-process and the shared-memory ref alike, plus
 * bad input, diagnostics and metrics.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Metric, Scheduler, Scope } from "effect"
import { TestClock } from "effect/testing"
import { RundownError, RundownRef } from "@quiesce/rundown"

const kinds = [
  { name: "in-process", make: () => RundownRef.makeUnsafe() },
  { name: "shared", make: () => RundownRef.makeSharedUnsafe() }
] as const

/** Lets every runnable fiber run to its next suspension. */
const settle = Effect.repeat(Effect.yieldNow, { times: 5 })

const countOf = (ref: RundownRef.RundownRef) => {
  const state = RundownRef.stateUnsafe(ref)
  return state._tag === "RunDown" ? 0 : state.count
}

const active = (count: number) => ({ _tag: "Active", count }) as const
const runningDown = (count: number) => ({ _tag: "RunningDown", count }) as const
const runDown = { _tag: "RunDown" } as const

describe.each(kinds)("RundownRef guarantees ($name)", ({ make }) => {
  it.effect("no acquisition of any kind succeeds once waitForRundown has started", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      let ran = false
      const protectedRun = yield* Effect.flip(RundownRef.protect(ref, Effect.sync(() => ran = true)))
      assert.strictEqual(protectedRun._tag, "RundownInProgressError")
      assert.isFalse(ran, "protect must not run the effect")
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
      assert.strictEqual((yield* Effect.flip(Effect.scoped(RundownRef.acquire(ref))))._tag, "RundownInProgressError")
      assert.strictEqual((yield* Effect.flip(Effect.scoped(RundownRef.acquireN(ref, 3))))._tag, "RundownInProgressError")
      // The refused attempts did not count.
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(1))
      yield* guard.release
      yield* Fiber.join(waiter)
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
    }))

  it.effect("waitForRundown returns only when the count is zero", () =>
    Effect.gen(function*() {
      const ref = make()
      const guards = yield* Effect.forEach([1, 2, 3], () => RundownRef.tryAcquire(ref))
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      for (const [i, guard] of guards.entries()) {
        yield* settle
        assert.isUndefined(waiter.pollUnsafe(), `still waiting with ${3 - i} held`)
        assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(3 - i))
        yield* guard.release
      }
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
    }))

  it.effect("repeated waits return at once, without time passing", () =>
    Effect.gen(function*() {
      const ref = make()
      yield* RundownRef.waitForRundown(ref)
      // Under TestClock a wait that suspended would never time out: only an immediate return passes.
      for (let i = 0; i < 5; i++) {
        const exit = yield* Effect.exit(RundownRef.waitForRundown(ref).pipe(Effect.timeout(Duration.millis(1))))
        assert.isTrue(Exit.isSuccess(exit))
      }
    }))

  it.effect("any number of concurrent waiters all return, and only after the drain", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      const waiters = yield* Effect.forEach(
        Array.from({ length: 100 }),
        () => Effect.forkChild(RundownRef.waitForRundown(ref))
      )
      yield* settle
      assert.isTrue(waiters.every((w) => w.pollUnsafe() === undefined))
      yield* guard.release
      yield* Fiber.joinAll(waiters)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
    }))

  it.effect("interrupting a waiter (or timing it out) does not undo the rundown", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      const timedOut = yield* Effect.forkChild(
        RundownRef.waitForRundown(ref).pipe(Effect.timeoutOption(Duration.seconds(5)))
      )
      const interrupted = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      yield* Fiber.interrupt(interrupted)
      yield* TestClock.adjust(Duration.seconds(5))
      const outcome = yield* Fiber.join(timedOut)
      assert.strictEqual(outcome._tag, "None", "the 5 s limit elapsed before the drain")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(1))
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
      const late = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* guard.release
      yield* Fiber.join(late)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
    }))

  it.effect("protection is released when the protected effect succeeds, fails, dies or is interrupted", () =>
    Effect.gen(function*() {
      const ref = make()
      assert.strictEqual(yield* RundownRef.protect(ref, Effect.succeed(42)), 42)
      assert.strictEqual(yield* Effect.flip(RundownRef.protect(ref, Effect.fail("boom" as const))), "boom")
      const died = yield* Effect.exit(RundownRef.protect(ref, Effect.die("defect")))
      assert.isTrue(Exit.hasDies(died))
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))

      const entered = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(
        RundownRef.protect(ref, Deferred.succeed(entered, undefined).pipe(Effect.andThen(Effect.never)))
      )
      yield* Deferred.await(entered)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1))
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
      yield* RundownRef.waitForRundown(ref)
    }))

  it.effect("an interruption that lands before the acquisition leaves nothing held", () =>
    Effect.gen(function*() {
      const ref = make()
      // Interrupted before it ever runs: the registered release must not fire (no underflow).
      const fiber = yield* Effect.forkChild(RundownRef.protect(ref, Effect.void), { startImmediately: false })
      yield* Fiber.interrupt(fiber)
      // Interrupted while still queued behind the yield of its own body.
      const fibers = yield* Effect.forEach(
        Array.from({ length: 10 }),
        () => Effect.forkChild(RundownRef.protect(ref, Effect.never))
      )
      yield* Fiber.interruptAll(fibers)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
    }))

  it.effect("an interruption can land at every step of protect without leaking or underflowing", () =>
    Effect.gen(function*() {
      const ref = make()
      let leakedOrUnderflowed = 0
      let landedInside = 0
      // With an operation budget of 3 the protected fiber yields every couple of primitives
      // (a budget of 2 never gets anywhere), so interrupting it after k scheduler turns, for
      // every k, lands the interruption at each yield point of `protect`: before the release
      // is registered, between registration and acquisition, inside the effect.
      for (let k = 0; k < 12; k++) {
        let entered = false
        const fiber = yield* Effect.forkChild(
          RundownRef.protect(ref, Effect.sync(() => entered = true).pipe(Effect.andThen(Effect.never))).pipe(
            Effect.provideService(Scheduler.MaxOpsBeforeYield, 3)
          )
        )
        yield* Effect.repeat(Effect.yieldNow, { times: k })
        yield* Fiber.interrupt(fiber)
        const exit = yield* Fiber.await(fiber)
        if (entered) landedInside++
        if (Exit.hasDies(exit) || RundownRef.stateUnsafe(ref)._tag !== "Active" || countOf(ref) !== 0) {
          leakedOrUnderflowed++
        }
      }
      assert.strictEqual(leakedOrUnderflowed, 0)
      assert.isAbove(landedInside, 0, "some interruptions landed inside the effect")
      assert.isBelow(landedInside, 12, "some interruptions landed before the effect")
    }))

  it.effect("protect on an uninterruptible caller keeps the effect uninterruptible", () =>
    Effect.gen(function*() {
      const ref = make()
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const fiber = yield* Effect.forkChild(Effect.uninterruptible(
        RundownRef.protect(ref, Deferred.succeed(entered, undefined).pipe(Effect.andThen(Deferred.await(gate))))
      ))
      yield* Deferred.await(entered)
      const interrupter = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* settle
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1), "still inside")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(interrupter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
    }))

  it.effect("a guard released twice does not steal another holder's reference", () =>
    Effect.gen(function*() {
      const ref = make()
      const mine = yield* RundownRef.tryAcquire(ref)
      const theirs = yield* RundownRef.tryAcquire(ref)
      yield* mine.release
      yield* mine.release
      assert.isFalse(mine.releaseUnsafe())
      mine[Symbol.dispose]()
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1), "their reference is still counted")
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      assert.isUndefined(waiter.pollUnsafe(), "the rundown still waits for theirs")
      assert.isTrue(theirs.releaseUnsafe())
      yield* Fiber.join(waiter)
    }))

  it.effect("a guard works with `using`", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      {
        using _held = guard
        assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1))
      }
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
    }))

  it.effect("acquireN counts n, held until its scope closes", () =>
    Effect.gen(function*() {
      const ref = make()
      const scope = yield* Scope.make()
      yield* Scope.provide(RundownRef.acquireN(ref, 5), scope)
      yield* Scope.provide(RundownRef.acquire(ref), scope)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(6))
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(6))
      yield* Scope.close(scope, Exit.void)
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
    }))

  it.effect("acquire into a closed scope releases at once", () =>
    Effect.gen(function*() {
      const ref = make()
      const scope = yield* Scope.make()
      yield* Scope.close(scope, Exit.void)
      yield* Scope.provide(RundownRef.acquireN(ref, 2), scope)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
    }))

  it.effect("acquireN refuses bad counts with a typed error and leaves the ref unchanged", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      for (const n of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        const error = yield* Effect.flip(Effect.scoped(RundownRef.acquireN(ref, n)))
        assert.strictEqual(error._tag, "RundownCountError")
        assert.isTrue(error instanceof RundownError.RundownCountError)
        if (error._tag === "RundownCountError") {
          assert.strictEqual(error.reason, "NotAPositiveInteger")
          assert.match(error.message, /positive integer/)
        }
        assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1))
      }
      yield* guard.release
    }))

  it.effect("a count that would overflow the word is refused; the ref is unchanged and still usable", () =>
    Effect.gen(function*() {
      const ref = make()
      const scope = yield* Scope.make()
      yield* Scope.provide(RundownRef.acquireN(ref, RundownRef.MAX_COUNT - 1), scope)
      const overflow = yield* Effect.flip(Scope.provide(RundownRef.acquireN(ref, 2), scope))
      assert.strictEqual(overflow._tag, "RundownCountError")
      if (overflow._tag === "RundownCountError") {
        assert.strictEqual(overflow.reason, "Overflow")
        assert.strictEqual(overflow.current, RundownRef.MAX_COUNT - 1)
        assert.match(overflow.message, /overflow/)
      }
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(RundownRef.MAX_COUNT - 1))
      // Exactly at the limit still works...
      yield* Scope.provide(RundownRef.acquire(ref), scope)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(RundownRef.MAX_COUNT))
      // ...and one more is a defect naming the mistake for the single-reference operations.
      const died = yield* Effect.exit(RundownRef.protect(ref, Effect.void))
      assert.isTrue(Exit.hasDies(died))
      if (Exit.isFailure(died)) assert.match(String(Cause.squash(died.cause)), /overflow/)
      assert.isTrue(Exit.hasDies(yield* Effect.exit(RundownRef.tryAcquire(ref))))
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(RundownRef.MAX_COUNT))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(0))
      yield* RundownRef.waitForRundown(ref)
    }))

  it.effect("a waiter whose rundown completed returns even if the ref was re-initialised and run down again first", () =>
    Effect.gen(function*() {
      const ref = make()
      const first = yield* RundownRef.tryAcquire(ref)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      // In one synchronous step, before the waiter can observe anything: complete the rundown,
      // re-initialise, take a new reference and begin a second rundown.
      const second = yield* Effect.sync(() => {
        first.releaseUnsafe()
        Effect.runSync(RundownRef.reInit(ref))
        const guard = Effect.runSync(RundownRef.tryAcquire(ref))
        Effect.runFork(RundownRef.waitForRundown(ref))
        return guard
      })
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(1))
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runningDown(1), "the second rundown is still waiting")
      second.releaseUnsafe()
      yield* RundownRef.waitForRundown(ref)
    }))

  it.effect("reInit reports why it refuses", () =>
    Effect.gen(function*() {
      const ref = make()
      const notStarted = yield* Effect.flip(RundownRef.reInit(ref))
      assert.deepStrictEqual([notStarted.state, notStarted.count], ["Active", 0])
      assert.match(notStarted.message, /not been run down/)
      const guard = yield* RundownRef.tryAcquire(ref)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      const live = yield* Effect.flip(RundownRef.reInit(ref))
      assert.deepStrictEqual([live.state, live.count], ["RunningDown", 1])
      assert.match(live.message, /1 reference/)
      yield* guard.release
      yield* Fiber.join(waiter)
      yield* RundownRef.reInit(ref)
      assert.deepStrictEqual(yield* RundownRef.state(ref), active(0))
    }))
})

describe("RundownRef.make (Scope-managed)", () => {
  it.effect("closing the scope runs the ref down and waits for in-flight protections", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const ref = yield* Scope.provide(RundownRef.make, scope)
      const entered = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      let finished = false
      const user = yield* Effect.forkChild(RundownRef.protect(
        ref,
        Deferred.succeed(entered, undefined).pipe(
          Effect.andThen(Deferred.await(gate)),
          Effect.andThen(Effect.sync(() => finished = true))
        )
      ))
      yield* Deferred.await(entered)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      assert.isUndefined(closing.pollUnsafe(), "the close waits for the in-flight protection")
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(closing)
      assert.isTrue(finished)
      yield* Fiber.join(user)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
    }))

  it.effect("makeShared is Scope-managed too", () =>
    Effect.gen(function*() {
      const ref = yield* Effect.scoped(RundownRef.makeShared())
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), runDown)
      assert.isTrue(RundownRef.isSharedRundownRef(ref))
    }))

  it.effect("isRundownRef, Pipeable and the pipeable protect", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeUnsafe()
      assert.isTrue(RundownRef.isRundownRef(ref))
      assert.isFalse(RundownRef.isRundownRef({}))
      assert.isFalse(RundownRef.isSharedRundownRef(ref))
      assert.strictEqual(ref.pipe(RundownRef.stateUnsafe)._tag, "Active")
      assert.strictEqual(yield* Effect.succeed(7).pipe(RundownRef.protect(ref)), 7)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* ref.pipe(RundownRef.acquireN(2))
        assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(2))
      }))
      assert.deepStrictEqual(ref.toJSON(), { _id: "RundownRef", shared: false, state: active(0) })
      assert.match(String(RundownRef.makeSharedUnsafe()), /"shared":true/)
    }))
})

describe("metrics", () => {
  it.effect("the active gauge follows the count; the rundown duration is recorded once", () =>
    Effect.gen(function*() {
      const activeGauge = Metric.gauge("rundown_test_active")
      const duration = Metric.timer("rundown_test_duration")
      const ref = RundownRef.makeUnsafe({ metrics: { active: activeGauge, rundownDuration: duration } })
      const guard = yield* RundownRef.tryAcquire(ref)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RundownRef.acquireN(ref, 2)
        assert.strictEqual((yield* Metric.value(activeGauge)).value, 3)
      }))
      assert.strictEqual((yield* Metric.value(activeGauge)).value, 1)
      const first = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      const second = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      yield* TestClock.adjust(Duration.millis(250))
      yield* guard.release
      yield* Fiber.joinAll([first, second])
      assert.strictEqual((yield* Metric.value(activeGauge)).value, 0)
      const histogram = yield* Metric.value(duration)
      assert.strictEqual(histogram.count, 1)
      assert.strictEqual(histogram.max, 250)
    }))
})

describe.each([
  { name: "in-process", make: (options: RundownRef.Options) => RundownRef.makeUnsafe(options) },
  { name: "shared", make: (options: RundownRef.Options) => RundownRef.makeSharedUnsafe(options) }
])("rundownDuration ($name)", ({ make, name }) => {
  let metrics = 0
  const timer = () => Metric.timer(`rundown_duration_${name}_${metrics++}`)
  const recorded = (duration: ReturnType<typeof timer>) =>
    Effect.map(Metric.value(duration), (h) => ({ count: h.count, max: h.max }))

  it.effect("is recorded when the rundown completes, although the wait that began it timed out", () =>
    Effect.gen(function*() {
      const duration = timer()
      const ref = make({ metrics: { rundownDuration: duration } })
      const guard = yield* RundownRef.tryAcquire(ref)
      // The README's pattern: give the users a second, then go on without them.
      const wait = yield* Effect.forkChild(RundownRef.waitForRundown(ref).pipe(Effect.timeoutOption("1 second")))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* Fiber.join(wait))._tag, "None")
      assert.strictEqual((yield* recorded(duration)).count, 0, "not complete yet")
      yield* TestClock.adjust("500 millis")
      // Nobody waits any more: the completion itself records the rundown's duration.
      yield* guard.release
      assert.deepStrictEqual(yield* recorded(duration), { count: 1, max: 1500 })
      yield* RundownRef.waitForRundown(ref)
      assert.deepStrictEqual(yield* recorded(duration), { count: 1, max: 1500 }, "a later wait records nothing")
    }))

  it.effect("is recorded once when the wait that began it was interrupted and another waiter saw the end", () =>
    Effect.gen(function*() {
      const duration = timer()
      const ref = make({ metrics: { rundownDuration: duration } })
      const guard = yield* RundownRef.tryAcquire(ref)
      const first = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      yield* TestClock.adjust("200 millis")
      const second = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("100 millis")
      yield* guard.release
      yield* Fiber.join(second)
      assert.deepStrictEqual(yield* recorded(duration), { count: 1, max: 300 })
    }))

  it.effect("is recorded once per rundown, across reInit, with nothing held or something held", () =>
    Effect.gen(function*() {
      const duration = timer()
      const ref = make({ metrics: { rundownDuration: duration } })
      yield* RundownRef.waitForRundown(ref)
      assert.deepStrictEqual(yield* recorded(duration), { count: 1, max: 0 })
      yield* RundownRef.reInit(ref)
      const guard = yield* RundownRef.tryAcquire(ref)
      const waits = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(RundownRef.waitForRundown(ref)))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      yield* guard.release
      yield* Fiber.joinAll(waits)
      assert.deepStrictEqual(yield* recorded(duration), { count: 2, max: 2000 })
    }))
})

describe("shared ref: the cost of waking", () => {
  it.effect("a release pays for Atomics.notify only when it completes a rundown", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe()
      const notify = Atomics.notify
      let notifies = 0
      Atomics.notify = ((typedArray: Int32Array, index: number, count?: number) => {
        notifies++
        return notify(typedArray, index, count)
      }) as typeof Atomics.notify
      yield* Effect.addFinalizer(() => Effect.sync(() => Atomics.notify = notify))

      for (let i = 0; i < 100; i++) yield* RundownRef.protect(ref, Effect.void)
      const guards = yield* Effect.forEach([1, 2, 3], () => RundownRef.tryAcquire(ref))
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      yield* guards[0]!.release
      yield* guards[1]!.release
      assert.strictEqual(notifies, 0, "no notify before the last release")
      yield* guards[2]!.release
      assert.strictEqual(notifies, 1, "the completing release notifies once")
      yield* Fiber.join(waiter)
      assert.strictEqual(notifies, 1)
    }))
})

describe("fromShared", () => {
  it.effect("rebuilds a ref that shares the state", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe()
      const twin = yield* RundownRef.fromShared(structuredClone(ref.handle))
      const guard = yield* RundownRef.tryAcquire(twin)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), active(1))
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* settle
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(twin)))._tag, "RundownInProgressError")
      yield* guard.release
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(twin), runDown)
    }))

  it.effect("a malformed handle fails with RundownHandleError naming the problem", () =>
    Effect.gen(function*() {
      const good = RundownRef.makeSharedUnsafe().handle
      const corrupt = new SharedArrayBuffer(8)
      new Int32Array(corrupt)[0] = -1
      const drainedWithCount = new SharedArrayBuffer(8)
      new Int32Array(drainedWithCount)[0] = 3 | (5 << 2)
      const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
        [null, /null/],
        [42, /number/],
        [{}, /_tag/],
        [{ ...good, version: 2 }, /version/],
        [{ ...good, buffer: new ArrayBuffer(8) }, /SharedArrayBuffer/],
        [{ ...good, buffer: new SharedArrayBuffer(16) }, /16 bytes/],
        [{ ...good, buffer: corrupt }, /not a valid rundown state/],
        [{ ...good, buffer: drainedWithCount }, /not a valid rundown state/]
      ]
      for (const [handle, reason] of cases) {
        const error = yield* Effect.flip(RundownRef.fromShared(handle))
        assert.strictEqual(error._tag, "RundownHandleError")
        assert.match(error.reason, reason)
        assert.throws(() => RundownRef.fromSharedUnsafe(handle), reason)
      }
    }))
})
