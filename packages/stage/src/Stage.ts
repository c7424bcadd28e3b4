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
 * The property every `Stage` carries, which {@link isStage} looks for.
 *
 * @example
 * ```ts
 * import { Stage } from "@quiesce/stage"
 *
 * const stage = Stage.makeUnsafe({ resource: null, buffer: null })
 * console.log(Stage.TypeId in stage) // true
 * ```
 *
 * @category type ids
 * @since 0.1.0
 */
export const TypeId: "~@quiesce/stage/Stage" = internal.TypeId as "~@quiesce/stage/Stage"

/**
 * The type of {@link TypeId}.
 *
 * @example
 * ```ts
 * import { Stage } from "@quiesce/stage"
 *
 * const id: Stage.TypeId = Stage.TypeId
 * console.log(id) // "~@quiesce/stage/Stage"
 * ```
 *
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
 * @example
 * ```ts
 * import { Effect, Queue } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * // A stage over a queue of replies (the resource), routed by request id into a map (the buffer).
 * type Replies = Stage.Stage<Queue.Queue<[number, string]>, number, Map<number, string>>
 *
 * const ask = (stage: Replies, id: number) =>
 *   Stage.receive(stage, {
 *     token: id,
 *     take: (buffer, id) => buffer.get(id),
 *     poll: (director) =>
 *       Effect.map(Queue.take(director.resource), ([id, reply]) => {
 *         director.buffer.set(id, reply)
 *         director.notifyUnsafe(id)
 *       })
 *   })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const resource = yield* Queue.unbounded<[number, string]>()
 *   const stage = yield* Stage.make<Queue.Queue<[number, string]>, number, Map<number, string>>({ resource, buffer: new Map() })
 *   // `resource` is usable without heading: here, to feed the replies in.
 *   yield* Queue.offer(stage.resource, [7, "pong"])
 *   return yield* ask(stage, 7)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "pong"
 * ```
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
 * Types related to {@link Stage}.
 *
 * @example
 * ```ts
 * import { Stage } from "@quiesce/stage"
 *
 * type StringTokens = Stage.Stage.Variance<string>
 * const stage = Stage.makeUnsafe<null, string, null>({ resource: null, buffer: null })
 * const variance: StringTokens = stage[Stage.TypeId]
 * console.log(variance !== undefined) // true
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export declare namespace Stage {
  /**
   * The variance of a `Stage` in its token type: invariant, since tokens are both given and compared.
   *
   * @example
   * ```ts
   * import { Stage } from "@quiesce/stage"
   *
   * // A stage of string tokens is not a stage of any other token type.
   * const stage = Stage.makeUnsafe<null, string, null>({ resource: null, buffer: null })
   * const variance: Stage.Stage.Variance<string> = stage[Stage.TypeId]
   * console.log(typeof variance) // "object"
   * ```
   *
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, null>({ resource: null, buffer: null })
 *   const ticket: Stage.Ticket<string> = yield* Stage.ticket(stage, "alice")
 *   return ticket.token
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "alice"
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * type Wire = Array<{ readonly to: string; readonly body: string }>
 *
 * // The head's work, as a function of its Director: drain the wire, file and notify.
 * const route = (director: Stage.Director<Wire, string, Map<string, string>>) =>
 *   Effect.sync(() => {
 *     for (const event of director.resource.splice(0)) {
 *       director.buffer.set(event.to, event.body)
 *       director.notifyUnsafe(event.to)
 *     }
 *     return director.buffer.get(director.token)
 *   })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<Wire, string, Map<string, string>>({
 *     resource: [{ to: "bob", body: "hi bob" }, { to: "alice", body: "hi alice" }],
 *     buffer: new Map()
 *   })
 *   const ticket = yield* Stage.ticket(stage, "alice")
 *   return yield* Stage.enter(stage, ticket, { head: route })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "hi alice" }
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const describe = (exit: Stage.StageExit<string>): string => {
 *   switch (exit._tag) {
 *     case "Finished":
 *       return `headed, read ${exit.value}`
 *     case "Token":
 *       return "notified: look in the buffer"
 *     case "Timeout":
 *       return "gave up"
 *   }
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, null>({ resource: null, buffer: null })
 *   const ticket = yield* Stage.ticket(stage, "alice")
 *   return describe(yield* Stage.enter(stage, ticket, { head: () => Effect.succeed("a datagram") }))
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "headed, read a datagram"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type StageExit<A> = Finished<A> | Token | Timeout

/**
 * This fiber headed the stage and `head` returned `value`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, null>({ resource: null, buffer: null })
 *   const ticket = yield* Stage.ticket(stage, "alice")
 *   // Nobody heads the stage: this fiber does, and its head's value comes back in `Finished`.
 *   const exit = yield* Stage.enter(stage, ticket, { head: () => Effect.succeed(42) })
 *   return exit._tag === "Finished" ? exit.value : undefined
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 42
 * ```
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
 * @example
 * ```ts
 * import { Deferred, Effect, Fiber } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, Map<string, string>>({ resource: null, buffer: new Map() })
 *   const alice = yield* Stage.ticket(stage, "alice")
 *   const bob = yield* Stage.ticket(stage, "bob")
 *   const bobParked = yield* Deferred.make<void>()
 *   // Alice heads until bob is parked, then files bob's event and notifies him.
 *   const head = yield* Effect.forkChild(Stage.enter(stage, alice, {
 *     head: (director) =>
 *       Deferred.await(bobParked).pipe(Effect.andThen(Effect.sync(() => {
 *         director.buffer.set("bob", "for bob")
 *         director.notifyUnsafe("bob")
 *       })))
 *   }))
 *   yield* Effect.yieldNow
 *   const waiting = yield* Effect.forkChild(Stage.enter(stage, bob, { head: () => Effect.void }))
 *   yield* Effect.yieldNow
 *   yield* Deferred.succeed(bobParked, undefined)
 *   const exit = yield* Fiber.join(waiting)
 *   yield* Fiber.join(head)
 *   return exit._tag === "Token" ? stage.buffer.get("bob") : exit._tag
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "for bob"
 * ```
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
 * @example
 * ```ts
 * import { Effect, Fiber } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, string, null>({ resource: null, buffer: null })
 *   const alice = yield* Stage.ticket(stage, "alice")
 *   const bob = yield* Stage.ticket(stage, "bob")
 *   // Alice heads for a long time; bob will not wait more than 10 ms.
 *   const head = yield* Effect.forkChild(Stage.enter(stage, alice, { head: () => Effect.never }))
 *   yield* Effect.yieldNow
 *   const exit = yield* Stage.enter(stage, bob, { head: () => Effect.void, timeout: "10 millis" })
 *   yield* Fiber.interrupt(head)
 *   return exit
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Timeout" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Timeout {
  readonly _tag: "Timeout"
}

/**
 * Whether `u` is a `Stage`.
 *
 * @example
 * ```ts
 * import { Stage } from "@quiesce/stage"
 *
 * console.log(Stage.isStage(Stage.makeUnsafe({ resource: null, buffer: null }))) // true
 * console.log(Stage.isStage({ resource: null, buffer: null })) // false
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isStage = (u: unknown): u is Stage<unknown, unknown, unknown> => hasProperty(u, TypeId)

/**
 * Options of {@link make}, {@link makeUnsafe} and {@link layer}: the resource and the shared buffer.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const options: Stage.Options<Array<string>, Map<string, string>> = { resource: ["a:1"], buffer: new Map() }
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<Array<string>, string, Map<string, string>>(options)
 *   return stage.resource.length
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 1
 * ```
 *
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
 *
 * Effect.runPromise(Effect.scoped(program)).then(console.log) // { _tag: "Finished", value: "a:1" }
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: <R, T, B>(options: Options<R, B>) => Effect.Effect<Stage<R, T, B>, never, Scope.Scope> = internal.make

/**
 * Creates a stage outside of any scope; it is never closed.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * // A stage for the lifetime of the program, e.g. over a process-wide socket.
 * const stage = Stage.makeUnsafe<Array<string>, string, Map<string, string>>({ resource: ["hello"], buffer: new Map() })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ticket = yield* Stage.ticket(stage, "me")
 *   return yield* Stage.enter(stage, ticket, { head: (director) => Effect.sync(() => director.resource.pop()) })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "hello" }
 * ```
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
 *   static readonly layer = Stage.layer(Inbox, Effect.sync(() => ({ resource: ["hello"], buffer: new Map() })))
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const inbox = yield* Inbox
 *   const ticket = yield* Stage.ticket(inbox, "me")
 *   return yield* Stage.enter(inbox, ticket, { head: (director) => Effect.sync(() => director.resource.pop()) })
 * }))
 *
 * Effect.runPromise(program.pipe(Effect.provide(Inbox.layer))).then(console.log)
 * // { _tag: "Finished", value: "hello" }
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<null, { readonly request: number }, null>({ resource: null, buffer: null })
 *   yield* Stage.ticket(stage, { request: 1 })
 *   // Tokens compare structurally: an equal token is refused while the first is held.
 *   return yield* Stage.ticket(stage, { request: 1 }).pipe(
 *     Effect.catchTag("TokenInUseError", (error) => Effect.succeed(error.message))
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log)
 * // "token {"request":1} is already held by another participant of the stage"
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const ticket: {
  <T>(token: T): <R, B>(self: Stage<R, T, B>) => Effect.Effect<Ticket<T>, TokenInUseError, Scope.Scope>
  <R, T, B>(self: Stage<R, T, B>, token: T): Effect.Effect<Ticket<T>, TokenInUseError, Scope.Scope>
} = dual(2, internal.ticket)

/**
 * Options of {@link enter}: what to do as head, and how long to wait.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * type Wire = Array<string>
 * const options: Stage.EnterOptions<Wire, string, null, string | undefined, never, never> = {
 *   head: (director) => Effect.sync(() => director.resource.shift()),
 *   timeout: "1 second"
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<Wire, string, null>({ resource: ["first"], buffer: null })
 *   const ticket = yield* Stage.ticket(stage, "reader")
 *   return yield* Stage.enter(stage, ticket, options)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "first" }
 * ```
 *
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * type Wire = Array<{ readonly to: string; readonly body: string }>
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* Stage.make<Wire, string, Map<string, string>>({
 *     resource: [{ to: "alice", body: "hi alice" }],
 *     buffer: new Map()
 *   })
 *   const ticket = yield* Stage.ticket(stage, "alice")
 *   // Look in the buffer first; enter only if the event is not there yet.
 *   const exit = yield* Stage.enter(stage, ticket, {
 *     head: (director) =>
 *       Effect.sync(() => {
 *         const event = director.resource.shift()!
 *         director.buffer.set(event.to, event.body)
 *         director.notifyUnsafe(event.to) // its own token: kept for the next enter, harmlessly
 *       }),
 *     timeout: "1 second"
 *   })
 *   return [exit._tag, stage.buffer.get("alice")]
 * }))
 *
 * Effect.runPromise(program).then(console.log) // ["Finished", "hi alice"]
 * ```
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
 * Options of {@link receive}: the token, how to take its event from the buffer, and the head's polling step.
 *
 * @example
 * ```ts
 * import { Effect, Queue } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * type Event = { readonly to: string; readonly body: string }
 * type Wire = Queue.Queue<Event>
 *
 * const options = (token: string): Stage.ReceiveOptions<Wire, string, Map<string, string>, string, never, never> => ({
 *   token,
 *   take: (buffer, token) => {
 *     const body = buffer.get(token)
 *     buffer.delete(token)
 *     return body
 *   },
 *   poll: (director) =>
 *     Effect.map(Queue.take(director.resource), (event) => {
 *       director.buffer.set(event.to, event.body)
 *       director.notifyUnsafe(event.to)
 *     }),
 *   timeout: "1 second"
 * })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const wire = yield* Queue.unbounded<Event>()
 *   const stage = yield* Stage.make<Wire, string, Map<string, string>>({ resource: wire, buffer: new Map() })
 *   yield* Queue.offerAll(wire, [{ to: "bob", body: "hi bob" }, { to: "alice", body: "hi alice" }])
 *   return yield* Effect.all([Stage.receive(stage, options("alice")), Stage.receive(stage, options("bob"))], {
 *     concurrency: "unbounded"
 *   })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // ["hi alice", "hi bob"]
 * ```
 *
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
 * @example
 * ```ts
 * import { Effect, Queue } from "effect"
 * import { Stage } from "@quiesce/stage"
 *
 * type Event = { readonly to: string; readonly body: string }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const wire = yield* Queue.unbounded<Event>()
 *   const stage = yield* Stage.make<Queue.Queue<Event>, string, Map<string, string>>({ resource: wire, buffer: new Map() })
 *   // Events arrive in any order; each fiber gets exactly its own.
 *   yield* Queue.offerAll(wire, [{ to: "carol", body: "hi carol" }, { to: "alice", body: "hi alice" }])
 *   return yield* Effect.all(
 *     ["alice", "carol"].map((token) =>
 *       Stage.receive(stage, {
 *         token,
 *         take: (buffer, token) => buffer.get(token),
 *         poll: (director) =>
 *           Effect.map(Queue.take(director.resource), (event) => {
 *             director.buffer.set(event.to, event.body)
 *             director.notifyUnsafe(event.to)
 *           }),
 *         timeout: "1 second"
 *       })
 *     ),
 *     { concurrency: "unbounded" }
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log) // ["hi alice", "hi carol"]
 * ```
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
