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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, null>({ resource: null, buffer: null })
 *   yield* Stage.ticket(stage, "request-1")
 *   return yield* Stage.ticket(stage, "request-1").pipe(
 *     Effect.catchTag("TokenInUseError", (error) => Effect.succeed(`busy: ${error.token}`))
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 'busy: "request-1"'
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, Map<string, string>>({ resource: null, buffer: new Map() })
 *   // Nothing ever arrives for "alice": the receive gives up after 10 ms.
 *   return yield* Stage.receive(stage, {
 *     token: "alice",
 *     take: (buffer, token) => buffer.get(token),
 *     poll: () => Effect.never,
 *     timeout: "10 millis"
 *   }).pipe(Effect.catchTag("ReceiveTimeoutError", (error) => Effect.succeed(error.message)))
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 'no event for token "alice" within 10 ms'
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory({ maxTokenBytes: 16 }), { resource: null, buffer: null })
 *   // Its encoding is longer than the 16 bytes a token may take.
 *   return yield* SharedStage.ticket(stage, "a-rather-long-request-id").pipe(
 *     Effect.catchTag("TokenEncodingError", (error) => Effect.succeed(error.reason))
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log)
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory({ capacity: 1 }), { resource: null, buffer: null })
 *   yield* SharedStage.ticket(stage, 1)
 *   return yield* SharedStage.ticket(stage, 2).pipe(
 *     Effect.catchTag("StageCapacityError", (error) => Effect.succeed(`${error.resource}: ${error.limit}`))
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "tickets: 1"
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StageError } from "@quiesce/stage"
 *
 * // In a head's `poll`: a reply whose recipient's worker died is dropped, and the head goes on.
 * const deliver = (send: Effect.Effect<boolean, StageError.WorkerDeadError>) =>
 *   send.pipe(Effect.catchTag("WorkerDeadError", (error) => Effect.succeed(`dropped: ${error.message}`)))
 *
 * // What `director.deliver` fails with when the holder of token 7 died with a full inbox.
 * const program = deliver(Effect.fail(new StageError.WorkerDeadError({ token: "7", leaseMillis: 2000 })))
 * Effect.runPromise(program).then(console.log) // "dropped: the worker holding token 7 died (...)"
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { StageError } from "@quiesce/stage"
 *
 * // An evicted worker stops taking part; it attaches again (a new scope) to rejoin.
 * const work = (step: Effect.Effect<string, StageError.WorkerEvictedError>) =>
 *   step.pipe(Effect.catchTag("WorkerEvictedError", (error) => Effect.succeed(`evicted after ${error.leaseMillis} ms: reattach`)))
 *
 * // What `ticket`, `notify` and `deliver` fail with in a worker whose loop was blocked past the lease.
 * const program = work(Effect.fail(new StageError.WorkerEvictedError({ leaseMillis: 2000 })))
 * Effect.runPromise(program).then(console.log) // "evicted after 2000 ms: reattach"
 * ```
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
