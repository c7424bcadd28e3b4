/**
 * Every test of the `run-down` crate (tests/unit-tests.rs), ported. The crate's panicking
 * `re_init` cases become typed `RundownNotCompleteError` failures; its threads become fibers
 * (and, in workers.test.ts, worker threads).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { RundownRef } from "@quiesce/rundown"

const kinds = [
  { name: "in-process", make: () => RundownRef.makeUnsafe() },
  { name: "shared", make: () => RundownRef.makeSharedUnsafe() }
] as const

describe.each(kinds)("run-down crate tests ($name)", ({ make }) => {
  it.effect("acquire when not run down succeeds", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 })
      yield* guard.release
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 0 })
    }))

  it.effect("acquire after rundown fails with RundownInProgressError", () =>
    Effect.gen(function*() {
      const ref = make()
      yield* RundownRef.waitForRundown(ref)
      const error = yield* Effect.flip(RundownRef.tryAcquire(ref))
      assert.strictEqual(error._tag, "RundownInProgressError")
    }))

  it.effect("ten successive waits all return", () =>
    Effect.gen(function*() {
      const ref = make()
      for (let i = 0; i < 10; i++) yield* RundownRef.waitForRundown(ref)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }))

  it.effect("re-init after rundown allows a new rundown", () =>
    Effect.gen(function*() {
      const ref = make()
      yield* RundownRef.waitForRundown(ref)
      yield* RundownRef.reInit(ref)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 0 })
      const guard = yield* RundownRef.tryAcquire(ref)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* Effect.yieldNow
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunningDown", count: 1 })
      yield* guard.release
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
    }))

  it.effect("re-init before rundown fails", () =>
    Effect.gen(function*() {
      const ref = make()
      const error = yield* Effect.flip(RundownRef.reInit(ref))
      assert.strictEqual(error._tag, "RundownNotCompleteError")
      assert.strictEqual(error.state, "Active")
      // Nothing changed: the ref still hands out protection.
      yield* (yield* RundownRef.tryAcquire(ref)).release
    }))

  it.effect("re-init with a live reference fails", () =>
    Effect.gen(function*() {
      const ref = make()
      const guard = yield* RundownRef.tryAcquire(ref)
      const waiter = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* Effect.yieldNow
      const error = yield* Effect.flip(RundownRef.reInit(ref))
      assert.strictEqual(error.state, "RunningDown")
      assert.strictEqual(error.count, 1)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunningDown", count: 1 })
      yield* guard.release
      yield* Fiber.join(waiter)
      yield* RundownRef.reInit(ref)
    }))

  it.effect("20 concurrent fibers racing a rundown", () =>
    Effect.gen(function*() {
      const ref = make()
      let inside = 0
      let entered = 0
      let refused = 0
      let insideAtDrain = -1
      const start = yield* Deferred.make<void>()
      const users = yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
        Effect.forkChild(
          Deferred.await(start).pipe(
            Effect.andThen(Effect.repeat(Effect.yieldNow, { times: i % 7 })),
            Effect.andThen(RundownRef.protect(
              ref,
              Effect.suspend(() => {
                inside++
                entered++
                return Effect.repeat(Effect.yieldNow, { times: 3 }).pipe(Effect.ensuring(Effect.sync(() => inside--)))
              })
            )),
            Effect.catchTag("RundownInProgressError", () => Effect.sync(() => refused++))
          )
        ))
      yield* Deferred.succeed(start, undefined)
      yield* Effect.repeat(Effect.yieldNow, { times: 3 })
      yield* RundownRef.waitForRundown(ref).pipe(Effect.andThen(Effect.sync(() => insideAtDrain = inside)))
      yield* Fiber.joinAll(users)
      assert.strictEqual(insideAtDrain, 0)
      assert.strictEqual(entered + refused, 20)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }))

  it.effect("mini stress: many rounds of acquire, rundown, re-init", () =>
    Effect.gen(function*() {
      const ref = make()
      for (let round = 0; round < 50; round++) {
        let inside = 0
        const users = yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), (i) =>
          Effect.forkChild(Effect.exit(
            RundownRef.protect(
              ref,
              Effect.sync(() => inside++).pipe(
                Effect.andThen(Effect.repeat(Effect.yieldNow, { times: (i + round) % 5 })),
                Effect.ensuring(Effect.sync(() => inside--))
              )
            )
          )))
        yield* Effect.repeat(Effect.yieldNow, { times: round % 4 })
        yield* RundownRef.waitForRundown(ref)
        assert.strictEqual(inside, 0)
        const exits = yield* Effect.forEach(users, Fiber.await)
        for (const exit of exits) {
          assert.isTrue(Exit.isSuccess(exit) || Exit.hasFails(exit), "only successes and refusals")
        }
        yield* RundownRef.reInit(ref)
      }
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 0 })
    }))
})
