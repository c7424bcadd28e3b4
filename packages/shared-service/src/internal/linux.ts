/**
 * The only module that touches libc (Linux, x86-64/arm64 glibc or musl via koffi). Everything
 * here is a thin, synchronous or `.async` (libuv pool) binding that returns `-1` and leaves the
 * errno to `errno()`; callers read it immediately after the call, on the same thread.
 *
 * @internal
 */
import koffi from "koffi"
import { readFileSync } from "node:fs"

export const IPC_CREAT = 0o1000
export const IPC_EXCL = 0o2000
export const IPC_NOWAIT = 0o4000
export const IPC_RMID = 0
export const IPC_STAT = 2
export const SEM_UNDO = 0x1000
export const GETVAL = 12
export const GETALL = 13
export const GETNCNT = 14
export const GETZCNT = 15

export const LOCK_SH = 1
export const LOCK_EX = 2
export const LOCK_NB = 4
export const LOCK_UN = 8

export const EINTR = 4
export const EAGAIN = 11
export const EINVAL = 22
export const EIDRM = 43
export const ESRCH = 3
export const EWOULDBLOCK = EAGAIN

export interface Libc {
  readonly semget: (key: number, nsems: number, flags: number) => number
  readonly semop: (id: number, sops: Uint8Array, nsops: number) => number
  readonly semtimedop: (id: number, sops: Uint8Array, nsops: number, timeout: BigInt64Array) => number
  /** semtimedop on the libuv pool; `cb(result, errno)`. */
  readonly semtimedopAsync: (
    id: number,
    sops: Uint8Array,
    nsops: number,
    timeout: BigInt64Array,
    cb: (result: number, errno: number) => void
  ) => void
  /** semctl for commands without an argument (GETVAL, GETNCNT, GETZCNT, IPC_RMID). */
  readonly semctl: (id: number, semnum: number, cmd: number) => number
  /** semctl with a pointer argument (GETALL, IPC_STAT). */
  readonly semctlPtr: (id: number, semnum: number, cmd: number, arg: Uint8Array) => number
  readonly flock: (fd: number, op: number) => number
  readonly kill: (pid: number, sig: number) => number
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
    const b: Libc = {
      semget: lib.func("int semget(int key, int nsems, int semflg)"),
      semop: lib.func("int semop(int semid, void *sops, size_t nsops)"),
      semtimedop,
      semtimedopAsync: (id, sops, nsops, timeout, cb) =>
        semtimedopAsyncRaw(id, sops, nsops, timeout, (err, result) => {
          if (err) cb(-1, EINVAL)
          else cb(result, result < 0 ? koffi.errno() : 0)
        }),
      semctl: lib.func("int semctl(int semid, int semnum, int cmd)"),
      semctlPtr: lib.func("int semctl(int semid, int semnum, int cmd, void *arg)"),
      flock: lib.func("int flock(int fd, int operation)"),
      kill: lib.func("int kill(int pid, int sig)"),
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

/**
 * The start time of a process (field 22 of `/proc/<pid>/stat`, clock ticks since boot), or
 * `undefined` when the process does not exist (or is a zombie: it already died).
 */
export const processStartTime = (pid: number): number | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    return undefined
  }
  // The command name (field 2) is parenthesised and may itself contain spaces and parentheses.
  const close = stat.lastIndexOf(")")
  if (close < 0) return undefined
  const rest = stat.slice(close + 2).split(" ")
  // rest[0] is field 3 (state); field 22 is rest[19].
  if (rest[0] === "Z" || rest[0] === "X") return undefined
  const start = Number(rest[19])
  return Number.isFinite(start) ? start : undefined
}
