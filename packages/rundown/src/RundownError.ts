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
 * @since 0.1.0
 * @category models
 */
export const ObservedState = Schema.Literals(["Active", "RunningDown", "RunDown"])

/**
 * An acquisition was refused because the ref is being (or has been) run down: the resource
 * behind it must not be entered any more. Refusals are expected on a hot path, so they all
 * share one immutable instance rather than building an `Error` (and its stack) each time.
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
