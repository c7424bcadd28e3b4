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
import type { Duration, Effect } from "effect"
import { Context } from "effect"
import * as flockImpl from "./internal/flock.ts"
import type * as hintImpl from "./internal/hint.ts"
import * as memoryImpl from "./internal/memory.ts"
import * as sysvImpl from "./internal/sysv.ts"
import type { InvalidName, LockTimeout, SystemError } from "./SharedServiceError.ts"

/**
 * The owner lock of a name (see `PROTOCOL.md`): held by the supervisor of the live generation.
 *
 * @category models
 * @since 0.1.0
 */
export interface Owner {
  /** Takes it if nobody holds it (never waits); `undefined` when a live owner holds it. */
  readonly take: Effect.Effect<Owned | undefined, SystemError>
  /** Waits up to `millis` for it to be free and takes it; `undefined` when it stayed held. */
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
  /** Whether this process still holds it (only a simulated crash can take it away). */
  readonly stillHeld: () => boolean
  /**
   * Whether this owner should retire: a `retire` request was left for it (`Owner.request`), or
   * its owner file is no longer at its path (deleted or replaced: the lock no longer keeps
   * another generation out, so this one ends itself).
   */
  readonly retireRequested: Effect.Effect<boolean>
}

/**
 * One process's view of the kernel objects of one name. Obtained with `RefCounter.open`; the
 * same `Counter` object is returned for the same name within one `RefCounter`, and the process
 * holds at most one reference through it (callers keep their own in-process count above it).
 * The protocol these operations serve is in `PROTOCOL.md`.
 *
 * @category models
 * @since 0.1.0
 */
export interface Counter extends View {
  readonly name: string
  /** The implementation (a spawned supervisor opens the same kind). */
  readonly kind: "sysv" | "flock" | "memory"
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
}

/**
 * Where the record of a name's live generation is kept (its supervisor, its service, whether it
 * was seen ready): a file in the runtime directory for the kernel counters. Only ever written
 * under the startup lock, and only ever a hint: readers verify it against the owner lock.
 *
 * @category models
 * @since 0.1.0
 */
export interface HintStore extends hintImpl.Store {}

/**
 * @category models
 * @since 0.1.0
 */
export interface RefCounter {
  readonly kind: "sysv" | "flock" | "memory" | "unsupported"
  /** Opens (creating if needed) the counter for `name` (validated: see `SharedService.validateName`). */
  readonly open: (name: string) => Effect.Effect<Counter, SystemError | InvalidName>
  /**
   * Looks at the counter for `name` only if it exists already (inspection must not create
   * sets). May be a fresh, uncached view: use it to read and remove, not to hold references.
   */
  readonly openExisting: (name: string) => Effect.Effect<Counter | undefined, SystemError | InvalidName>
  /** The owner lock and the hint of `name`, without opening (or creating) any kernel object. */
  readonly view: (name: string) => Effect.Effect<View, SystemError | InvalidName>
}

/**
 * What can be looked at for a name without its kernel objects: the owner lock and the hint.
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
 * @category constructors
 * @since 0.1.0
 */
export const sysV: () => RefCounter = sysvImpl.make

/**
 * `flock(2)` fallback: every client holds a shared lock on `<runtime dir>/<name>.clients`, the
 * startup lock is an exclusive lock on `<name>.lock`, the ring is the size of `<name>.ring`. It
 * can tell "any clients left", not how many (`exact: false`), and its waits poll.
 *
 * @category constructors
 * @since 0.1.0
 */
export const flock: () => RefCounter = flockImpl.make

/**
 * An in-memory kernel shared by simulated processes, for unit tests. Each
 * `MemoryKernel.process()` is one simulated process's `RefCounter`; `crash` drops what the
 * kernel would undo. Waits use the Effect clock, so `TestClock` drives lock timeouts.
 *
 * @category constructors
 * @since 0.1.0
 */
export const memoryKernel: () => MemoryKernel = memoryImpl.makeKernel

/**
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
 * @category constructors
 * @since 0.1.0
 */
export const unsupported: (platform: string) => RefCounter = sysvImpl.unsupported

/**
 * The platform default: `sysV` on Linux; on other platforms a counter whose `open` fails with
 * `UnsupportedPlatform`.
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
 * @category services
 * @since 0.1.0
 */
export const RefCounter: Context.Reference<RefCounter> = Context.Reference<RefCounter>(
  "@quiesce/shared-service/RefCounter",
  { defaultValue: platformDefault }
)
