/**
 * What `/proc` tells about processes and sockets (Linux): a process's state, session and exit
 * status, the processes that carry a service's marker in their environment (its whole tree,
 * whatever it forked or reparented), and which process listens on a TCP port. Everything here is
 * synchronous and tolerant of processes vanishing mid-scan.
 *
 * @internal
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from "node:fs"
import { constants } from "node:os"

export interface Stat {
  /** `R`, `S`, `D`, `T` (stopped), `t` (traced), `Z` (zombie), `X`… */
  readonly state: string
  readonly ppid: number
  readonly pgrp: number
  readonly session: number
  readonly startTime: number
  /** `waitpid`-style status of a zombie (field 52), 0 otherwise. */
  readonly exitCode: number
}

/**
 * Open descriptors of `/proc/<pid>/stat` (a few): a re-read is one `pread`. A descriptor stays
 * bound to the process it was opened for; once that process is reaped reading it fails, and the
 * path is opened again (the pid may have been reused by another process).
 */
const open = new Map<number, number>()
const MAX_OPEN = 32
const buf = Buffer.alloc(1024)

const readStat = (pid: number): string | undefined => {
  const cached = open.get(pid)
  if (cached !== undefined) {
    try {
      return buf.toString("latin1", 0, readSync(cached, buf, 0, buf.length, 0))
    } catch {
      open.delete(pid)
      closeSync(cached)
    }
  }
  let fd: number
  try {
    fd = openSync(`/proc/${pid}/stat`, "r")
  } catch {
    return undefined
  }
  try {
    const text = buf.toString("latin1", 0, readSync(fd, buf, 0, buf.length, 0))
    if (open.size >= MAX_OPEN) {
      const [oldest, ofd] = open.entries().next().value!
      open.delete(oldest)
      closeSync(ofd)
    }
    open.set(pid, fd)
    return text
  } catch {
    closeSync(fd)
    return undefined
  }
}

export const stat = (pid: number): Stat | undefined => {
  const text = readStat(pid)
  if (text === undefined) return undefined
  // Fields are counted from the last ")": the command name may contain spaces and parentheses.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ")
  return {
    state: f[0] ?? "?",
    ppid: Number(f[1]),
    pgrp: Number(f[2]),
    session: Number(f[3]),
    startTime: Number(f[19]),
    exitCode: Number(f[49] ?? 0)
  }
}

export const isStopped = (s: Stat | undefined): boolean => s !== undefined && (s.state === "T" || s.state === "t")
export const isDead = (s: Stat | undefined): boolean => s === undefined || s.state === "Z" || s.state === "X"

/** "exited with status 3", "killed by SIGKILL" for a `waitpid` status. */
export const describeStatus = (status: number): string => {
  const signal = status & 0x7f
  if (signal === 0) return `exited with status ${(status >> 8) & 0xff}`
  const name = Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] ?? `signal ${signal}`
  return `killed by ${name}`
}

const pids = (): Array<number> => {
  const out: Array<number> = []
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return out
  }
  for (const e of entries) {
    const c = e.charCodeAt(0)
    if (c >= 0x30 && c <= 0x39) out.push(Number(e))
  }
  return out
}

const uid = (): number => (typeof process.getuid === "function" ? process.getuid() : 0)

/**
 * Live processes of this user whose environment carries `marker` (`NAME=VALUE`, inherited by
 * everything a service forks unless it clears or overwrites its environment, as PostgreSQL's
 * process titles do), plus the members of `session`, whoever they run as.
 */
export const tree = (marker: string, session?: number): Array<number> => {
  const needle = Buffer.from(`${marker}\0`)
  const me = uid()
  const out: Array<number> = []
  // The cheap test first (one read of the environment; another user's is unreadable unless we
  // are root), then the owner and state of the few that match.
  const ours = (pid: number): boolean => {
    try {
      return statSync(`/proc/${pid}`).uid === me
    } catch {
      return false
    }
  }
  for (const pid of pids()) {
    if (pid === process.pid) continue
    let marked = false
    try {
      const env = readFileSync(`/proc/${pid}/environ`)
      const i = env.indexOf(needle)
      marked = i === 0 || (i > 0 && env[i - 1] === 0)
    } catch {
      // gone, or not ours
    }
    if (!marked && session === undefined) continue
    const s = stat(pid)
    if (isDead(s)) continue
    // A member of the service's session descends from it (no process can join another's
    // session), whoever it runs as now (`setpriv`, `sudo -u`: a server that drops privileges);
    // a process outside it counts only with the marker and our uid (anyone can set a variable).
    if (session !== undefined && s!.session === session) out.push(pid)
    else if (marked && ours(pid)) out.push(pid)
  }
  return out
}

export interface Listener {
  readonly inode: number
  readonly uid: number
  readonly address: string
}

/** Sockets listening on TCP `port` (IPv4 and IPv6, any address) in this network namespace. */
export const listeners = (port: number): Array<Listener> => {
  const out: Array<Listener> = []
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0")
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string
    try {
      text = readFileSync(file, "latin1")
    } catch {
      continue
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || f[3] !== "0A") continue
      const [address, p] = f[1]!.split(":")
      if (p !== hexPort) continue
      out.push({ inode: Number(f[9]), uid: Number(f[7]), address: address! })
    }
  }
  return out
}

/** The processes (of those we may inspect) holding socket `inode`. */
export const socketOwners = (inode: number, among?: ReadonlyArray<number>): Array<number> => {
  const target = `socket:[${inode}]`
  const out: Array<number> = []
  for (const pid of among ?? pids()) {
    let fds: Array<string>
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) {
          out.push(pid)
          break
        }
      } catch {
        // closed meanwhile
      }
    }
  }
  return out
}

/**
 * Whether `pid` has a handler installed for signal `signo` (`SigCgt` in its status): a Node
 * process resets every disposition at startup and installs its handlers only later.
 */
export const catches = (pid: number, signo: number): boolean => {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("SigCgt:"))
    return line !== undefined && (BigInt(`0x${line.slice(7).trim()}`) >> BigInt(signo - 1) & 1n) === 1n
  } catch {
    return false
  }
}

/** The command line of `pid`, as far as it can be read. */
export const commandLine = (pid: number): string | undefined => {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8")
    const text = raw.split("\0").filter((a) => a !== "").join(" ")
    return text === "" ? undefined : text
  } catch {
    return undefined
  }
}
