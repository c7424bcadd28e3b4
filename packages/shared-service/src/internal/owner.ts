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
import { closeSync, fstatSync, ftruncateSync, lstatSync, readFileSync, writeSync } from "node:fs"
import type { RuntimeDirectoryUnusable } from "../SharedServiceError.ts"
import { fromErrno } from "../SharedServiceError.ts"
import type { SystemError } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import { filePath, openOrCreate, readSecure, unlinkIf } from "./paths.ts"

export interface OwnerHandle {
  readonly fd: number
  /** The file was there before (a generation ended without removing it: look for leftovers). */
  readonly existed: boolean
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
  const { fd, existed } = opened
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
  return { fd, existed, ino }
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

/** The pid the current owner stamped, if any. */
export const stamp = (dir: string, name: string): number | undefined => {
  const text = readSecure(name, ownerPath(dir, name))
  if (typeof text !== "string") return undefined
  const pid = Number.parseInt(text, 10)
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
