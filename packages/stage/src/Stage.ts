/**
 * Leader/followers access to a resource that only one reader may poll at a
 * time — a UDP socket, a pipe, a stream reader — whose events are meant for
 * different waiters. The Effect port of the Rust crate `exit-left`.
 *
 * Each waiter registers a token with {@link ticket}, looks in the shared
 * buffer, and if its event is not there {@link enter}s the stage. The first to
 * enter becomes the head: it polls the resource, stores events meant for others
 * in the buffer and notifies their tokens. Every other waiter parks until it is
 * notified (`Token`), promoted to head when the head leaves (`Finished`), or
 * its timeout elapses (`Timeout`). {@link receive} runs that whole loop in one
 * call.
 *
 * Guarantees (all transitions are synchronous and so atomic with respect to
 * other fibers; the fibers a transition wakes run only once it is complete):
 * - at most one head at a time — one reader of the resource; when the head
 *   leaves — returning, failing, dying or interrupted — the oldest waiter is
 *   promoted at once (FIFO, O(1)), so no waiter is ever parked while there is
 *   no head;
 * - promotion takes constant stack: a chain of heads that each finish at once
 *   (100,000 tested) runs one after the other, not one inside the other;
 * - a notify to a registered token is delivered exactly once: it wakes the
 *   waiter, or, if the token is not parked (not entered yet, promoted, heading,
 *   or just timed out), the next `enter` with that ticket returns `Token` at
 *   once;
 * - a waiter never returns `Token` without a notify, nor `Timeout` before its
 *   timeout elapsed;
 * - withdrawing a ticket only ever removes its own registration, and its
 *   token is free as soon as the withdrawal returns; withdrawing the ticket of
 *   a running head interrupts that head, and headship passes on only once it
 *   has left (its clean-up included), never while it still runs.
 *
 * For several worker threads sharing one stage, see `SharedStage`.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import type { Pipeable } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import type * as Scope from "effect/Scope"
import type * as Types from "effect/Types"
import * as internal from "./internal/stage.ts"
import type { ReceiveTimeoutError, TokenInUseError } from "./StageError.ts"

/**
 * @category type ids
 * @since 0.1.0
 */
export const TypeId: "~@quiesce/stage/Stage" = internal.TypeId as "~@quiesce/stage/Stage"

/**
 * @category type ids
 * @since 0.1.0
 */
export type TypeId = "~@quiesce/stage/Stage"

/**
 * A stage over a resource `R`, whose events are routed to tokens `T` through a
 * buffer `B`.
 *
 * `resource` is the backdoor to the resource for operations that need no head
 * (sending on a socket, say); polling it is the head's job. `buffer` is shared
 * by every participant: the head stores events for others in it, and a
 * notified waiter takes its event from it. Fibers of one thread never run
 * concurrently, so synchronous accesses to the buffer need no lock.
 *
 * @category models
 * @since 0.1.0
 */
export interface Stage<out R, in out T, out B> extends Pipeable {
  readonly [TypeId]: Stage.Variance<T>
  /** The resource, for operations that need no head (sends). */
  readonly resource: R
  /** The buffer, for every participant. */
  readonly buffer: B
}

/**
 * @category models
 * @since 0.1.0
 */
export declare namespace Stage {
  /**
   * @category models
   * @since 0.1.0
   */
  export interface Variance<in out T> {
    readonly _T: Types.Invariant<T>
  }
}

/**
 * A registered token. Valid until the scope it was taken in closes; then the
 * token is withdrawn and may be registered again.
 *
 * @category models
 * @since 0.1.0
 */
export interface Ticket<out T> extends Pipeable {
  readonly token: T
}

/**
 * What the head's `head` function is given: the resource, the buffer and
 * `notify`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Director<out R, in out T, out B> {
  /** The head's own token. */
  readonly token: T
  readonly resource: R
  readonly buffer: B
  /**
   * Wakes the participant holding `token` (`enter` returns `Token`). If it is
   * not parked — it has not entered yet, it is this head itself, or it has
   * just timed out — the notification is kept and its next `enter` returns
   * `Token` at once. Returns `false` when no participant holds the token.
   */
  readonly notify: (token: T) => Effect.Effect<boolean>
  /** `notify`, synchronously, for routing loops written as plain functions. */
  readonly notifyUnsafe: (token: T) => boolean
}

/**
 * How an `enter` ended.
 *
 * @category models
 * @since 0.1.0
 */
export type StageExit<A> = Finished<A> | Token | Timeout

/**
 * This fiber headed the stage and `head` returned `value`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Finished<A> {
  readonly _tag: "Finished"
  readonly value: A
}

/**
 * The head notified this ticket's token: its event should be in the buffer.
 *
 * @category models
 * @since 0.1.0
 */
export interface Token {
  readonly _tag: "Token"
}

/**
 * The timeout elapsed before this fiber was notified or could head.
 *
 * @category models
 * @since 0.1.0
 */
export interface Timeout {
  readonly _tag: "Timeout"
}

/**
 * @category guards
 * @since 0.1.0
 */
export const isStage = (u: unknown): u is Stage<unknown, unknown, unknown> => hasProperty(u, TypeId)

/**
 * @category constructors
 * @since 0.1.0
 */
export interface Options<R, B> {
  readonly resource: R
  readonly buffer: B
}

/**
 * Creates a stage. Closing the scope closes the stage: parked waiters and later
 * `enter`s are interrupted.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.gen(function*() {
 *   const stage = yield* Stage.make<Array<string>, string, Map<string, string>>({ resource: ["a:1"], buffer: new Map() })
 *   const ticket = yield* Stage.ticket(stage, "a")
 *   return yield* Stage.enter(stage, ticket, {
 *     head: (director) => Effect.sync(() => director.resource.shift())
 *   })
 * })
 * // Effect.runPromise(Effect.scoped(program)) // => { _tag: "Finished", value: "a:1" }
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: <R, T, B>(options: Options<R, B>) => Effect.Effect<Stage<R, T, B>, never, Scope.Scope> = internal.make

/**
 * Creates a stage outside of any scope; it is never closed.
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeUnsafe: <R, T, B>(options: Options<R, B>) => Stage<R, T, B> = internal.makeUnsafe

/**
 * A layer providing a stage as the service `tag`, closed with the layer's scope.
 *
 * @example
 * ```ts
 * import { Context, Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * class Inbox extends Context.Service<Inbox, Stage.Stage<Array<string>, string, Map<string, string>>>()("app/Inbox") {
 *   static readonly layer = Stage.layer(Inbox, Effect.sync(() => ({ resource: [], buffer: new Map() })))
 * }
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <I, R, T, B, E = never, RIn = never>(
  tag: Context.Key<I, Stage<R, T, B>>,
  options: Options<R, B> | Effect.Effect<Options<R, B>, E, RIn>
): Layer.Layer<I, E, RIn> =>
  Layer.effect(
    tag,
    Effect.isEffect(options) ? Effect.flatMap(options, (o) => internal.make<R, T, B>(o)) : internal.make<R, T, B>(options)
  )

/**
 * Registers `token`. Refused with `TokenInUseError` when another participant
 * (a waiter, a ticket that has not entered, or the current head) holds an
 * equal token. Closing the scope withdraws the ticket, and the token is free
 * at once (no fiber the withdrawal wakes sees it held): an `enter` parked on
 * it is interrupted (it leaves the queue); if it is heading, the fiber
 * running `head` is interrupted and keeps headship until it has left (so the
 * next head never runs beside it: a head that cleans up uninterruptibly
 * delays the next one); only this ticket's own registration is removed — a
 * later holder of the same token is never affected. A ticket serves one
 * `enter` at a time.
 *
 * @category combinators
 * @since 0.1.0
 */
export const ticket: {
  <T>(token: T): <R, B>(self: Stage<R, T, B>) => Effect.Effect<Ticket<T>, TokenInUseError, Scope.Scope>
  <R, T, B>(self: Stage<R, T, B>, token: T): Effect.Effect<Ticket<T>, TokenInUseError, Scope.Scope>
} = dual(2, internal.ticket)

/**
 * @category models
 * @since 0.1.0
 */
export interface EnterOptions<R, T, B, A, E, R2> {
  /** What this fiber does if it becomes the head. */
  readonly head: (director: Director<R, T, B>) => Effect.Effect<A, E, R2>
  /** How long to wait for a notification or for headship (not a limit on `head` itself). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Enters the stage with an idle ticket and resumes when:
 * - a notification for the ticket's token is pending (including one that
 *   arrived before this `enter`): `Token`, at once;
 * - the stage has no head, or the head leaves and this is the oldest waiter:
 *   this fiber runs `head(director)` and returns `Finished(value)`. Headship
 *   passes on however `head` ends; its errors, defects and interruption reach
 *   this caller;
 * - the head notifies the token: `Token`;
 * - the timeout elapses: `Timeout`. A waiter promoted after its deadline hands
 *   headship straight on and returns `Timeout`. A notify that loses the race
 *   against the timeout is kept for the next `enter`.
 *
 * Interrupting a parked `enter` removes it from the queue — also a timed one
 * interrupted before it could park (a scheduler yield in between); a wake-up
 * it had already been given is not lost (a notification is kept, headship
 * passes on). Withdrawing its ticket interrupts it, heading or not (see
 * `ticket`). On a closed stage, `enter` is interrupted.
 *
 * @category combinators
 * @since 0.1.0
 */
export const enter: {
  <R, T, B, A, E, R2>(
    ticket: Ticket<T>,
    options: EnterOptions<R, T, B, A, E, R2>
  ): (self: Stage<R, T, B>) => Effect.Effect<StageExit<A>, E, R2>
  <R, T, B, A, E, R2>(
    self: Stage<R, T, B>,
    ticket: Ticket<T>,
    options: EnterOptions<R, T, B, A, E, R2>
  ): Effect.Effect<StageExit<A>, E, R2>
} = dual(3, internal.enter)

/**
 * @category models
 * @since 0.1.0
 */
export interface ReceiveOptions<R, T, B, A, E, R2> {
  /** The token whose event to wait for. */
  readonly token: T
  /** Removes and returns this token's event from the buffer, or `undefined` when there is none. */
  readonly take: (buffer: B, token: T) => A | undefined
  /**
   * One step of the head's work: read from the resource, store events in the
   * buffer, notify their tokens (this fiber's own token included, harmlessly).
   */
  readonly poll: (director: Director<R, T, B>) => Effect.Effect<void, E, R2>
  /** Overall timeout, covering the waiting and the polling as head. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The whole common loop in one call: take a ticket for `token`, look in the
 * buffer, enter; as head, `poll` until this caller's own event is in the
 * buffer; when notified, look again. Fails with `ReceiveTimeoutError` when the
 * timeout elapses first (an event that raced the timeout is still returned),
 * and with `TokenInUseError` when another participant holds the token.
 *
 * @category combinators
 * @since 0.1.0
 */
export const receive: {
  <R, T, B, A, E, R2>(
    options: ReceiveOptions<R, T, B, A, E, R2>
  ): (self: Stage<R, T, B>) => Effect.Effect<A, E | TokenInUseError | ReceiveTimeoutError, R2>
  <R, T, B, A, E, R2>(
    self: Stage<R, T, B>,
    options: ReceiveOptions<R, T, B, A, E, R2>
  ): Effect.Effect<A, E | TokenInUseError | ReceiveTimeoutError, R2>
} = dual(2, internal.receive)
