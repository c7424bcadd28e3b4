/**
 * The per-user runtime directory and the files in it, opened so that another local user cannot
 * redirect a write: the directory is `$QUIESCE_RUNTIME_DIR` (absolute), else
 * `$XDG_RUNTIME_DIR/quiesce` (when that is absolute, as the XDG spec requires), else
 * `<tmpdir>/quiesce-<uid>`. It is created 0700 and checked with `lstat` before anything starts:
 * a directory, not a symbolic link, owned by this user (a wider mode is narrowed to 0700). Every
 * file in it is opened with `O_NOFOLLOW` (and `O_EXCL` where it is created), then checked with
 * `fstat`: a regular file owned by this user with no group or other access.
 *
 * @internal
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  writeSync
} from "node:fs"
import type { BigIntStats } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, isAbsolute, join } from "node:path"
import { RuntimeDirectoryUnusable } from "../SharedServiceError.ts"

const UID = typeof process.getuid === "function" ? process.getuid() : 0
const uid = (): number => UID

const { O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY } = constants

/** Where the runtime directory is, before any check (`inspect` shows it even when unusable). */
export const runtimeDirPath = (env: NodeJS.ProcessEnv = process.env): string => {
  const override = env["QUIESCE_RUNTIME_DIR"]
  if (override !== undefined && override !== "") return override
  const xdg = env["XDG_RUNTIME_DIR"]
  if (xdg !== undefined && xdg !== "" && isAbsolute(xdg)) return join(xdg, "quiesce")
  return join(tmpdir(), `quiesce-${uid()}`)
}

/** The errno of a failed `node:fs` call (Node reports it negated), EIO when it carries none. */
export const nodeErrno = (e: unknown): number => {
  const errno = (e as { errno?: unknown }).errno
  return typeof errno === "number" ? Math.abs(errno) : 5
}
const nodeCode = (e: unknown): string => {
  const code = (e as { code?: unknown }).code
  return typeof code === "string" ? code : "EIO"
}

export const dirError = (
  service: string,
  path: string,
  reason: string,
  syscall = "lstat",
  e?: unknown,
  owner?: number
): RuntimeDirectoryUnusable =>
  new RuntimeDirectoryUnusable({
    service,
    path,
    reason,
    syscall,
    errno: e === undefined ? 0 : nodeErrno(e),
    code: e === undefined ? "" : nodeCode(e),
    ...(owner === undefined ? {} : { owner })
  })

/** Validated directories: path as given → its real path. Re-checked with `lstat` on every use. */
const validated = new Map<string, string>()

/**
 * The runtime directory, created and checked; its canonical path (so that two spellings of one
 * directory are one namespace).
 */
export const runtimeDir = (service: string): string | RuntimeDirectoryUnusable => {
  const dir = runtimeDirPath()
  if (!isAbsolute(dir)) {
    return dirError(service, dir, "a relative runtime directory would name a different place in every working directory")
  }
  // Files are opened by path: a parent that another user may write to (and is not sticky, as
  // /tmp is) would let them swap the directory between the check below and a later open.
  const parent = dirname(dir)
  try {
    const p = lstatSync(parent)
    const ownedByOther = p.uid !== uid() && p.uid !== 0
    const writableByOthers = (p.mode & 0o022) !== 0 && (p.mode & 0o1000) === 0
    if (ownedByOther || writableByOthers) {
      return dirError(service, dir, `its parent ${parent} may be written by other users (mode ${(p.mode & 0o7777).toString(8)}, uid ${p.uid})`, "lstat", undefined, p.uid)
    }
  } catch {
    // No parent yet (QUIESCE_RUNTIME_DIR deeper than what exists): mkdir below decides.
  }
  // Created only when missing (the common case, existing, costs one lstat and no exception).
  let st = lstatSync(dir, { throwIfNoEntry: false })
  if (st === undefined) {
    try {
      mkdirSync(dir, { mode: 0o700, recursive: process.env["QUIESCE_RUNTIME_DIR"] !== undefined })
    } catch (e) {
      if (nodeCode(e) !== "EEXIST") return dirError(service, dir, "cannot be created", "mkdir", e)
    }
    try {
      st = lstatSync(dir)
    } catch (e) {
      return dirError(service, dir, "cannot be examined", "lstat", e)
    }
  }
  if (st.isSymbolicLink()) return dirError(service, dir, "is a symbolic link", "lstat", undefined, st.uid)
  if (!st.isDirectory()) return dirError(service, dir, "is not a directory", "lstat", undefined, st.uid)
  if (st.uid !== uid()) return dirError(service, dir, `is owned by uid ${st.uid}, not ${uid()}`, "lstat", undefined, st.uid)
  if ((st.mode & 0o077) !== 0) {
    // Ours, but open to others: narrow it (files others may have planted are refused one by one).
    try {
      const fd = openSync(dir, O_RDONLY | O_NOFOLLOW | constants.O_DIRECTORY)
      try {
        fchmodSync(fd, 0o700)
      } finally {
        closeSync(fd)
      }
    } catch (e) {
      return dirError(service, dir, `has mode ${(st.mode & 0o777).toString(8)} and cannot be narrowed to 700`, "chmod", e)
    }
  }
  let real = validated.get(dir)
  if (real === undefined) {
    try {
      real = realpathSync(dir)
    } catch (e) {
      return dirError(service, dir, "cannot be resolved", "realpath", e)
    }
    validated.set(dir, real)
  }
  return real
}

/** Why a file (its `fstat`) is refused: not a regular file of ours with no group/other access. */
const refusal = (service: string, path: string, st: BigIntStats): RuntimeDirectoryUnusable | undefined => {
  const owner = Number(st.uid)
  if (!st.isFile()) return dirError(service, path, "is not a regular file", "fstat", undefined, owner)
  if (owner !== uid()) return dirError(service, path, `is owned by uid ${owner}`, "fstat", undefined, owner)
  const mode = Number(st.mode)
  if ((mode & 0o077) !== 0) return dirError(service, path, `has mode ${(mode & 0o777).toString(8)}, not 600`, "fstat")
  return undefined
}

const checkFd = (service: string, path: string, fd: number): RuntimeDirectoryUnusable | undefined =>
  refusal(service, path, fstatSync(fd, { bigint: true }))

const refuseLink = (service: string, path: string, e: unknown, what: string): RuntimeDirectoryUnusable =>
  nodeCode(e) === "ELOOP"
    ? dirError(service, path, "is a symbolic link (refused)", "open", e)
    : dirError(service, path, `cannot be ${what}`, "open", e)

/** Opens (creating 0600 if missing) `path` read-write; `existed` tells whether it was there. */
export const openOrCreate = (
  service: string,
  path: string
): { readonly fd: number; readonly existed: boolean } | RuntimeDirectoryUnusable => {
  let fd: number | undefined
  let existed = true
  // The file is usually there: opened first without O_CREAT (no exception on the common path).
  try {
    fd = openSync(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK)
  } catch (e) {
    if (nodeCode(e) !== "ENOENT") return refuseLink(service, path, e, "opened")
  }
  if (fd === undefined) {
    existed = false
    try {
      fd = openSync(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
    } catch (e) {
      if (nodeCode(e) !== "EEXIST") return refuseLink(service, path, e, "created")
      // Created meanwhile by another client.
      existed = true
      try {
        fd = openSync(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK)
      } catch (e2) {
        return refuseLink(service, path, e2, "opened")
      }
    }
  }
  const bad = checkFd(service, path, fd)
  if (bad !== undefined) {
    closeSync(fd)
    return bad
  }
  return { fd, existed }
}

/** What a file was when last read (its identity changes with every atomic write: a new inode). */
interface Seen<A> {
  readonly dev: number
  readonly ino: number
  readonly size: number
  readonly mtimeNs: bigint
  readonly value: A
}

/**
 * `body` of the open file at `path` (`undefined` when there is none), refused unless a file of
 * ours. O_NONBLOCK: a FIFO planted in place of the file must not block the open (it is refused).
 */
const withReadable = <A>(
  service: string,
  path: string,
  body: (fd: number, st: BigIntStats) => A
): A | undefined | RuntimeDirectoryUnusable => {
  let fd: number
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
  } catch (e) {
    if (nodeCode(e) === "ENOENT") return undefined
    return refuseLink(service, path, e, "read")
  }
  try {
    const st = fstatSync(fd, { bigint: true })
    return refusal(service, path, st) ?? body(fd, st)
  } finally {
    closeSync(fd)
  }
}

/**
 * `parse` of the content of `path` (see `readSecure`), reusing the last result while the file
 * is the same one, unchanged (device, inode, size and mtime): a hint is read on every acquire.
 */
export const readSecureCached = <A>(
  service: string,
  path: string,
  cache: Map<string, Seen<A>>,
  parse: (text: string) => A
): A | undefined | RuntimeDirectoryUnusable =>
  withReadable(service, path, (fd, st) => {
    const seen = cache.get(path)
    const [dev, ino, size] = [Number(st.dev), Number(st.ino), Number(st.size)]
    if (seen !== undefined && seen.dev === dev && seen.ino === ino && seen.size === size && seen.mtimeNs === st.mtimeNs) {
      return seen.value
    }
    const value = parse(readAll(fd))
    cache.set(path, { dev, ino, size, mtimeNs: st.mtimeNs, value })
    return value
  })

const readAll = (fd: number): string => {
  const chunks: Array<Buffer> = []
  const buf = Buffer.allocUnsafe(8192)
  let n: number
  while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) chunks.push(Buffer.from(buf.subarray(0, n)))
  return Buffer.concat(chunks).toString("utf8")
}

/** The content of `path`, `undefined` when it does not exist; refused unless a file of ours. */
export const readSecure = (service: string, path: string): string | undefined | RuntimeDirectoryUnusable =>
  withReadable(service, path, (fd) => readAll(fd))

/** Writes `path` atomically: a fresh `O_EXCL` temporary file of ours, renamed into place. */
export const writeAtomic = (service: string, path: string, content: string): RuntimeDirectoryUnusable | undefined => {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  try {
    const fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600)
    try {
      writeSync(fd, content)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
    return undefined
  } catch (e) {
    rmSync(tmp, { force: true })
    return dirError(service, path, "cannot be written", "write", e)
  }
}

/**
 * A fresh log for a new instance: the previous one is kept as `<path>.1`, the new one created
 * with `O_EXCL` (nothing planted in its place is ever written through). Returns its descriptor.
 */
export const freshLog = (service: string, path: string): number | RuntimeDirectoryUnusable => {
  try {
    renameSync(path, `${path}.1`)
  } catch (e) {
    if (nodeCode(e) !== "ENOENT") return dirError(service, path, "cannot be rotated", "rename", e)
  }
  try {
    return openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_APPEND, 0o600)
  } catch (e) {
    return refuseLink(service, path, e, "created")
  }
}

/** Keeps the log of an instance that has ended as `<path>.1`. */
export const retireLog = (path: string): void => {
  try {
    renameSync(path, `${path}.1`)
  } catch {
    // none
  }
}

/**
 * Checks that the directory can take a write (not read-only, not full) before a start, so that
 * a start never succeeds only to fail at its first record.
 */
export const probeWritable = (service: string, dir: string): RuntimeDirectoryUnusable | undefined => {
  const probe = join(dir, `.probe.${process.pid}.${Math.random().toString(36).slice(2)}`)
  try {
    const fd = openSync(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_TRUNC, 0o600)
    try {
      writeSync(fd, Buffer.alloc(4096))
    } finally {
      closeSync(fd)
    }
    return undefined
  } catch (e) {
    return dirError(service, dir, nodeCode(e) === "ENOSPC" ? "is full" : "cannot be written", "write", e)
  } finally {
    rmSync(probe, { force: true })
  }
}

/** Removes `path` if it is still the file with inode `ino` (when given). */
export const unlinkIf = (path: string, ino?: number): void => {
  try {
    if (ino !== undefined && lstatSync(path).ino !== ino) return
    rmSync(path, { force: true })
  } catch {
    // gone already
  }
}

export const filePath = (dir: string, name: string, suffix: string): string => join(dir, `${name}.${suffix}`)
