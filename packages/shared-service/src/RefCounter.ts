/**
 * The kernel side of `SharedService`: a per-name, cross-process reference count whose entries
 * the operating system drops when a process dies, a crash-safe startup lock, a ring that tells
 * the supervisor a client registered, and the owner lock held by the live generation's
 * supervisor.
 *
 * | implementation | where | count | crash safety |
 * |---|---|---|---|
 * | `sysV` (default on Linux) | System V semaphores with `SEM_UNDO`, set mode 0600, keyed by (uid, runtime directory, name) | exact number of processes | the kernel undoes a dead process's lock and reference, and closes its owner lock |
 * | `flock` | `flock(2)` on files in the runtime directory | only "any clients left" (0 or 1) | the kernel drops a dead process's locks |
 * | `memory` | one JS object | exact, for simulated processes | only simulated (`MemoryKernel.crash`) |
 *
 * macOS and other POSIX systems: `flock` (not wired as a default: `RefCounter.flock` must be
 * chosen explicitly, and it needs libc to be loadable through koffi, which this package only
 * does on Linux today, so elsewhere it fails with `UnsupportedPlatform`). Windows: nothing is
 * implemented; every operation fails with `UnsupportedPlatform`.
 *
 * Every wait is bounded: the SysV implementation waits in `semtimedop` slices of at most
 * 50 ms on the libuv pool (one pool thread per waiting process and name, never the event loop),
 * and is interruptible between slices.
 *
 * @since 0.1.0
 */
import type { Deferred, Duration, Effect, Layer, Redacted, Scope } from "effect"
import { Context, Effect as Effect_, Layer as Layer_ } from "effect"
import type { PgClient } from "@effect/sql-pg/PgClient"
import * as flockImpl from "./internal/flock.ts"
import type * as hintImpl from "./internal/hint.ts"
import * as memoryImpl from "./internal/memory.ts"
import * as sysvImpl from "./internal/sysv.ts"
import type { InvalidName, LockTimeout, SessionLost, SystemError } from "./SharedServiceError.ts"

/**
 * The owner lock of a name (see `PROTOCOL.md`): held by the supervisor of the live generation.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const counter = yield* RefCounter.memoryKernel().process().open("docs-owner")
 *   // What `inspect` looks at: is a supervisor holding this name's owner lock?
 *   const before = yield* counter.owner.held
 *   const owned = yield* counter.owner.take
 *   const after = yield* counter.owner.held
 *   yield* owned!.release
 *   return [before, after]
 * })
 *
 * Effect.runPromise(program).then(console.log) // [false, true]
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Owner {
  /** Takes it if nobody holds it (never waits); `undefined` when a live owner holds it. */
  readonly take: Effect.Effect<Owned | undefined, SystemError>
  /**
   * Waits up to `millis` for it to be free and takes it; `undefined` when it stayed held.
   * Interruptible only while nothing is held (as `Counter.lock`), even in an uninterruptible region.
   */
  readonly awaitFree: (millis: number) => Effect.Effect<Owned | undefined, SystemError>
  /** Whether someone holds it, observed without taking it (inspection). */
  readonly held: Effect.Effect<boolean>
  /** The pid the current owner stamped into the owner file, if any. */
  readonly stamp: Effect.Effect<number | undefined>
  /** Leaves a request for the current owner (which reads it between its waits): `retire`. */
  readonly request: (what: "retire") => Effect.Effect<void>
}

/**
 * The owner lock, held by this process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const counter = yield* RefCounter.memoryKernel().process().open("docs-owned")
 *   const owned = yield* counter.owner.take
 *   if (owned === undefined) return "a live supervisor holds it"
 *   // A supervisor stamps the lock with its pid, and checks between waits whether to retire.
 *   yield* owned.writeStamp(process.pid)
 *   const retire = yield* owned.retireRequested
 *   yield* owned.release
 *   return `stamped ${yield* counter.owner.stamp}, retire requested: ${retire}`
 * })
 *
 * Effect.runPromise(program).then(console.log) // "stamped <pid>, retire requested: false"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Owned {
  /** The descriptor a spawned supervisor inherits (kernel counters), `undefined` in memory. */
  readonly fd: number | undefined
  /** Empties the stamp, before a new owner writes its own. */
  readonly clearStamp: Effect.Effect<void>
  /** Writes `pid` as the stamp (an owner that supervises in-process stamps itself). */
  readonly writeStamp: (pid: number) => Effect.Effect<void>
  /** Lets the lock go (closes this process's descriptor). */
  readonly release: Effect.Effect<void>
  /** Removes the owner file, then lets the lock go. */
  readonly remove: Effect.Effect<void>
  /** Whether this process still holds it (a simulated crash, or a lost database session, takes it away). */
  readonly stillHeld: () => boolean
  /**
   * Whether this owner should retire: a `retire` request was left for it (`Owner.request`), or
   * its owner file is no longer at its path (deleted or replaced: the lock no longer keeps
   * another generation out, so this one ends itself).
   */
  readonly retireRequested: Effect.Effect<boolean>
  /**
   * Who holds it, as the generation record names its supervisor (a database counter: the
   * owner session's backend pid and start time). Absent: this process (pid and start time).
   */
  readonly identity?: { readonly pid: number; readonly startTime: number } | undefined
  /**
   * The counter an in-process supervisor holding this lock acts through (a database counter:
   * one bound to the owner's own session, so that its startup lock is not this process's
   * client session's). Absent: the counter it was taken from.
   */
  readonly counter?: Counter | undefined
  /** Requests sent to this owner through the counter (a database counter's retire and term). */
  readonly pending?: (() => ReadonlyArray<"Retire" | "Term">) | undefined
  /** Forgets the requests `pending` gave (they were served by a stop). */
  readonly clearPending?: (() => void) | undefined
  /**
   * Stamps the owner lock as this process's, so that clients can tell a supervisor (stamped)
   * from a standby that has just taken the lock and not yet adopted (unstamped: they yield).
   * Absent: `writeStamp` of the supervisor's pid.
   */
  readonly stampSelf?: Effect.Effect<void> | undefined
}

/**
 * One process's view of the kernel objects of one name. Obtained with `RefCounter.open`; the
 * same `Counter` object is returned for the same name within one `RefCounter`, and the process
 * holds at most one reference through it (callers keep their own in-process count above it).
 * The protocol these operations serve is in `PROTOCOL.md`.
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * // The client side of the protocol: lock, register (which unlocks), and drop the reference.
 * const program = Effect.gen(function*() {
 *   const counter = yield* kernel.process().open("docs-counter")
 *   yield* counter.lock(Duration.seconds(1))
 *   yield* counter.register
 *   const held = yield* counter.count
 *   yield* counter.decrement
 *   return [held, yield* counter.count]
 * })
 *
 * Effect.runPromise(program).then(console.log) // [1, 0]
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Counter extends View {
  readonly name: string
  /** The implementation (a spawned supervisor opens the same kind). */
  readonly kind: "sysv" | "flock" | "memory" | "postgres"
  /** `true` when `count` is the exact number of holding processes, `false` when it only says 0 or "some". */
  readonly exact: boolean
  /** The runtime directory (canonical path) of this name's files. */
  readonly dir: string
  /**
   * Takes the startup lock (waits up to `timeout`). Crash-safe: if this process dies holding
   * it, the kernel releases it. Interruptible only while nothing is held, so an interrupted
   * wait never leaves the lock taken and a successful one is always handed to the caller.
   */
  readonly lock: (timeout: Duration.Duration) => Effect.Effect<void, LockTimeout | SystemError>
  /** Takes the startup lock only if it is free now. */
  readonly tryLock: Effect.Effect<boolean, SystemError>
  /** Releases the startup lock (must be held). */
  readonly unlock: Effect.Effect<void, SystemError>
  /** Under the lock: registers this process's reference, rings, and unlocks, atomically. */
  readonly register: Effect.Effect<void, SystemError>
  /** Under the lock: registers this process's reference again (after a removed set) and unlocks. */
  readonly reregister: Effect.Effect<void, SystemError>
  /** Drops this process's reference without the lock (a release needs no decision). */
  readonly decrement: Effect.Effect<void, SystemError>
  /** The number of processes holding a reference (see `exact`). */
  readonly count: Effect.Effect<number, SystemError>
  /**
   * The sessions queued for the owner lock (a database counter's standbys), where the counter
   * can see them; absent where it cannot (the kernel's).
   */
  readonly standbys?: Effect.Effect<number, SystemError> | undefined
  /** Registrations since the supervisor last consumed them. */
  readonly rings: Effect.Effect<number, SystemError>
  /** Waits up to `millis` for the count to be 0: `true` when it is. */
  readonly awaitZero: (millis: number) => Effect.Effect<boolean, SystemError>
  /** Waits up to `millis` for a registration, consuming every pending one: `true` when there was one. */
  readonly awaitRing: (millis: number) => Effect.Effect<boolean, SystemError>
  /** Re-opens (re-creating) the kernel object after `SemaphoreSetRemoved`. */
  readonly reopen: Effect.Effect<void, SystemError>
  /** Removes the kernel object (`IPC_RMID`, or the lock files): every user gets `SemaphoreSetRemoved`. */
  readonly remove: Effect.Effect<void, SystemError>
  /**
   * Which incarnation of the kernel object this process has open (SysV: the set's id): a set
   * removed and re-created has another. A supervisor is told its starter's, so that a set
   * removed before it even booted is treated as removed, not as one nobody holds.
   */
  readonly instance: () => number
  /** The pid that last took the startup lock (the holder while it is held), when known. */
  readonly lockHolder: Effect.Effect<number | undefined>
  /** Makes this process's reference survive an `execve` (the flock counter's descriptor). */
  readonly prepareExec: Effect.Effect<void, SystemError>
  readonly owner: Owner
  /** The generation record (the hint) of this name. */
  readonly hints: HintStore
  /**
   * Sends a request to the owner identified by `pid` when it is not a local process (a
   * database counter: retire and term through the table, kill by terminating its session).
   * Absent: owners are local processes, signalled.
   */
  readonly signal?: ((pid: number, what: "retire" | "term" | "kill") => Effect.Effect<void>) | undefined
  /**
   * Completes when the reference this process registered is lost (a database counter whose
   * session ended). Absent, or `undefined` while no reference is held: it cannot be lost.
   */
  readonly referenceLost?: (() => Deferred.Deferred<SessionLost> | undefined) | undefined
}

/**
 * Where the record of a name's live generation is kept (its supervisor, its service, whether it
 * was seen ready): a file in the runtime directory for the kernel counters. Only ever written
 * under the startup lock, and only ever a hint: readers verify it against the owner lock.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const view = yield* RefCounter.memoryKernel().process().view("docs-hints")
 *   // Only ever a hint: verified against the owner lock by whoever reads it.
 *   const hint = yield* view.hints.read
 *   return hint === undefined ? `no generation recorded at ${view.hints.where}` : "a generation is recorded"
 * })
 *
 * Effect.runPromise(program).then(console.log) // "no generation recorded at <runtime dir>/docs-hints.json"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface HintStore extends hintImpl.Store {}

/**
 * A kernel (or database) that keeps each name's cross-process count, its startup and owner locks, its ring and its generation record: what `SharedService` acquires through. Provided as the `RefCounter` service.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * // Choose the implementation explicitly, e.g. the flock fallback on a host without SysV IPC.
 * const pick = (sysvAvailable: boolean): RefCounter.RefCounter => sysvAvailable ? RefCounter.sysV() : RefCounter.flock()
 *
 * const program = Effect.gen(function*() {
 *   const counter: RefCounter.RefCounter = yield* RefCounter.RefCounter
 *   return counter.kind
 * }).pipe(Effect.provideService(RefCounter.RefCounter, pick(true)))
 *
 * Effect.runPromise(program).then(console.log) // "sysv"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface RefCounter {
  readonly kind: "sysv" | "flock" | "memory" | "postgres" | "unsupported"
  /** Opens (creating if needed) the counter for `name` (validated: see `SharedService.validateName`). */
  readonly open: (name: string) => Effect.Effect<Counter, SystemError | InvalidName>
  /**
   * Looks at the counter for `name` only if it exists already (inspection must not create
   * sets). May be a fresh, uncached view: use it to read and remove, not to hold references.
   */
  readonly openExisting: (name: string) => Effect.Effect<Counter | undefined, SystemError | InvalidName>
  /** The owner lock and the hint of `name`, without opening (or creating) any kernel object. */
  readonly view: (name: string) => Effect.Effect<View, SystemError | InvalidName>
  /** The names that have a record (a database counter's table); absent: the runtime directory's hints. */
  readonly names?: Effect.Effect<ReadonlyArray<string>, SystemError> | undefined
}

/**
 * What can be looked at for a name without its kernel objects: the owner lock and the hint.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * // Look at a name without creating its kernel objects.
 * const program = Effect.gen(function*() {
 *   const view: RefCounter.View = yield* RefCounter.memoryKernel().process().view("docs-view")
 *   return yield* view.owner.held
 * })
 *
 * Effect.runPromise(program).then(console.log) // false
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface View {
  readonly dir: string
  readonly owner: Owner
  readonly hints: HintStore
}

/**
 * System V semaphores with `SEM_UNDO` (Linux). One set of three semaphores per (uid, runtime
 * directory, name): the startup lock, the count, and the ring. Created mode 0600 and never
 * `SETVAL`'d (a fresh Linux set starts at zero; `SETVAL` would wipe every process's undo records).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const counter = yield* RefCounter.sysV().open("docs-sysv")
 *   const seen = [counter.kind, counter.exact, yield* counter.count]
 *   yield* counter.remove // sets persist by design: remove one no longer needed
 *   return seen
 * })
 *
 * Effect.runPromise(program).then(console.log) // ["sysv", true, 0]
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const sysV: () => RefCounter = sysvImpl.make

/**
 * `flock(2)` fallback: every client holds a shared lock on `<runtime dir>/<name>.clients`, the
 * startup lock is an exclusive lock on `<name>.lock`, the ring is the size of `<name>.ring`. It
 * can tell "any clients left", not how many (`exact: false`), and its waits poll.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, SharedService } from "@quiesce/shared-service"
 *
 * // Services acquired in this program count their clients with flock(2) instead of SysV.
 * const program = Effect.gen(function*() {
 *   const counter = yield* RefCounter.flock().open("docs-flock")
 *   const seen = [counter.kind, counter.exact, counter.dir === SharedService.runtimeDirectory()]
 *   yield* counter.remove // its lock files
 *   return seen
 * })
 *
 * Effect.runPromise(program).then(console.log) // ["flock", false, true]
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const flock: () => RefCounter = flockImpl.make

/**
 * Options of `RefCounter.postgres`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const options: RefCounter.PostgresOptions = {
 *   url: "postgres://quiesce@127.0.0.1:1/quiesce",
 *   namespace: "ci",
 *   keepalive: { idle: "5 seconds", interval: "1 second", count: 3 },
 *   connectTimeout: "200 millis"
 * }
 * // Nothing listens on port 1: the first session cannot be opened.
 * const program = Effect.scoped(RefCounter.makePostgres(options)).pipe(
 *   Effect.catchTag("DatabaseUnreachable", (error) => Effect.succeed(error._tag))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "DatabaseUnreachable"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface PostgresOptions {
  /** A libpq URI, `postgres://user:password@host:port/database?sslmode=…`. */
  readonly url?: string | Redacted.Redacted | undefined
  /** An `@effect/sql-pg` client whose connection settings are reused (its pool is not: every reference is a session of its own). */
  readonly client?: PgClient | undefined
  /** Separates users of one database: keys derive from (namespace, name). Default: the database role's name. */
  readonly namespace?: string | undefined
  /**
   * The session keepalive (set per session: `tcp_keepalives_idle/interval/count`, and
   * `tcp_user_timeout` to their total). The server ends the session of a machine that vanished
   * within `idle + interval × count`, releasing its reference and locks; this process finds its
   * own session lost (a heartbeat every `idle`, answered within `interval × count`) within about
   * the same bound. Default 10 s, 2 s, 5: 20 s.
   */
  readonly keepalive?: {
    readonly idle?: Duration.Input | undefined
    readonly interval?: Duration.Input | undefined
    readonly count?: number | undefined
  } | undefined
  /** Bound on opening a session. Default 10 s. */
  readonly connectTimeout?: Duration.Input | undefined
}

/**
 * A `RefCounter` on PostgreSQL, for services shared across machines: a reference is a shared
 * session-level advisory lock held on a dedicated session for as long as this process holds the
 * service, the count is the number of granted holders in `pg_locks`, the startup and owner locks
 * are exclusive session-level advisory locks, and the ring and the generation record live in a
 * small table (`quiesce_shared_service`, created on first use). The server releases everything a
 * session held when it ends — process exit, SIGKILL, or a machine gone silent for longer than
 * the keepalive bound. Services on it are supervised in-process (see the README's PostgreSQL
 * section). Fails with `DatabaseUnreachable`, `AuthenticationFailed` or `DatabaseError` when the
 * first session cannot be opened or the table cannot be created.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const counter = yield* RefCounter.makePostgres({ url: "postgres://quiesce@127.0.0.1:1/quiesce", connectTimeout: "200 millis" })
 *   return counter.kind
 * })).pipe(Effect.catchTag("DatabaseUnreachable", (error) => Effect.succeed(`no database: ${error.address}`)))
 *
 * Effect.runPromise(program).then(console.log) // "no database: postgres://quiesce@127.0.0.1:1/quiesce"
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makePostgres = (options: PostgresOptions): Effect.Effect<RefCounter, SystemError, Scope.Scope> =>
  Effect_.flatMap(Effect_.promise(() => import("./internal/postgres.ts")), (pg) => pg.make(options))

/**
 * `makePostgres` as a layer providing `RefCounter` (its sessions close with the layer; a
 * supervisor this process runs keeps its own session until its service is stopped).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, SharedService } from "@quiesce/shared-service"
 *
 * // Every service acquired under this layer is shared across the machines using the database.
 * const Shared = RefCounter.postgres({ url: "postgres://quiesce@127.0.0.1:1/quiesce", connectTimeout: "200 millis" })
 *
 * const program = SharedService.list.pipe(
 *   Effect.provide(Shared),
 *   Effect.catchTag("DatabaseUnreachable", (error) => Effect.succeed(error.message))
 * )
 * Effect.runPromise(program).then(console.log)
 * // 'shared service "(setup)": the database postgres://quiesce@127.0.0.1:1/quiesce is unreachable: ...'
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const postgres = (options: PostgresOptions): Layer.Layer<never, SystemError> =>
  Layer_.effect(RefCounter, makePostgres(options)) as Layer.Layer<never, SystemError>

/**
 * An in-memory kernel shared by simulated processes, for unit tests. Each
 * `MemoryKernel.process()` is one simulated process's `RefCounter`; `crash` drops what the
 * kernel would undo. Waits use the Effect clock, so `TestClock` drives lock timeouts.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const [a, b] = [kernel.process(), kernel.process()]
 * const service = SharedService.makeUnsafe({
 *   name: "docs-kernel",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 * })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, a)
 *   yield* Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, b)
 *   console.log(kernel.countOf("docs-kernel")) // 2
 *   yield* b.crash // the kernel drops a crashed process's reference
 *   console.log(kernel.countOf("docs-kernel")) // 1
 * }))
 * Effect.runPromise(program)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const memoryKernel: () => MemoryKernel = memoryImpl.makeKernel

/**
 * The in-memory kernel of {@link memoryKernel}: the factory of simulated processes, and what it counts.
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const kernel: RefCounter.MemoryKernel = RefCounter.memoryKernel()
 * const program = Effect.gen(function*() {
 *   const counter = yield* kernel.process().open("docs-memory")
 *   yield* counter.lock(Duration.seconds(1))
 *   yield* counter.register
 *   return kernel.countOf("docs-memory")
 * })
 *
 * Effect.runPromise(program).then(console.log) // 1
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface MemoryKernel {
  /** A new simulated process. */
  readonly process: () => MemoryProcess
  /** The count for `name`. */
  readonly countOf: (name: string) => number
}

/**
 * One simulated process of a {@link MemoryKernel}: a `RefCounter` to provide, and its `crash`.
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const process: RefCounter.MemoryProcess = kernel.process()
 * const program = Effect.gen(function*() {
 *   const counter = yield* process.open("docs-crash")
 *   yield* counter.lock(Duration.seconds(1))
 *   // Dies holding the startup lock: the kernel releases it, so the next process is not stuck.
 *   yield* process.crash
 *   return yield* (yield* kernel.process().open("docs-crash")).tryLock
 * })
 *
 * Effect.runPromise(program).then(console.log) // true
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface MemoryProcess extends RefCounter {
  readonly kind: "memory"
  readonly pid: number
  /** What the kernel does when the process dies: its lock, reference and owner lock are undone. */
  readonly crash: Effect.Effect<void>
}

/**
 * A counter for a platform without a crash-safe implementation: every `open` fails with
 * `UnsupportedPlatform` (what `platformDefault` is on macOS and Windows).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = RefCounter.unsupported("win32").open("docs-unsupported").pipe(
 *   Effect.catchTag("UnsupportedPlatform", (error) => Effect.succeed(error.platform))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "win32"
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const unsupported: (platform: string) => RefCounter = sysvImpl.unsupported

/**
 * The platform default: `sysV` on Linux; on other platforms a counter whose `open` fails with
 * `UnsupportedPlatform`.
 *
 * @example
 * ```ts
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * console.log(RefCounter.platformDefault().kind) // "sysv" on Linux, "unsupported" elsewhere
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const platformDefault = (): RefCounter =>
  process.platform === "linux" ? sysvImpl.make() : sysvImpl.unsupported(process.platform)

/**
 * The `RefCounter` in use: a `Context.Reference` defaulting to `platformDefault()`, so nothing
 * needs providing; tests provide a `MemoryProcess` with `Effect.provideService(RefCounter, …)`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * // Nothing to provide: the platform default, unless a test provides a simulated process.
 * const kind = Effect.gen(function*() {
 *   const counter = yield* RefCounter.RefCounter
 *   return counter.kind
 * })
 *
 * Effect.runPromise(kind).then(console.log) // "sysv"
 * Effect.runPromise(Effect.provideService(kind, RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 *   .then(console.log) // "memory"
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export const RefCounter: Context.Reference<RefCounter> = Context.Reference<RefCounter>(
  "@quiesce/shared-service/RefCounter",
  { defaultValue: platformDefault }
)
