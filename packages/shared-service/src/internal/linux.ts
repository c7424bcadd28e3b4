/**
 * The only module that touches libc (Linux, x86-64/arm64 glibc or musl via koffi). Everything
 * here is a thin, synchronous or `.async` (libuv pool) binding that returns `-1` and leaves the
 * errno to `errno()`; callers read it immediately after the call, on the same thread.
 *
 * @internal
 */
import koffi from "koffi"
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs"

export const IPC_CREAT = 0o1000
export const IPC_NOWAIT = 0o4000
export const IPC_RMID = 0
export const IPC_STAT = 2
export const SEM_UNDO = 0x1000
export const GETVAL = 12

export const LOCK_SH = 1
export const LOCK_EX = 2
export const LOCK_NB = 4
export const LOCK_UN = 8

export const GETPID = 11
export const EINTR = 4
export const ESRCH = 3
export const EAGAIN = 11
export const ECHILD = 10
export const EINVAL = 22
export const ERANGE = 34
export const EIDRM = 43
export const EWOULDBLOCK = EAGAIN

export const F_GETFD = 1
export const F_SETFD = 2
export const FD_CLOEXEC = 1
export const WNOHANG = 1
export const PR_SET_CHILD_SUBREAPER = 36

export interface Libc {
  readonly semget: (key: number, nsems: number, flags: number) => number
  readonly semop: (id: number, sops: Uint8Array, nsops: number) => number
  /** semtimedop on the libuv pool; `cb(result, errno)`. */
  readonly semtimedopAsync: (
    id: number,
    sops: Uint8Array,
    nsops: number,
    timeout: BigInt64Array,
    cb: (result: number, errno: number) => void
  ) => void
  /** semctl for commands without an argument (GETVAL, IPC_RMID). */
  readonly semctl: (id: number, semnum: number, cmd: number) => number
  /** semctl with a pointer argument (IPC_STAT). */
  readonly semctlPtr: (id: number, semnum: number, cmd: number, arg: Uint8Array) => number
  readonly flock: (fd: number, op: number) => number
  readonly fcntl: (fd: number, cmd: number, arg: number) => number
  /** `waitpid(pid, &status, options)`: `[pid or -1, status]`. */
  readonly waitpid: (pid: number, options: number) => readonly [number, number]
  readonly prctl: (option: number, arg: number) => number
  readonly getuid: () => number
  readonly errno: () => number
}

let cached: Libc | Error | undefined

/**
 * Loads libc once; an `Error` when it cannot be loaded (not Linux, no glibc/musl found).
 */
export const libc = (): Libc | Error => {
  if (cached !== undefined) return cached
  if (process.platform !== "linux") {
    cached = new Error(`SysV semaphores through libc are only bound on Linux (this is ${process.platform})`)
    return cached
  }
  try {
    let lib: ReturnType<typeof koffi.load> | undefined
    let lastError: unknown
    for (const path of ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"]) {
      try {
        lib = koffi.load(path)
        break
      } catch (e) {
        lastError = e
      }
    }
    if (lib === undefined) throw lastError
    const semtimedop = lib.func("int semtimedop(int semid, void *sops, size_t nsops, void *timeout)")
    // koffi records errno on the worker thread and hands it back to `koffi.errno()` when the
    // completion callback runs on the main thread.
    const semtimedopAsyncRaw = semtimedop.async as unknown as (
      id: number,
      sops: Uint8Array,
      nsops: number,
      timeout: BigInt64Array,
      cb: (err: unknown, result: number) => void
    ) => void
    const waitpidRaw = lib.func("int waitpid(int pid, _Out_ int *status, int options)")
    const prctlRaw = lib.func("int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)")
    const b: Libc = {
      semget: lib.func("int semget(int key, int nsems, int semflg)"),
      semop: lib.func("int semop(int semid, void *sops, size_t nsops)"),
      semtimedopAsync: (id, sops, nsops, timeout, cb) =>
        semtimedopAsyncRaw(id, sops, nsops, timeout, (err, result) => {
          if (err) cb(-1, EINVAL)
          else cb(result, result < 0 ? koffi.errno() : 0)
        }),
      semctl: lib.func("int semctl(int semid, int semnum, int cmd)"),
      semctlPtr: lib.func("int semctl(int semid, int semnum, int cmd, void *arg)"),
      flock: lib.func("int flock(int fd, int operation)"),
      fcntl: lib.func("int fcntl(int fd, int cmd, int arg)"),
      waitpid: (pid, options) => {
        const status = [0]
        const r = waitpidRaw(pid, status, options) as number
        return [r, status[0]!] as const
      },
      prctl: (option, arg) => prctlRaw(option, arg, 0, 0, 0),
      getuid: lib.func("unsigned int getuid()"),
      errno: () => koffi.errno()
    }
    cached = b
  } catch (e) {
    cached = e instanceof Error ? e : new Error(String(e))
  }
  return cached
}

/**
 * Encodes `struct sembuf { unsigned short sem_num; short sem_op; short sem_flg; }` triples.
 */
export const sembufs = (...ops: ReadonlyArray<readonly [num: number, op: number, flg: number]>): Uint8Array => {
  const buf = new Uint8Array(6 * ops.length)
  const view = new DataView(buf.buffer)
  ops.forEach(([num, op, flg], i) => {
    view.setUint16(i * 6, num, true)
    view.setInt16(i * 6 + 2, op, true)
    view.setInt16(i * 6 + 4, flg, true)
  })
  return buf
}

/** `struct timespec` for a relative timeout. */
export const timespec = (millis: number): BigInt64Array => {
  const ts = new BigInt64Array(2)
  ts[0] = BigInt(Math.floor(millis / 1000))
  ts[1] = BigInt(Math.floor((millis % 1000) * 1e6))
  return ts
}

const statBuf = Buffer.alloc(1024)

/** Parses state and start time out of `/proc/<pid>/stat` content. */
const parseStat = (n: number): { readonly zombie: boolean; readonly startTime: number } | undefined => {
  // The command name (field 2) is parenthesised and may itself contain spaces and parentheses:
  // fields are counted from the last ")". Field 3 is the state, field 22 the start time.
  let i = statBuf.lastIndexOf(0x29, n - 1)
  if (i < 0 || i + 2 >= n) return undefined
  const state = statBuf[i + 2]!
  i += 2
  for (let field = 3; field < 22; field++) {
    i = statBuf.indexOf(0x20, i)
    if (i < 0 || i >= n) return undefined
    i++
  }
  let startTime = 0
  for (; i < n; i++) {
    const c = statBuf[i]!
    if (c < 0x30 || c > 0x39) break
    startTime = startTime * 10 + (c - 0x30)
  }
  // 'Z' zombie, 'X' dead
  return { zombie: state === 0x5a || state === 0x58, startTime }
}

/**
 * Open descriptors of `/proc/<pid>/stat` for processes already verified. A descriptor stays
 * bound to the process it was opened for: once that process is gone, reading it fails (ESRCH)
 * even if the pid has been reused, so a re-check is one `pread` instead of open/read/close and
 * is still PID-reuse proof.
 */
const watched = new Map<number, { readonly fd: number; readonly startTime: number }>()
const MAX_WATCHED = 64

const readStatFd = (fd: number): ReturnType<typeof parseStat> => {
  try {
    return parseStat(readSync(fd, statBuf, 0, statBuf.length, 0))
  } catch {
    return undefined
  }
}

const forget = (pid: number) => {
  const w = watched.get(pid)
  if (w === undefined) return
  watched.delete(pid)
  try {
    closeSync(w.fd)
  } catch {
    // already closed
  }
}

/**
 * The start time of a live process (field 22 of `/proc/<pid>/stat`, clock ticks since boot),
 * or `undefined` when the process does not exist or is a zombie (it already died).
 */
export const processStartTime = (pid: number): number | undefined => {
  const w = watched.get(pid)
  if (w !== undefined) {
    const st = readStatFd(w.fd)
    if (st !== undefined && !st.zombie) return st.startTime
    forget(pid)
  }
  let fd: number
  try {
    fd = openSync(`/proc/${pid}/stat`, "r")
  } catch {
    return undefined
  }
  const st = readStatFd(fd)
  if (st === undefined || st.zombie) {
    closeSync(fd)
    return undefined
  }
  if (watched.size >= MAX_WATCHED) forget(watched.keys().next().value!)
  watched.set(pid, { fd, startTime: st.startTime })
  return st.startTime
}

/**
 * Whether any live (non-zombie) process is in process group `pgid`. `kill(-pgid, 0)` cannot
 * answer this: it counts zombies, and a zombie reparented to an init that does not reap (some
 * container inits) would look alive forever. Scans `/proc` (a few ms).
 */
export const groupAlive = (pgid: number): boolean => {
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return false
  }
  for (const e of entries) {
    const c = e.charCodeAt(0)
    if (c < 0x30 || c > 0x39) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${e}/stat`, "latin1")
    } catch {
      continue
    }
    const close = stat.lastIndexOf(")")
    // fields after the command: 3 state, 4 ppid, 5 pgrp
    const rest = stat.slice(close + 2, close + 64).split(" ", 4)
    if (rest[0] !== "Z" && rest[0] !== "X" && Number(rest[2]) === pgid) return true
  }
  return false
}
