/**
 * Run-down protection (NT kernel `EX_RUNDOWN_REF`, Rust crate `run-down`) for Effect.
 *
 * Many fibers — or worker threads, with {@link makeShared} — acquire protection on a resource
 * while one party runs it down: from the moment {@link waitForRundown} starts, no acquisition
 * succeeds, and it returns once every outstanding protection has been released. The resource
 * can then be destroyed, or re-initialised with {@link reInit}.
 *
 * Guarantees, under any interleaving of fibers and threads:
 * - once a rundown has begun, every acquisition (`protect`, `acquire`, `acquireN`,
 *   `tryAcquire`) fails with `RundownInProgressError` and does not run or hold anything;
 * - `waitForRundown` returns only when the count is zero, at once if the rundown has already
 *   completed, and to every one of any number of concurrent callers;
 * - interrupting or timing out a waiter does not undo the rundown;
 * - a protection is released exactly once: on success, failure, defect and interruption of a
 *   protected effect, when an `acquire` scope closes, and by the first `release` of a guard;
 * - the count never underflows, and never exceeds `MAX_COUNT`;
 * - for a shared ref, a thread that dies holding references (terminated, crashed, exited)
 *   holds a rundown for at most 1.5 × the lease: its references are dropped (see
 *   {@link makeShared}); a thread blocked for longer than the lease can lose its references
 *   the same way, and is told when it releases them (`RundownLeaseError`).
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type * as Metric from "effect/Metric"
import type { Inspectable } from "effect/Inspectable"
import type { Pipeable } from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/rundownRef.ts"
import type {
  RundownCountError,
  RundownHandleError,
  RundownInProgressError,
  RundownNotCompleteError
} from "./RundownError.ts"

/**
 * The property every `RundownRef` carries, which {@link isRundownRef} looks for.
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * console.log(RundownRef.TypeId in ref) // true
 * ```
 *
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: "~@quiesce/rundown/RundownRef" = internal.TypeId

/**
 * The type of {@link TypeId}.
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const id: RundownRef.TypeId = RundownRef.TypeId
 * console.log(id) // "~@quiesce/rundown/RundownRef"
 * ```
 *
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * A run-down reference: a count of outstanding protections plus a "running down" flag, kept
 * in one word.
 *
 * @example
 * ```ts
 * import { Context, Effect, Layer } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * // The ref guarding a connection pool, held by the service that owns the pool.
 * class PoolGuard extends Context.Service<PoolGuard, RundownRef.RundownRef>()("app/PoolGuard") {
 *   static readonly layer = Layer.effect(PoolGuard, RundownRef.make)
 * }
 *
 * const query = Effect.gen(function*() {
 *   const guard = yield* PoolGuard
 *   return yield* RundownRef.protect(guard, Effect.succeed("3 rows"))
 * })
 *
 * Effect.runPromise(query.pipe(Effect.provide(PoolGuard.layer))).then(console.log) // "3 rows"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RundownRef extends Pipeable, Inspectable {
  readonly [TypeId]: TypeId
}

/**
 * A ref whose state lives in a `SharedArrayBuffer`. Post its `handle` to a worker thread and
 * rebuild the ref there with {@link fromShared}: every operation then acts on the same state
 * from every thread.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref: RundownRef.SharedRundownRef = yield* RundownRef.makeShared()
 *   // In a worker: `new Worker(file, { workerData: ref.handle })`, rebuilt there with fromShared.
 *   const view = yield* RundownRef.fromShared(structuredClone(ref.handle))
 *   yield* RundownRef.protect(view, Effect.log("working in the other view"))
 *   return yield* RundownRef.state(ref)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Active", count: 0 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedRundownRef extends RundownRef {
  readonly handle: SharedHandle
}

/**
 * A structured-cloneable description of a shared ref, for `postMessage`/`workerData`.
 *
 * @example
 * ```ts
 * import { MessageChannel } from "node:worker_threads"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeSharedUnsafe()
 * const { port1, port2 } = new MessageChannel()
 * // What a worker thread does with the handle it receives (postMessage or workerData).
 * port2.once("message", (handle: RundownRef.SharedHandle) => {
 *   const view = RundownRef.fromSharedUnsafe(handle)
 *   console.log(RundownRef.stateUnsafe(view)) // { _tag: "Active", count: 0 }
 *   port1.close()
 * })
 * port1.postMessage(ref.handle)
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedHandle {
  readonly _tag: "~@quiesce/rundown/SharedHandle"
  readonly version: number
  readonly buffer: SharedArrayBuffer
}

/**
 * The state of a ref, for diagnostics. By the time it is looked at it may have changed,
 * except `RunDown`, which only {@link reInit} leaves. A shared ref's count is the sum of its
 * threads' counts: it can briefly include an acquisition that is about to be refused, and
 * show `RunningDown` with `count: 0` while the thread that released the last reference
 * completes the rundown (or, if that thread died, until a waiter's next check).
 *
 * - `Active`: acquisitions succeed; `count` are held.
 * - `RunningDown`: a rundown has begun; acquisitions fail; `count` are still held.
 * - `RunDown`: the rundown has completed (the count reached zero).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const describe = (state: RundownRef.RundownState): string => {
 *   switch (state._tag) {
 *     case "Active":
 *       return `serving, ${state.count} in flight`
 *     case "RunningDown":
 *       return `draining, ${state.count} left`
 *     case "RunDown":
 *       return "closed"
 *   }
 * }
 *
 * const ref = RundownRef.makeUnsafe()
 * console.log(describe(RundownRef.stateUnsafe(ref))) // "serving, 0 in flight"
 * Effect.runSync(RundownRef.waitForRundown(ref))
 * console.log(describe(RundownRef.stateUnsafe(ref))) // "closed"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type RundownState =
  | { readonly _tag: "Active"; readonly count: number }
  | { readonly _tag: "RunningDown"; readonly count: number }
  | { readonly _tag: "RunDown" }

/**
 * The guard returned by {@link tryAcquire}, the crate's RAII style. `release` (or
 * `[Symbol.dispose]`, for `using`) gives the reference back the first time and does nothing
 * afterwards, so a double release can never take away another holder's reference.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const program = Effect.gen(function*() {
 *   {
 *     // `using` releases the guard when the block ends, however it ends.
 *     using guard = yield* RundownRef.tryAcquire(ref)
 *     console.log(RundownRef.stateUnsafe(ref)) // { _tag: "Active", count: 1 }
 *     console.log(guard.releaseUnsafe()) // true
 *     console.log(guard.releaseUnsafe()) // false: already released
 *   }
 *   return RundownRef.stateUnsafe(ref)
 * })
 *
 * console.log(Effect.runSync(program)) // { _tag: "Active", count: 0 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RundownGuard {
  readonly "~@quiesce/rundown/RundownGuard": "~@quiesce/rundown/RundownGuard"
  /** Releases the reference; idempotent. */
  readonly release: Effect.Effect<void>
  /** Releases the reference synchronously; returns `false` if it was already released. */
  releaseUnsafe(): boolean
  [Symbol.dispose](): void
}

/**
 * Optional Effect metrics. A ref made without them does not look at metrics on its hot path.
 *
 * - `active`: set to the outstanding count after every acquisition and release (a gauge).
 * - `rundownDuration`: the time from the start of a rundown to its completion (e.g.
 *   `Metric.timer("db_rundown")`), recorded once per rundown when it completes — whoever is
 *   waiting then, and also when the wait that began it timed out or was interrupted. It is
 *   measured with the clock, and recorded in the context, of the fiber that began the rundown
 *   (so `TestClock` applies). For a shared ref, the view that began the rundown records it, as
 *   soon as its thread sees the completion.
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const metrics: RundownRef.RundownMetrics = {
 *   active: Metric.gauge("db_active_queries"),
 *   rundownDuration: Metric.timer("db_rundown")
 * }
 * const program = Effect.gen(function*() {
 *   const ref = RundownRef.makeUnsafe({ metrics })
 *   yield* RundownRef.protect(ref, Effect.void)
 *   yield* RundownRef.waitForRundown(ref)
 *   return yield* Metric.value(Metric.timer("db_rundown"))
 * })
 *
 * Effect.runPromise(program).then((timer) => console.log(timer.count)) // 1
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface RundownMetrics {
  readonly active?: Metric.Metric<number, any> | undefined
  readonly rundownDuration?: Metric.Metric<Duration.Duration, any> | undefined
}

/**
 * Options of {@link makeWith}, {@link makeUnsafe} and {@link fromShared}.
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const options: RundownRef.Options = { metrics: { active: Metric.gauge("cache_users") } }
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref = yield* RundownRef.makeWith(options)
 *   yield* RundownRef.acquire(ref)
 *   return yield* Metric.value(Metric.gauge("cache_users"))
 * }))
 *
 * Effect.runPromise(program).then((gauge) => console.log(gauge.value)) // 1
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly metrics?: RundownMetrics | undefined
}

/**
 * Options of a shared ref, fixed when it is made (every thread's view reads them from the
 * shared buffer).
 *
 * - `leaseMillis` (default 2000, at least 10): a thread whose heartbeat (every quarter lease)
 *   has not moved for longer than this, as seen by another thread, is presumed dead, and the
 *   references it holds are dropped once a rundown waits for them. A dead thread's references
 *   hold a rundown for at most 1.5 × the lease after the later of its death and the start of
 *   the wait. A live thread whose event loop is blocked for longer than the lease can lose its
 *   references the same way (it is told when it releases them, with `RundownLeaseError`); one
 *   blocked for less than three quarters of the lease never does.
 * - `slots` (default 64, at most 4096): how many views — normally one per thread — can hold
 *   references at once. A view claims a slot at its first acquisition and keeps it until its
 *   thread ends (or the view is garbage-collected); the slot is then reclaimed a lease later
 *   if it held nothing, or by the next rundown if it still counts references.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * // Up to 8 threads, each presumed dead after 500 ms without a heartbeat.
 * const options: RundownRef.SharedOptions = { leaseMillis: 500, slots: 8 }
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref = yield* RundownRef.makeShared(options)
 *   return yield* RundownRef.protect(ref, Effect.succeed("done"))
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "done"
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedOptions extends Options {
  readonly leaseMillis?: number | undefined
  readonly slots?: number | undefined
}

/**
 * The largest number of references a ref can hold at once (2^29 − 1): the count shares a
 * 31-bit word with the two state bits. A shared ref counts each thread's references in that
 * thread's slot, so the limit applies per thread there.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const tooMany = Effect.scoped(RundownRef.acquireN(ref, RundownRef.MAX_COUNT + 1))
 *
 * Effect.runPromise(Effect.flip(tooMany)).then((error) => console.log(error.message))
 * // "acquireN(536870912) would overflow the reference count: 0 held, at most 536870911"
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const MAX_COUNT: number = internal.MAX_COUNT

/**
 * Whether `u` is a `RundownRef` (local or shared).
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * console.log(RundownRef.isRundownRef(RundownRef.makeUnsafe())) // true
 * console.log(RundownRef.isRundownRef({ count: 0 })) // false
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isRundownRef: (u: unknown) => u is RundownRef = internal.isRundownRef

/**
 * Whether `u` is a `SharedRundownRef`, whose `handle` can be sent to other threads.
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * console.log(RundownRef.isSharedRundownRef(RundownRef.makeSharedUnsafe())) // true
 * console.log(RundownRef.isSharedRundownRef(RundownRef.makeUnsafe())) // false
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isSharedRundownRef: (u: unknown) => u is SharedRundownRef = internal.isSharedRundownRef

/**
 * A Scope-managed ref: closing the scope runs it down (new acquisitions fail from then on)
 * and waits for the outstanding protections before the scope's earlier finalizers run.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref = yield* RundownRef.make
 *   return yield* RundownRef.protect(ref, Effect.succeed("used under protection"))
 * }))
 *
 * Effect.runPromise(program).then(console.log) // "used under protection"
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<RundownRef, never, Scope.Scope> = internal.make

/**
 * {@link make} with {@link Options} (metrics).
 *
 * @example
 * ```ts
 * import { Effect, Metric } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref = yield* RundownRef.makeWith({ metrics: { rundownDuration: Metric.timer("pool_rundown") } })
 *   yield* RundownRef.protect(ref, Effect.void)
 * }))
 *
 * Effect.runPromise(program).then(() => console.log("run down, duration recorded"))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith: (options: Options) => Effect.Effect<RundownRef, never, Scope.Scope> = internal.makeWith

/**
 * A ref whose rundown the caller owns: nothing runs it down unless {@link waitForRundown} is
 * called.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * // A module-level ref, run down explicitly at shutdown.
 * const ref = RundownRef.makeUnsafe()
 * const handler = RundownRef.protect(ref, Effect.succeed("200 OK"))
 *
 * const program = Effect.gen(function*() {
 *   console.log(yield* handler) // "200 OK"
 *   yield* RundownRef.waitForRundown(ref)
 *   console.log(yield* Effect.flip(handler)) // RundownInProgressError
 * })
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeUnsafe: (options?: Options) => RundownRef = internal.makeUnsafe

/**
 * A Scope-managed ref whose state lives in a `SharedArrayBuffer` (closing the scope runs it
 * down, waiting for the protections held in every thread). Give `ref.handle` to worker
 * threads; they rebuild the ref with {@link fromShared}.
 *
 * Each thread counts its references in a slot of its own and refreshes a heartbeat there (an
 * unref'd timer, every quarter of {@link SharedOptions} `leaseMillis`). When a thread dies
 * holding references — `worker.terminate()`, an uncaught exception, `process.exit` in the
 * worker — a waiting thread sees its heartbeat stop and, once the lease has passed, drops its
 * references, as the kernel undoes a dead process's `SEM_UNDO` semaphore operations: the
 * rundown completes at most 1.5 × the lease after the later of the death and the start of the
 * wait (plus however late the waiting thread's timers run). A thread whose event loop was
 * blocked for longer than the lease is treated the same way; when it resumes, releasing those
 * references fails with `RundownLeaseError` and changes no count, and the waiter logs a
 * warning. An acquisition that finds no free slot dies with `RundownSlotsError`.
 *
 * Waiting uses `Atomics.waitAsync`, so it never blocks an event loop; all the waiters of a
 * thread share one pending wait per ref, and while any of them waits the thread's event loop
 * is kept alive (by the timer of its lease checks). A release pays for an `Atomics.notify`
 * only when it completes a rundown.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const ref = yield* RundownRef.makeShared({ leaseMillis: 1000 })
 *   // Give `ref.handle` to a worker: `new Worker(file, { workerData: ref.handle })`; there,
 *   // `RundownRef.fromSharedUnsafe(workerData)` is a view of the same ref.
 *   const view = RundownRef.fromSharedUnsafe(structuredClone(ref.handle))
 *   yield* RundownRef.acquire(view)
 *   return yield* RundownRef.state(ref)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Active", count: 1 }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeShared: (options?: SharedOptions) => Effect.Effect<SharedRundownRef, never, Scope.Scope> =
  internal.makeShared

/**
 * {@link makeShared} without a scope: the caller owns the rundown. Throws a `RangeError` for
 * options out of range.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeSharedUnsafe({ slots: 4 })
 * const program = RundownRef.protect(ref, Effect.succeed("ok")).pipe(
 *   Effect.andThen(RundownRef.waitForRundown(ref)),
 *   Effect.andThen(RundownRef.state(ref))
 * )
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "RunDown" }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeSharedUnsafe: (options?: SharedOptions) => SharedRundownRef = internal.makeSharedUnsafe

/**
 * Rebuilds a shared ref from a handle received from another thread. The value is checked
 * (shape, buffer type and size, and that the shared word holds a valid state); anything else
 * fails with `RundownHandleError` and touches nothing.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeSharedUnsafe()
 * const program = Effect.gen(function*() {
 *   const view = yield* RundownRef.fromShared(structuredClone(ref.handle))
 *   console.log(yield* RundownRef.protect(view, Effect.succeed("through the view"))) // "through the view"
 *   const error = yield* Effect.flip(RundownRef.fromShared({ not: "a handle" }))
 *   console.log(error._tag) // "RundownHandleError"
 * })
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromShared: (
  handle: unknown,
  options?: Options
) => Effect.Effect<SharedRundownRef, RundownHandleError> = internal.fromShared

/**
 * {@link fromShared}, synchronously; throws `RundownHandleError` on a malformed handle.
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeSharedUnsafe()
 * // Typically `RundownRef.fromSharedUnsafe(workerData)` at the top of a worker's module.
 * const view = RundownRef.fromSharedUnsafe(structuredClone(ref.handle))
 * console.log(RundownRef.isSharedRundownRef(view)) // true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromSharedUnsafe: (handle: unknown, options?: Options) => SharedRundownRef = internal.fromSharedUnsafe

/**
 * Runs `effect` under protection: the reference is taken before `effect` starts and released
 * when it ends — on success, failure, defect or interruption. Once a rundown has begun it
 * fails with `RundownInProgressError` without running `effect`. The release is registered
 * before the acquisition, so no interruption mask is needed and `effect` keeps the caller's
 * interruptibility: interruption before the acquisition leaves nothing held, interruption after
 * it releases.
 *
 * This is the hot path: no Scope, no generator, no interruption mask; a refusal allocates
 * nothing.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const query = Effect.succeed([1, 2, 3]).pipe(RundownRef.protect(ref))
 *
 * const program = Effect.gen(function*() {
 *   console.log(yield* query) // [1, 2, 3]
 *   yield* RundownRef.waitForRundown(ref)
 *   // Once the rundown has begun the query does not run.
 *   const refused = yield* query.pipe(Effect.catchTag("RundownInProgressError", () => Effect.succeed("503")))
 *   console.log(refused) // "503"
 * })
 * Effect.runPromise(program)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const protect: {
  (self: RundownRef): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | RundownInProgressError, R>
  <A, E, R>(self: RundownRef, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | RundownInProgressError, R>
} = function(this: unknown) {
  if (arguments.length === 1) {
    const self = arguments[0] as RundownRef
    return <A, E, R>(effect: Effect.Effect<A, E, R>) => internal.protect(self, effect)
  }
  return internal.protect(arguments[0], arguments[1])
} as any

/**
 * Takes one reference for the lifetime of the current scope. Fails with
 * `RundownInProgressError` once a rundown has begun. The acquisition and the registration of
 * its release in the scope are one uninterruptible step; if the scope is already closed the
 * reference is released at once.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * // Protection for a whole scoped section, e.g. a stream consumer's lifetime.
 * const consumer = Effect.scoped(Effect.gen(function*() {
 *   yield* RundownRef.acquire(ref)
 *   console.log(yield* RundownRef.state(ref)) // { _tag: "Active", count: 1 }
 * }))
 *
 * Effect.runPromise(consumer.pipe(Effect.andThen(RundownRef.state(ref)))).then(console.log)
 * // { _tag: "Active", count: 0 }: released when the scope closed
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const acquire: (self: RundownRef) => Effect.Effect<void, RundownInProgressError, Scope.Scope> =
  internal.acquire

/**
 * Takes `n` references at once (NT `ExAcquireRundownProtectionEx`) for the lifetime of the
 * current scope; all or nothing. Fails with `RundownCountError` if `n` is not a positive safe
 * integer or if the count would exceed {@link MAX_COUNT}, leaving the ref unchanged.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * // One reference per request of a batch, all or nothing.
 * const batch = Effect.scoped(Effect.gen(function*() {
 *   yield* RundownRef.acquireN(ref, 3)
 *   return yield* RundownRef.state(ref)
 * }))
 *
 * Effect.runPromise(batch).then(console.log) // { _tag: "Active", count: 3 }
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const acquireN: {
  (n: number): (self: RundownRef) => Effect.Effect<void, RundownInProgressError | RundownCountError, Scope.Scope>
  (self: RundownRef, n: number): Effect.Effect<void, RundownInProgressError | RundownCountError, Scope.Scope>
} = dual(2, internal.acquireN)

/**
 * Takes one reference and returns a guard that releases it (the crate's `try_acquire`). The
 * caller must release the guard; prefer {@link protect} or {@link acquire}, which cannot leak
 * a reference when interrupted.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const program = Effect.gen(function*() {
 *   const guard = yield* RundownRef.tryAcquire(ref)
 *   // ... hand the guard to a callback API, which releases it when done
 *   setTimeout(() => guard.releaseUnsafe(), 10)
 *   yield* RundownRef.waitForRundown(ref) // returns once the callback released it
 *   yield* guard.release // a no-op: never releases someone else's reference
 *   return yield* RundownRef.state(ref)
 * })
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "RunDown" }
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const tryAcquire: (self: RundownRef) => Effect.Effect<RundownGuard, RundownInProgressError> =
  internal.tryAcquire

/**
 * Begins the rundown (if it has not begun) and waits until every outstanding reference has
 * been released. Idempotent: once the rundown has completed it returns at once. Any number of
 * fibers (and threads, for a shared ref) may call it concurrently; all of them return when
 * the count reaches zero. Interrupting a caller (for example with `Effect.timeout`) stops its
 * wait but never undoes the rundown.
 *
 * With a shared ref, if another thread completes this rundown, re-initialises the ref and
 * begins a new rundown within the few instructions between this call's start of the rundown
 * and its first look at the state, the call also waits for that new rundown: it can return
 * late in that race, never early.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const destroyResource = Effect.sync(() => console.log("pool closed"))
 *
 * const program = Effect.gen(function*() {
 *   // A request in flight.
 *   yield* Effect.forkChild(RundownRef.protect(ref, Effect.sleep("20 millis")))
 *   yield* Effect.yieldNow
 *   // Refuse new users, give the current ones 30 seconds, then tear down either way.
 *   yield* RundownRef.waitForRundown(ref).pipe(
 *     Effect.timeoutOption("30 seconds"),
 *     Effect.andThen(destroyResource)
 *   )
 * })
 * Effect.runPromise(program) // "pool closed", after about 20 ms
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const waitForRundown: (self: RundownRef) => Effect.Effect<void> = internal.waitForRundown

/**
 * Makes a completed rundown usable again: acquisitions succeed from then on. Fails with
 * `RundownNotCompleteError` (and changes nothing) if the ref is active or references are
 * still outstanding.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const reload = Effect.sync(() => console.log("configuration reloaded"))
 * // Swap the resource out from under its users, then let them back in.
 * const restart = RundownRef.waitForRundown(ref).pipe(
 *   Effect.andThen(reload),
 *   Effect.andThen(RundownRef.reInit(ref))
 * )
 *
 * Effect.runPromise(restart.pipe(Effect.andThen(RundownRef.state(ref)))).then(console.log)
 * // { _tag: "Active", count: 0 }
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const reInit: (self: RundownRef) => Effect.Effect<void, RundownNotCompleteError> = internal.reInit

/**
 * The current state, for diagnostics.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* RundownRef.acquire(ref)
 *   return yield* RundownRef.state(ref)
 * }))
 *
 * Effect.runPromise(program).then(console.log) // { _tag: "Active", count: 1 }
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const state: (self: RundownRef) => Effect.Effect<RundownState> = internal.state

/**
 * {@link state}, synchronously.
 *
 * @example
 * ```ts
 * import { RundownRef } from "@quiesce/rundown"
 *
 * const ref = RundownRef.makeUnsafe()
 * // e.g. in a health endpoint written as a plain function
 * console.log(RundownRef.stateUnsafe(ref)) // { _tag: "Active", count: 0 }
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const stateUnsafe: (self: RundownRef) => RundownState = internal.stateUnsafe
