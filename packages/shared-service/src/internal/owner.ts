/**
 * The owner lock of a generation: `flock(LOCK_EX)` on `<runtime dir>/<name>.owner`. A client
 * takes it (under the startup lock) before it starts a generation and passes the descriptor to
 * the supervisor it spawns, which inherits it: the lock is held from the instant the supervisor
 * exists, with no boot window, and the kernel drops it when the supervisor dies (its last
 * descriptor closes). A SysV `SEM_UNDO` slot could not be handed over like this: it belongs to
 * the process that made the adjustment.
 *
 * The supervisor's shell writes its pid into the file as its first act (the *stamp*), so that a
 * client finding the lock held can tell who holds it even before the hint names it.
 *
 * @internal
 */
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, readFileSync, readSync, writeSync } from "node:fs"
import type { RuntimeDirectoryUnusable } from "../SharedServiceError.ts"
import { fromErrno } from "../SharedServiceError.ts"
import type { SystemError } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import { filePath, openOrCreate, readSecure, unlinkIf } from "./paths.ts"

export interface OwnerHandle {
  readonly fd: number
  readonly ino: number
}

export const ownerPath = (dir: string, name: string): string => filePath(dir, name, "owner")

/**
 * Takes the owner lock if nobody holds it (never waits): the held descriptor, or `undefined`
 * when a live owner holds it.
 */
export const take = (lib: L.Libc, dir: string, name: string): OwnerHandle | undefined | SystemError => {
  const path = ownerPath(dir, name)
  const opened = openOrCreate(name, path)
  if (opened instanceof Error) return opened as RuntimeDirectoryUnusable
  const { fd } = opened
  if (lib.flock(fd, L.LOCK_EX | L.LOCK_NB) !== 0) {
    const errno = lib.errno()
    closeSync(fd)
    return errno === L.EWOULDBLOCK ? undefined : fromErrno(name, "flock(owner)", errno)
  }
  const ino = fstatSync(fd).ino
  try {
    // The file we locked must still be the one at the path (it is only ever unlinked under the
    // startup lock, but an ipcrm can break that lock's exclusion).
    if (lstatSync(path).ino !== ino) {
      closeSync(fd)
      return take(lib, dir, name)
    }
  } catch {
    closeSync(fd)
    return take(lib, dir, name)
  }
  return { fd, ino }
}

/** Empties the stamp before a new supervisor writes its own. */
export const clearStamp = (handle: OwnerHandle): void => ftruncateSync(handle.fd, 0)

/** Stamps `pid` (an in-process supervisor: the process that holds the descriptor). */
export const writeStamp = (handle: OwnerHandle, pid: number): void => {
  ftruncateSync(handle.fd, 0)
  writeSync(handle.fd, `${pid}\n`, 0)
}

export const release = (handle: OwnerHandle): void => {
  try {
    closeSync(handle.fd)
  } catch {
    // closed already
  }
}

/** Removes the owner file (held, or known free) and lets the lock go. */
export const remove = (dir: string, name: string, handle: OwnerHandle): void => {
  unlinkIf(ownerPath(dir, name), handle.ino)
  release(handle)
}

/** Appends a request line to the owner file, for its owner to read between its waits. */
export const request = (dir: string, name: string, what: string): void => {
  try {
    const fd = openSync(ownerPath(dir, name), constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    try {
      const st = fstatSync(fd)
      if (st.isFile() && st.uid === (process.getuid?.() ?? 0)) writeSync(fd, `${what}\n`)
    } finally {
      closeSync(fd)
    }
  } catch {
    // no owner file: nobody to ask
  }
}

/** Whether the owner file at the path is no longer the one this descriptor holds. */
export const displaced = (dir: string, name: string, fd: number): boolean => {
  try {
    return lstatSync(ownerPath(dir, name)).ino !== fstatSync(fd).ino
  } catch {
    return true
  }
}

/** Whether a request line `what` was left in the owner file this descriptor holds. */
export const requested = (fd: number, what: string): boolean => {
  try {
    const buf = Buffer.alloc(256)
    const n = readSync(fd, buf, 0, buf.length, 0)
    return buf.subarray(0, n).toString("latin1").split("\n").includes(what)
  } catch {
    return false
  }
}

/** The pid the current owner stamped, if any. */
export const stamp = (dir: string, name: string): number | undefined => {
  const text = readSecure(name, ownerPath(dir, name))
  if (typeof text !== "string") return undefined
  const pid = Number.parseInt(text.split("\n")[0] ?? "", 10)
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Whether a process holds the owner lock, without taking it (taking it, even for an instant,
 * would make a concurrent start believe there is an owner): `/proc/locks` lists every flock.
 */
export const held = (dir: string, name: string): boolean => {
  let ino: number
  try {
    ino = lstatSync(ownerPath(dir, name)).ino
  } catch {
    return false
  }
  let locks: string
  try {
    locks = readFileSync("/proc/locks", "latin1")
  } catch {
    return false
  }
  const suffix = `:${ino} `
  return locks.split("\n").some((line) => line.includes("FLOCK") && line.includes("WRITE") && line.includes(suffix))
}
