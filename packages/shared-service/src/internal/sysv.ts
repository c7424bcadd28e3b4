/**
 * SysV semaphore `RefCounter` (Linux). Set layout: 0 = startup lock, 1 = count, 2 = reaper slot.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import type { Counter, RefCounter } from "../RefCounter.ts"
import { fromErrno, LockTimeout, SemaphoreSetRemoved, UnsupportedPlatform } from "../SharedServiceError.ts"
import type { SystemError } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import { ipcKey, validate } from "./name.ts"
import { libcFor, opener } from "./registry.ts"

const LOCK = 0
const COUNT = 1
const REAPER = 2
const NSEMS = 3

/**
 * The longest one lock-wait slice occupies a libuv pool thread. `awaitZero` (only a reaper
 * waits for zero, and nothing else in its process waits behind it) uses slices four times as long.
 */
const SLICE_MS = 50

const opsLockNowait = L.sembufs([LOCK, 0, L.IPC_NOWAIT], [LOCK, 1, L.SEM_UNDO | L.IPC_NOWAIT])
const opsLock = L.sembufs([LOCK, 0, 0], [LOCK, 1, L.SEM_UNDO])
const opsUnlock = {
  [-1]: L.sembufs([COUNT, -1, L.SEM_UNDO | L.IPC_NOWAIT], [LOCK, -1, L.SEM_UNDO | L.IPC_NOWAIT]),
  [0]: L.sembufs([LOCK, -1, L.SEM_UNDO | L.IPC_NOWAIT]),
  [1]: L.sembufs([COUNT, 1, L.SEM_UNDO | L.IPC_NOWAIT], [LOCK, -1, L.SEM_UNDO | L.IPC_NOWAIT])
} as const
const opsDecrement = L.sembufs([COUNT, -1, L.SEM_UNDO | L.IPC_NOWAIT])
const opsIncrement = L.sembufs([COUNT, 1, L.SEM_UNDO | L.IPC_NOWAIT])
const opsAwaitZero = L.sembufs([COUNT, 0, 0])
const opsClaimReaper = L.sembufs([REAPER, 0, L.IPC_NOWAIT], [REAPER, 1, L.SEM_UNDO | L.IPC_NOWAIT])
const opsReleaseReaper = L.sembufs([REAPER, -1, L.SEM_UNDO | L.IPC_NOWAIT])

export const unsupported = (platform: string): RefCounter => {
  const fail = (name: string) =>
    Effect.fail(
      new UnsupportedPlatform({
        service: name,
        platform,
        reason: "crash-safe reference counting is implemented with SysV semaphores on Linux only; " +
          "RefCounter.flock works on other POSIX systems once libc can be loaded there"
      })
    )
  return { kind: "unsupported", open: fail, openExisting: fail }
}

let singleton: RefCounter | undefined

/** One per process: counters (and the reference a process holds through them) are per process. */
export const make = (): RefCounter => {
  if (singleton !== undefined) return singleton
  const counters = new Map<string, SysVCounter>()
  const forget = (name: string) => () => counters.delete(name)
  singleton = {
    kind: "sysv",
    open: opener(counters, (lib, name) => {
      const r = openSet(lib, name, true)
      return typeof r === "number" ? new SysVCounter(lib, name, r, forget(name)) : r
    }),
    // A fresh look every time, never cached, never creating: inspection must not keep (or
    // bring back) a set that a reaper or the user removed.
    openExisting: (name) =>
      Effect.flatMap(validate(name), () =>
        Effect.suspend(() => {
          const lib = libcFor(name)
          if (lib instanceof Error) return Effect.fail(lib)
          const r = openSet(lib, name, false)
          if (r === undefined) return Effect.succeed(undefined)
          if (typeof r !== "number") return Effect.fail(r)
          return Effect.succeed(new SysVCounter(lib, name, r, forget(name)))
        }))
  }
  return singleton
}

/** The set's id; `undefined` when it does not exist and `create` is false. */
function openSet(lib: L.Libc, name: string, create: true): number | SystemError
function openSet(lib: L.Libc, name: string, create: boolean): number | SystemError | undefined
function openSet(lib: L.Libc, name: string, create: boolean): number | SystemError | undefined {
  const uid = lib.getuid()
  const id = lib.semget(ipcKey(uid, name), create ? NSEMS : 0, create ? L.IPC_CREAT | 0o600 : 0)
  if (id < 0) {
    const errno = lib.errno()
    if (!create && errno === 2) return undefined
    return fromErrno(name, "semget", errno)
  }
  // semget's permission check does not bind root (CAP_IPC_OWNER): check the owner and mode
  // ourselves, so a set planted by another user, or with a wider mode, is refused.
  const stat = new Uint8Array(128)
  if (lib.semctlPtr(id, 0, L.IPC_STAT, stat) < 0) return fromErrno(name, "semctl(IPC_STAT)", lib.errno())
  const view = new DataView(stat.buffer)
  const owner = view.getUint32(4, true)
  const mode = view.getUint16(20, true) & 0o777
  if (owner !== uid || (mode & 0o077) !== 0) {
    return fromErrno(name, `semget (set owned by uid ${owner} with mode ${mode.toString(8)})`, 13)
  }
  return id
}

class SysVCounter implements Counter {
  readonly kind = "sysv" as const
  readonly exact = true
  readonly lib: L.Libc
  readonly name: string
  id: number
  private readonly forget: () => void

  constructor(lib: L.Libc, name: string, id: number, forget: () => void) {
    this.lib = lib
    this.name = name
    this.id = id
    this.forget = forget
  }

  private fail(syscall: string): SystemError {
    const errno = this.lib.errno()
    // A removed set's id is invalid: semop reports EIDRM to sleepers, EINVAL to later callers.
    if (errno === L.EINVAL || errno === L.EIDRM) {
      return new SemaphoreSetRemoved({ service: this.name, syscall, errno, code: errno === L.EIDRM ? "EIDRM" : "EINVAL" })
    }
    return fromErrno(this.name, syscall, errno)
  }

  private op(ops: Uint8Array, syscall: string): Effect.Effect<void, SystemError> {
    return Effect.suspend(() =>
      this.lib.semop(this.id, ops, ops.length / 6) < 0 ? Effect.fail(this.fail(syscall)) : Effect.void
    )
  }

  /** One bounded kernel wait on the libuv pool: `true` when the operations were performed. */
  private timedWait(ops: Uint8Array, millis: number, syscall: string): Effect.Effect<boolean, SystemError> {
    return Effect.callback<boolean, SystemError>((resume) => {
      const timeout = L.timespec(millis)
      this.lib.semtimedopAsync(this.id, ops, ops.length / 6, timeout, (result, errno) => {
        // koffi passes typed arrays to an async call as raw pointers and keeps only the callback
        // alive: this closure is what keeps `timeout` (and `ops`) from being collected while the
        // call waits in the libuv pool and the kernel reads them.
        void timeout
        void ops
        if (result === 0) return resume(Effect.succeed(true))
        if (errno === L.EAGAIN || errno === L.EINTR) return resume(Effect.succeed(false))
        if (errno === L.EINVAL || errno === L.EIDRM) {
          return resume(Effect.fail(
            new SemaphoreSetRemoved({ service: this.name, syscall, errno, code: errno === L.EIDRM ? "EIDRM" : "EINVAL" })
          ))
        }
        resume(Effect.fail(fromErrno(this.name, syscall, errno)))
      })
    })
  }

  private tryNowait(ops: Uint8Array, syscall: string): boolean | SystemError {
    if (this.lib.semop(this.id, ops, ops.length / 6) === 0) return true
    const errno = this.lib.errno()
    if (errno === L.EAGAIN) return false
    return this.fail(syscall)
  }

  lock = (timeout: Duration.Duration): Effect.Effect<void, LockTimeout | SystemError> =>
    Effect.suspend(() => {
      const first = this.tryNowait(opsLockNowait, "semop(lock)")
      if (first === true) return Effect.void
      if (first !== false) return Effect.fail(first)
      const total = Duration.toMillis(timeout)
      const deadline = Date.now() + total
      // Called from an uninterruptible region (see `Counter.lock`): a slice that takes the lock
      // must hand it to the caller, never be abandoned, so slices run uninterruptibly and
      // interruption is only observed between them, while nothing is held.
      const loop: Effect.Effect<void, LockTimeout | SystemError> = Effect.suspend(() => {
        const left = deadline - Date.now()
        if (left <= 0) return Effect.fail(new LockTimeout({ service: this.name, timeoutMillis: total }))
        return Effect.andThen(
          Effect.interruptible(Effect.void),
          Effect.flatMap(
            Effect.uninterruptible(this.timedWait(opsLock, Math.min(SLICE_MS, left), "semtimedop(lock)")),
            (got) => got ? Effect.void : loop
          )
        )
      })
      return loop
    })

  unlock = (delta: -1 | 0 | 1): Effect.Effect<void, SystemError> => this.op(opsUnlock[delta], "semop(unlock)")

  decrement: Effect.Effect<void, SystemError> = Effect.suspend(() => this.op(opsDecrement, "semop(release)"))

  count: Effect.Effect<number, SystemError> = Effect.suspend(() => {
    const n = this.lib.semctl(this.id, COUNT, L.GETVAL)
    return n < 0 ? Effect.fail(this.fail("semctl(GETVAL)")) : Effect.succeed(n)
  })

  hasReaper: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    const n = this.lib.semctl(this.id, REAPER, L.GETVAL)
    return n < 0 ? Effect.fail(this.fail("semctl(GETVAL)")) : Effect.succeed(n > 0)
  })

  claimReaper: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    const r = this.tryNowait(opsClaimReaper, "semop(claim reaper)")
    return typeof r === "boolean" ? Effect.succeed(r) : Effect.fail(r)
  })

  releaseReaper: Effect.Effect<void, SystemError> = Effect.suspend(() => this.op(opsReleaseReaper, "semop(release reaper)"))

  awaitZero: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    // Wait-for-zero changes nothing, so abandoning a slice on interruption is harmless.
    const loop: Effect.Effect<void, SystemError> = Effect.flatMap(
      this.timedWait(opsAwaitZero, SLICE_MS * 4, "semtimedop(wait for zero)"),
      (done) => done ? Effect.void : loop
    )
    return loop
  })

  reopen = (holding: boolean): Effect.Effect<void, SystemError> =>
    Effect.suspend(() => {
      const r = openSet(this.lib, this.name, true)
      if (typeof r !== "number") return Effect.fail(r)
      this.id = r
      return holding ? this.op(opsIncrement, "semop(re-register)") : Effect.void
    })

  remove: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const failed = this.lib.semctl(this.id, 0, L.IPC_RMID) < 0 ? this.fail("semctl(IPC_RMID)") : undefined
    this.forget()
    return failed === undefined ? Effect.void : Effect.fail(failed)
  })
}
