/**
 * One stage shared by several worker threads through a `SharedArrayBuffer`:
 * head election, tickets, notifications and timeouts work across threads,
 * with the guarantees of `Stage` (one head at a time, FIFO O(1) promotion,
 * exactly-once notifications, no lost notify, no ABA, harmless self-notify).
 *
 * Create the memory once ({@link makeMemory}), hand `memory` to the workers
 * (`workerData` or `postMessage`: a `SharedArrayBuffer` is shared, not
 * copied), and {@link attach} in each worker with that worker's handle on the
 * resource and its own buffer.
 *
 * How it works — and what to expect:
 * - Shared state (head, FIFO, tickets, token index) changes only under one
 *   spin lock held for well under a microsecond; nothing ever waits on it.
 *   Waiting never blocks an event loop: each worker has a doorbell word it
 *   waits on with `Atomics.waitAsync`, and an inbox ring that wake-ups and
 *   events are written into, so one notify costs one `Atomics.notify`
 *   whatever the number of waiting tokens.
 * - Tokens cross threads by their canonical encoding: strings, finite
 *   numbers, booleans, `null`, and arrays and plain objects of those (equal
 *   under `Equal` exactly when their encodings are equal). Other tokens are
 *   refused with `TokenEncodingError`; the encoding must fit in
 *   `maxTokenBytes`.
 * - The buffer is per worker. The head routes an event to whichever worker
 *   holds its token with `director.deliver(token, event)`: the event is
 *   encoded with the `events` codec given to `attach`, copied into that
 *   worker's inbox, and filed into that worker's buffer with `events.offer`
 *   before the waiter wakes. A token nobody holds is not delivered
 *   (`deliver` returns `false`): take the ticket before the event can arrive
 *   (`receive`'s `onTicket`, e.g. to send the request).
 * - A worker that dies (is terminated) stops its heartbeat, a counter it
 *   bumps every quarter lease. Once another worker has watched that counter
 *   stand still for the lease, it reaps the dead one (a worker with a parked
 *   fiber watches every quarter lease; a `ticket` its tokens would refuse, or
 *   a `deliver` waiting for room in its inbox, which then fails with
 *   `WorkerDeadError`, watch while they retry): its tickets are withdrawn
 *   and, if it headed, the oldest waiter is promoted. The silence is timed on
 *   the watcher's monotonic clock and counts only while the watcher itself
 *   ran, so a wall-clock jump, or a stall of the watcher (a GC pause, its own
 *   blocked loop, the process stopped with SIGSTOP), reaps nobody.
 * - A worker whose event loop is blocked for longer than the lease looks
 *   dead, and is reaped too (a lease cannot tell a blocked worker from a dead
 *   one): it is evicted. The guarantee is that an evicted worker never
 *   touches the shared state again (it checks under the lock, which reaping
 *   takes), and stops as if detached once it runs again: its parked and later
 *   enters are interrupted, a head it runs is interrupted, and `ticket`,
 *   `notify` and `deliver` fail with `WorkerEvictedError`. What it cannot
 *   stop is the code of its head that runs before it notices (the rest of the
 *   step that blocked it, up to its next heartbeat or stage call): that may
 *   overlap with the head promoted in its place. Keep heads from blocking for
 *   the lease (default 2 s), or raise `leaseMillis`.
 * - One head at a time holds across workers too: withdrawing the ticket of a
 *   head that runs (or detaching its worker) frees the token at once and
 *   interrupts that head, and headship passes on only once it has left. A
 *   wake-up already written to a worker's inbox when its ticket is withdrawn
 *   is taken first, as it would have been in one thread.
 * - Promotion chains inside one worker take constant stack (10,000 tested in
 *   one worker), and a fiber woken while its worker reads its inbox runs only
 *   after that read: no record is ever filed twice.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type { Pipeable } from "effect/Pipeable"
import { hasProperty } from "effect/Predicate"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/sharedStage.ts"
import type * as Stage from "./Stage.ts"
import type {
  ReceiveTimeoutError,
  StageCapacityError,
  TokenEncodingError,
  TokenInUseError,
  WorkerDeadError,
  WorkerEvictedError
} from "./StageError.ts"

/**
 * The property every `SharedStage` carries, which {@link isSharedStage} looks for.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), { resource: null, buffer: null })
 *   return SharedStage.TypeId in stage
 * }))
 *
 * Effect.runPromise(program).then(console.log) // true
 * ```
 *
 * @category type ids
 * @since 0.1.0
 */
export const TypeId: "~@quiesce/stage/SharedStage" = internal.TypeId as "~@quiesce/stage/SharedStage"

/**
 * The type of {@link TypeId}.
 *
 * @example
 * ```ts
 * import { SharedStage } from "@quiesce/stage"
 *
 * const id: SharedStage.TypeId = SharedStage.TypeId
 * console.log(id) // "~@quiesce/stage/SharedStage"
 * ```
 *
 * @category type ids
 * @since 0.1.0
 */
export type TypeId = "~@quiesce/stage/SharedStage"

/**
 * The shared memory of a stage: plain data, to be sent to workers.
 *
 * @example
 * ```ts
 * import { MessageChannel } from "node:worker_threads"
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const memory: SharedStage.Memory = SharedStage.makeMemory()
 * // Plain data: post it to a worker (here, to a port of this thread) and attach there.
 * const { port1, port2 } = new MessageChannel()
 * port2.once("message", (received: SharedStage.Memory) => {
 *   const program = Effect.scoped(Effect.gen(function*() {
 *     const stage = yield* SharedStage.attach(received, { resource: null, buffer: null })
 *     return SharedStage.isSharedStage(stage)
 *   }))
 *   Effect.runPromise(program).then((attached) => {
 *     console.log(attached) // true
 *     port1.close()
 *   })
 * })
 * port1.postMessage(memory)
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Memory {
  readonly _tag: "SharedStageMemory"
  readonly buffer: SharedArrayBuffer
}

/**
 * Options of {@link makeMemory}: the sizes of the shared memory, fixed when it is made.
 *
 * @example
 * ```ts
 * import { SharedStage } from "@quiesce/stage"
 *
 * // Four workers with up to 64 tickets between them, presumed dead after 5 s without a heartbeat.
 * const options: SharedStage.MemoryOptions = { capacity: 64, maxWorkers: 4, leaseMillis: 5000 }
 * const memory = SharedStage.makeMemory(options)
 * console.log(memory.buffer.byteLength > 0) // true
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface MemoryOptions {
  /** Tickets held at once across all workers (default 1024). */
  readonly capacity?: number | undefined
  /** Workers attached at once (default 16). */
  readonly maxWorkers?: number | undefined
  /** Longest canonical token encoding, in bytes (default 64). */
  readonly maxTokenBytes?: number | undefined
  /** Size of each worker's inbox, rounded up to a power of two (default 256 KiB). */
  readonly inboxBytes?: number | undefined
  /** How long a worker may go without a heartbeat before it is presumed dead (default 2000 ms). */
  readonly leaseMillis?: number | undefined
}

/**
 * How events travel to the worker holding their token.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * // Events are strings, encoded as UTF-8 on their way to the worker holding their token.
 * const encoder = new TextEncoder()
 * const decoder = new TextDecoder()
 * const events: SharedStage.Events<number, Map<number, string>, string> = {
 *   encode: (event) => encoder.encode(event),
 *   decode: (bytes) => decoder.decode(bytes),
 *   offer: (buffer, token, event) => void buffer.set(token, event)
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), { resource: null, buffer: new Map(), events })
 *   yield* SharedStage.ticket(stage, 1)
 *   const holder = yield* SharedStage.ticket(stage, 2)
 *   return yield* SharedStage.enter(stage, holder, {
 *     // Delivered to the holder of token 1 (this worker here), filed by `offer`.
 *     head: (director) => Effect.map(director.deliver(1, "for one"), () => stage.buffer.get(1))
 *   })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "for one" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Events<in out T, in out B, in out E> {
  readonly encode: (event: E) => Uint8Array
  readonly decode: (bytes: Uint8Array) => E
  /** Files a delivered event into this worker's buffer (runs before the waiter wakes). */
  readonly offer: (buffer: B, token: T, event: E) => void
}

/**
 * Options of {@link attach} and {@link layer}: this worker's resource handle, its buffer, and the codec of delivered events.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const encoder = new TextEncoder()
 * const decoder = new TextDecoder()
 * const options: SharedStage.AttachOptions<null, number, Map<number, string>, string> = {
 *   resource: null,
 *   buffer: new Map(),
 *   events: {
 *     encode: (event) => encoder.encode(event),
 *     decode: (bytes) => decoder.decode(bytes),
 *     offer: (buffer, token, event) => void buffer.set(token, event)
 *   }
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), options)
 *   return stage.buffer.size
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 0
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface AttachOptions<R, T, B, E> {
  /** This worker's handle on the resource (what it polls when it heads, and the backdoor). */
  readonly resource: R
  /** This worker's buffer. */
  readonly buffer: B
  /** Needed for `director.deliver`. */
  readonly events?: Events<T, B, E> | undefined
}

/**
 * One worker's attachment to a shared stage.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * // A worker's attachment, typed by its resource, tokens, buffer and events.
 * type Replies = SharedStage.SharedStage<Array<number>, number, Map<number, string>, string>
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage: Replies = yield* SharedStage.attach<Array<number>, number, Map<number, string>, string>(SharedStage.makeMemory(), {
 *     resource: [1, 2, 3],
 *     buffer: new Map()
 *   })
 *   return stage.resource.length
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 3
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface SharedStage<out R, in out T, out B, in out E = never> extends Pipeable {
  readonly [TypeId]: TypeId
  readonly resource: R
  readonly buffer: B
  /** @internal */
  readonly events: Events<T, any, E> | undefined
}

/**
 * A token registered across all workers. Valid until the scope it was taken in closes.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach<null, string, null>(SharedStage.makeMemory(), { resource: null, buffer: null })
 *   const ticket: SharedStage.Ticket<string> = yield* SharedStage.ticket(stage, "job-1")
 *   return ticket.token
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "job-1"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Ticket<out T> extends Pipeable {
  readonly token: T
}

/**
 * What the head is given.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * type Jobs = Array<number>
 * const encoder = new TextEncoder()
 * const decoder = new TextDecoder()
 *
 * // The head's work: one job from the shared queue, its result to whichever worker waits for it.
 * const step = (director: SharedStage.Director<Jobs, number, Map<number, string>, string>) =>
 *   Effect.flatMap(Effect.sync(() => director.resource.shift()!), (job) => director.deliver(job, `result ${job}`))
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach<Jobs, number, Map<number, string>, string>(SharedStage.makeMemory(), {
 *     resource: [7],
 *     buffer: new Map<number, string>(),
 *     events: {
 *       encode: (event) => encoder.encode(event),
 *       decode: (bytes) => decoder.decode(bytes),
 *       offer: (buffer, token, event) => void buffer.set(token, event)
 *     }
 *   })
 *   return yield* SharedStage.receive(stage, { token: 7, take: (buffer, job) => buffer.get(job), poll: step })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "result 7"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Director<out R, in out T, out B, in out E> {
  readonly token: T
  readonly resource: R
  readonly buffer: B
  /**
   * Wakes the holder of `token`, in any worker (see `Stage.Director.notify`).
   * If the holder's inbox is full this waits for room; it fails with
   * `WorkerDeadError` (after reaping it) if the holder's worker has died,
   * so the wait is bounded by the lease.
   */
  readonly notify: (token: T) => Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError>
  /**
   * Sends `event` to the worker holding `token`, files it in that worker's
   * buffer, and notifies the token; `false` when nobody holds the token. Waits
   * for room like `notify` (`WorkerDeadError` if the holder died); an event
   * longer than an inbox can ever take fails with `StageCapacityError`
   * (`"inbox"`).
   */
  readonly deliver: (token: T, event: E) => Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError | StageCapacityError>
}

/**
 * Whether `u` is a `SharedStage` (a worker's attachment).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), { resource: null, buffer: null })
 *   return [SharedStage.isSharedStage(stage), SharedStage.isSharedStage({ resource: null })]
 * }))
 *
 * Effect.runPromise(program).then(console.log) // [true, false]
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isSharedStage = (u: unknown): u is SharedStage<unknown, unknown, unknown, unknown> => hasProperty(u, TypeId)

/**
 * Allocates and initializes the shared memory of a stage.
 *
 * @example
 * ```ts
 * import { SharedStage } from "@quiesce/stage"
 *
 * // Made once, in the main thread; given to each worker with `workerData` or `postMessage`.
 * const memory = SharedStage.makeMemory({ capacity: 256, maxWorkers: 8 })
 * console.log(memory._tag, memory.buffer instanceof SharedArrayBuffer) // "SharedStageMemory" true
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeMemory: (options?: MemoryOptions) => Memory = internal.makeMemory

/**
 * Attaches this worker to a shared stage. Closing the scope detaches it: its
 * parked enters are interrupted and its tickets withdrawn. A head running in
 * this worker is interrupted and keeps headship until it has left; the
 * worker stays attached (heartbeating) until then, and headship passes on
 * when it leaves.
 *
 * The runnable version (several fibers per worker, two workers) is
 * `examples/shared.ts` with `examples/sharedWorker.ts`, run by
 * `test/examples.test.ts`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * // In each worker: `SharedStage.attach(workerData.memory, ...)`, with its own buffer.
 * const memory = SharedStage.makeMemory({ capacity: 64, maxWorkers: 4 })
 * const encoder = new TextEncoder()
 * const decoder = new TextDecoder()
 *
 * const worker = (requests: Array<number>) =>
 *   Effect.scoped(Effect.gen(function*() {
 *     const stage = yield* SharedStage.attach<Array<number>, number, Map<number, string>, string>(memory, {
 *       resource: requests, // this worker's handle on what the head polls
 *       buffer: new Map(), // this worker's own buffer
 *       events: {
 *         encode: (answer) => encoder.encode(answer),
 *         decode: (bytes) => decoder.decode(bytes),
 *         offer: (buffer, token, answer) => void buffer.set(token, answer)
 *       }
 *     })
 *     const token = 1000
 *     return yield* SharedStage.receive(stage, {
 *       token,
 *       // The answer cannot arrive before the ticket is held: send the request only then.
 *       onTicket: Effect.sync(() => requests.push(token)),
 *       // The head's work: one request, its answer to whichever worker waits for it.
 *       poll: (director) => Effect.flatMap(Effect.sync(() => director.resource.shift()!), (id) => director.deliver(id, `answer to ${id}`)),
 *       take: (buffer, token) => {
 *         const answer = buffer.get(token)
 *         buffer.delete(token)
 *         return answer
 *       },
 *       timeout: "10 seconds"
 *     })
 *   }))
 *
 * Effect.runPromise(worker([])).then(console.log) // "answer to 1000"
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const attach: <R, T, B, E = never>(
  memory: Memory,
  options: AttachOptions<R, T, B, E>
) => Effect.Effect<SharedStage<R, T, B, E>, StageCapacityError, Scope.Scope> = internal.attach

/**
 * A layer attaching this worker to a shared stage as the service `tag`,
 * detached with the layer's scope.
 *
 * @example
 * ```ts
 * import { Context, Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const memory = SharedStage.makeMemory()
 *
 * class Jobs extends Context.Service<Jobs, SharedStage.SharedStage<Array<string>, string, Map<string, string>>>()("app/Jobs") {
 *   static readonly layer = SharedStage.layer(Jobs, memory, Effect.sync(() => ({ resource: ["job"], buffer: new Map() })))
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const jobs = yield* Jobs
 *   const ticket = yield* SharedStage.ticket(jobs, "me")
 *   return yield* SharedStage.enter(jobs, ticket, { head: (director) => Effect.sync(() => director.resource.pop()) })
 * }))
 *
 * Effect.runPromise(program.pipe(Effect.provide(Jobs.layer))).then(console.log) // { _tag: "Finished", value: "job" }
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <I, R, T, B, E = never, EO = never, RO = never>(
  tag: Context.Key<I, SharedStage<R, T, B, E>>,
  memory: Memory,
  options: AttachOptions<R, T, B, E> | Effect.Effect<AttachOptions<R, T, B, E>, EO, RO>
): Layer.Layer<I, StageCapacityError | EO, RO> =>
  Layer.effect(
    tag,
    Effect.isEffect(options)
      ? Effect.flatMap(options, (o) => internal.attach<R, T, B, E>(memory, o))
      : internal.attach<R, T, B, E>(memory, options)
  )

/**
 * Registers `token` across all workers (see `Stage.ticket`: the same
 * withdrawal semantics, a running head interrupted and keeping headship until
 * it has left).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), { resource: null, buffer: null })
 *   yield* SharedStage.ticket(stage, ["user", 42])
 *   // Tokens must have a canonical encoding to cross threads: a function has none.
 *   return yield* SharedStage.ticket(stage, () => 42).pipe(
 *     Effect.catchTag("TokenEncodingError", (error) => Effect.succeed(error._tag))
 *   )
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "TokenEncodingError"
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const ticket: {
  <T>(
    token: T
  ): <R, B, E>(
    self: SharedStage<R, T, B, E>
  ) => Effect.Effect<Ticket<T>, TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError, Scope.Scope>
  <R, T, B, E>(
    self: SharedStage<R, T, B, E>,
    token: T
  ): Effect.Effect<Ticket<T>, TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError, Scope.Scope>
} = dual(2, internal.ticket)

/**
 * Options of {@link enter}: what to do as head, and how long to wait.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const options: SharedStage.EnterOptions<Array<string>, string, null, never, string | undefined, never, never> = {
 *   head: (director) => Effect.sync(() => director.resource.shift()),
 *   timeout: "1 second"
 * }
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach<Array<string>, string, null>(SharedStage.makeMemory(), {
 *     resource: ["first"],
 *     buffer: null
 *   })
 *   const ticket = yield* SharedStage.ticket(stage, "reader")
 *   return yield* SharedStage.enter(stage, ticket, options)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "first" }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface EnterOptions<R, T, B, E, A, EH, RH> {
  readonly head: (director: Director<R, T, B, E>) => Effect.Effect<A, EH, RH>
  readonly timeout?: Duration.Input | undefined
}

/**
 * Enters the shared stage (see `Stage.enter`; the same outcomes and guarantees,
 * across workers).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const stage = yield* SharedStage.attach(SharedStage.makeMemory(), { resource: ["datagram"], buffer: null })
 *   const ticket = yield* SharedStage.ticket(stage, "reader")
 *   // No head in any worker: this fiber heads, reads, and leaves (headship passes on).
 *   return yield* SharedStage.enter(stage, ticket, {
 *     head: (director) => Effect.sync(() => director.resource.pop()),
 *     timeout: "1 second"
 *   })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Finished", value: "datagram" }
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const enter: {
  <R, T, B, E, A, EH, RH>(
    ticket: Ticket<T>,
    options: EnterOptions<R, T, B, E, A, EH, RH>
  ): (self: SharedStage<R, T, B, E>) => Effect.Effect<Stage.StageExit<A>, EH, RH>
  <R, T, B, E, A, EH, RH>(
    self: SharedStage<R, T, B, E>,
    ticket: Ticket<T>,
    options: EnterOptions<R, T, B, E, A, EH, RH>
  ): Effect.Effect<Stage.StageExit<A>, EH, RH>
} = dual(3, internal.enter)

/**
 * Options of {@link receive}: the token, how to take its event, the head's polling step, and `onTicket` to send the request.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage, StageError } from "@quiesce/stage"
 *
 * type Requests = Array<number>
 * type NotifyError = StageError.WorkerDeadError | StageError.WorkerEvictedError
 * const options = (
 *   requests: Requests,
 *   id: number
 * ): SharedStage.ReceiveOptions<Requests, number, Set<number>, never, number, NotifyError, never> => ({
 *   token: id,
 *   onTicket: Effect.sync(() => requests.push(id)),
 *   // The head completes one request: marks it done in its buffer and wakes its holder.
 *   poll: (director) => {
 *     const request = director.resource.shift()!
 *     director.buffer.add(request)
 *     return Effect.asVoid(director.notify(request))
 *   },
 *   take: (done, id) => (done.has(id) ? id : undefined)
 * })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const requests: Requests = []
 *   const done = new Set<number>()
 *   const stage = yield* SharedStage.attach<Requests, number, Set<number>>(SharedStage.makeMemory(), {
 *     resource: requests,
 *     buffer: done
 *   })
 *   return yield* SharedStage.receive(stage, options(requests, 5))
 * }))
 *
 * Effect.runPromise(program).then(console.log) // 5
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ReceiveOptions<R, T, B, E, A, EP, RP> {
  readonly token: T
  readonly take: (buffer: B, token: T) => A | undefined
  readonly poll: (director: Director<R, T, B, E>) => Effect.Effect<void, EP, RP>
  /** Runs once the ticket is registered, before waiting: send the request here, so its reply cannot arrive unclaimed. */
  readonly onTicket?: Effect.Effect<void, EP, RP> | undefined
  readonly timeout?: Duration.Input | undefined
}

/**
 * The whole loop in one call, across workers (see `Stage.receive`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedStage } from "@quiesce/stage"
 *
 * const encoder = new TextEncoder()
 * const decoder = new TextDecoder()
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const requests: Array<string> = []
 *   const stage = yield* SharedStage.attach<Array<string>, string, Map<string, string>, string>(SharedStage.makeMemory(), {
 *     resource: requests,
 *     buffer: new Map<string, string>(),
 *     events: {
 *       encode: (event) => encoder.encode(event),
 *       decode: (bytes) => decoder.decode(bytes),
 *       offer: (buffer, token, event) => void buffer.set(token, event)
 *     }
 *   })
 *   return yield* SharedStage.receive(stage, {
 *     token: "ping",
 *     onTicket: Effect.sync(() => requests.push("ping")),
 *     poll: (director) => Effect.asVoid(director.deliver(director.resource.shift()!, "pong")),
 *     take: (buffer, token) => buffer.get(token),
 *     timeout: "1 second"
 *   })
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "pong"
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const receive: {
  <R, T, B, E, A, EP, RP>(
    options: ReceiveOptions<R, T, B, E, A, EP, RP>
  ): (
    self: SharedStage<R, T, B, E>
  ) => Effect.Effect<A, EP | TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError | ReceiveTimeoutError, RP>
  <R, T, B, E, A, EP, RP>(
    self: SharedStage<R, T, B, E>,
    options: ReceiveOptions<R, T, B, E, A, EP, RP>
  ): Effect.Effect<A, EP | TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError | ReceiveTimeoutError, RP>
} = dual(2, internal.receive)
