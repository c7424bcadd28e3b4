/**
 * The errors of `@quiesce/stage`. Each carries what a caller needs to act on it.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * `Stage.ticket` was refused because another participant — a waiter, a
 * registered ticket that has not entered yet, or the current head — already
 * holds an equal token (`Equal`/`Hash`, or the canonical encoding across
 * workers).
 *
 * @category errors
 * @since 0.1.0
 */
export class TokenInUseError extends Schema.TaggedError<TokenInUseError>()("TokenInUseError", {
  /** The token that was refused, as the stage printed it. */
  token: Schema.String
}) {
  override get message(): string {
    return `token ${this.token} is already held by another participant of the stage`
  }
}

/**
 * `Stage.receive` did not get the caller's event before its timeout elapsed.
 *
 * @category errors
 * @since 0.1.0
 */
export class ReceiveTimeoutError extends Schema.TaggedError<ReceiveTimeoutError>()("ReceiveTimeoutError", {
  /** The token that was waited for, as the stage printed it. */
  token: Schema.String,
  /** The timeout that elapsed, in milliseconds. */
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `no event for token ${this.token} within ${this.timeoutMillis} ms`
  }
}

/**
 * A token cannot cross worker threads: only strings, finite numbers, booleans,
 * `null`, and arrays and plain objects of those have a canonical encoding, and
 * the encoding must fit in the shared stage's `maxTokenBytes`.
 *
 * @category errors
 * @since 0.1.0
 */
export class TokenEncodingError extends Schema.TaggedError<TokenEncodingError>()("TokenEncodingError", {
  /** Why the token was rejected. */
  reason: Schema.String
}) {
  override get message(): string {
    return `token cannot be shared across workers: ${this.reason}`
  }
}

/**
 * The shared stage has no room: `capacity` tickets are held at once across all
 * workers, `maxWorkers` workers are attached, or (`"inbox"`) an event to
 * deliver is longer than any inbox can take (`limit` is then the longest
 * event, in bytes, that `inboxBytes` allows).
 *
 * @category errors
 * @since 0.1.0
 */
export class StageCapacityError extends Schema.TaggedError<StageCapacityError>()("StageCapacityError", {
  /** What ran out: `"tickets"`, `"workers"` or `"inbox"`. */
  resource: Schema.Literals(["tickets", "workers", "inbox"]),
  /** The configured limit. */
  limit: Schema.Number
}) {
  override get message(): string {
    return this.resource === "inbox"
      ? `the event is longer than a shared stage inbox can take (at most ${this.limit} bytes)`
      : `the shared stage has no free ${this.resource} (limit ${this.limit})`
  }
}

/**
 * A `deliver` or `notify` across workers found the inbox of the worker holding
 * the token full, and that worker dead: no heartbeat for longer than the lease.
 * It was reaped (its tickets withdrawn, headship passed on if it headed) and
 * the event was not delivered.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerDeadError extends Schema.TaggedError<WorkerDeadError>()("WorkerDeadError", {
  /** The token whose holder died, as the stage printed it. */
  token: Schema.String,
  /** The stage's lease: how long a worker may go without a heartbeat. */
  leaseMillis: Schema.Number
}) {
  override get message(): string {
    return `the worker holding token ${this.token} died (no heartbeat for over ${this.leaseMillis} ms); it was reaped and the event not delivered`
  }
}

/**
 * This worker was evicted from a shared stage: other workers watched its
 * heartbeat stand still for longer than the lease (its event loop was blocked,
 * or its thread was not scheduled, for that long) and reaped it, as they reap
 * a worker that died. Its tickets were withdrawn, and headship passed on if it
 * headed. An evicted worker never touches the shared state again: its parked
 * and later enters are interrupted, a head running in it is interrupted, and
 * `ticket`, `notify` and `deliver` fail with this error. Attach again (a new
 * scope) to take part once more.
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkerEvictedError extends Schema.TaggedError<WorkerEvictedError>()("WorkerEvictedError", {
  /** The stage's lease: how long a worker may go without a heartbeat. */
  leaseMillis: Schema.Number
}) {
  override get message(): string {
    return `this worker was evicted from the shared stage (its heartbeat stood still for over ${this.leaseMillis} ms); attach again`
  }
}
