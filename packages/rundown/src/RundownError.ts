/**
 * The errors of `@quiesce/rundown`.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The state a ref was observed in when an operation was refused, as reported by
 * {@link RundownNotCompleteError}.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { RundownError } from "@quiesce/rundown"
 *
 * console.log(Schema.is(RundownError.ObservedState)("RunningDown")) // true
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const ObservedState = Schema.Literals(["Active", "RunningDown", "RunDown"])

/**
 * An acquisition was refused because the ref is being (or has been) run down: the resource
 * behind it must not be entered any more. Refusals are expected on a hot path, so they all
 * share one immutable instance rather than building an `Error` (and its stack) each time.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * // An HTTP handler answers 503 once shutdown has begun.
 * const handle = RundownRef.protect(ref, Effect.succeed(200)).pipe(
 *   Effect.catchTag("RundownInProgressError", () => Effect.succeed(503))
 * )
 *
 * const program = Effect.gen(function*() {
 *   console.log(yield* handle) // 200
 *   yield* RundownRef.waitForRundown(ref)
 *   console.log(yield* handle) // 503
 * })
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownInProgressError extends Schema.TaggedError<RundownInProgressError>()(
  "RundownInProgressError",
  {}
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return "Run-down protection refused: the resource is being run down"
  }
}

/**
 * `reInit` was called before the rundown completed: either no rundown was started (`Active`)
 * or references are still outstanding (`RunningDown`, with their `count`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const program = RundownRef.reInit(ref).pipe(
 *   Effect.catchTag("RundownNotCompleteError", (error) => Effect.succeed(`${error.state}: ${error.message}`))
 * )
 *
 * Effect.runPromise(program).then(console.log)
 * // "Active: Cannot re-initialise: the ref has not been run down"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownNotCompleteError extends Schema.TaggedError<RundownNotCompleteError>()(
  "RundownNotCompleteError",
  {
    state: ObservedState,
    count: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.state === "Active"
      ? "Cannot re-initialise: the ref has not been run down"
      : `Cannot re-initialise: rundown has not completed (${this.count} reference(s) outstanding)`
  }
}

/**
 * A reference count that `acquireN` cannot take: `n` is not a positive integer, or taking it
 * would exceed `max`, the largest count the ref's word can hold (`current` were held).
 * The ref is left unchanged.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const program = Effect.scoped(RundownRef.acquireN(ref, 0)).pipe(
 *   Effect.catchTag("RundownCountError", (error) => Effect.succeed(error.reason))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "NotAPositiveInteger"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownCountError extends Schema.TaggedError<RundownCountError>()(
  "RundownCountError",
  {
    reason: Schema.Literals(["NotAPositiveInteger", "Overflow"]),
    n: Schema.Number,
    current: Schema.Number,
    max: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return this.reason === "NotAPositiveInteger"
      ? `acquireN expects a positive integer count, got ${String(this.n)}`
      : `acquireN(${this.n}) would overflow the reference count: ${this.current} held, at most ${this.max}`
  }
}

/**
 * The value given to `RundownRef.fromShared` is not a handle made by `RundownRef.makeShared`
 * (or was damaged on the way): `reason` says what is wrong with it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * // A message from a worker that is not a handle is refused, not trusted.
 * const program = RundownRef.fromShared({ _tag: "something else" }).pipe(
 *   Effect.catchTag("RundownHandleError", (error) => Effect.succeed(error.message))
 * )
 *
 * Effect.runPromise(program).then(console.log)
 * // "Not a RundownRef shared handle: missing or wrong _tag (expected \"~@quiesce/rundown/SharedHandle\")"
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownHandleError extends Schema.TaggedError<RundownHandleError>()(
  "RundownHandleError",
  {
    reason: Schema.String
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `Not a RundownRef shared handle: ${this.reason}`
  }
}

/**
 * A release on a shared ref whose thread lost its slot: the thread went without a heartbeat for
 * longer than the ref's lease (its event loop was blocked, or another thread presumed it dead),
 * so another thread reclaimed its slot and dropped the references counted in it — a rundown may
 * have completed, and the resource been destroyed, while this thread still used it. The
 * release touches no count (the slot may belong to another thread by now). It reaches the
 * caller as a defect: `protect` and `acquire` die with it, `guard.release` too, and
 * `guard.releaseUnsafe()` throws it. Acquisitions after it take a new slot.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownError } from "@quiesce/rundown"
 *
 * // A defect, not a typed failure: recognise it where defects are handled, e.g. to restart
 * // the work that ran while this thread's references were presumed dead.
 * const work = Effect.die(new RundownError.RundownLeaseError({ leaseMillis: 2000 }))
 * const program = work.pipe(
 *   Effect.catchDefect((defect) =>
 *     defect instanceof RundownError.RundownLeaseError
 *       ? Effect.succeed(`lost the lease of ${defect.leaseMillis} ms: redo the work`)
 *       : Effect.die(defect)
 *   )
 * )
 *
 * Effect.runPromise(program).then(console.log)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownLeaseError extends Schema.TaggedError<RundownLeaseError>()(
  "RundownLeaseError",
  {
    leaseMillis: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `This thread's references on a shared RundownRef were dropped: it went without a heartbeat for longer than ` +
      `the ${this.leaseMillis} ms lease (a blocked event loop), so another thread reclaimed its slot, and a rundown ` +
      `may have completed while this reference was held`
  }
}

/**
 * An acquisition on a shared ref found no free slot. Each view that takes references (normally
 * one per thread) holds a slot while its thread lives; a dead thread's slot is taken back a
 * lease after its death if it held nothing, but only by the next rundown if it still counts
 * references. Raise the `slots` option of `RundownRef.makeShared`. Reaches the caller as a
 * defect.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownError, RundownRef } from "@quiesce/rundown"
 *
 * // One slot: a second view (standing for a second thread) finds none free.
 * const ref = RundownRef.makeSharedUnsafe({ slots: 1 })
 * const other = RundownRef.fromSharedUnsafe(structuredClone(ref.handle))
 *
 * const program = Effect.gen(function*() {
 *   const guard = yield* RundownRef.tryAcquire(ref)
 *   const refused = yield* RundownRef.tryAcquire(other).pipe(
 *     Effect.catchDefect((defect) =>
 *       defect instanceof RundownError.RundownSlotsError ? Effect.succeed(defect.slots) : Effect.die(defect)
 *     )
 *   )
 *   yield* guard.release
 *   return refused
 * })
 *
 * Effect.runPromise(program).then((slots) => console.log(`all ${slots} slot(s) taken`))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RundownSlotsError extends Schema.TaggedError<RundownSlotsError>()(
  "RundownSlotsError",
  {
    slots: Schema.Number
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `All ${this.slots} slots of this shared RundownRef are taken (by live threads, or by dead ones whose ` +
      `references wait for the next rundown): make it with a larger \`slots\` option`
  }
}
