/**
 * The run-down state machine. One 31-bit word holds the whole state, in the same encoding for
 * the in-process ref (a plain number field) and the shared one (slot 0 of an `Int32Array` over
 * a `SharedArrayBuffer`, changed only with `Atomics`):
 *
 *   bit 0       RUNDOWN   rundown has begun: every acquisition is refused from now on
 *   bit 1       DRAINED   rundown has completed: the count reached zero after RUNDOWN was set
 *   bits 2..30  count     outstanding references
 *
 * Transitions (all in this file):
 *   acquire(n)   !RUNDOWN, count + n <= MAX_COUNT      count += n
 *   release(n)   count >= n                            count -= n; if the word becomes RUNDOWN, complete
 *   begin        !RUNDOWN                              set RUNDOWN; if count was 0, complete
 *   complete     word == RUNDOWN                       set DRAINED, wake the waiters
 *   reInit       word == RUNDOWN | DRAINED             word = 0
 *
 * The party whose own transition turns the word into exactly RUNDOWN (the last releaser, or
 * the beginner when nothing was held) is the only one to complete: acquisitions never modify a
 * word that has RUNDOWN set, so nobody else can change it between that transition and the
 * DRAINED store, and releases that do not finish a rundown never touch the waiters.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Inspectable from "effect/Inspectable"
import * as Metric from "effect/Metric"
import { pipeArguments } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import type * as Scope from "effect/Scope"
import * as ScopeModule from "effect/Scope"
import type * as RundownRef from "../RundownRef.ts"
import { RundownCountError, RundownHandleError, RundownInProgressError, RundownNotCompleteError } from "../RundownError.ts"

/** @internal */
export const TypeId = "~@quiesce/rundown/RundownRef"
/** @internal */
export const GuardTypeId = "~@quiesce/rundown/RundownGuard"
/** @internal */
export const HandleTag = "~@quiesce/rundown/SharedHandle"

/** @internal */
export const RUNDOWN = 1
/** @internal */
export const DRAINED = 2
/** @internal */
export const UNIT = 4
/** @internal */
export const MAX_COUNT = 0x1fffffff

const WORD = 0
const EPOCH = 1
const SHARED_BYTES = 8
const HANDLE_VERSION = 1

/** Outcomes of an acquisition attempt; numbers rather than objects so the hot path allocates nothing. */
const OK = 0
const REFUSED = 1
const OVERFLOW = 2
type Outcome = typeof OK | typeof REFUSED | typeof OVERFLOW

/** @internal */
export const count = (word: number): number => word >>> 2

/** @internal */
export const decode = (word: number): RundownRef.RundownState =>
  (word & RUNDOWN) === 0
    ? { _tag: "Active", count: count(word) }
    : (word & DRAINED) === 0
    ? { _tag: "RunningDown", count: count(word) }
    : stateRunDown

const stateRunDown: RundownRef.RundownState = { _tag: "RunDown" }

// One immutable instance: a refused acquisition is an expected outcome on a hot path, and
// building an Error (with its stack) per refusal would cost more than the whole protect.
const refusedError = new RundownInProgressError()
const refused = Exit.fail(refusedError)

const underflow = (n: number, word: number): Error =>
  new Error(`RundownRef: release(${n}) with only ${count(word)} reference(s) held (the count would underflow)`)

// A pending Atomics.waitAsync does not keep the event loop alive: without this, a program
// whose only remaining work is another thread's release would exit mid-wait. One timer per
// thread, ref'd exactly while some wait is pending (ref/unref are cheap flag flips).
let keepAliveTimer: ReturnType<typeof setInterval> | undefined
let pendingWaits = 0
const keepAlive = (delta: 1 | -1): void => {
  pendingWaits += delta
  if (pendingWaits === 1 && delta === 1) {
    keepAliveTimer ??= setInterval(() => {}, 0x7fffffff)
    keepAliveTimer.ref()
  } else if (pendingWaits === 0) {
    keepAliveTimer?.unref()
  }
}

/**
 * What every ref implements. The public functions in `RundownRef.ts` only call these, so the
 * in-process and the shared ref behave identically by construction.
 *
 * @internal
 */
export abstract class RundownRefBase extends Inspectable.Class implements RundownRef.RundownRef {
  readonly [TypeId]: typeof TypeId = TypeId
  readonly metrics: RundownRef.RundownMetrics | undefined

  constructor(metrics: RundownRef.RundownMetrics | undefined) {
    super()
    this.metrics = metrics
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  /** The state word, read atomically (for decisions and diagnostics). */
  abstract readonly word: () => number
  /** A cheaper, possibly stale read of the word, for a fast refusal only: never a decision. */
  abstract hint(): number
  abstract acquireUnsafe(n: number): Outcome
  abstract releaseUnsafe(n: number): void
  /** Sets RUNDOWN (completing at once if nothing is held); returns a token for `awaitDrained`. */
  abstract beginUnsafe(): number
  abstract awaitDrained(token: number): Effect.Effect<void>
  abstract reInitUnsafe(): number | undefined

  toJSON() {
    return { _id: "RundownRef", shared: this instanceof SharedRundownRef, state: decode(this.word()) }
  }
}

// -----------------------------------------------------------------------------
// In-process ref
// -----------------------------------------------------------------------------

class LocalRundownRef extends RundownRefBase {
  w = 0
  /** Completed when the current rundown drains; replaced by `reInit`. Created only if someone waits. */
  drained: Deferred.Deferred<void> | undefined = undefined

  readonly word = () => this.w

  hint(): number {
    return this.w
  }

  acquireUnsafe(n: number): Outcome {
    const w = this.w
    if ((w & RUNDOWN) !== 0) return REFUSED
    if (count(w) + n > MAX_COUNT) return OVERFLOW
    this.w = w + n * UNIT
    if (this.metrics !== undefined) reportActive(this)
    return OK
  }

  releaseUnsafe(n: number): void {
    const d = n * UNIT
    const w = this.w
    if (w < d) throw underflow(n, w)
    this.w = w - d
    if (this.w === RUNDOWN) this.complete()
    if (this.metrics !== undefined) reportActive(this)
  }

  beginUnsafe(): number {
    const w = this.w
    if ((w & RUNDOWN) !== 0) return 0
    this.w = w | RUNDOWN
    if (w === 0) this.complete()
    return 0
  }

  complete(): void {
    this.w = RUNDOWN | DRAINED
    if (this.drained !== undefined) Deferred.doneUnsafe(this.drained, Exit.void)
  }

  awaitDrained(_token: number): Effect.Effect<void> {
    if ((this.w & DRAINED) !== 0) return Effect.void
    this.drained ??= Deferred.makeUnsafe<void>()
    return Deferred.await(this.drained)
  }

  reInitUnsafe(): number | undefined {
    const w = this.w
    if (w !== (RUNDOWN | DRAINED)) return w
    this.w = 0
    this.drained = undefined
    return undefined
  }
}

// -----------------------------------------------------------------------------
// Shared-memory ref
// -----------------------------------------------------------------------------

interface SharedWaiter {
  readonly epoch: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

const isDone = (word: number, epoch: number, waiterEpoch: number): boolean =>
  (word & DRAINED) !== 0 || (word & RUNDOWN) === 0 || epoch !== waiterEpoch

class SharedRundownRef extends RundownRefBase implements RundownRef.SharedRundownRef {
  readonly i32: Int32Array
  readonly handle: RundownRef.SharedHandle

  constructor(buffer: SharedArrayBuffer, metrics: RundownRef.RundownMetrics | undefined) {
    super(metrics)
    this.i32 = new Int32Array(buffer, 0, 2)
    this.handle = { _tag: HandleTag, version: HANDLE_VERSION, buffer }
  }

  readonly word = () => Atomics.load(this.i32, WORD)

  // A plain element read: aligned Int32Array accesses never tear, so a racing read returns
  // some value the word really held, and every decision is made by the CAS that follows.
  hint(): number {
    return this.i32[WORD]!
  }

  acquireUnsafe(n: number): Outcome {
    const i32 = this.i32
    const d = n * UNIT
    // The first expected value may be stale: the CAS fails and reloads if it is.
    let w = i32[WORD]!
    while (true) {
      if ((w & RUNDOWN) !== 0) return REFUSED
      if (count(w) + n > MAX_COUNT) return OVERFLOW
      const prev = Atomics.compareExchange(i32, WORD, w, w + d)
      if (prev === w) break
      w = prev
    }
    if (this.metrics !== undefined) reportActive(this)
    return OK
  }

  releaseUnsafe(n: number): void {
    const d = n * UNIT
    const prev = Atomics.sub(this.i32, WORD, d)
    if (prev - d === RUNDOWN) {
      this.complete()
    } else if (prev < d) {
      Atomics.add(this.i32, WORD, d)
      throw underflow(n, prev)
    }
    if (this.metrics !== undefined) reportActive(this)
  }

  beginUnsafe(): number {
    const i32 = this.i32
    let w = Atomics.load(i32, WORD)
    while ((w & RUNDOWN) === 0) {
      const prev = Atomics.compareExchange(i32, WORD, w, w | RUNDOWN)
      if (prev === w) {
        if (w === 0) this.complete()
        break
      }
      w = prev
    }
    // Read only now that RUNDOWN is set. The epoch moves only when a rundown completes, so
    // the first move after this read is the completion of this rundown or of a later one —
    // never of an earlier one, which is what a read taken before the CAS could see (an earlier
    // rundown completing and being re-initialised between that read and the CAS), making the
    // waiter return before its own rundown had drained. The price, in that same narrow window
    // turned around (this rundown completes, is re-initialised and a new one begins before this
    // line), is that the waiter also waits for the new rundown: late, never early.
    return Atomics.load(i32, EPOCH)
  }

  complete(): void {
    Atomics.add(this.i32, EPOCH, 1)
    Atomics.or(this.i32, WORD, DRAINED)
    Atomics.notify(this.i32, WORD)
  }

  /**
   * This thread's waiters on this ref, and whether an `Atomics.waitAsync` on the word is
   * pending for them. One pending wait serves all of them, so a thread with many waiters pays
   * for one, and interrupted waiters leave nothing behind but (at most) that one wait, which
   * the next completion resolves.
   */
  readonly waiters = new Set<SharedWaiter>()
  watching = false

  /**
   * A waiter is done once DRAINED is set, once RUNDOWN is clear (the ref was re-initialised,
   * which needs a completed rundown), or once the epoch has moved past the one it read (the
   * rundown completed and the ref was re-initialised and run down again before it looked).
   */
  awaitDrained(epoch: number): Effect.Effect<void> {
    if (isDone(Atomics.load(this.i32, WORD), Atomics.load(this.i32, EPOCH), epoch)) return Effect.void
    return Effect.callback<void>((resume) => {
      const waiter: SharedWaiter = { epoch, resume }
      this.waiters.add(waiter)
      keepAlive(1)
      if (!this.watching) this.watch()
      return Effect.sync(() => {
        if (this.waiters.delete(waiter)) keepAlive(-1)
      })
    })
  }

  /**
   * Wakes the waiters that are done, then waits on the word until the next notify. Only the
   * completer notifies; a change of the word before the wait is registered makes it return
   * "not-equal" at once, so no wake-up is lost. Each pass is bounded by the number of word
   * changes that race with it.
   */
  readonly watch = (): void => {
    const i32 = this.i32
    this.watching = true
    while (true) {
      const w = Atomics.load(i32, WORD)
      const e = Atomics.load(i32, EPOCH)
      for (const waiter of this.waiters) {
        if (isDone(w, e, waiter.epoch)) {
          this.waiters.delete(waiter)
          keepAlive(-1)
          waiter.resume(Effect.void)
        }
      }
      if (this.waiters.size === 0) {
        this.watching = false
        return
      }
      const result = Atomics.waitAsync(i32, WORD, w)
      if (result.async) {
        result.value.then(this.watch)
        return
      }
    }
  }

  reInitUnsafe(): number | undefined {
    const prev = Atomics.compareExchange(this.i32, WORD, RUNDOWN | DRAINED, 0)
    return prev === (RUNDOWN | DRAINED) ? undefined : prev
  }
}

// -----------------------------------------------------------------------------
// Metrics (opt-in; a ref without metrics never looks at them on its hot path)
// -----------------------------------------------------------------------------

const reportActive = (self: RundownRefBase): void => {
  const active = self.metrics!.active
  if (active === undefined) return
  const fiber = Fiber.getCurrent()
  active.updateUnsafe(count(self.word()), fiber === undefined ? Context.empty() : fiber.context)
}

// -----------------------------------------------------------------------------
// Constructors
// -----------------------------------------------------------------------------

/** @internal */
export const makeUnsafe = (options?: RundownRef.Options): RundownRef.RundownRef =>
  new LocalRundownRef(options?.metrics)

/** @internal */
export const makeSharedUnsafe = (options?: RundownRef.Options): RundownRef.SharedRundownRef =>
  new SharedRundownRef(new SharedArrayBuffer(SHARED_BYTES), options?.metrics)

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
  options?: RundownRef.Options
): Effect.Effect<RundownRef.SharedRundownRef, never, Scope.Scope> => scoped(() => makeSharedUnsafe(options))

const handleProblem = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null) return `expected an object, got ${u === null ? "null" : typeof u}`
  const h = u as Record<string, unknown>
  if (h._tag !== HandleTag) return `missing or wrong _tag (expected "${HandleTag}")`
  if (h.version !== HANDLE_VERSION) return `unsupported version ${String(h.version)} (expected ${HANDLE_VERSION})`
  if (!(h.buffer instanceof SharedArrayBuffer)) return "buffer is not a SharedArrayBuffer"
  if (h.buffer.byteLength !== SHARED_BYTES) {
    return `buffer has ${h.buffer.byteLength} bytes (expected ${SHARED_BYTES})`
  }
  const w = Atomics.load(new Int32Array(h.buffer, 0, 1), WORD)
  if (w < 0 || ((w & DRAINED) !== 0 && w !== (RUNDOWN | DRAINED))) {
    return `the shared word 0x${(w >>> 0).toString(16)} is not a valid rundown state`
  }
  return undefined
}

/** @internal */
export const fromSharedUnsafe = (handle: unknown, options?: RundownRef.Options): RundownRef.SharedRundownRef => {
  const problem = handleProblem(handle)
  if (problem !== undefined) throw new RundownHandleError({ reason: problem })
  return new SharedRundownRef((handle as RundownRef.SharedHandle).buffer, options?.metrics)
}

/** @internal */
export const fromShared = (
  handle: unknown,
  options?: RundownRef.Options
): Effect.Effect<RundownRef.SharedRundownRef, RundownHandleError> =>
  Effect.suspend(() => {
    const problem = handleProblem(handle)
    return problem !== undefined
      ? Effect.fail(new RundownHandleError({ reason: problem }))
      : Effect.succeed(new SharedRundownRef((handle as RundownRef.SharedHandle).buffer, options?.metrics))
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
  new RundownCountError({ reason: "Overflow", n, current: count(self.word()), max: MAX_COUNT })

/**
 * The hot path. The release is registered with `onExitPrimitive` *before* the acquisition,
 * and a per-run flag tells the finalizer whether there is anything to release: interruption
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
    let held = false
    return Effect.onExitPrimitive(
      Effect.suspend((): Effect.Effect<A, E | RundownInProgressError, R> => {
        const outcome = ref.acquireUnsafe(1)
        if (outcome !== OK) return outcome === REFUSED ? refused : Effect.die(overflowError(ref, 1))
        held = true
        return effect
      }),
      // Not `interruptible: true`: that would let an interruption unwind past this frame
      // without running it (only an uninterruptible frame stops the unwinding), leaking the
      // reference. Without it the frame masks interruption for its own (synchronous) run.
      () => {
        if (held) ref.releaseUnsafe(1)
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
        const outcome = self.acquireUnsafe(n)
        if (outcome === REFUSED) return refused
        if (outcome === OVERFLOW) return Effect.fail(overflowError(self, n))
        return ScopeModule.addFinalizer(scope, Effect.sync(() => self.releaseUnsafe(n)))
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
          current: count((self as RundownRefBase).word()),
          max: MAX_COUNT
        })
      )
    )

class Guard implements RundownRef.RundownGuard {
  readonly [GuardTypeId]: typeof GuardTypeId = GuardTypeId
  readonly ref: RundownRefBase
  held = true
  constructor(ref: RundownRefBase) {
    this.ref = ref
  }
  releaseUnsafe(): boolean {
    if (!this.held) return false
    this.held = false
    this.ref.releaseUnsafe(1)
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
    const outcome = ref.acquireUnsafe(1)
    if (outcome === REFUSED) return refused
    if (outcome === OVERFLOW) return Effect.die(overflowError(ref, 1))
    return Effect.succeed(new Guard(ref))
  })

/** @internal */
export const waitForRundown = (self: RundownRef.RundownRef): Effect.Effect<void> => {
  const ref = self as RundownRefBase
  const duration = ref.metrics?.rundownDuration
  if (duration === undefined) return Effect.suspend(() => ref.awaitDrained(ref.beginUnsafe()))
  return Effect.suspend(() => {
    const started = (ref.word() & RUNDOWN) === 0
    const wait = ref.awaitDrained(ref.beginUnsafe())
    // Only the caller that began the rundown reports its duration, so that a rundown is
    // counted once however many fibers wait for it.
    return started
      ? Effect.tap(Effect.timed(wait), ([elapsed]) => Metric.update(duration, elapsed)).pipe(Effect.asVoid)
      : wait
  })
}

/** @internal */
export const reInit = (self: RundownRef.RundownRef): Effect.Effect<void, RundownNotCompleteError> =>
  Effect.suspend(() => {
    const observed = (self as RundownRefBase).reInitUnsafe()
    if (observed === undefined) return Effect.void
    const state = decode(observed)
    return Effect.fail(
      new RundownNotCompleteError({
        state: state._tag,
        count: state._tag === "RunDown" ? 0 : state.count
      })
    )
  })

/** @internal */
export const stateUnsafe = (self: RundownRef.RundownRef): RundownRef.RundownState =>
  decode((self as RundownRefBase).word())

/** @internal */
export const state = (self: RundownRef.RundownRef): Effect.Effect<RundownRef.RundownState> =>
  Effect.sync(() => stateUnsafe(self))
