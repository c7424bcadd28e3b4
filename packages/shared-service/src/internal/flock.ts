/**
 * `flock(2)` fallback `RefCounter`: `<name>.lock` (startup lock, exclusive), `<name>.clients`
 * (each client process holds a shared lock), `<name>.ring` (one byte appended per registration,
 * truncated by the supervisor that consumes it), and the owner file shared with the SysV counter.
 * It answers "any clients left?" (count 0 or 1), not how many. Waits poll with `LOCK_NB` (1 → 20
 * ms backoff), so nothing ever blocks in the kernel.
 *
 * Files are only unlinked under the startup lock with no clients; a lock taken on a file that was
 * unlinked meanwhile is noticed (its inode is no longer the path's) and taken again.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { closeSync, fstatSync, ftruncateSync, lstatSync, writeSync } from "node:fs"
import type { Counter, RefCounter } from "../RefCounter.ts"
import { fromErrno, LockTimeout } from "../SharedServiceError.ts"
import type { SystemError } from "../SharedServiceError.ts"
import { fileHints } from "./hint.ts"
import * as L from "./linux.ts"
import { validate } from "./name.ts"
import { filePath, openOrCreate, runtimeDir, unlinkIf } from "./paths.ts"
import { opener } from "./registry.ts"
import { fileOwner, fileView } from "./sysv.ts"

let singleton: RefCounter | undefined

export const make = (): RefCounter => {
  if (singleton !== undefined) return singleton
  const counters = new Map<string, FlockCounter>()
  const open = opener(counters, (lib, name, dir) => {
    const c = new FlockCounter(lib, name, dir)
    return c.openFiles() ?? c
  })
  singleton = {
    kind: "flock",
    open,
    openExisting: (name) =>
      Effect.flatMap(validate(name), () =>
        Effect.suspend(() => {
          const dir = runtimeDir(name)
          if (typeof dir !== "string") return Effect.fail(dir)
          try {
            lstatSync(filePath(dir, name, "clients"))
          } catch {
            return Effect.succeed(undefined)
          }
          return Effect.map(open(name), (c): Counter | undefined => c)
        })),
    view: fileView
  }
  return singleton
}

const sleepMs = (ms: number) => Effect.sleep(Duration.millis(ms))

class FlockCounter implements Counter {
  readonly kind = "flock" as const
  readonly exact = false
  readonly lib: L.Libc
  readonly name: string
  readonly dir: string
  readonly owner: Counter["owner"]
  readonly hints: Counter["hints"]
  lockFd = -1
  clientsFd = -1
  probeFd = -1
  ringFd = -1
  locked = false

  constructor(lib: L.Libc, name: string, dir: string) {
    this.lib = lib
    this.name = name
    this.dir = dir
    this.owner = fileOwner(lib, name, dir)
    this.hints = fileHints(dir, name)
  }

  private path(suffix: string) {
    return filePath(this.dir, this.name, suffix)
  }

  openFiles(): SystemError | undefined {
    const fds: Array<number> = []
    for (const suffix of ["lock", "clients", "clients", "ring"]) {
      const r = openOrCreate(this.name, this.path(suffix))
      if (r instanceof Error) {
        for (const fd of fds) closeSync(fd)
        return r
      }
      fds.push(r.fd)
    }
    ;[this.lockFd, this.clientsFd, this.probeFd, this.ringFd] = fds as [number, number, number, number]
    return undefined
  }

  private closeFiles() {
    for (const fd of [this.lockFd, this.clientsFd, this.probeFd, this.ringFd]) {
      try {
        closeSync(fd)
      } catch {
        // already closed
      }
    }
  }

  private try(fd: number, op: number, syscall: string): boolean | SystemError {
    if (this.lib.flock(fd, op | L.LOCK_NB) === 0) return true
    const errno = this.lib.errno()
    return errno === L.EWOULDBLOCK ? false : fromErrno(this.name, syscall, errno)
  }

  /** Takes the startup lock now if it is free, on the file that is at the path. */
  private tryLockNow(): boolean | SystemError {
    const r = this.try(this.lockFd, L.LOCK_EX, "flock(lock)")
    if (r !== true) return r
    let current: number | undefined
    try {
      current = lstatSync(this.path("lock")).ino
    } catch {
      current = undefined
    }
    if (current === fstatSync(this.lockFd).ino) {
      this.locked = true
      return true
    }
    // Locked a file that was removed (the set was "removed" meanwhile): open the new ones.
    this.closeFiles()
    const err = this.openFiles()
    return err ?? this.tryLockNow()
  }

  lock = (timeout: Duration.Duration): Effect.Effect<void, LockTimeout | SystemError> =>
    Effect.suspend(() => {
      const total = Duration.toMillis(timeout)
      const deadline = Date.now() + total
      let backoff = 1
      const loop: Effect.Effect<void, LockTimeout | SystemError> = Effect.suspend(() => {
        const r = this.tryLockNow()
        if (r === true) return Effect.void
        if (r !== false) return Effect.fail(r)
        if (Date.now() >= deadline) return Effect.fail(new LockTimeout({ service: this.name, timeoutMillis: total }))
        backoff = Math.min(20, backoff * 2)
        // Interruptible only while nothing is held (see `Counter.lock`).
        return Effect.andThen(Effect.interruptible(sleepMs(backoff)), loop)
      })
      return loop
    })

  tryLock: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    const r = this.tryLockNow()
    return typeof r === "boolean" ? Effect.succeed(r) : Effect.fail(r)
  })

  unlock: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    this.locked = false
    return this.lib.flock(this.lockFd, L.LOCK_UN) === 0
      ? Effect.void
      : Effect.fail(fromErrno(this.name, "flock(unlock)", this.lib.errno()))
  })

  private registerNow(ring: boolean): Effect.Effect<void, SystemError> {
    const r = this.try(this.clientsFd, L.LOCK_SH, "flock(register)")
    if (r !== true) return Effect.fail(r === false ? fromErrno(this.name, "flock(register)", L.EAGAIN) : r)
    if (ring) {
      try {
        writeSync(this.ringFd, "r", null)
      } catch {
        // a full disk loses a ring, never a registration
      }
    }
    return this.unlock
  }

  register: Effect.Effect<void, SystemError> = Effect.suspend(() => this.registerNow(true))
  reregister: Effect.Effect<void, SystemError> = Effect.suspend(() => this.registerNow(false))

  decrement: Effect.Effect<void, SystemError> = Effect.suspend(() =>
    this.lib.flock(this.clientsFd, L.LOCK_UN) === 0
      ? Effect.void
      : Effect.fail(fromErrno(this.name, "flock(release)", this.lib.errno()))
  )

  /** Whether any process holds a shared lock on the clients file (ours included). */
  private anyClients(): boolean | SystemError {
    const r = this.try(this.probeFd, L.LOCK_EX, "flock(probe)")
    if (r === true) this.lib.flock(this.probeFd, L.LOCK_UN)
    return typeof r === "boolean" ? !r : r
  }

  count: Effect.Effect<number, SystemError> = Effect.suspend(() => {
    const r = this.anyClients()
    return typeof r === "boolean" ? Effect.succeed(r ? 1 : 0) : Effect.fail(r)
  })

  rings: Effect.Effect<number, SystemError> = Effect.sync(() => fstatSync(this.ringFd).size)

  private poll(millis: number, done: () => boolean | SystemError): Effect.Effect<boolean, SystemError> {
    return Effect.suspend(() => {
      const deadline = Date.now() + millis
      const loop: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
        const r = done()
        if (r !== false) return typeof r === "boolean" ? Effect.succeed(true) : Effect.fail(r)
        const left = deadline - Date.now()
        return left <= 0 ? Effect.succeed(false) : Effect.andThen(sleepMs(Math.min(20, left)), loop)
      })
      return loop
    })
  }

  awaitZero = (millis: number): Effect.Effect<boolean, SystemError> =>
    this.poll(millis, () => {
      const r = this.anyClients()
      return typeof r === "boolean" ? !r : r
    })

  awaitRing = (millis: number): Effect.Effect<boolean, SystemError> =>
    this.poll(millis, () => {
      if (fstatSync(this.ringFd).size === 0) return false
      ftruncateSync(this.ringFd, 0)
      return true
    })

  reopen: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    this.closeFiles()
    const err = this.openFiles()
    return err === undefined ? Effect.void : Effect.fail(err)
  })

  remove: Effect.Effect<void, SystemError> = Effect.sync(() => {
    for (const suffix of ["clients", "ring", "lock"]) unlinkIf(this.path(suffix))
  })

  lockHolder: Effect.Effect<number | undefined> = Effect.succeed(undefined)

  instance = (): number => fstatSync(this.clientsFd).ino

  /** The shared lock on the clients file lives as long as a descriptor: keep it across `execve`. */
  prepareExec: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const flags = this.lib.fcntl(this.clientsFd, L.F_GETFD, 0)
    if (flags < 0 || this.lib.fcntl(this.clientsFd, L.F_SETFD, flags & ~L.FD_CLOEXEC) < 0) {
      return Effect.fail(fromErrno(this.name, "fcntl(F_SETFD)", this.lib.errno()))
    }
    return Effect.void
  })
}
