/**
 * The in-process run-down state machine and the operations of `RundownRef.ts`, which act on any
 * ref through `RundownRefBase` (the shared-memory ref is in `shared.ts`).
 *
 * The in-process ref keeps its whole state in one number:
 *
 *   bit 0       RUNDOWN   rundown has begun: every acquisition is refused from now on
 *   bit 1       DRAINED   rundown has completed: the count reached zero after RUNDOWN was set
 *   bits 2..30  count     outstanding references
 *
 * Transitions (all in `LocalRundownRef`):
 *   acquire(n)   !RUNDOWN, count + n <= MAX_COUNT      count += n
 *   release(n)   count >= n                            count -= n; if the word becomes RUNDOWN, complete
 *   begin        !RUNDOWN                              set RUNDOWN; if count was 0, complete
 *   complete     word == RUNDOWN                       set DRAINED, record the duration, wake the waiters
 *   reInit       word == RUNDOWN | DRAINED             word = 0
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { hasProperty } from "effect/Predicate"
import type * as Scope from "effect/Scope"
import * as ScopeModule from "effect/Scope"
import type * as RundownRef from "../RundownRef.ts"
import { RundownCountError, RundownHandleError, RundownInProgressError, RundownNotCompleteError } from "../RundownError.ts"
import {
  countOf,
  DRAINED,
  MAX_COUNT,
  OVERFLOW,
  recordTiming,
  refused,
  REFUSED,
  reportActive,
  RUNDOWN,
  RundownRefBase,
  startTiming,
  stateRunDown,
  type Timing,
  TypeId,
  underflow
} from "./core.ts"
import { fromSharedUnsafe, handleProblem, makeSharedUnsafe } from "./shared.ts"

export { MAX_COUNT, TypeId } from "./core.ts"
export { fromSharedUnsafe, makeSharedUnsafe } from "./shared.ts"

/** @internal */
export const GuardTypeId = "~@quiesce/rundown/RundownGuard"

const UNIT = 4
const count = (word: number): number => word >>> 2

// -----------------------------------------------------------------------------
// In-process ref
// -----------------------------------------------------------------------------

class LocalRundownRef extends RundownRefBase {
  w = 0
  /** Completed when the current rundown drains; replaced by `reInit`. Created only if someone waits. */
  drained: Deferred.Deferred<void> | undefined = undefined
  timing: Timing | undefined = undefined

  hint(): number {
    return this.w
  }

  acquireUnsafe(n: number): number {
    const w = this.w
    if ((w & RUNDOWN) !== 0) return REFUSED
    if (count(w) + n > MAX_COUNT) return OVERFLOW
    this.w = w + n * UNIT
    if (this.metrics !== undefined) reportActive(this)
    return 1
  }

  releaseUnsafe(n: number, _receipt: number): void {
    const d = n * UNIT
    const w = this.w
    if (w < d) throw underflow(n, count(w))
    this.w = w - d
    if (this.w === RUNDOWN) this.complete()
    if (this.metrics !== undefined) reportActive(this)
  }

  beginUnsafe(): number {
    const w = this.w
    if ((w & RUNDOWN) !== 0) return 0
    this.w = w | RUNDOWN
    this.timing = startTiming(this.metrics, 0)
    if (w === 0) this.complete()
    return 0
  }

  complete(): void {
    this.w = RUNDOWN | DRAINED
    const timing = this.timing
    if (timing !== undefined) {
      this.timing = undefined
      recordTiming(timing)
    }
    if (this.drained !== undefined) Deferred.doneUnsafe(this.drained, Exit.void)
  }

  awaitDrained(_token: number): Effect.Effect<void> {
    if ((this.w & DRAINED) !== 0) return Effect.void
    this.drained ??= Deferred.makeUnsafe<void>()
    return Deferred.await(this.drained)
  }

  reInitUnsafe(): RundownRef.RundownState | undefined {
    if (this.w !== (RUNDOWN | DRAINED)) return this.stateUnsafe()
    this.w = 0
    this.drained = undefined
    return undefined
  }

  stateUnsafe(): RundownRef.RundownState {
    const w = this.w
    return (w & RUNDOWN) === 0
      ? { _tag: "Active", count: count(w) }
      : (w & DRAINED) === 0
      ? { _tag: "RunningDown", count: count(w) }
      : stateRunDown
  }

  heldHere(): number {
    return count(this.w)
  }
}

// -----------------------------------------------------------------------------
// Constructors
// -----------------------------------------------------------------------------

/** @internal */
export const makeUnsafe = (options?: RundownRef.Options): RundownRef.RundownRef => new LocalRundownRef(options?.metrics)

const scoped = <A extends RundownRef.RundownRef>(
  create: () => A
): Effect.Effect<A, never, Scope.Scope> => Effect.acquireRelease(Effect.sync(create), (ref) => waitForRundown(ref))

/** @internal */
export const make: Effect.Effect<RundownRef.RundownRef, never, Scope.Scope> = scoped(() => makeUnsafe())

/** @internal */
export const makeWith = (options: RundownRef.Options): Effect.Effect<RundownRef.RundownRef, never, Scope.Scope> =>
  scoped(() => makeUnsafe(options))

/** @internal */
export const makeShared = (
  options?: RundownRef.SharedOptions
): Effect.Effect<RundownRef.SharedRundownRef, never, Scope.Scope> => scoped(() => makeSharedUnsafe(options))

/** @internal */
export const fromShared = (
  handle: unknown,
  options?: RundownRef.Options
): Effect.Effect<RundownRef.SharedRundownRef, RundownHandleError> =>
  Effect.suspend(() => {
    const problem = handleProblem(handle)
    return problem !== undefined
      ? Effect.fail(new RundownHandleError({ reason: problem }))
      : Effect.succeed(fromSharedUnsafe(handle, options))
  })

/** @internal */
export const isRundownRef = (u: unknown): u is RundownRef.RundownRef => hasProperty(u, TypeId)

/** @internal */
export const isSharedRundownRef = (u: unknown): u is RundownRef.SharedRundownRef =>
  isRundownRef(u) && hasProperty(u, "handle")

// -----------------------------------------------------------------------------
// Operations
// -----------------------------------------------------------------------------

const overflowError = (self: RundownRefBase, n: number) =>
  new RundownCountError({ reason: "Overflow", n, current: self.heldHere(), max: MAX_COUNT })

/**
 * The hot path. The release is registered with `onExitPrimitive` *before* the acquisition,
 * and a per-run receipt tells the finalizer whether there is anything to release: interruption
 * can then land anywhere — before the acquisition (nothing to release), between it and
 * `effect` or during `effect` (released) — without masking interruption at all. That is
 * cheaper than `uninterruptibleMask` + `restore`, which `Semaphore.withPermits` pays for.
 * A refusal is decided before anything is allocated.
 *
 * @internal
 */
export const protect = <A, E, R>(
  self: RundownRef.RundownRef,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | RundownInProgressError, R> =>
  Effect.suspend((): Effect.Effect<A, E | RundownInProgressError, R> => {
    const ref = self as RundownRefBase
    if ((ref.hint() & RUNDOWN) !== 0) return refused
    let receipt = 0
    return Effect.onExitPrimitive(
      Effect.suspend((): Effect.Effect<A, E | RundownInProgressError, R> => {
        const outcome = ref.acquireUnsafe(1)
        if (outcome < 0) return outcome === REFUSED ? refused : Effect.die(overflowError(ref, 1))
        receipt = outcome
        return effect
      }),
      // Not `interruptible: true`: that would let an interruption unwind past this frame
      // without running it (only an uninterruptible frame stops the unwinding), leaking the
      // reference. Without it the frame masks interruption for its own (synchronous) run. A
      // release that throws (a shared ref whose slot was reclaimed) becomes a defect.
      () => {
        if (receipt !== 0) ref.releaseUnsafe(1, receipt)
        return undefined
      }
    )
  })

const acquireScoped = (
  self: RundownRefBase,
  n: number
): Effect.Effect<void, RundownInProgressError | RundownCountError, Scope.Scope> =>
  Effect.uninterruptible(
    Effect.flatMap(Effect.scope, (scope) =>
      Effect.suspend((): Effect.Effect<void, RundownInProgressError | RundownCountError> => {
        const receipt = self.acquireUnsafe(n)
        if (receipt === REFUSED) return refused
        if (receipt === OVERFLOW) return Effect.fail(overflowError(self, n))
        return ScopeModule.addFinalizer(scope, Effect.sync(() => self.releaseUnsafe(n, receipt)))
      }))
  )

/** @internal */
export const acquire = (self: RundownRef.RundownRef): Effect.Effect<void, RundownInProgressError, Scope.Scope> =>
  Effect.catchTag(acquireScoped(self as RundownRefBase, 1), "RundownCountError", Effect.die)

/** @internal */
export const acquireN = (
  self: RundownRef.RundownRef,
  n: number
): Effect.Effect<void, RundownInProgressError | RundownCountError, Scope.Scope> =>
  Number.isSafeInteger(n) && n > 0
    ? acquireScoped(self as RundownRefBase, n)
    : Effect.suspend(() =>
      Effect.fail(
        new RundownCountError({
          reason: "NotAPositiveInteger",
          n,
          current: (self as RundownRefBase).heldHere(),
          max: MAX_COUNT
        })
      )
    )

class Guard implements RundownRef.RundownGuard {
  readonly [GuardTypeId]: typeof GuardTypeId = GuardTypeId
  readonly ref: RundownRefBase
  receipt: number
  constructor(ref: RundownRefBase, receipt: number) {
    this.ref = ref
    this.receipt = receipt
  }
  releaseUnsafe(): boolean {
    const receipt = this.receipt
    if (receipt === 0) return false
    this.receipt = 0
    this.ref.releaseUnsafe(1, receipt)
    return true
  }
  get release(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.releaseUnsafe()
    })
  }
  [Symbol.dispose](): void {
    this.releaseUnsafe()
  }
}

/** @internal */
export const tryAcquire = (self: RundownRef.RundownRef): Effect.Effect<RundownRef.RundownGuard, RundownInProgressError> =>
  Effect.suspend(() => {
    const ref = self as RundownRefBase
    const receipt = ref.acquireUnsafe(1)
    if (receipt === REFUSED) return refused
    if (receipt === OVERFLOW) return Effect.die(overflowError(ref, 1))
    return Effect.succeed(new Guard(ref, receipt))
  })

/**
 * Begins the rundown (the ref records its duration, if asked to, when the rundown completes —
 * whether or not this wait is still there by then) and waits for the drain.
 *
 * @internal
 */
export const waitForRundown = (self: RundownRef.RundownRef): Effect.Effect<void> =>
  Effect.suspend(() => {
    const ref = self as RundownRefBase
    return ref.awaitDrained(ref.beginUnsafe())
  })

/** @internal */
export const reInit = (self: RundownRef.RundownRef): Effect.Effect<void, RundownNotCompleteError> =>
  Effect.suspend(() => {
    const observed = (self as RundownRefBase).reInitUnsafe()
    if (observed === undefined) return Effect.void
    return Effect.fail(new RundownNotCompleteError({ state: observed._tag, count: countOf(observed) }))
  })

/** @internal */
export const stateUnsafe = (self: RundownRef.RundownRef): RundownRef.RundownState =>
  (self as RundownRefBase).stateUnsafe()

/** @internal */
export const state = (self: RundownRef.RundownRef): Effect.Effect<RundownRef.RundownState> =>
  Effect.sync(() => stateUnsafe(self))
