/**
 * `flock(2)` fallback `RefCounter`: `<name>.lock` (startup lock, exclusive), `<name>.clients`
 * (each client process holds a shared lock), `<name>.reaper` (exclusive, held by the reaper).
 * It answers "any clients left?" (count 0 or 1), not how many. Waits poll with `LOCK_NB`
 * (1 → 20 ms backoff), so nothing ever blocks in the kernel.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { closeSync, existsSync, openSync, rmSync } from "node:fs"
import { join } from "node:path"
import type { Counter, RefCounter } from "../RefCounter.ts"
import { fromErrno, IpcUnavailable, LockTimeout } from "../SharedServiceError.ts"
import type { SystemError } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import { validate } from "./name.ts"
import { ensureRuntimeDir, runtimeDirPath } from "./paths.ts"
import { opener } from "./registry.ts"

let singleton: RefCounter | undefined
/** This process's counters, one per name (the singleton's registry). */
const counters = new Map<string, FlockCounter>()

/** The errno of a failed `node:fs` call (Node reports it negated); EIO when it carries none. */
const nodeErrno = (e: unknown): number => {
  const errno = (e as { errno?: unknown }).errno
  return typeof errno === "number" ? Math.abs(errno) : 5
}

export const make = (): RefCounter => {
  if (singleton !== undefined) return singleton
  const open = opener(counters, (lib, name) => {
    const dir = ensureRuntimeDir()
    if (dir instanceof Error) {
      return new IpcUnavailable({ service: name, syscall: "mkdir(runtime dir)", errno: 0, code: dir.message })
    }
    const c = new FlockCounter(lib, name, dir)
    return c.openFiles() ?? c
  })
  singleton = {
    kind: "flock",
    open,
    openExisting: (name) =>
      Effect.flatMap(validate(name), () =>
        counters.has(name) || existsSync(join(runtimeDirPath(), `${name}.clients`))
          ? Effect.map(open(name), (c): Counter | undefined => c)
          : Effect.succeed(undefined))
  }
  return singleton
}

/**
 * Keeps every clients lock this process holds across `execve`: a flock belongs to the open file
 * description, which the new program keeps once the descriptor is no longer close-on-exec
 * (Node opens every file `O_CLOEXEC`). See `SharedService.prepareExec`.
 */
export const keepAcrossExec: Effect.Effect<void, SystemError> = Effect.suspend(() => {
  for (const counter of counters.values()) {
    const error = counter.keepAcrossExec()
    if (error !== undefined) return Effect.fail(error)
  }
  return Effect.void
})

const sleepMs = (ms: number) => Effect.sleep(Duration.millis(ms))

class FlockCounter implements Counter {
  readonly kind = "flock" as const
  readonly exact = false
  readonly lib: L.Libc
  readonly name: string
  readonly dir: string
  lockFd = -1
  clientsFd = -1
  probeFd = -1
  reaperFd = -1
  locked = false

  constructor(lib: L.Libc, name: string, dir: string) {
    this.lib = lib
    this.name = name
    this.dir = dir
  }

  openFiles(): SystemError | undefined {
    try {
      const f = (suffix: string) => openSync(join(this.dir, `${this.name}.${suffix}`), "a+", 0o600)
      this.lockFd = f("lock")
      this.clientsFd = f("clients")
      this.probeFd = f("clients")
      this.reaperFd = f("reaper")
      return undefined
    } catch (e) {
      return fromErrno(this.name, "open(lock file)", nodeErrno(e))
    }
  }

  keepAcrossExec(): SystemError | undefined {
    const flags = this.lib.fcntl(this.clientsFd, L.F_GETFD, 0)
    if (flags < 0 || this.lib.fcntl(this.clientsFd, L.F_SETFD, flags & ~L.FD_CLOEXEC) < 0) {
      return fromErrno(this.name, "fcntl(F_SETFD)", this.lib.errno())
    }
    return undefined
  }

  private try(fd: number, op: number, syscall: string): boolean | SystemError {
    if (this.lib.flock(fd, op | L.LOCK_NB) === 0) return true
    const errno = this.lib.errno()
    return errno === L.EWOULDBLOCK ? false : fromErrno(this.name, syscall, errno)
  }

  private unlockFd(fd: number, syscall: string): Effect.Effect<void, SystemError> {
    return Effect.suspend(() =>
      this.lib.flock(fd, L.LOCK_UN) === 0 ? Effect.void : Effect.fail(fromErrno(this.name, syscall, this.lib.errno()))
    )
  }

  /** Under the startup lock nobody registers or unregisters through it, so the probe is exact. */
  private anyClients(): boolean | SystemError {
    const r = this.try(this.probeFd, L.LOCK_EX, "flock(probe)")
    if (r === true) this.lib.flock(this.probeFd, L.LOCK_UN)
    return typeof r === "boolean" ? !r : r
  }

  lock = (timeout: Duration.Duration): Effect.Effect<void, LockTimeout | SystemError> =>
    Effect.suspend(() => {
      const total = Duration.toMillis(timeout)
      const deadline = Date.now() + total
      let backoff = 1
      const loop: Effect.Effect<void, LockTimeout | SystemError> = Effect.suspend(() => {
        const r = this.try(this.lockFd, L.LOCK_EX, "flock(lock)")
        if (r === true) {
          this.locked = true
          return Effect.void
        }
        if (r !== false) return Effect.fail(r)
        if (Date.now() >= deadline) return Effect.fail(new LockTimeout({ service: this.name, timeoutMillis: total }))
        backoff = Math.min(20, backoff * 2)
        // Interruptible only while nothing is held (see `Counter.lock`).
        return Effect.andThen(Effect.interruptible(sleepMs(backoff)), loop)
      })
      return loop
    })

  unlock = (delta: -1 | 0 | 1): Effect.Effect<void, SystemError> =>
    Effect.suspend(() => {
      if (delta === 1) {
        const r = this.try(this.clientsFd, L.LOCK_SH, "flock(register)")
        if (r !== true) return Effect.fail(r === false ? fromErrno(this.name, "flock(register)", L.EAGAIN) : r)
      } else if (delta === -1) {
        this.lib.flock(this.clientsFd, L.LOCK_UN)
      }
      this.locked = false
      return this.unlockFd(this.lockFd, "flock(unlock)")
    })

  decrement: Effect.Effect<void, SystemError> = Effect.suspend(() => this.unlockFd(this.clientsFd, "flock(release)"))

  count: Effect.Effect<number, SystemError> = Effect.suspend(() => {
    if (this.locked) {
      const r = this.anyClients()
      return typeof r === "boolean" ? Effect.succeed(r ? 1 : 0) : Effect.fail(r)
    }
    return Effect.acquireUseRelease(
      this.lock(Duration.seconds(5)).pipe(Effect.catchTag("LockTimeout", () => Effect.succeed("busy" as const))),
      (got) => {
        if (got === "busy") return Effect.succeed(1)
        const r = this.anyClients()
        return typeof r === "boolean" ? Effect.succeed(r ? 1 : 0) : Effect.fail(r)
      },
      (got) => got === "busy" ? Effect.void : Effect.orDie(this.unlock(0))
    )
  })

  hasReaper: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    // Our own reaperFd may hold the slot; probing needs a separate open file description.
    let fd: number
    try {
      fd = openSync(join(this.dir, `${this.name}.reaper`), "a+", 0o600)
    } catch (e) {
      return Effect.fail(fromErrno(this.name, "open(reaper file)", nodeErrno(e)))
    }
    try {
      const s = this.try(fd, L.LOCK_EX, "flock(probe reaper)")
      if (s === true) this.lib.flock(fd, L.LOCK_UN)
      return typeof s === "boolean" ? Effect.succeed(!s) : Effect.fail(s)
    } finally {
      closeSync(fd)
    }
  })

  claimReaper: Effect.Effect<boolean, SystemError> = Effect.suspend(() => {
    const r = this.try(this.reaperFd, L.LOCK_EX, "flock(claim reaper)")
    return typeof r === "boolean" ? Effect.succeed(r) : Effect.fail(r)
  })

  releaseReaper: Effect.Effect<void, SystemError> = Effect.suspend(() => this.unlockFd(this.reaperFd, "flock(release reaper)"))

  awaitZero: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const loop: Effect.Effect<void, SystemError> = Effect.suspend(() => {
      const got = this.try(this.lockFd, L.LOCK_EX, "flock(lock)")
      if (typeof got !== "boolean") return Effect.fail(got)
      if (got) {
        const any = this.anyClients()
        this.lib.flock(this.lockFd, L.LOCK_UN)
        if (typeof any !== "boolean") return Effect.fail(any)
        if (!any) return Effect.void
      }
      return Effect.andThen(sleepMs(20), loop)
    })
    return loop
  })

  reopen = (holding: boolean): Effect.Effect<void, SystemError> =>
    Effect.suspend(() => {
      for (const fd of [this.lockFd, this.clientsFd, this.probeFd, this.reaperFd]) {
        try {
          closeSync(fd)
        } catch {
          // already closed
        }
      }
      const err = this.openFiles()
      if (err !== undefined) return Effect.fail(err)
      if (holding) {
        const r = this.try(this.clientsFd, L.LOCK_SH, "flock(re-register)")
        if (typeof r !== "boolean") return Effect.fail(r)
      }
      return Effect.void
    })

  remove: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    for (const suffix of ["lock", "clients", "reaper"]) {
      try {
        rmSync(join(this.dir, `${this.name}.${suffix}`), { force: true })
      } catch (e) {
        return Effect.fail(fromErrno(this.name, "unlink(lock file)", nodeErrno(e)))
      }
    }
    return Effect.void
  })
}
