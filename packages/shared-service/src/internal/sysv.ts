/**
 * SysV semaphore `RefCounter` (Linux). Set layout: 0 = startup lock, 1 = count, 2 = ring.
 *
 * - lock: `{wait-for-zero, +1 SEM_UNDO}` atomically; unlock `-1 SEM_UNDO`;
 * - register: `{count +1 SEM_UNDO, ring +1, lock −1 SEM_UNDO}` in one semop, so a registration
 *   is never half done and never unrung;
 * - ring: incremented without undo (a client that registered and died still rang), consumed
 *   by the supervisor (`−n`). Only lock holders add to it, so under the lock a read of its
 *   value bounds it: below SEMVMX (32767) it is rung, at it (a supervisor that does not drain,
 *   e.g. stopped) the registration goes without.
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import type { Counter, Owned, RefCounter, View } from "../RefCounter.ts"
import { fromErrno, LockTimeout, SemaphoreSetRemoved, UnsupportedPlatform } from "../SharedServiceError.ts"
import type { InvalidName, SystemError } from "../SharedServiceError.ts"
import { fileHints } from "./hint.ts"
import * as L from "./linux.ts"
import { ipcKey, validate } from "./name.ts"
import * as Owner from "./owner.ts"
import * as Proc from "./proc.ts"
import { runtimeDir } from "./paths.ts"
import { libcFor, opener } from "./registry.ts"

const LOCK = 0
const COUNT = 1
const RING = 2
const NSEMS = 3
/** The ring's ceiling: SEMVMX is 32767; stop ringing a little below it. */
const RING_MAX = 32000

/**
 * The longest one lock-wait slice occupies a libuv pool thread: a process waiting for the lock
 * holds one pool thread for at most this long at a time, and notices an interruption this fast.
 */
export const SLICE_MS = 50

const W = L.IPC_NOWAIT
const opsLockNowait = L.sembufs([LOCK, 0, W], [LOCK, 1, L.SEM_UNDO | W])
const opsLock = L.sembufs([LOCK, 0, 0], [LOCK, 1, L.SEM_UNDO])
const opsUnlock = L.sembufs([LOCK, -1, L.SEM_UNDO | W])
const opsRegister = L.sembufs([COUNT, 1, L.SEM_UNDO | W], [RING, 1, W], [LOCK, -1, L.SEM_UNDO | W])
const opsRegisterQuiet = L.sembufs([COUNT, 1, L.SEM_UNDO | W], [LOCK, -1, L.SEM_UNDO | W])
const opsDecrement = L.sembufs([COUNT, -1, L.SEM_UNDO | W])
const opsAwaitZero = L.sembufs([COUNT, 0, 0])
const opsAwaitRing = L.sembufs([RING, -1, 0])

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
  return { kind: "unsupported", open: fail, openExisting: fail, view: fail }
}

let singleton: RefCounter | undefined

/** One per process: counters (and the reference a process holds through them) are per process. */
export const make = (): RefCounter => {
  if (singleton !== undefined) return singleton
  const counters = new Map<string, SysVCounter>()
  singleton = {
    kind: "sysv",
    open: opener(counters, (lib, name, dir) => {
      const r = openSet(lib, name, dir, true)
      return typeof r === "number" ? new SysVCounter(lib, name, dir, r, () => counters.delete(`${dir}\0${name}`)) : r
    }),
    // A fresh look every time, never cached, never creating: inspection must not keep (or
    // bring back) a set that a supervisor or the user removed.
    openExisting: (name) =>
      Effect.flatMap(validate(name), () =>
        Effect.suspend(() => {
          const lib = libcFor(name)
          if (lib instanceof Error) return Effect.fail(lib)
          const dir = runtimeDir(name)
          if (typeof dir !== "string") return Effect.fail(dir)
          const r = openSet(lib, name, dir, false)
          if (r === undefined) return Effect.succeed(undefined)
          if (typeof r !== "number") return Effect.fail(r)
          return Effect.succeed(new SysVCounter(lib, name, dir, r, () => {}))
        })),
    view: fileView
  }
  return singleton
}

/** A kernel counter's owner lock and hint: files in the runtime directory. */
export const fileView = (name: string): Effect.Effect<View, SystemError | InvalidName> =>
  Effect.flatMap(validate(name), () =>
    Effect.suspend((): Effect.Effect<View, SystemError> => {
      const lib = libcFor(name)
      if (lib instanceof Error) return Effect.fail(lib)
      const dir = runtimeDir(name)
      if (typeof dir !== "string") return Effect.fail(dir)
      return Effect.succeed({ dir, owner: fileOwner(lib, name, dir), hints: fileHints(dir, name) })
    }))

/** The set's id; `undefined` when it does not exist and `create` is false. */
function openSet(lib: L.Libc, name: string, dir: string, create: true): number | SystemError
function openSet(lib: L.Libc, name: string, dir: string, create: boolean): number | SystemError | undefined
function openSet(lib: L.Libc, name: string, dir: string, create: boolean): number | SystemError | undefined {
  const uid = lib.getuid()
  const id = lib.semget(ipcKey(uid, dir, name), create ? NSEMS : 0, create ? L.IPC_CREAT | 0o600 : 0)
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

/** The owner lock of a kernel counter: the flock file in the runtime directory. */
export const fileOwner = (lib: L.Libc, name: string, dir: string): Counter["owner"] => {
  const take: Effect.Effect<Owned | undefined, SystemError> = Effect.suspend(() => {
    const h = Owner.take(lib, dir, name)
    if (h instanceof Error) return Effect.fail(h)
    if (h === undefined) return Effect.succeed(undefined)
    const owned: Owned = {
      fd: h.fd,
      clearStamp: Effect.sync(() => Owner.clearStamp(h)),
      writeStamp: (pid) => Effect.sync(() => Owner.writeStamp(h, pid)),
      release: Effect.sync(() => Owner.release(h)),
      remove: Effect.sync(() => Owner.remove(dir, name, h)),
      stillHeld: () => true,
      retireRequested: Effect.sync(() => Owner.requested(h.fd, "retire") || Owner.displaced(dir, name, h.fd))
    }
    return Effect.succeed(owned)
  })
  return {
    take,
    // flock has no timed wait: poll, every 10 ms (a retire takes at least a stop's time).
    awaitFree: (millis) =>
      Effect.flatMap(Clock.currentTimeMillis, (start) => {
        const loop: Effect.Effect<Owned | undefined, SystemError> = Effect.flatMap(take, (owned) =>
          owned !== undefined
            ? Effect.succeed(owned)
            : Effect.flatMap(Clock.currentTimeMillis, (now) =>
              now - start >= millis ? Effect.succeed(undefined) : Effect.andThen(Effect.interruptible(Effect.sleep(Duration.millis(10))), loop)))
        return loop
      }),
    held: Effect.sync(() => Owner.held(dir, name)),
    stamp: Effect.sync(() => Owner.stamp(dir, name)),
    request: (what) => Effect.sync(() => Owner.request(dir, name, what))
  }
}

class SysVCounter implements Counter {
  readonly kind = "sysv" as const
  readonly exact = true
  readonly lib: L.Libc
  readonly name: string
  readonly dir: string
  readonly owner: Counter["owner"]
  readonly hints: Counter["hints"]
  id: number
  private readonly forget: () => void

  constructor(lib: L.Libc, name: string, dir: string, id: number, forget: () => void) {
    this.lib = lib
    this.name = name
    this.dir = dir
    this.id = id
    this.forget = forget
    this.owner = fileOwner(lib, name, dir)
    this.hints = fileHints(dir, name)
  }

  private fail(syscall: string, errno = this.lib.errno()): SystemError {
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

  private getval(sem: number): number | SystemError {
    const n = this.lib.semctl(this.id, sem, L.GETVAL)
    return n < 0 ? this.fail("semctl(GETVAL)") : n
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
        resume(Effect.fail(this.fail(syscall, errno)))
      })
    })
  }

  private tryNowait(ops: Uint8Array, syscall: string): boolean | SystemError {
    if (this.lib.semop(this.id, ops, ops.length / 6) === 0) return true
    const errno = this.lib.errno()
    if (errno === L.EAGAIN) return false
    return this.fail(syscall, errno)
  }

  lock = (timeout: Duration.Duration): Effect.Effect<void, LockTimeout | SystemError> =>
    Effect.suspend(() => {
      const first = this.tryNowait(opsLockNowait, "semop(lock)")
      if (first === true) return Effect.void
      if (first !== false) return Effect.fail(first)
      const total = Duration.toMillis(timeout)
      const deadline = Date.now() + total
      // A slice that takes the lock must hand it to the caller, never be abandoned, so slices
      // run uninterruptibly and interruption is only observed between them, while nothing is held.
      const loop: Effect.Effect<void, LockTimeout | SystemError> = Effect.suspend(() => {
        const left = deadline - Date.now()
        if (left <= 0) return Effect.fail(this.timeout(total))
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

  tryLock: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    const r = this.tryNowait(opsLockNowait, "semop(lock)")
    return typeof r === "boolean" ? Effect.succeed(r) : Effect.fail(r)
  })

  unlock: Effect.Effect<void, SystemError> = Effect.suspend(() => this.op(opsUnlock, "semop(unlock)"))

  register: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const rings = this.getval(RING)
    if (typeof rings !== "number") return Effect.fail(rings)
    return this.op(rings < RING_MAX ? opsRegister : opsRegisterQuiet, "semop(register)")
  })

  reregister: Effect.Effect<void, SystemError> = Effect.suspend(() => this.op(opsRegisterQuiet, "semop(re-register)"))

  decrement: Effect.Effect<void, SystemError> = Effect.suspend(() => this.op(opsDecrement, "semop(release)"))

  count: Effect.Effect<number, SystemError> = Effect.suspend(() => {
    const n = this.getval(COUNT)
    return typeof n === "number" ? Effect.succeed(n) : Effect.fail(n)
  })

  rings: Effect.Effect<number, SystemError> = Effect.suspend(() => {
    const n = this.getval(RING)
    return typeof n === "number" ? Effect.succeed(n) : Effect.fail(n)
  })

  awaitZero = (millis: number): Effect.Effect<boolean, SystemError> =>
    this.timedWait(opsAwaitZero, millis, "semtimedop(wait for zero)")

  awaitRing = (millis: number): Effect.Effect<boolean, SystemError> =>
    Effect.flatMap(this.timedWait(opsAwaitRing, millis, "semtimedop(ring)"), (rung) => {
      if (!rung) return Effect.succeed(false)
      // Consume the other pending rings too (a late one only makes the next wait return at once).
      const n = this.getval(RING)
      if (typeof n === "number" && n > 0) this.tryNowait(L.sembufs([RING, -n, W]), "semop(ring)")
      return Effect.succeed(true)
    })

  reopen: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const r = openSet(this.lib, this.name, this.dir, true)
    if (typeof r !== "number") return Effect.fail(r)
    this.id = r
    return Effect.void
  })

  remove: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const failed = this.lib.semctl(this.id, 0, L.IPC_RMID) < 0 ? this.fail("semctl(IPC_RMID)") : undefined
    this.forget()
    return failed === undefined ? Effect.void : Effect.fail(failed)
  })

  private timeout(total: number): LockTimeout {
    const holder = this.holderUnsafe()
    if (holder === undefined) return new LockTimeout({ service: this.name, timeoutMillis: total })
    const st = Proc.stat(holder)
    const holderState = Proc.isDead(st) ? "gone" : Proc.isStopped(st) ? "stopped" : "running"
    return new LockTimeout({ service: this.name, timeoutMillis: total, holder, holderState })
  }

  private holderUnsafe(): number | undefined {
    const pid = this.lib.semctl(this.id, LOCK, L.GETPID)
    return pid > 0 ? pid : undefined
  }

  lockHolder: Effect.Effect<number | undefined> = Effect.sync(() => this.holderUnsafe())

  instance = (): number => this.id

  /** SysV undo records belong to the process and survive `execve`: nothing to do. */
  prepareExec: Effect.Effect<void, SystemError> = Effect.void
}
