/**
 * A simulated kernel for the lifecycle protocol (`src/internal/protocol.ts`): one SysV set
 * (startup lock and count with undo, ring without), the owner file with its flock, the hint,
 * and processes — clients running `Protocol.client`, supervisors running `Protocol.supervisor`,
 * services — plus an adversary with a budget of SIGKILLs, SIGSTOPs, `ipcrm`s, service exits and
 * SIGTERMs. Every transition of `successors` is one atomic step of one party; `explore.ts`
 * enumerates them all.
 *
 * In-process mode (`initial(…, { inProcess: true })`) models `make` services supervised by a
 * fiber of the client that started them (`reaper: "in-process"`, every service on the PostgreSQL
 * counter): the supervisor dies with its host client but the service does not (it runs elsewhere:
 * a container, another host), a sweep stops only the service the hint names, a client's `Kill`
 * ends only the supervisor (`pg_terminate_backend` of its session), and the service comes to life
 * when the starter's `start` returns (the model takes the start and the record of its result as
 * one step: a starter dying between them is the documented limit of `make` services). With
 * `standby`, every client holding a generation it does not host runs `Protocol.standby`.
 *
 * Time is not modelled: every bounded wait may end at any moment its condition does not hold
 * (a grace period, a start that is not ready), except lock and owner waits, which only time out
 * when their holder is stopped (the real bounds are longer than any live holder holds them).
 */
import * as Protocol from "@quiesce/shared-service/internal/protocol"

export type Pid = string

export interface Budget {
  kill: number
  stop: number
  ipcrm: number
  exit: number
  term: number
  /** Starts refused before anything is spawned (a port held by another process, a spawn error). */
  refuse: number
}

interface ClientProc {
  readonly kind: "client"
  m: Protocol.Client<number, string>
  /** acquiring → holding → releasing (tidy) → released, or failed, or dead. */
  phase: "acquiring" | "holding" | "releasing" | "released" | "failed" | "dead"
  tidy: Protocol.Tidy
  /** The set epoch this process has opened (a stale one answers EIDRM/EINVAL). */
  epoch: number
  /** Epoch of the set its reference is in (while holding). */
  regEpoch: number
  /** Re-registration after an ipcrm (the watchdog): 0 none, 1 waiting for the lock, 2 holding it. */
  rereg: 0 | 1 | 2
  /** Inode of the owner file whose flock this process holds through a descriptor, or -1. */
  ownerFd: number
  stopped: boolean
  gen: number
  /** Its standby (in-process mode), until it ends or adopts. */
  sb: Protocol.Standby<number> | null
  /** The reference was released: a standby still waiting stops waiting. */
  sbCancel: boolean
  /** Inode of the owner file the standby holds, or -1. */
  sbFd: number
  /** Its definition (a fingerprint): clients of another definition never share a generation. */
  readonly def: number
}

interface SupervisorProc {
  readonly kind: "supervisor"
  readonly gen: number
  m: Protocol.Supervisor
  alive: boolean
  stopped: boolean
  ownerFd: number
  epoch: number
  retire: boolean
  term: boolean
  /** In-process mode: the client process whose fiber it is (it dies with it; its service does not). */
  host: Pid | null
  /** The definition its starter had (the hint's fingerprint). */
  readonly def: number
}

interface ServiceProc {
  readonly kind: "service"
  readonly gen: number
  alive: boolean
  listening: boolean
  stopped: boolean
}

type Proc = ClientProc | SupervisorProc | ServiceProc

export interface World {
  set: { exists: boolean; epoch: number; lock: Pid | null; count: Array<Pid>; ring: number }
  /** Inode linked at `<name>.owner`, or -1. */
  ownerPath: number
  nextInode: number
  hint: { gen: number; ready: boolean; abandoned: boolean } | null
  procs: Record<Pid, Proc>
  nextGen: number
  budget: Budget
  /** Whether anything the protocol cannot clean up by itself happened (a SIGKILL, an ipcrm). */
  damaged: boolean
  ipcrmed: boolean
  inProcess: boolean
  standby: boolean
}

export class Violation extends Error {}

/** The decision code under test: the protocol's own by default; tests pass broken variants. */
export interface Machines {
  readonly client: typeof Protocol.client
  readonly supervisor: typeof Protocol.supervisor
  readonly tidy: typeof Protocol.tidy
  readonly interrupts: typeof Protocol.interrupts
  readonly standby: typeof Protocol.standby
}

export const protocol: Machines = {
  client: Protocol.client,
  supervisor: Protocol.supervisor,
  tidy: Protocol.tidy,
  interrupts: Protocol.interrupts,
  standby: Protocol.standby
}

export interface Mode {
  /** `make` services supervised in-process (see the module comment). */
  readonly inProcess?: boolean | undefined
  /** Holders run standbys (in-process mode). */
  readonly standby?: boolean | undefined
  /**
   * How many definitions (fingerprints) the clients have: client `i` has definition
   * `i % definitions` (default 1: every client defines the service alike).
   */
  readonly definitions?: number | undefined
}

const newClient = (def = 0): ClientProc => ({
  kind: "client",
  m: Protocol.clientStart,
  phase: "acquiring",
  epoch: 0,
  regEpoch: -1,
  rereg: 0,
  ownerFd: -1,
  stopped: false,
  gen: -1,
  tidy: Protocol.tidyStart,
  sb: null,
  sbCancel: false,
  sbFd: -1,
  def
})

const fail = (message: string): never => {
  throw new Violation(message)
}

export const initial = (clients: number, budget: Budget, mode: Mode = {}): World => {
  const procs: Record<Pid, Proc> = {}
  for (let i = 0; i < clients; i++) procs[`c${i}`] = newClient(i % (mode.definitions ?? 1))
  return {
    set: { exists: false, epoch: 0, lock: null, count: [], ring: 0 },
    ownerPath: -1,
    nextInode: 1,
    hint: null,
    procs,
    nextGen: 1,
    budget: { ...budget },
    damaged: false,
    ipcrmed: false,
    inProcess: mode.inProcess === true,
    standby: mode.standby === true
  }
}

export const clone = (w: World): World => {
  const procs: Record<Pid, Proc> = {}
  for (const k in w.procs) procs[k] = { ...w.procs[k]! } as Proc
  return {
    set: { ...w.set, count: [...w.set.count] },
    ownerPath: w.ownerPath,
    nextInode: w.nextInode,
    hint: w.hint === null ? null : { ...w.hint },
    procs,
    nextGen: w.nextGen,
    budget: { ...w.budget },
    damaged: w.damaged,
    ipcrmed: w.ipcrmed,
    inProcess: w.inProcess,
    standby: w.standby
  }
}

/** A canonical key: pids are already canonical (client index, generation number). */
export const key = (w: World): string => {
  const ps: Array<string> = []
  for (const k of Object.keys(w.procs).sort()) {
    const p = w.procs[k]!
    switch (p.kind) {
      case "client":
        ps.push(
          `${k}:${JSON.stringify(p.m)}:${p.phase}:${p.tidy._tag}:${p.epoch}:${p.regEpoch}:${p.rereg}:${p.ownerFd}:${
            p.stopped ? 1 : 0
          }:${p.gen}:${p.sb === null ? "-" : p.sb._tag}:${p.sbCancel ? 1 : 0}:${p.sbFd}`
        )
        break
      case "supervisor":
        ps.push(
          `${k}:${JSON.stringify(p.m)}:${p.alive ? 1 : 0}:${p.stopped ? 1 : 0}:${p.ownerFd}:${p.epoch}:${p.retire ? 1 : 0}${p.term ? 1 : 0}:${p.host}:${p.def}`
        )
        break
      case "service":
        ps.push(`${k}:${p.alive ? 1 : 0}${p.listening ? 1 : 0}${p.stopped ? 1 : 0}`)
        break
    }
  }
  const s = w.set
  return `${s.exists ? 1 : 0}:${s.epoch}:${s.lock}:${[...s.count].sort().join(",")}:${s.ring}|${w.ownerPath}:${w.nextInode}|${
    w.hint === null ? "-" : `${w.hint.gen}${w.hint.abandoned ? "a" : w.hint.ready ? "r" : "s"}`
  }|${w.nextGen}|${w.budget.kill}${w.budget.stop}${w.budget.ipcrm}${w.budget.exit}${w.budget.term}${w.budget.refuse}${
    w.damaged ? 1 : 0
  }${
    w.ipcrmed ? 1 : 0
  }|${ps.join(";")}`
}

// ---------------------------------------------------------------------------------------------
// Kernel facts
// ---------------------------------------------------------------------------------------------

const ownerHolders = (w: World, inode: number): Array<Pid> =>
  Object.keys(w.procs).filter((k) => {
    const p = w.procs[k]!
    return p.kind !== "service" && (p.ownerFd === inode || (p.kind === "client" && p.sbFd === inode)) &&
      (p.kind === "client" ? p.phase !== "dead" : p.alive)
  })

const isStopped = (w: World, pid: Pid | null): boolean => pid !== null && w.procs[pid.replace(/\/sb$/, "")]!.stopped

/**
 * Whether a bounded wait on something `holder` holds may end in a time-out now. The real bounds
 * (lockTimeout, a stop's time) are long next to any step, so a time-out only matters when the
 * holder cannot progress: it is stopped, or nothing but time-outs could happen (`stuck`, set by
 * `successors` while it looks for a way out).
 */
let stuck = false
const timeouts = (w: World, holder: Pid | null): boolean => stuck || isStopped(w, holder)

const service = (w: World, gen: number): ServiceProc | undefined => w.procs[`v${gen}`] as ServiceProc | undefined
const supervisorOf = (w: World, gen: number): SupervisorProc | undefined => w.procs[`s${gen}`] as SupervisorProc | undefined

const liveServices = (w: World): Array<ServiceProc> =>
  Object.values(w.procs).filter((p): p is ServiceProc => p.kind === "service" && p.alive)

/** What the kernel does when `pid` dies: undo its semaphores, close its descriptors, parent-death signal. */
const die = (w: World, pid: Pid) => {
  const p = w.procs[pid]!
  if (w.set.lock === pid || w.set.lock === standbyOf(pid)) w.set.lock = null
  w.set.count = w.set.count.filter((c) => c !== pid)
  switch (p.kind) {
    case "client":
      p.phase = "dead"
      p.ownerFd = -1
      p.stopped = false
      p.sb = null
      p.sbFd = -1
      // Its in-process supervisors are fibers of this process.
      for (const k of Object.keys(w.procs)) {
        const s = w.procs[k]!
        if (s.kind === "supervisor" && s.host === pid && s.alive) die(w, k)
      }
      break
    case "supervisor": {
      p.alive = false
      p.ownerFd = -1
      p.stopped = false
      // A detached supervisor is its service's parent (parent-death signal); an in-process one is not.
      const v = service(w, p.gen)
      if (p.host === null && v !== undefined && v.alive) die(w, `v${p.gen}`)
      break
    }
    case "service":
      p.alive = false
      p.listening = false
      p.stopped = false
      break
  }
}

const ensureSet = (w: World) => {
  if (!w.set.exists) w.set = { exists: true, epoch: w.set.epoch + 1, lock: null, count: [], ring: 0 }
}

const removeSet = (w: World) => {
  w.set = { exists: false, epoch: w.set.epoch, lock: null, count: [], ring: 0 }
}

/** Whether `pid`'s view of the set is current (otherwise its semops fail with EIDRM/EINVAL). */
const current = (w: World, epoch: number) => w.set.exists && w.set.epoch === epoch

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

export interface Step {
  readonly label: string
  readonly next: World
}

type ClientR = Protocol.ClientResult<number, string>

/** The outcomes of the client's current step: each a result plus what it did to the world. */
const clientOutcomes = (w: World, pid: Pid, c: ClientProc): Array<[ClientR, (w: World) => void]> => {
  const me = (x: World) => x.procs[pid] as ClientProc
  const m = c.m
  const mustHoldLock = (x: World, what: string) => {
    if (!x.ipcrmed && x.set.lock !== pid) fail(`${pid} ${what} without the startup lock`)
  }
  switch (m._tag) {
    case "Lock": {
      if (!current(w, c.epoch)) {
        return [[{ _tag: "Removed" }, (x) => {
          ensureSet(x)
          me(x).epoch = x.set.epoch
        }]]
      }
      if (w.set.lock === null) return [[{ _tag: "Locked" }, (x) => void (x.set.lock = pid)]]
      return timeouts(w, w.set.lock) ? [[{ _tag: "LockTimeout", error: "LockTimeout" }, () => {}]] : []
    }
    case "ProbeOwner": {
      const existed = w.ownerPath >= 0
      const inode = existed ? w.ownerPath : w.nextInode
      if (ownerHolders(w, inode).length > 0) return [[{ _tag: "Held" }, () => {}]]
      return [[{ _tag: "Free" }, (x) => {
        if (!existed) {
          x.ownerPath = x.nextInode
          x.nextInode++
        }
        me(x).ownerFd = x.ownerPath
      }]]
    }
    case "ReadHint": {
      // The owner's stamp: a supervisor stamps the owner file as its first act; a client holding
      // the owner lock (only possible once an ipcrm broke the startup lock) has not stamped it.
      if (stampOf(w) === undefined) return [[{ _tag: "Unstamped" }, () => {}]]
      const h = w.hint
      const sup = h === null ? undefined : supervisorOf(w, h.gen)
      if (h === null || h.abandoned || sup === undefined || !sup.alive || sup.ownerFd !== w.ownerPath) {
        return [[{ _tag: "None" }, () => {}]]
      }
      return [[h.ready ? { _tag: "Running", gen: h.gen } : { _tag: "Starting", gen: h.gen }, () => {}]]
    }
    case "Yield":
      return [[{ _tag: "Ok" }, (x) => {
        if (x.set.lock === pid && current(x, me(x).epoch)) x.set.lock = null
      }]]
    case "Health": {
      // Its definition first (the hint's fingerprint), with the count read under the lock (a
      // removed set cannot be counted: taken as held, nothing is touched).
      if (supervisorOf(w, m.gen)!.def !== c.def) {
        const held = !current(w, c.epoch) || w.set.count.length > 0
        return [[{ _tag: "Mismatch", error: "DefinitionMismatch", held }, () => {}]]
      }
      const v = service(w, m.gen)
      const healthy = v !== undefined && v.alive && v.listening && !v.stopped
      return [[healthy ? { _tag: "Healthy" } : { _tag: "Unhealthy" }, () => {}]]
    }
    case "AwaitReady": {
      // Someone else's start of another definition is never waited for: it is replaced.
      if (!m.own && supervisorOf(w, m.gen)!.def !== c.def) return [[{ _tag: "NotReady", error: "DefinitionMismatch" }, () => {}]]
      if (w.inProcess && m.own) {
        // The starter runs `start`: the service comes to life with the record of it (see the module comment).
        return [[{ _tag: "NotReady", error: "StartFailed" }, () => {}], [{ _tag: "Ready" }, (x) => {
          x.procs[`v${m.gen}`] = { kind: "service", gen: m.gen, alive: true, listening: true, stopped: false }
        }]]
      }
      if (w.inProcess) {
        // Someone else's start: ready once its starter recorded it so.
        const ready = w.hint !== null && w.hint.gen === m.gen && w.hint.ready && !w.hint.abandoned
        const out: Array<[ClientR, (w: World) => void]> = [[{ _tag: "NotReady", error: "StartFailed(timeout)" }, () => {}]]
        if (ready) out.push([{ _tag: "Ready" }, () => {}])
        return out
      }
      const v = service(w, m.gen)
      if (v === undefined || !v.alive) return [[{ _tag: "NotReady", error: "StartFailed(exited)" }, () => {}]]
      const out: Array<[ClientR, (w: World) => void]> = [[{ _tag: "NotReady", error: "StartFailed(timeout)" }, () => {}]]
      if (v.listening && !v.stopped) out.push([{ _tag: "Ready" }, () => {}])
      return out
    }
    case "MarkReady":
      return [[{ _tag: "Ok" }, (x) => {
        mustHoldLock(x, "wrote the hint")
        x.hint = { gen: m.gen, ready: true, abandoned: false }
      }]]
    case "Retire": {
      const target = retireTarget(w, m.target)
      return [[{ _tag: "Ok" }, (x) => {
        if (target === undefined) return
        const s = x.procs[target] as SupervisorProc
        notInUse(x, pid, s.gen, "retired")
        s.retire = true
      }]]
    }
    case "AwaitOwner": {
      const inode = w.ownerPath >= 0 ? w.ownerPath : w.nextInode
      const holders = ownerHolders(w, inode).filter((h) => h !== pid)
      if (holders.length === 0) {
        return [[{ _tag: "Gone" }, (x) => {
          if (x.ownerPath < 0) {
            x.ownerPath = x.nextInode
            x.nextInode++
          }
          me(x).ownerFd = x.ownerPath
        }]]
      }
      return holders.some((h) => timeouts(w, h)) ? [[{ _tag: "Stuck", error: "OwnerUnresponsive" }, () => {}]] : []
    }
    case "Kill": {
      if (w.inProcess) {
        // In-process (the PostgreSQL counter's kill): the session holding the owner lock is
        // terminated, whoever holds it — a supervisor (its process and service live on) or a
        // standby (it finds its lock lost).
        return [[{ _tag: "Ok" }, (x) => {
          if (x.ownerPath < 0) return
          for (const h of ownerHolders(x, x.ownerPath)) {
            const p = x.procs[h]!
            if (p.kind === "supervisor") die(x, h)
            else if (p.kind === "client" && p.sbFd === x.ownerPath) p.sbFd = -1
          }
        }]]
      }
      const target = retireTarget(w, m.target)
      return [[{ _tag: "Ok" }, (x) => {
        if (target !== undefined) die(x, target)
      }]]
    }
    case "Sweep":
      return [[{ _tag: "Ok" }, (x) => {
        mustHoldLock(x, "swept")
        if (x.inProcess) {
          // The definition's `stop` of the service the hint names: nothing else is known.
          const v = x.hint === null ? undefined : service(x, x.hint.gen)
          if (v !== undefined && v.alive) {
            const sup = supervisorOf(x, v.gen)
            if (sup !== undefined && sup.alive && sup.ownerFd === x.ownerPath && x.ownerPath >= 0) {
              fail(`${pid} swept v${v.gen}, which belongs to the live owner s${v.gen}`)
            }
            die(x, `v${v.gen}`)
          }
          return
        }
        for (const k of Object.keys(x.procs)) {
          const p = x.procs[k]!
          if (p.kind === "client" || !p.alive) continue
          const sup = p.kind === "supervisor" ? p : supervisorOf(x, p.gen)!
          if (sup.alive && sup.ownerFd === x.ownerPath && x.ownerPath >= 0) {
            fail(`${pid} swept ${k}, which belongs to the live owner s${sup.gen}`)
          }
          die(x, k)
        }
      }]]
    case "Spawn": {
      if (c.ownerFd < 0 || c.ownerFd !== w.ownerPath) fail(`${pid} spawned without holding the owner lock`)
      const refused: Array<[ClientR, (w: World) => void]> = w.budget.refuse > 0
        ? [[{ _tag: "Refused", error: "PortInUse" }, (x) => void x.budget.refuse--]]
        : []
      return [...refused, [{ _tag: "Spawned", gen: w.nextGen }, (x) => {
        mustHoldLock(x, "spawned")
        const gen = x.nextGen++
        x.procs[`s${gen}`] = {
          kind: "supervisor",
          gen,
          m: Protocol.supervisorStart,
          alive: true,
          stopped: false,
          ownerFd: me(x).ownerFd,
          epoch: x.set.epoch,
          retire: false,
          term: false,
          host: x.inProcess ? pid : null,
          def: me(x).def
        }
        if (!x.inProcess) x.procs[`v${gen}`] = { kind: "service", gen, alive: true, listening: false, stopped: false }
        me(x).ownerFd = -1
      }]]
    }
    case "WriteHint":
      return [[{ _tag: "Ok" }, (x) => {
        mustHoldLock(x, "wrote the hint")
        x.hint = { gen: m.gen, ready: false, abandoned: false }
      }]]
    case "Register": {
      if (!current(w, c.epoch) || w.set.lock !== pid) {
        return [[{ _tag: "Removed" }, (x) => {
          ensureSet(x)
          me(x).epoch = x.set.epoch
        }]]
      }
      return [[{ _tag: "Ok" }, (x) => {
        x.set.count.push(pid)
        x.set.ring++
        x.set.lock = null
        me(x).regEpoch = x.set.epoch
        me(x).gen = m.gen
      }]]
    }
    case "Abandon": {
      const gen = m.gen
      return [[{ _tag: "Ok" }, (x) => {
        mustHoldLock(x, "abandoned")
        if (gen !== undefined) notInUse(x, pid, gen, "abandoned")
        if (gen !== undefined) {
          // The request to its supervisor is the hint, marked abandoned (read between its waits).
          x.hint = { gen, ready: false, abandoned: true }
        } else {
          x.hint = null
          if (me(x).ownerFd >= 0 && me(x).ownerFd === x.ownerPath) x.ownerPath = -1
          me(x).ownerFd = -1
        }
      }]]
    }
    case "Release": {
      if (!current(w, c.epoch) || w.set.lock !== pid) {
        return [[{ _tag: "Removed" }, (x) => void (me(x).ownerFd = -1)]]
      }
      const remove = m.remove
      return [[{ _tag: "Ok" }, (x) => {
        if (remove && x.set.count.length === 0) removeSet(x)
        else x.set.lock = null
        me(x).ownerFd = -1
      }]]
    }
    case "Done":
    case "Failed":
      return []
  }
}

/**
 * A client of another definition never ends (retires or abandons) a generation whose service
 * lives and that clients registered with and still hold: a definition mismatch leaves it alone.
 * (Its own definition's clients end one that is unusable, held or not; a generation whose
 * service is gone anyone may end.) The count can only decrease under the lock, so a generation
 * held now was held when the client decided. After an `ipcrm` the lock and the count mean
 * nothing: not checked.
 */
const notInUse = (x: World, pid: Pid, gen: number, what: string) => {
  if (x.ipcrmed || service(x, gen)?.alive !== true) return
  const me = x.procs[pid] as ClientProc
  if (supervisorOf(x, gen)?.def === me.def) return
  const holders = Object.keys(x.procs).filter((k) => {
    const p = x.procs[k]!
    return p.kind === "client" && p.phase === "holding" && p.gen === gen && x.set.count.includes(k)
  })
  if (holders.length > 0) fail(`${pid} ${what} g${gen} of another definition, held by ${holders.join(", ")}`)
}

/** The supervisor that stamped the current owner file (it holds its lock), if any. */
const stampOf = (w: World): Pid | undefined =>
  w.ownerPath < 0 ? undefined : ownerHolders(w, w.ownerPath).find((h) => w.procs[h]!.kind === "supervisor")

/** Who a retire or kill is aimed at: the hinted generation's supervisor, or the owner's stamp. */
const retireTarget = (w: World, target: Protocol.Target<number>): Pid | undefined => {
  if (target._tag === "Gen") {
    const s = supervisorOf(w, target.gen)
    return s !== undefined && s.alive ? `s${target.gen}` : undefined
  }
  return stampOf(w)
}

const tidyOutcomes = (w: World, pid: Pid, c: ClientProc): Array<[Protocol.TidyResult, (w: World) => void]> => {
  const me = (x: World) => x.procs[pid] as ClientProc
  switch (c.tidy._tag) {
    case "TryLock":
      if (!current(w, c.epoch) || w.set.count.length > 0 || w.set.lock !== null) return [[{ _tag: "Busy" }, () => {}]]
      return [[{ _tag: "Locked" }, (x) => void (x.set.lock = pid)]]
    case "ProbeOwner": {
      const existed = w.ownerPath >= 0
      if (existed && ownerHolders(w, w.ownerPath).length > 0) return [[{ _tag: "Held" }, () => {}]]
      return [[{ _tag: "Free", orphan: w.inProcess && w.hint !== null }, (x) => {
        if (existed) me(x).ownerFd = x.ownerPath
      }]]
    }
    case "Sweep":
      return [[{ _tag: "Ok" }, (x) => {
        if (!x.ipcrmed && x.set.lock !== pid) fail(`${pid} swept without the lock`)
        const v = x.hint === null ? undefined : service(x, x.hint.gen)
        if (v !== undefined && v.alive) {
          const sup = supervisorOf(x, v.gen)
          if (sup !== undefined && sup.alive && sup.ownerFd === x.ownerPath) fail(`${pid} swept v${v.gen}, which belongs to the live owner`)
          die(x, `v${v.gen}`)
        }
      }]]
    case "Remove": {
      return [[{ _tag: "Ok" }, (x) => {
        if (!x.ipcrmed && x.set.lock !== pid) fail(`${pid} tidied without the lock`)
        x.hint = null
        if (x.ownerPath >= 0 && me(x).ownerFd === x.ownerPath) x.ownerPath = -1
        else if (x.ownerPath >= 0 && ownerHolders(x, x.ownerPath).length === 0) x.ownerPath = -1
        me(x).ownerFd = -1
        if (current(x, me(x).epoch) && x.set.lock === pid) removeSet(x)
      }]]
    }
    case "Unlock":
      return [[{ _tag: "Ok" }, (x) => {
        if (x.set.lock === pid) x.set.lock = null
      }]]
    case "End":
      return []
  }
}

/** The standby of client `pid` takes the startup lock through a session of its own (the owner's): its own holder id. */
const standbyOf = (pid: Pid): Pid => `${pid}/sb`

const standbyOutcomes = (w: World, pid: Pid, c: ClientProc): Array<[Protocol.StandbyResult, (w: World) => void]> => {
  const me = (x: World) => x.procs[pid] as ClientProc
  const sb = c.sb!
  const holder = standbyOf(pid)
  const dropped = () => {
    const end = (x: World) => {
      const c = me(x)
      if (x.set.lock === holder) x.set.lock = null
      c.sbFd = -1
      c.sb = null
    }
    return end
  }
  switch (sb._tag) {
    case "AwaitOwner": {
      // Interruptible here: a released reference ends the wait, holding nothing.
      if (c.sbCancel) return [[{ _tag: "Ok" }, (x) => void (me(x).sb = null)]]
      const inode = w.ownerPath >= 0 ? w.ownerPath : w.nextInode
      if (ownerHolders(w, inode).length > 0) return []
      return [[{ _tag: "Got" }, (x) => {
        if (x.ownerPath < 0) {
          x.ownerPath = x.nextInode
          x.nextInode++
        }
        me(x).sbFd = x.ownerPath
      }]]
    }
    case "Lock": {
      // Interruptible while waiting: lets the owner lock go.
      if (c.sbCancel) return [[{ _tag: "Ok" }, dropped()]]
      if (c.sbFd < 0 || c.sbFd !== w.ownerPath) return [[{ _tag: "Lost" }, () => {}]]
      if (!current(w, c.epoch)) return [[{ _tag: "Lost" }, () => {}]]
      if (w.set.lock === null) return [[{ _tag: "Locked" }, (x) => void (x.set.lock = holder)]]
      return timeouts(w, w.set.lock) ? [[{ _tag: "LockTimeout" }, () => {}]] : []
    }
    case "ReadHint": {
      if (c.sbFd < 0 || c.sbFd !== w.ownerPath) return [[{ _tag: "Lost" }, () => {}]]
      const h = w.hint
      const ours = h !== null && h.gen === sb.gen && h.ready && !h.abandoned
      return [[ours ? { _tag: "Ours" } : { _tag: "NotOurs" }, () => {}]]
    }
    case "Adopt":
      if (c.sbFd < 0 || c.sbFd !== w.ownerPath) return [[{ _tag: "Lost" }, () => {}]]
      return [[{ _tag: "Ok" }, (x) => {
        if (!x.ipcrmed && x.set.lock !== holder) fail(`${pid}'s standby adopted without the startup lock`)
        const c = me(x)
        if (c.sbFd < 0 || c.sbFd !== x.ownerPath) fail(`${pid}'s standby adopted without holding the owner lock`)
        const old = supervisorOf(x, sb.gen)
        if (old !== undefined && old.alive) fail(`${pid}'s standby adopted g${sb.gen} while its supervisor lives`)
        x.procs[`s${sb.gen}`] = {
          kind: "supervisor",
          gen: sb.gen,
          m: Protocol.supervisorStart,
          alive: true,
          stopped: false,
          ownerFd: c.sbFd,
          epoch: x.set.epoch,
          retire: false,
          term: false,
          host: pid,
          def: old?.def ?? c.def
        }
        c.sbFd = -1
      }]]
    case "Unlock":
      return [[{ _tag: "Ok" }, (x) => {
        if (x.set.lock === holder) x.set.lock = null
      }]]
    case "Decline":
    case "Retry":
      return [[{ _tag: "Ok" }, (x) => {
        const c = me(x)
        if (x.set.lock === holder) x.set.lock = null
        c.sbFd = -1
      }]]
    case "Supervise":
    case "End":
      return []
  }
}

const supervisorOutcomes = (
  w: World,
  pid: Pid,
  s: SupervisorProc,
  P: Machines
): Array<[Protocol.SupervisorResult, (w: World) => void]> => {
  const m = s.m
  const v = service(w, s.gen) ?? { alive: false }
  const events: Array<[Protocol.SupervisorResult, (w: World) => void]> = []
  const event = (e: Protocol.SupervisorEvent) => {
    if (P.interrupts(m, e)) events.push([{ _tag: "Event", event: e }, () => {}])
  }
  // Signals stay pending until the stop they ask for; exit, removal and abandonment are facts.
  if (s.retire) event("Retire")
  if (s.term || (w.hint !== null && w.hint.gen === s.gen && w.hint.abandoned)) event("Term")
  // An in-process supervisor does not watch its service (a client's health check finds it dead).
  if (!v.alive && s.host === null) event("Exited")
  if (!current(w, s.epoch)) event("Removed")
  const locked = current(w, s.epoch) && w.set.lock === pid
  switch (m._tag) {
    case "AwaitZero":
      if (current(w, s.epoch) && w.set.count.length === 0) events.push([{ _tag: "Zero" }, () => {}])
      return events
    case "Grace":
      if (current(w, s.epoch) && w.set.ring > 0) events.push([{ _tag: "Rung" }, (x) => void (x.set.ring = 0)])
      else events.push([{ _tag: "Expired" }, () => {}])
      return events
    case "Lock":
      if (current(w, s.epoch)) {
        if (w.set.lock === null) events.push([{ _tag: "Locked" }, (x) => void (x.set.lock = pid)])
        else if (timeouts(w, w.set.lock)) events.push([{ _tag: "LockTimeout" }, () => {}])
      }
      return events
    case "Recheck":
      if (!locked) return events
      return [[w.set.count.length > 0 || w.set.ring > 0 ? { _tag: "Busy" } : { _tag: "Idle" }, () => {}]]
    case "Unlock":
      if (!locked) return events
      return [[{ _tag: "Ok" }, (x) => void (x.set.lock = null)]]
    case "Stop":
      return [[{ _tag: "Ok" }, (x) => {
        if (m.reason === "Idle" && !x.ipcrmed && (x.set.lock !== pid || x.set.count.length > 0)) {
          fail(`s${s.gen} stopped its idle service with count ${x.set.count.length}, lock ${x.set.lock}`)
        }
        if (service(x, s.gen)?.alive === true) die(x, `v${s.gen}`)
        // A retire request stays pending until a retire handles it (it must end in an exit: the
        // requester waits for the owner lock); the service is gone, so a SIGTERM has been served.
        const me = x.procs[pid] as SupervisorProc
        me.term = false
        if (m.reason === "Retire") me.retire = false
      }]]
    case "Cleanup":
      return [[{ _tag: "Ok" }, (x) => {
        if (!x.ipcrmed && x.set.lock !== pid) fail(`s${s.gen} cleaned up without the lock`)
        if (x.hint !== null && x.hint.gen === s.gen) x.hint = null
      }]]
    case "Release":
      if (!locked) return events
      return [[w.set.count.length === 0 ? { _tag: "SetRemoved" } : { _tag: "Kept" }, (x) => {
        if (x.set.count.length === 0) {
          if (x.ownerPath === (x.procs[pid] as SupervisorProc).ownerFd) x.ownerPath = -1
          removeSet(x)
        } else x.set.lock = null
      }]]
    case "Reopen":
      return [...events, [{ _tag: "Ok" }, (x) => {
        ensureSet(x)
        ;(x.procs[pid] as SupervisorProc).epoch = x.set.epoch
      }]]
    case "Exit":
      return []
  }
}

/** Every atomic step any party can take from `w`. */
export const successors = (w: World, P: Machines = protocol): Array<Step> => {
  stuck = false
  const steps = partySteps(w, P)
  if (steps.length > 0 || settled(w)) return [...steps, ...adversary(w)]
  // Every party waits on another: only the time-outs of their bounded waits can move it on.
  stuck = true
  const unstuck = partySteps(w, P)
  stuck = false
  return [...unstuck, ...adversary(w)]
}

const partySteps = (w: World, P: Machines): Array<Step> => {
  const out: Array<Step> = []
  const push = (label: string, f: (x: World) => void) => {
    const x = clone(w)
    f(x)
    out.push({ label, next: x })
  }
  for (const pid of Object.keys(w.procs)) {
    const p = w.procs[pid]!
    if (p.stopped) continue
    if (p.kind === "client") {
      if (p.sb !== null && p.phase !== "dead") {
        for (const [r, f] of standbyOutcomes(w, pid, p)) {
          push(`${pid} standby ${p.sb._tag} → ${r._tag}`, (x) => {
            const c = x.procs[pid] as ClientProc
            const before = c.sb
            f(x)
            if (c.sb !== null && c.sb === before) {
              c.sb = P.standby(c.sb, r)
              if (c.sb._tag === "Supervise" || c.sb._tag === "End") c.sb = null
            }
          })
        }
      }
      if (p.phase === "acquiring") {
        for (const [r, f] of clientOutcomes(w, pid, p)) {
          push(`${pid} ${p.m._tag} → ${r._tag}`, (x) => {
            f(x)
            const c = x.procs[pid] as ClientProc
            c.m = P.client(c.m, r)
            if (c.m._tag === "Done") {
              c.phase = "holding"
              // A standby, unless this process supervises the generation itself.
              if (x.standby && supervisorOf(x, c.m.gen)?.host !== pid) {
                c.sb = Protocol.standbyStart(c.m.gen)
                c.sbCancel = false
              }
            }
            if (c.m._tag === "Failed") c.phase = "failed"
          })
        }
      } else if (p.phase === "holding") {
        push(`${pid} release`, (x) => {
          const c = x.procs[pid] as ClientProc
          if (current(x, c.regEpoch)) x.set.count = x.set.count.filter((h) => h !== pid)
          if (x.set.lock === pid) x.set.lock = null
          c.rereg = 0
          if (c.sb !== null) c.sbCancel = true
          c.phase = current(x, c.regEpoch) && x.set.count.length === 0 ? "releasing" : "released"
        })
        // The watchdog: the reference was lost with a removed set; register it again, under the lock.
        if (!current(w, p.regEpoch) || !w.set.count.includes(pid)) {
          if (p.rereg === 0 || (p.rereg === 1 && w.set.lock === null) || !current(w, p.epoch)) {
            push(`${pid} re-register (lock)`, (x) => {
              const c = x.procs[pid] as ClientProc
              ensureSet(x)
              c.epoch = x.set.epoch
              if (x.set.lock === null) {
                x.set.lock = pid
                c.rereg = 2
              } else c.rereg = 1
            })
          } else if (p.rereg === 2 && w.set.lock === pid) {
            push(`${pid} re-register (+1)`, (x) => {
              const c = x.procs[pid] as ClientProc
              x.set.count.push(pid)
              x.set.lock = null
              c.regEpoch = x.set.epoch
              c.rereg = 0
            })
          }
        }
      } else if (p.phase === "releasing" && p.sb === null) {
        // (The releaser awaits its own standby's end before it tidies.)
        for (const [r, f] of tidyOutcomes(w, pid, p)) {
          push(`${pid} tidy ${p.tidy._tag} → ${r._tag}`, (x) => {
            f(x)
            const c = x.procs[pid] as ClientProc
            c.tidy = P.tidy(c.tidy, r)
            if (c.tidy._tag === "End") c.phase = "released"
          })
        }
      }
    } else if (p.kind === "supervisor") {
      if (!p.alive) continue
      for (const [r, f] of supervisorOutcomes(w, pid, p, P)) {
        push(`${pid} ${p.m._tag} → ${r._tag === "Event" ? r.event : r._tag}`, (x) => {
          f(x)
          const s = x.procs[pid] as SupervisorProc
          s.m = P.supervisor(s.m, r)
          if (s.m._tag === "Exit") die(x, pid)
        })
      }
    } else if (p.alive && !p.listening) {
      push(`${pid} listens`, (x) => void ((x.procs[pid] as ServiceProc).listening = true))
    }
  }
  return out
}

const adversary = (w: World): Array<Step> => {
  const out: Array<Step> = []
  const push = (label: string, f: (x: World) => void) => {
    const x = clone(w)
    f(x)
    out.push({ label, next: x })
  }
  for (const pid of Object.keys(w.procs)) {
    const p = w.procs[pid]!
    const alive = p.kind === "client" ? p.phase === "acquiring" || p.phase === "holding" || p.phase === "releasing" : p.alive
    if (!alive) continue
    if (w.budget.kill > 0) {
      // An in-process supervisor is a fiber: SIGKILL is its host process's.
      const victim = p.kind === "supervisor" && p.host !== null ? p.host : pid
      push(`SIGKILL ${victim}`, (x) => {
        x.budget.kill--
        x.damaged = true
        die(x, victim)
      })
    }
    if (p.stopped) {
      push(`SIGCONT ${pid}`, (x) => void (x.procs[pid]!.stopped = false))
    } else if (w.budget.stop > 0) {
      push(`SIGSTOP ${pid}`, (x) => {
        x.budget.stop--
        x.procs[pid]!.stopped = true
      })
    }
    if (p.kind === "service" && w.budget.exit > 0) {
      push(`${pid} exits on its own`, (x) => {
        x.budget.exit--
        die(x, pid)
      })
    }
    if (p.kind === "supervisor" && w.budget.term > 0) {
      push(`SIGTERM ${pid}`, (x) => {
        x.budget.term--
        ;(x.procs[pid] as SupervisorProc).term = true
      })
    }
  }
  if (w.budget.ipcrm > 0 && w.set.exists) {
    push("ipcrm", (x) => {
      x.budget.ipcrm--
      x.damaged = true
      x.ipcrmed = true
      removeSet(x)
    })
  }
  return out
}

/** Invariants of every state. */
export const check = (w: World) => {
  const live = liveServices(w)
  if (live.length > 1) fail(`two live instances: ${live.map((v) => `v${v.gen}`).join(", ")}`)
  for (const v of live) {
    const s = supervisorOf(w, v.gen)!
    const supervised = s.alive && w.ownerPath >= 0 && s.ownerFd === w.ownerPath
    if (w.inProcess) {
      // A service outlives its in-process supervisor: then the hint must still name it, so that
      // a standby adopts it or the next client sweeps it.
      if (!supervised && (w.hint === null || w.hint.gen !== v.gen)) fail(`v${v.gen} is alive and nobody is responsible for it`)
      continue
    }
    if (!s.alive) fail(`v${v.gen} is alive without its supervisor`)
    // Exactly one party responsible for it: its supervisor, holding the current owner file.
    if (!supervised) fail(`v${v.gen}'s supervisor does not hold the owner file`)
  }
  // The owner of the name supervises the newest generation: a hint never names a newer one
  // (a supervisor of an older generation holding the owner lock would be responsible for nothing).
  for (const p of Object.values(w.procs)) {
    if (p.kind === "supervisor" && p.alive && w.ownerPath >= 0 && p.ownerFd === w.ownerPath && w.hint !== null && w.hint.gen > p.gen) {
      fail(`s${p.gen} holds the owner lock, but the hint names the newer generation ${w.hint.gen}`)
    }
  }
  let lockHolders = 0
  for (const pid of Object.keys(w.procs)) {
    const p = w.procs[pid]!
    if (p.kind === "client" && p.phase === "acquiring" && Protocol.holdsLock(p.m) && w.set.lock === pid) lockHolders++
    if (p.kind === "client" && p.sb !== null && Protocol.standbyHoldsLock(p.sb) && w.set.lock === standbyOf(pid)) lockHolders++
  }
  if (lockHolders > 1) fail("two clients (or a client and its standby) hold the startup lock")
  // A client that finished acquiring holds a reference the supervisor can see (unless an ipcrm
  // took it, and then its watchdog registers it again).
  for (const pid of Object.keys(w.procs)) {
    const p = w.procs[pid]!
    if (
      p.kind === "client" && p.phase === "holding" &&
      (p.regEpoch < 0 || (current(w, p.regEpoch) && !w.set.count.includes(pid)))
    ) {
      fail(`${pid} holds no reference although it acquired`)
    }
    // Sharing is never silent adoption: a client only ever holds a generation of its own definition.
    if (p.kind === "client" && p.phase === "holding" && supervisorOf(w, p.gen)?.def !== p.def) {
      fail(`${pid} joined g${p.gen}, which runs another definition`)
    }
  }
}

/** Whether `w` is a final state: every client finished and no party can move. */
export const settled = (w: World): boolean =>
  Object.values(w.procs).every((p) =>
    p.kind === "client"
      ? p.phase !== "acquiring" && p.phase !== "holding" && p.phase !== "releasing" && (p.sb === null || p.phase === "dead")
      : p.kind === "supervisor" ? !p.alive : true
  )

/** What is left behind in a settled state. */
export const leftovers = (w: World): Array<string> => {
  const left: Array<string> = []
  if (w.set.exists) left.push(`the set (count ${w.set.count.length})`)
  if (w.hint !== null) left.push("the hint")
  if (w.ownerPath >= 0) left.push("the owner file")
  for (const [pid, p] of Object.entries(w.procs)) {
    if (p.kind !== "client" && p.alive) left.push(pid)
  }
  return left
}

/** A late client (no adversary any more): acquire, release, and whatever its supervisor then does. */
export const withLateClient = (w: World): World => {
  const x = clone(w)
  x.budget = { kill: 0, stop: 0, ipcrm: 0, exit: 0, term: 0, refuse: 0 }
  for (const p of Object.values(x.procs)) if (p.kind !== "client" || p.phase !== "dead") p.stopped = false
  x.procs["late"] = newClient()
  return x
}
