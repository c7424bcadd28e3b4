/**
 * SharedService: definitions, acquisition (the client side of `protocol.ts`), release, and
 * inspection. Per process and name there is one `Local`: the in-process count of handles over
 * the single kernel reference the process holds while that count is positive; only a process's
 * first handle runs the protocol.
 *
 * @internal
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, Fiber, Option, Scope, Semaphore } from "effect"
import type { Pipeable } from "effect/Pipeable"
import { pipeArguments } from "effect/Pipeable"
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs"
import { constants as osConstants } from "node:os"
import * as Process from "../Process.ts"
import type { Counter, Owned } from "../RefCounter.ts"
import { RefCounter } from "../RefCounter.ts"
import * as ServiceInfo from "../ServiceInfo.ts"
import { CorruptHint, DefinitionMismatch, InvalidOption, LockTimeout, RecoveryFailed, StartFailed } from "../SharedServiceError.ts"
import type { InvalidName, PortInUse, SessionLost, SharedServiceError, SystemError } from "../SharedServiceError.ts"
import { probe, type Readiness } from "./command.ts"
import * as Generation from "./generation.ts"
import * as Hint from "./hint.ts"
import { validate } from "./name.ts"
import { filePath, freshLog, probeWritable, retireLog, runtimeDirPath } from "./paths.ts"
import * as Proc from "./proc.ts"
import * as Protocol from "./protocol.ts"
import * as Supervisor from "./supervisor.ts"

export const TypeId = "~@quiesce/shared-service/SharedService"

export type ReaperMode = "detached" | "in-process"

export interface Options<E, R> {
  /** 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`; with the uid and runtime directory, it names the kernel objects. */
  readonly name: string
  /**
   * Starts the service (only for the first client, under the startup lock, once its supervisor
   * exists) and describes it. The detached supervisor stops it by the pid it returns: a starter
   * SIGKILLed before `start` returns leaves whatever it spawned unknown to everyone.
   */
  readonly start: Effect.Effect<ServiceInfo.ServiceInfo, E, R>
  /** Stops it (the in-process supervisor). Default: `Process.stop` of the verified pid (its group if `processGroup`). */
  readonly stop?: ((info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown, R>) | undefined
  /** Run by every later client's first handle, under the lock, within `healthTimeout`; a failure runs `recover`. */
  readonly healthCheck?: ((info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown, R>) | undefined
  /**
   * Brings an unhealthy service back, under the lock, within `startTimeout`; the generation's
   * supervisor adopts what it returns. Default: the generation is retired (its supervisor stops
   * the service) and a new one started.
   */
  readonly recover?: ((info: ServiceInfo.ServiceInfo) => Effect.Effect<ServiceInfo.ServiceInfo, E, R>) | undefined
  /** How long the service outlives its last client, from the last release (a client arriving meanwhile keeps it). Default 0. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Bound on `start` (and `recover`, and readiness): `StartFailed` with `timeoutMillis`. Default 30 s. */
  readonly startTimeout?: Duration.Input | undefined
  /** Bound on waiting for the startup lock: `LockTimeout`. Default startTimeout + stopTimeout + 5 s. */
  readonly lockTimeout?: Duration.Input | undefined
  /** How long a stop waits after its signal (SIGTERM, or a `command`'s `stopSignal`) before SIGKILL. Default 5 s. */
  readonly stopTimeout?: Duration.Input | undefined
  /** Bound on each health check run under the lock (a stopped or hung service fails it). Default 5 s. */
  readonly healthTimeout?: Duration.Input | undefined
  /** Who stops the service after the last client (see `ReaperMode`). Default `"detached"`. */
  readonly reaper?: ReaperMode | undefined
  /**
   * What identifies this definition (for a command: its command line, directory, environment),
   * recorded in the hint. A client with a fingerprint never shares a generation recorded with
   * another one (or with none): it fails with `DefinitionMismatch` while that generation has
   * clients, and replaces it when nobody holds it. Without one, a client joins whatever runs.
   */
  readonly fingerprint?: string | undefined
}

export interface SharedService<out E = never, out R = never> extends Pipeable {
  readonly [TypeId]: {
    readonly _E: (_: never) => E
    readonly _R: (_: never) => R
  }
  readonly name: string
  readonly idleTimeToLive: Duration.Duration
  readonly startTimeout: Duration.Duration
  readonly lockTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly healthTimeout: Duration.Duration
  readonly reaper: ReaperMode
}

export interface ServiceHandle {
  readonly name: string
  readonly info: ServiceInfo.ServiceInfo
  /** `true` when this acquisition started (or restarted) the service. */
  readonly started: boolean
  /**
   * Completes when the reference behind this handle is lost: a database counter's session
   * ended (the server no longer counts this process; the service may be stopped once nobody
   * else holds it). Never completes on the kernel counters. A process's handles share one
   * reference: they are lost together, and until they are all released the process's further
   * acquisitions of the name fail with `SessionLost`.
   */
  readonly lost: Effect.Effect<SessionLost>
}

/** A shell command run by its supervisor (`SharedService.command`). */
export interface CommandSpec {
  readonly command: string
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly port?: number | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  readonly ready?: Readiness | undefined
  /** The TCP ports whose listeners must belong to the service (`port`, and a local `ready` target's). */
  readonly ownedPorts: ReadonlyArray<number>
  /** What the supervisor's stops begin with (validated: `validateStopSignal`). Default `SIGTERM`. */
  readonly stopSignal?: NodeJS.Signals | undefined
}

const variance = { _E: (_: never) => _, _R: (_: never) => _ }

class SharedServiceImpl<E, R> implements SharedService<E, R> {
  readonly [TypeId] = variance
  readonly name: string
  readonly start: Effect.Effect<ServiceInfo.ServiceInfo, E, R>
  readonly stop: (info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown, R>
  readonly healthCheck: ((info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown, R>) | undefined
  readonly recover: ((info: ServiceInfo.ServiceInfo) => Effect.Effect<ServiceInfo.ServiceInfo, E, R>) | undefined
  readonly idleTimeToLive: Duration.Duration
  readonly startTimeout: Duration.Duration
  readonly lockTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly healthTimeout: Duration.Duration
  readonly reaper: ReaperMode
  readonly fingerprint: string | undefined
  /** Set for `command` services: the supervisor runs the command itself. */
  readonly command: CommandSpec | undefined

  constructor(options: Options<E, R>, command?: CommandSpec) {
    this.command = command
    this.name = options.name
    this.start = options.start
    this.idleTimeToLive = Duration.fromInputUnsafe(options.idleTimeToLive ?? 0)
    this.startTimeout = Duration.fromInputUnsafe(options.startTimeout ?? Duration.seconds(30))
    this.stopTimeout = Duration.fromInputUnsafe(options.stopTimeout ?? Duration.seconds(5))
    this.healthTimeout = Duration.fromInputUnsafe(options.healthTimeout ?? Duration.seconds(5))
    // A lock holder may be starting the service: by default wait for a whole start and a stop.
    this.lockTimeout = Duration.fromInputUnsafe(
      options.lockTimeout ?? Duration.sum(Duration.sum(this.startTimeout, this.stopTimeout), Duration.seconds(5))
    )
    this.stop = options.stop ?? ((info) => Effect.asVoid(stopProcess(info, this.stopTimeout)))
    this.healthCheck = options.healthCheck
    this.recover = options.recover
    this.reaper = options.reaper ?? "detached"
    this.fingerprint = options.fingerprint
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}

export const stopProcess = (info: ServiceInfo.ServiceInfo, timeout: Duration.Duration): Effect.Effect<boolean> =>
  Process.stop(info.pid, { timeout, startTime: info.startTime, group: info.processGroup })

export const isSharedService = (u: unknown): u is SharedService<unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u

export const make = <E = never, R = never>(options: Options<E, R>): Effect.Effect<SharedService<E, R>, InvalidName> =>
  Effect.map(validate(options.name), () => new SharedServiceImpl(options))

export const makeUnsafe = <E = never, R = never>(options: Options<E, R>): SharedService<E, R> => {
  const r = Effect.runSyncExit(validate(options.name))
  if (Exit.isFailure(r)) throw Cause.squash(r.cause)
  return new SharedServiceImpl(options)
}

export const makeCommand = (
  options: Omit<Options<never, never>, "start" | "stop" | "recover" | "reaper">,
  command: Omit<CommandSpec, "stopSignal"> & { readonly stopSignal?: string | undefined }
): Effect.Effect<SharedService<StartFailed | PortInUse>, InvalidName | InvalidOption> =>
  Effect.flatMap(validate(options.name), () =>
    Effect.map(validateStopSignal(options.name, command.stopSignal), (stopSignal) =>
      new SharedServiceImpl<StartFailed | PortInUse, never>({ ...options, start: Effect.die("unused") }, { ...command, stopSignal })))

/** Signals that suspend or resume a process: they cannot begin a stop (a SIGCONT goes with every stop signal). */
const notStopSignals = new Set(["SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCONT"])

/** A signal name of this platform (`SIGINT`, …) that can begin a stop; `undefined` stays (SIGTERM). */
export const validateStopSignal = (service: string, signal: string | undefined): Effect.Effect<NodeJS.Signals | undefined, InvalidOption> => {
  if (signal === undefined) return Effect.succeed(undefined)
  const fail = (reason: string) => Effect.fail(new InvalidOption({ service, option: "stopSignal", value: signal, reason }))
  if (!Object.hasOwn(osConstants.signals, signal)) {
    return fail(`not a signal name (e.g. "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1")`)
  }
  if (notStopSignals.has(signal)) return fail("it suspends or resumes a process: it cannot stop one")
  return Effect.succeed(signal as NodeJS.Signals)
}

// ---------------------------------------------------------------------------------------------
// Per-process state
// ---------------------------------------------------------------------------------------------

interface Local {
  holders: number
  gen: Hint.Hint | undefined
  readonly mutex: Semaphore.Semaphore
  watchdog: ReturnType<typeof setInterval> | undefined
  /** The standby supervisor this process runs while it holds the reference (in-process generations). */
  standby: Fiber.Fiber<void> | undefined
}

const locals = new WeakMap<Counter, Local>()
const localOf = (counter: Counter): Local => {
  let l = locals.get(counter)
  if (l === undefined) {
    l = { holders: 0, gen: undefined, mutex: Semaphore.makeUnsafe(1), watchdog: undefined, standby: undefined }
    locals.set(counter, l)
  }
  return l
}

/** How often a holding process checks that its semaphore set still exists. */
const WATCHDOG_MS = 500

/**
 * While this process holds a reference, check every `WATCHDOG_MS` that the set still exists;
 * if it was removed (`ipcrm`), re-open it and register again under the lock, so the count stays
 * true and the supervisor does not stop a service that is still in use.
 */
const startWatchdog = (counter: Counter, local: Local) => {
  // A database counter has nothing to re-create: a lost session is reported (`ServiceHandle.lost`).
  if (local.watchdog !== undefined || counter.exact === false || counter.kind === "postgres") return
  let busy = false
  local.watchdog = setInterval(() => {
    if (busy) return
    busy = true
    Effect.runFork(
      counter.count.pipe(
        Effect.asVoid,
        Effect.catchTag("SemaphoreSetRemoved", () =>
          local.holders > 0
            ? counter.reopen.pipe(
              Effect.andThen(Effect.uninterruptible(Effect.andThen(counter.lock(Duration.seconds(2)), counter.reregister)))
            )
            : Effect.void),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => {
          busy = false
        }))
      )
    )
  }, WATCHDOG_MS)
  local.watchdog.unref()
}

const stopWatchdog = (local: Local) => {
  if (local.watchdog !== undefined) {
    clearInterval(local.watchdog)
    local.watchdog = undefined
  }
}

/**
 * Whether the processes of this counter's generations are out of this machine's process table:
 * simulated (memory), or on other machines (postgres). Their liveness is the owner lock's and
 * the health check's, never a pid's.
 */
const remote = (counter: Counter): boolean => counter.kind === "memory" || counter.kind === "postgres"

/** Whether generations on this counter are supervised by a fiber of a client (the definition's own `stop`). */
const inProcessMode = (self: { readonly reaper: ReaperMode }, counter: Counter): boolean =>
  remote(counter) || self.reaper === "in-process"

// ---------------------------------------------------------------------------------------------
// Signals to supervisors
// ---------------------------------------------------------------------------------------------

/** In-process supervisors of this process (and of simulated processes), by name and owner pid. */
const inProcess = new Map<string, { retire: () => void; term: () => void }>()
const inProcessKey = (counter: Counter, pid: number) => `${counter.dir}\0${counter.name}\0${pid}`

/**
 * Retire (SIGUSR2: stop and exit, the requester holds the lock), kill (SIGKILL), or term. A term
 * request, and a retire, are also written in the hint (the supervisor reads it between waits), so
 * here a term only reaches in-process supervisors of this process. Signals only ever go to a
 * process that is one of our supervisors (its command line says so): never to a client process
 * that supervises in-process, never to a pid recycled by someone else.
 */
const signalSupervisor = (
  counter: Counter,
  pid: number,
  startTime: number | undefined,
  what: "retire" | "term" | "kill"
): Effect.Effect<void> => {
  const local = inProcess.get(inProcessKey(counter, pid))
  // A kill must end the owner's hold even when it is a fiber here (a hung `stop`): on a database
  // counter that is terminating its session.
  if (counter.signal !== undefined && (local === undefined || what === "kill")) return counter.signal(pid, what)
  return Effect.sync(() => signalLocal(counter, local, pid, startTime, what))
}

const signalLocal = (
  counter: Counter,
  local: { retire: () => void; term: () => void } | undefined,
  pid: number,
  startTime: number | undefined,
  what: "retire" | "term" | "kill"
) => {
  if (local !== undefined) {
    if (what === "retire") local.retire()
    else local.term()
    return
  }
  if (counter.kind === "memory" || what === "term") return
  if (startTime !== undefined && !Process.isAliveUnsafe(pid, startTime)) return
  if (!Generation.isSupervisor(pid, counter.dir, counter.name)) return
  if (what === "retire") return Generation.askToRetire(pid)
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    // gone
  }
}

// ---------------------------------------------------------------------------------------------
// acquire: the client side of the protocol
// ---------------------------------------------------------------------------------------------

type Gen = Hint.Hint
type Failure = SharedServiceError | unknown
type State = Protocol.Client<Gen, Failure>
type Result = Protocol.ClientResult<Gen, Failure>

/** `QUIESCE_DEBUG=1`: every transition of an acquisition goes to stderr. */
const debug = process.env["QUIESCE_DEBUG"] === "1"

/** What one acquisition keeps between steps. */
interface Context<E, R> {
  readonly self: SharedServiceImpl<E, R>
  readonly counter: Counter
  readonly lockDeadline: number
  readonly restore: <A, E2, R2>(effect: Effect.Effect<A, E2, R2>) => Effect.Effect<A, E2, R2>
  /** The owner lock, while this process holds it (between taking it and handing it over). */
  owned: Owned | undefined
  /** The adopt-mode supervisor's stdin, until the started service's info is sent (`make`). */
  adopt: ((info: ServiceInfo.ServiceInfo | undefined) => void) | undefined
  /** This acquisition started the generation it registered with. */
  started: boolean
  /** Set when the acquiring fiber was interrupted during a user effect: fail as interrupted. */
  interrupted: boolean
  /** The lock was taken before (and given back: a start in progress elsewhere, a removed set). */
  retried: boolean
}

export const acquire = <E, R>(
  self: SharedService<E, R>
): Effect.Effect<ServiceHandle, SharedServiceError | E, R | Scope.Scope> =>
  Effect.flatMap(RefCounter, (rc) =>
    Effect.flatMap(rc.open(self.name), (counter) => {
      const local = localOf(counter)
      return local.mutex.withPermits(1)(
        Effect.uninterruptibleMask((restore) => acquireLocked(self as SharedServiceImpl<E, R>, counter, local, restore))
      )
    }))

const acquireLocked = Effect.fnUntraced(function*<E, R>(
  self: SharedServiceImpl<E, R>,
  counter: Counter,
  local: Local,
  restore: <A, E2, R2>(effect: Effect.Effect<A, E2, R2>) => Effect.Effect<A, E2, R2>
): Effect.fn.Return<ServiceHandle, SharedServiceError | E, R | Scope.Scope> {
  const scope = yield* Scope.Scope
  if (local.holders > 0 && local.gen?.info !== undefined) {
    // This process holds a generation already: of this definition, or this acquisition fails.
    if (mismatched(self, local.gen)) {
      return yield* Effect.fail(definitionMismatch(self, local.gen, yield* Effect.orElseSucceed(counter.count, () => local.holders)))
    }
    const lost = counter.referenceLost?.()
    if (lost !== undefined && Deferred.isDoneUnsafe(lost)) return yield* Deferred.await(lost).pipe(Effect.flatMap(Effect.fail))
    local.holders++
    yield* Scope.addFinalizer(scope, Effect.provideContext(release(counter, local, inProcessMode(self, counter) ? self : undefined), yield* Effect.context<R>()))
    return { name: self.name, info: local.gen.info, started: false, lost: lostOf(counter) }
  }
  const ctx: Context<E, R> = {
    self,
    counter,
    lockDeadline: (yield* Clock.currentTimeMillis) + Duration.toMillis(self.lockTimeout),
    restore,
    owned: undefined,
    adopt: undefined,
    started: false,
    interrupted: false,
    retried: false
  }
  let state: State = Protocol.clientStart
  while (state._tag !== "Done" && state._tag !== "Failed") {
    const result: Result = yield* perform(ctx, state)
    const next = Protocol.client(state, result)
    if (debug) process.stderr.write(`[quiesce client ${process.pid} ${performance.now().toFixed(1)}] ${self.name}: ${state._tag} → ${result._tag} → ${next._tag}\n`)
    state = next
  }
  if (ctx.owned !== undefined) yield* ctx.owned.release
  // A supervisor never told what a `make` start gave (it failed, or was interrupted) hears the
  // channel close: it then reads the hint, and stops what that names.
  ctx.adopt?.(undefined)
  if (state._tag === "Failed") {
    if (ctx.interrupted) return yield* Effect.interrupt
    return yield* Effect.fail(state.error as SharedServiceError | E)
  }
  const gen = state.gen
  local.holders = 1
  local.gen = gen
  startWatchdog(counter, local)
  // A standby, unless this process supervises the generation itself (it would die with it).
  if (inProcessMode(self, counter) && !ctx.started && !inProcess.has(inProcessKey(counter, gen.supervisor.pid))) {
    // Uninterruptible but where nothing is held: the counters' waits are interruptible between
    // their statements or polls only (`Owner.awaitFree`, `Counter.lock`), so an interrupted
    // standby never leaves a lock behind, and one that adopted always hands over to its supervisor.
    local.standby = yield* Effect.forkDetach(Effect.uninterruptible(runStandby(self, counter, gen)))
  }
  yield* Scope.addFinalizer(scope, Effect.provideContext(release(counter, local, inProcessMode(self, counter) ? self : undefined), yield* Effect.context<R>()))
  return { name: self.name, info: gen.info!, started: ctx.started, lost: lostOf(counter) }
})

/** The loss of the reference this process now holds through `counter` (never, for the kernel counters). */
const lostOf = (counter: Counter): Effect.Effect<SessionLost> => {
  const d = counter.referenceLost?.()
  return d === undefined ? Effect.never : Deferred.await(d)
}

const startFailed = (name: string, reason: string, extra?: Partial<ConstructorParameters<typeof StartFailed>[0]>) =>
  new StartFailed({ service: name, reason, ...extra })

/**
 * The last lines of a log (the service's output), for a failed start's message: at most `lines`
 * lines of at most 400 characters, from the last 32 KiB, however large the log (a service can
 * print gigabytes, or one endless line).
 */
const tail = (path: string, lines = 20): string | undefined => {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const size = fstatSync(fd).size
    const length = Math.min(size, 32 * 1024)
    const buf = Buffer.alloc(length)
    const n = readSync(fd, buf, 0, length, size - length)
    const text = buf.subarray(0, n).toString("utf8").trimEnd()
    if (text === "") return undefined
    // The supervisor writes its own lines to the same log: the output is the service's.
    const own = text.split("\n").filter((l) => !l.startsWith("[quiesce supervisor "))
    if (own.every((l) => l === "")) return undefined
    return own.slice(-lines).map((l) => l.length > 400 ? `${l.slice(0, 400)}…` : l).join("\n")
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
}

const logPath = (counter: Counter) => filePath(counter.dir, counter.name, "log")

/**
 * Runs a user effect (start, health check, recover, probe) interruptibly. An interruption is
 * recorded (the acquisition then cleans up like a failure and ends interrupted) and comes back
 * as a failed exit, so the protocol always reaches a state where nothing is held.
 */
const user = <A, E2, R2, E, R>(ctx: Context<E, R>, effect: Effect.Effect<A, E2, R2>): Effect.Effect<Exit.Exit<A, E2>, never, R2> =>
  Effect.map(Effect.exit(ctx.restore(effect)), (exit) => {
    if (Exit.isFailure(exit) && Cause.hasInterrupts(exit.cause)) ctx.interrupted = true
    return exit
  })

const perform = <E, R>(ctx: Context<E, R>, state: State): Effect.Effect<Result, never, R> => {
  const { counter } = ctx
  const ok: Result = { _tag: "Ok" }
  switch (state._tag) {
    case "Lock":
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        if (ctx.interrupted) return Effect.succeed<Result>({ _tag: "LockTimeout", error: undefined })
        const left = Math.max(0, ctx.lockDeadline - now)
        // Coming back (after a Yield or a removed set) is bounded by the same deadline.
        if (ctx.retried && left === 0) {
          return Effect.succeed<Result>({
            _tag: "LockTimeout",
            error: new LockTimeout({ service: counter.name, timeoutMillis: Duration.toMillis(ctx.self.lockTimeout) })
          })
        }
        ctx.retried = true
        return user(ctx, counter.lock(Duration.millis(left))).pipe(Effect.flatMap((exit): Effect.Effect<Result> => {
          if (Exit.isSuccess(exit)) return Effect.succeed({ _tag: "Locked" })
          const e = Cause.findErrorOption(exit.cause)
          if (e._tag === "Some" && e.value._tag === "SemaphoreSetRemoved") {
            // A removed set (a supervisor ending its generation, or ipcrm): a fresh one, again.
            return Effect.as(Effect.ignore(counter.reopen), { _tag: "Removed" })
          }
          return Effect.succeed({ _tag: "LockTimeout", error: e._tag === "Some" ? e.value : undefined })
        }))
      })
    case "ProbeOwner":
      return Effect.matchEffect(counter.owner.take, {
        onFailure: (error) => Effect.succeed<Result>({ _tag: "Error", error }),
        onSuccess: (owned) => {
          if (owned === undefined) return Effect.succeed<Result>({ _tag: "Held" })
          ctx.owned = owned
          return Effect.succeed<Result>({ _tag: "Free" })
        }
      })
    case "ReadHint":
      return Effect.flatMap(Effect.all([counter.owner.stamp, counter.hints.read]), ([stamp, hint]): Effect.Effect<Result> => {
        if (stamp === undefined) return Effect.succeed({ _tag: "Unstamped" })
        if (
          !(hint instanceof Hint.Hint) || hint.state === "abandoned" || hint.retire === true || hint.supervisor.pid !== stamp ||
          !supervisorAlive(counter, hint)
        ) {
          return Effect.succeed({ _tag: "None" })
        }
        return Effect.succeed(hint.state === "ready" ? { _tag: "Running", gen: hint } : { _tag: "Starting", gen: hint })
      })
    case "Yield":
      return Effect.as(
        Effect.andThen(Effect.ignore(counter.unlock), Effect.sleep(Duration.millis(5))),
        ok
      )
    case "Health":
      return health(ctx, state.gen)
    case "AwaitReady":
      return awaitReady(ctx, state.gen, state.own)
    case "MarkReady":
      return recorded(counter, new Hint.Hint({ ...state.gen, state: "ready", readyAt: Date.now() }))
    case "Retire":
      return Effect.as(requestRetire(counter, state.target), ok)
    case "Kill":
      return Effect.flatMap(targetOf(counter, state.target), (target) =>
        Effect.as(target === undefined ? Effect.void : signalSupervisor(counter, target.pid, target.startTime, "kill"), ok))
    case "AwaitOwner":
      return awaitOwner(ctx, state.target, state.killed)
    case "Sweep":
      return Effect.as(sweepLeftovers(ctx.self, counter), ok)
    case "Spawn":
      return spawn(ctx)
    case "WriteHint":
      return recorded(counter, state.gen)
    case "Register":
      return Effect.match(counter.register, {
        onFailure: (error): Result => error._tag === "SemaphoreSetRemoved" ? { _tag: "Removed" } : { _tag: "Error", error },
        onSuccess: (): Result => ok
      }).pipe(Effect.tap((r) => r._tag === "Removed" ? Effect.ignore(counter.reopen) : Effect.void))
    case "Abandon": {
      const gen = state.gen
      if (gen !== undefined) {
        // Its supervisor stops the service and cleans up once it gets the lock (after ours).
        // The request is the hint itself, which it reads between waits: a signal could be lost
        // (or kill it) while it boots.
        return counter.hints.write(new Hint.Hint({ ...gen, state: "abandoned" })).pipe(
          Effect.catch(() => counter.hints.remove(gen.generation)),
          Effect.andThen(signalSupervisor(counter, gen.supervisor.pid, gen.supervisor.startTime, "term")),
          Effect.as(ok)
        )
      }
      const owned = ctx.owned
      ctx.owned = undefined
      return Effect.as(Effect.andThen(counter.hints.remove(), owned === undefined ? Effect.void : owned.remove), ok)
    }
    case "Release":
      return Effect.gen(function*() {
        const count = state.remove ? yield* Effect.orElseSucceed(counter.count, () => 1) : 1
        return yield* (count === 0 ? counter.remove : counter.unlock).pipe(
          Effect.as(ok),
          Effect.catchTag("SemaphoreSetRemoved", () => Effect.succeed<Result>({ _tag: "Removed" })),
          Effect.orElseSucceed(() => ok)
        )
      })
    case "Done":
    case "Failed":
      return Effect.succeed(ok)
  }
}

/**
 * No owner holds the name: end what a dead generation may have left — every process carrying
 * the marker (a `command` service's tree), and the service the hint names (a `make` service is
 * not its supervisor's child, so it does not die with it): SIGKILL verified by its start time,
 * or, when it was supervised in-process (whose supervisor died with its process), the
 * definition's own `stop`.
 */
const sweepLeftovers = <E, R>(self: SharedServiceImpl<E, R> | undefined, counter: Counter): Effect.Effect<void, never, R> =>
  Effect.flatMap(counter.hints.read, (hint) => {
    const info = hint instanceof Hint.Hint ? hint.info : undefined
    if (self !== undefined && inProcessMode(self, counter)) {
      return info === undefined ? Effect.void : Effect.ignore(Effect.timeout(self.stop(info), self.stopTimeout))
    }
    if (remote(counter)) return Effect.void
    return Effect.andThen(
      // A supervisor still booting takes a while to hear it (a loaded machine: seconds).
      Generation.sweep(
        Generation.marker(counter.dir, counter.name),
        counter.dir,
        counter.name,
        Duration.sum(self?.stopTimeout ?? Duration.seconds(5), Duration.seconds(5))
      ),
      info === undefined ? Effect.void : Process.kill(info.pid, { startTime: info.startTime, group: info.processGroup })
    )
  })

/** Records `gen` as the hint: Ok, or the error that prevented it (a full runtime directory). */
const recorded = (counter: Counter, gen: Gen): Effect.Effect<Result> =>
  Effect.match(counter.hints.write(gen), {
    onFailure: (error): Result => ({ _tag: "Error", error }),
    onSuccess: (): Result => ({ _tag: "Ok" })
  })

/** The generation's supervisor is alive with the recorded start time (the owner lock is held: see `ReadHint`). */
const supervisorAlive = (counter: Counter, gen: Gen): boolean =>
  remote(counter) || inProcess.has(inProcessKey(counter, gen.supervisor.pid)) ||
  Process.isAliveUnsafe(gen.supervisor.pid, gen.supervisor.startTime)

/**
 * Asks the owner to retire, the requester holding the startup lock. The request is left where
 * the owner reads it between its waits (it may still be booting, or stopped): in the hint when
 * the hint describes the generation (in-process owners read only that), else in the owner file;
 * a detached supervisor also gets SIGUSR2, to hear it at once.
 */
const requestRetire = (counter: Counter, target: Protocol.Target<Gen>): Effect.Effect<void> =>
  Effect.gen(function*() {
    if (target._tag === "Gen") {
      yield* Effect.ignore(counter.hints.write(new Hint.Hint({ ...target.gen, retire: true })))
    } else {
      yield* counter.owner.request("retire")
    }
    const who = yield* targetOf(counter, target)
    if (who !== undefined) yield* signalSupervisor(counter, who.pid, who.startTime, "retire")
  })

const targetOf = (
  counter: Counter,
  target: Protocol.Target<Gen>
): Effect.Effect<{ readonly pid: number; readonly startTime: number | undefined } | undefined> =>
  target._tag === "Gen"
    ? Effect.succeed({ pid: target.gen.supervisor.pid, startTime: target.gen.supervisor.startTime || undefined })
    : Effect.map(counter.owner.stamp, (pid) => pid === undefined ? undefined : { pid, startTime: undefined })

/** Whether the service of `gen` is alive and not stopped (SIGSTOP, a debugger). */
const serviceState = (counter: Counter, info: ServiceInfo.ServiceInfo): "alive" | "stopped" | "dead" => {
  if (remote(counter)) return "alive"
  const st = Proc.stat(info.pid)
  if (Proc.isDead(st) || (info.startTime !== undefined && st!.startTime !== info.startTime)) return "dead"
  return Proc.isStopped(st) ? "stopped" : "alive"
}

/**
 * Whether `gen` runs another definition than `self`: `self` has a fingerprint and `gen` recorded
 * another one, or none (started by a definition without one, or by older code). A client without
 * a fingerprint joins whatever runs, as before fingerprints existed.
 */
const mismatched = <E, R>(self: SharedServiceImpl<E, R>, gen: Gen): boolean =>
  self.fingerprint !== undefined && gen.fingerprint !== self.fingerprint

const definitionMismatch = <E, R>(self: SharedServiceImpl<E, R>, gen: Gen, clients: number): DefinitionMismatch =>
  new DefinitionMismatch({
    service: self.name,
    ...(gen.fingerprint === undefined ? {} : { running: gen.fingerprint }),
    requested: self.fingerprint!,
    clients,
    ...(gen.info === undefined ? {} : { metadata: gen.info.metadata })
  })

const health = <E, R>(ctx: Context<E, R>, gen: Gen): Effect.Effect<Result, never, R> => {
  const { self, counter } = ctx
  if (mismatched(self, gen)) {
    // Under the lock the count can only decrease (registrations take the lock): held now means
    // its clients are left alone; 0 means it is in its grace period, and is replaced. A count
    // that cannot be read (the set removed under us) is taken as held: nothing is touched.
    return Effect.match(counter.count, {
      onFailure: (error): Result => ({ _tag: "Mismatch", error, held: true }),
      onSuccess: (clients): Result => ({ _tag: "Mismatch", error: definitionMismatch(self, gen, clients), held: clients > 0 })
    })
  }
  const info = gen.info
  if (info === undefined || serviceState(counter, info) !== "alive") return Effect.succeed({ _tag: "Unhealthy" })
  const check = healthCheckOf(self)
  if (check === undefined) return Effect.succeed({ _tag: "Healthy" })
  return Effect.flatMap(user(ctx, Effect.timeout(check(info), self.healthTimeout)), (exit): Effect.Effect<Result, never, R> => {
    // The listener must still be the service's, and not stopped (a wrapper's pid can be fine
    // while the process that listens is stopped, dead, or replaced by someone else's).
    if (Exit.isSuccess(exit) && listenersSound(ctx, info)) return Effect.succeed({ _tag: "Healthy" })
    if (ctx.interrupted) return Effect.succeed({ _tag: "Error", error: undefined })
    const recover = self.recover
    if (recover === undefined || self.command !== undefined) return Effect.succeed({ _tag: "Unhealthy" })
    const unhealthy = Exit.isFailure(exit) ? Cause.pretty(exit.cause).split("\n")[0] : "its listener is not the service's, or is stopped"
    return Effect.map(
      user(ctx, Effect.timeout(Effect.tap(recover(info), (recovered) => check(recovered)), self.startTimeout)),
      (recovered): Result => {
        if (Exit.isSuccess(recovered)) {
          ctx.started = true
          const info = ServiceInfo.make({ ...recovered.value, instanceId: gen.generation })
          return { _tag: "Recovered", gen: new Hint.Hint({ ...gen, info, readyAt: Date.now() }) }
        }
        return {
            _tag: "Error",
            error: new RecoveryFailed({
              service: self.name,
              reason: `health check failed (${unhealthy}) and recovery failed`,
              cause: Cause.squash(recovered.cause)
            })
          }
      }
    )
  })
}

const healthCheckOf = <E, R>(self: SharedServiceImpl<E, R>) => {
  if (self.command === undefined) return self.healthCheck
  const ready = self.command.ready
  return self.healthCheck ?? (ready === undefined ? undefined : (info: ServiceInfo.ServiceInfo) => probe(self.name, ready, info))
}

/** How often readiness is polled (after a quick exponential start). */
const POLL_MAX_MS = 4

const awaitReady = <E, R>(ctx: Context<E, R>, gen: Gen, own: boolean): Effect.Effect<Result, never, R> => {
  const { self, counter } = ctx
  const deadline = gen.startedAt + gen.startTimeoutMillis
  const notReady = (error: unknown): Result => ({ _tag: "NotReady", error })
  // Someone else's start (its starter died holding the lock: nobody registered with it) of
  // another definition is not waited for: it is replaced.
  if (!own && mismatched(self, gen)) return Effect.succeed(notReady(definitionMismatch(self, gen, 0)))
  if (self.command === undefined && own) {
    // `make`: run the definition's `start` (its supervisor exists already) and hand the service to it.
    return Effect.map(user(ctx, Effect.timeout(self.start, self.startTimeout)), (exit): Result => {
      if (Exit.isFailure(exit)) {
        ctx.adopt?.(undefined)
        const e = Cause.findErrorOption(exit.cause)
        if (e._tag === "Some" && Cause.isTimeoutError(e.value)) {
          return notReady(startFailed(self.name, `not started within ${Duration.format(self.startTimeout)}`, {
            timeoutMillis: Duration.toMillis(self.startTimeout)
          }))
        }
        return notReady(e._tag === "Some" ? e.value : Cause.squash(exit.cause))
      }
      const info = ServiceInfo.make({ ...exit.value, instanceId: gen.generation })
      ctx.adopt?.(info)
      ctx.adopt = undefined
      return { _tag: "Ready", gen: new Hint.Hint({ ...gen, info }) }
    })
  }
  return Effect.suspend(() => {
    let delay = 1
    let last: string | undefined
    const loop: Effect.Effect<Result, never, R> = Effect.flatMap(own ? Effect.succeed(gen) : counter.hints.read, (current) => {
      if (ctx.interrupted) return Effect.succeed(notReady(undefined))
      if (self.command === undefined) {
        // Someone else's `make` start: wait for its starter to record it ready (only it can).
        if (current instanceof Hint.Hint && current.generation === gen.generation && current.state === "ready") {
          return Effect.succeed<Result>({ _tag: "Ready", gen: current })
        }
        const starter = gen.starter
        if (!remote(counter) && starter !== undefined && !Process.isAliveUnsafe(starter.pid, starter.startTime)) {
          return Effect.succeed(notReady(startFailed(self.name, `its starter (pid ${starter.pid}) died during the start`)))
        }
      } else {
        const info = gen.info!
        const st = serviceState(counter, info)
        if (st === "dead") return Effect.succeed(notReady(exitedEarly(counter, info)))
      }
      if (Date.now() >= deadline) {
        return Effect.succeed(notReady(startFailed(self.name, `not ready within ${gen.startTimeoutMillis} ms${last === undefined ? "" : ` (last check: ${last})`}`, {
          timeoutMillis: gen.startTimeoutMillis,
          ...withOutput(counter)
        })))
      }
      const attempt = self.command === undefined ? Effect.fail("not recorded ready yet") : readyOnce(ctx, gen)
      return Effect.flatMap(user(ctx, attempt), (exit): Effect.Effect<Result, never, R> => {
        if (Exit.isSuccess(exit)) {
          const foreign = foreignListener(ctx, gen.info)
          if (foreign === undefined) return Effect.succeed({ _tag: "Ready" })
          if (foreign !== "stopped") return Effect.succeed(notReady(foreign))
        }
        const e = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.some("its listener is stopped")
        if (e._tag === "Some" && (e.value as { _tag?: string })._tag === "PortInUse") return Effect.succeed(notReady(e.value))
        last = e._tag === "Some" ? describe(e.value) : "interrupted"
        delay = Math.min(POLL_MAX_MS, delay * 1.5)
        return Effect.andThen(Effect.sleep(Duration.millis(delay)), loop)
      })
    })
    return loop
  })
}

/** A listener on one of the service's ports that is not the service's (or is stopped), if any. */
const foreignListener = <E, R>(ctx: Context<E, R>, info: ServiceInfo.ServiceInfo | undefined) => {
  const { self, counter } = ctx
  if (self.command === undefined || remote(counter)) return undefined
  for (const port of self.command.ownedPorts) {
    const found = Generation.checkPortOwned(self.name, port, Generation.marker(counter.dir, counter.name), info?.pid)
    if (found !== undefined) return found
  }
  return undefined
}

const listenersSound = <E, R>(ctx: Context<E, R>, info: ServiceInfo.ServiceInfo): boolean => foreignListener(ctx, info) === undefined

const describe = (e: unknown): string =>
  typeof e === "string" ? e : e instanceof Error ? e.message : typeof e === "object" && e !== null && "reason" in e ? String(e.reason) : String(e)

/** One readiness check of a `command` service, bounded. */
const readyOnce = <E, R>(ctx: Context<E, R>, gen: Gen): Effect.Effect<void, unknown> => {
  const ready = ctx.self.command?.ready
  if (ready === undefined) return Effect.void
  return Effect.timeout(probe(ctx.self.name, ready, gen.info!), ctx.self.healthTimeout)
}

const withOutput = (counter: Counter) => {
  const output = tail(logPath(counter))
  // Where the log is once the failed generation's supervisor has cleaned up (it keeps the last
  // instance's log as `.log.1`).
  return { logFile: `${logPath(counter)}.1`, ...(output === undefined ? {} : { output }) }
}

/** A `command` service that died before it was ready: how it ended and what it said. */
const exitedEarly = (counter: Counter, info: ServiceInfo.ServiceInfo): StartFailed => {
  // Until its supervisor reaps it, the dead service is a zombie whose stat has its exit status.
  const st = Proc.stat(info.pid)
  const status = st !== undefined && st.state === "Z" ? Proc.describeStatus(st.exitCode) : undefined
  return startFailed(
    counter.name,
    `the service process ${info.pid} ${status ?? "exited"} before it was ready`,
    { ...(status === undefined ? {} : { status }), ...withOutput(counter) }
  )
}

const awaitOwner = <E, R>(ctx: Context<E, R>, target: Protocol.Target<Gen>, killed: boolean): Effect.Effect<Result> => {
  const { self, counter } = ctx
  // A retire takes a stop (the stop signal … SIGKILL after the stop timeout, the generation's own
  // when it recorded one); a SIGKILL takes an instant.
  const stopMillis = Math.max(Duration.toMillis(self.stopTimeout), target._tag === "Gen" ? target.gen.stopTimeoutMillis ?? 0 : 0)
  const millis = killed ? 2000 : stopMillis + 2000
  return Effect.match(counter.owner.awaitFree(millis), {
    onFailure: (error): Result => ({ _tag: "Stuck", error }),
    onSuccess: (owned): Result => {
      if (owned !== undefined) {
        ctx.owned = owned
        return { _tag: "Gone" }
      }
      const who = target._tag === "Gen" ? `pid ${target.gen.supervisor.pid}` : "its owner"
      return {
        _tag: "Stuck",
        error: startFailed(self.name, `the supervisor (${who}) of the previous instance did not stop within ${millis} ms`)
      }
    }
  })
}

const spawn = <E, R>(ctx: Context<E, R>): Effect.Effect<Result, never, R> =>
  Effect.gen(function*() {
    const { self, counter } = ctx
    const owned = ctx.owned!
    const refused = (error: unknown): Result => ({ _tag: "Refused", error })
    const generation = globalThis.crypto.randomUUID()
    const now = Date.now()
    const base = {
      version: 2 as const,
      name: self.name,
      generation,
      state: "starting" as const,
      startedAt: now,
      startTimeoutMillis: Duration.toMillis(self.startTimeout),
      starter: { pid: process.pid, startTime: Proc.stat(process.pid)?.startTime ?? 0 },
      stopTimeoutMillis: Duration.toMillis(self.stopTimeout),
      ...(self.command?.stopSignal === undefined ? {} : { stopSignal: self.command.stopSignal }),
      ...(self.fingerprint === undefined ? {} : { fingerprint: self.fingerprint })
    }
    if (counter.kind === "postgres" && self.command !== undefined) {
      return refused(startFailed(self.name, "a command service needs a kernel counter (its supervisor is a local process): define it with SharedService.make"))
    }
    if (inProcessMode(self, counter)) {
      // The owner is this process: a fiber supervises, with the definition's own `stop`.
      const supervisor = yield* ownerIdentity(counter, owned)
      yield* startInProcess(self, counter, owned, generation, supervisor)
      ctx.owned = undefined
      ctx.started = true
      return { _tag: "Spawned", gen: new Hint.Hint({ ...base, supervisor }) }
    }
    const unwritable = probeWritable(self.name, counter.dir)
    if (unwritable !== undefined) return refused(unwritable)
    for (const port of self.command?.ownedPorts ?? []) {
      const inUse = Generation.checkPortFree(self.name, port)
      if (inUse !== undefined) return refused(inUse)
    }
    const log = freshLog(self.name, logPath(counter))
    if (typeof log !== "number") return refused(log)
    yield* owned.clearStamp
    const spawned = yield* Effect.exit(Generation.spawnGeneration({
      config: {
        name: self.name,
        dir: counter.dir,
        kind: counter.kind === "flock" ? "flock" : "sysv",
        generation,
        mode: self.command === undefined ? "adopt" : "command",
        startTimeoutMillis: Duration.toMillis(self.startTimeout),
        idleTimeToLiveMillis: Duration.toMillis(self.idleTimeToLive),
        stopTimeoutMillis: Duration.toMillis(self.stopTimeout),
        ...(self.command?.stopSignal === undefined ? {} : { stopSignal: self.command.stopSignal }),
        lockTimeoutMillis: Duration.toMillis(self.lockTimeout),
        instance: counter.instance()
      },
      ownerFd: owned.fd!,
      logFd: log,
      command: self.command?.command,
      cwd: self.command?.cwd,
      env: self.command === undefined
        ? undefined
        : { ...self.command.env, ...(self.command.port === undefined ? {} : { QUIESCE_SERVICE_PORT: String(self.command.port) }) }
    }))
    closeSync(log)
    // The supervisor holds the owner lock now (or the spawn failed and nobody does).
    yield* owned.release
    ctx.owned = undefined
    if (Exit.isFailure(spawned)) {
      retireLog(logPath(counter))
      return refused(Cause.squash(spawned.cause))
    }
    const s = spawned.value
    ctx.adopt = s.adopt
    ctx.started = true
    const cmd = self.command
    const info = cmd === undefined || s.service === undefined ? undefined : ServiceInfo.make({
      pid: s.service,
      startTime: Proc.stat(s.service)?.startTime,
      processGroup: true,
      port: cmd.port,
      instanceId: generation,
      metadata: cmd.metadata
    })
    return {
      _tag: "Spawned",
      gen: new Hint.Hint({ ...base, supervisor: { pid: s.supervisor, startTime: s.supervisorStart }, ...(info === undefined ? {} : { info }) })
    }
  })

/**
 * `reaper: "in-process"` (and every service on the memory and PostgreSQL counters): this process
 * holds the owner lock and a daemon fiber runs the supervisor, stopping the service with the
 * definition's `stop`. If this process (or its owner session) dies, a holder's standby adopts
 * the generation (`runStandby`), or the last releaser stops the service (`tidy`).
 */
const startInProcess = <E, R>(
  self: SharedServiceImpl<E, R>,
  counter: Counter,
  owned: Owned,
  generation: string,
  supervisor: { readonly pid: number }
): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    yield* Effect.ignore(owned.stampSelf ?? owned.writeStamp(supervisor.pid))
    const key = inProcessKey(counter, supervisor.pid)
    const flags = { retire: false, term: false }
    inProcess.set(key, { retire: () => void (flags.retire = true), term: () => void (flags.term = true) })
    const services = yield* Effect.context<R>()
    const infoOf = Effect.map(counter.hints.read, (hint) =>
      hint instanceof Hint.Hint && hint.generation === generation ? hint.info : undefined
    )
    const env: Supervisor.Env = {
      counter: owned.counter ?? counter,
      alive: owned.stillHeld,
      idleTimeToLive: self.idleTimeToLive,
      lockTimeout: self.lockTimeout,
      // Requests come as flags (from this process), in the hint or the owner file (from any
      // client), or through a database counter.
      pending: Effect.map(Effect.all([counter.hints.read, owned.retireRequested]), ([hint, asked]) => {
        for (const r of owned.pending?.() ?? []) flags[r === "Retire" ? "retire" : "term"] = true
        const ours = hint instanceof Hint.Hint && hint.generation === generation ? hint : undefined
        return [
          ...(flags.retire || asked || ours?.retire === true ? ["Retire" as const] : []),
          ...(flags.term || ours?.state === "abandoned" ? ["Term" as const] : [])
        ]
      }),
      stop: (reason) =>
        Effect.suspend(() => {
          if (reason === "Retire") flags.retire = false
          flags.term = false
          owned.clearPending?.()
          return Effect.flatMap(infoOf, (info) =>
            info === undefined ? Effect.void : Effect.ignore(Effect.provideContext(self.stop(info), services)))
        }),
      cleanup: (owned.counter ?? counter).hints.remove(generation),
      removeOwnerFile: owned.remove,
      tick: Effect.void,
      log: () => {}
    }
    const supervision: Supervision = { count: env.counter.count, standbys: env.counter.standbys }
    supervising.add(supervision)
    yield* Effect.forkDetach(
      Supervisor.run(env).pipe(
        Effect.ignore,
        Effect.ensuring(Effect.andThen(owned.release, Effect.sync(() => {
          inProcess.delete(key)
          supervising.delete(supervision)
        })))
      )
    )
  })

/** A generation this process supervises in-process: its live count and queued standbys. */
interface Supervision {
  readonly count: Effect.Effect<number, unknown>
  readonly standbys: Effect.Effect<number, unknown> | undefined
}

const supervising = new Set<Supervision>()

/**
 * Whether a supervisor can leave its generation to others: it has clients, one of which has a
 * standby queued for the owner lock (it adopts the generation once this process's session ends).
 * Where standbys cannot be seen, it cannot leave: it stays until it has stopped the service.
 */
const canLeave = (s: Supervision): Effect.Effect<boolean> =>
  s.standbys === undefined
    ? Effect.succeed(false)
    : Effect.flatMap(s.count, (n) => n === 0 ? Effect.succeed(false) : Effect.map(s.standbys!, (queued) => queued > 0)).pipe(
      Effect.orElseSucceed(() => false)
    )

/**
 * Completes once no generation this process supervises in-process needs it any more: each has
 * been stopped (its last client gone and its grace over), or has clients with a standby queued,
 * which takes it over when this process exits (as when it crashes). Polled every 100 ms.
 */
export const awaitHandover: Effect.Effect<void> = Effect.suspend(function loop(): Effect.Effect<void> {
  if (supervising.size === 0) return Effect.void
  return Effect.flatMap(
    Effect.forEach([...supervising], canLeave),
    (leave) => leave.every(Boolean) ? Effect.void : Effect.andThen(Effect.sleep(100), loop())
  )
})

/** The supervisor the hint names for an owner lock this process holds. */
const ownerIdentity = (counter: Counter, owned: Owned): Effect.Effect<{ readonly pid: number; readonly startTime: number }> =>
  owned.identity !== undefined
    ? Effect.succeed(owned.identity)
    : counter.kind === "memory"
    ? Effect.map(counter.owner.stamp, (pid) => ({ pid: pid ?? process.pid, startTime: 0 }))
    : Effect.succeed({ pid: process.pid, startTime: Proc.stat(process.pid)?.startTime ?? 0 })

// ---------------------------------------------------------------------------------------------
// Standby: the client side of `Protocol.standby`
// ---------------------------------------------------------------------------------------------

/**
 * How long one wait of a standby for the owner lock lasts before it starts another; the waits
 * themselves are interruptible (the kernel counters' between polls, the database's between
 * `lock_timeout` slices), so this only bounds how long one database session is kept waiting.
 */
const STANDBY_WAIT_MS = 60_000

/**
 * A standby queues this long after its acquisition: short holds (a test, a quick command) never
 * pay for a waiting session, and a supervisor that dies within it is adopted this much later.
 */
const STANDBY_DELAY_MS = 1000

/**
 * A standby for `gen`, for a process that holds a reference to it and does not supervise it
 * itself: queued on the owner lock (`Protocol.standby`) until the reference is released — then
 * interrupted, letting go of whatever it took — or until it has adopted the generation, when it
 * has become its supervisor (`startInProcess`) and lives on.
 */
const runStandby = <E, R>(self: SharedServiceImpl<E, R>, counter: Counter, gen: Gen): Effect.Effect<void, never, R> =>
  Effect.suspend(() => {
    let owned: Owned | undefined
    /** The counter the startup lock was taken through (the owner's own, for a database counter). */
    let locker: Counter | undefined
    const lost: Protocol.StandbyResult = { _tag: "Lost" }
    const ok: Protocol.StandbyResult = { _tag: "Ok" }
    const letGo = Effect.suspend(() => {
      const o = owned
      const l = locker
      owned = undefined
      locker = undefined
      return Effect.andThen(l === undefined ? Effect.void : Effect.ignore(l.unlock), o === undefined ? Effect.void : o.release)
    })
    const step = (state: Protocol.Standby<Gen>): Effect.Effect<Protocol.StandbyResult, never, R> => {
      switch (state._tag) {
        case "AwaitOwner": {
          const loop: Effect.Effect<Protocol.StandbyResult> = Effect.matchEffect(counter.owner.awaitFree(STANDBY_WAIT_MS), {
            // The counter is unusable for now (a database that went away): look again later.
            onFailure: () => Effect.andThen(Effect.sleep(Duration.seconds(1)), loop),
            onSuccess: (o) => {
              if (o === undefined) return loop
              owned = o
              return Effect.succeed<Protocol.StandbyResult>({ _tag: "Got" })
            }
          })
          return loop
        }
        case "Lock": {
          const via = owned!.counter ?? counter
          return Effect.match(via.lock(self.lockTimeout), {
            onFailure: (e): Protocol.StandbyResult => e._tag === "LockTimeout" ? { _tag: "LockTimeout" } : lost,
            onSuccess: (): Protocol.StandbyResult => {
              locker = via
              return owned!.stillHeld() ? { _tag: "Locked" } : lost
            }
          })
        }
        case "ReadHint":
          return Effect.map(locker!.hints.read, (hint): Protocol.StandbyResult =>
            !owned!.stillHeld()
              ? lost
              : hint instanceof Hint.Hint && hint.generation === gen.generation && hint.state === "ready"
              ? { _tag: "Ours" }
              : { _tag: "NotOurs" })
        case "Adopt":
          return Effect.gen(function*() {
            const o = owned!
            const supervisor = yield* ownerIdentity(counter, o)
            const hint = yield* locker!.hints.read
            if (!(hint instanceof Hint.Hint) || !o.stillHeld()) return lost
            const written = yield* Effect.exit(locker!.hints.write(new Hint.Hint({ ...hint, supervisor })))
            if (Exit.isFailure(written)) return lost
            // From here the supervisor holds the owner lock (it waits for the startup lock we hold).
            owned = undefined
            yield* startInProcess(self, counter, o, gen.generation, supervisor)
            return ok
          })
        case "Unlock": {
          const l = locker!
          locker = undefined
          return Effect.as(Effect.ignore(l.unlock), ok)
        }
        case "Decline":
        case "Retry":
          return Effect.as(letGo, ok)
        case "Supervise":
        case "End":
          return Effect.succeed(ok)
      }
    }
    const loop = (state: Protocol.Standby<Gen>): Effect.Effect<void, never, R> =>
      state._tag === "Supervise" || state._tag === "End"
        ? Effect.void
        : Effect.flatMap(step(state), (r) => loop(Protocol.standby(state, r)))
    return Effect.onInterrupt(
      Effect.andThen(Effect.interruptible(Effect.sleep(Duration.millis(STANDBY_DELAY_MS))), loop(Protocol.standbyStart(gen))),
      () => letGo
    )
  })

/**
 * Drops this handle; the process's last handle drops its kernel reference. If that left the
 * count at 0 and the generation it held has no supervisor any more (it failed, or was
 * replaced, and nobody took charge of the set), the releaser removes what is left (`Tidy`).
 * Synchronous to the end (every call is non-blocking), so it needs no mutex: it cannot overlap
 * an acquisition's kernel path, which only runs while `holders` is 0.
 */
const release = <E, R>(
  counter: Counter,
  local: Local,
  /** The definition, when its generations are supervised in-process (see `tidy`). */
  definition: SharedServiceImpl<E, R> | undefined
): Effect.Effect<void, never, R> =>
  Effect.suspend(() => {
    local.holders--
    if (local.holders > 0) return Effect.void
    const gen = local.gen
    local.gen = undefined
    stopWatchdog(local)
    const standby = local.standby
    local.standby = undefined
    // A standby that has not adopted lets go of what it took; one that adopted is a supervisor
    // now. Its end is awaited only before a tidy (which must not find the owner lock held by
    // our own standby): a database wait slice can take a few seconds to end.
    const ended = standby === undefined ? Effect.void : Effect.asVoid(Fiber.interrupt(standby))
    // On a database (or simulated) counter a supervisor's liveness is its owner lock, which only
    // a tidy can probe: the last one out tidies, so that an orphan (its supervisor's process left
    // while others held it, and they left before a standby adopted it) is stopped, not left running.
    const probeOwner = definition !== undefined && remote(counter)
    return counter.decrement.pipe(
      Effect.andThen(
        gen !== undefined && !probeOwner && supervisorAlive(counter, gen)
          ? Effect.asVoid(Effect.forkDetach(ended))
          : Effect.andThen(ended, Effect.flatMap(counter.count, (n) => n === 0 ? tidy(counter, definition) : Effect.void))
      ),
      // A removed set took our reference with it: nothing left to drop.
      Effect.ignore
    )
  })

/** `self`: the definition, when its generations are supervised in-process (a releaser may then have to stop an orphan). */
const tidy = <E, R>(counter: Counter, self: SharedServiceImpl<E, R> | undefined): Effect.Effect<void, SystemError, R> =>
  Effect.suspend(() => {
    let owned: Owned | undefined
    const step = (state: Protocol.Tidy): Effect.Effect<void, SystemError, R> => {
      switch (state._tag) {
        case "TryLock":
          return Effect.flatMap(counter.tryLock, (got) => step(Protocol.tidy(state, got ? { _tag: "Locked" } : { _tag: "Busy" })))
        case "ProbeOwner":
          return Effect.flatMap(counter.owner.take, (o) => {
            owned = o
            if (o === undefined) return step(Protocol.tidy(state, { _tag: "Held" }))
            return Effect.flatMap(counter.hints.read, (hint) =>
              step(Protocol.tidy(state, { _tag: "Free", orphan: self !== undefined && hint instanceof Hint.Hint })))
          })
        case "Remove":
          return Effect.gen(function*() {
            if ((yield* counter.count) > 0) {
              yield* owned!.release
              yield* counter.unlock
              return
            }
            yield* counter.hints.remove()
            yield* owned!.remove
            yield* counter.remove
          })
        case "Sweep":
          return Effect.andThen(sweepLeftovers(self, counter), step(Protocol.tidy(state, { _tag: "Ok" })))
        case "Unlock":
          return counter.unlock
        case "End":
          return Effect.void
      }
    }
    return step(Protocol.tidyStart)
  })

// ---------------------------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------------------------

export interface ServiceStatus {
  readonly name: string
  /** Processes holding a reference (0 when the counter does not exist). */
  readonly count: number
  /** Whether `count` is exact (SysV) or only says "some" (flock). */
  readonly exact: boolean
  /** Whether a live supervisor holds the owner lock (a kernel fact, from `/proc/locks`). */
  readonly hasSupervisor: boolean
  /** The supervisor's pid, when the hint names a live one. */
  readonly supervisor: number | undefined
  /**
   * `starting` or `ready` while a generation lives, `stopping` once its start failed (its
   * supervisor is cleaning up), `stale` for leftovers of one that died, `stopped` when nothing
   * of it exists.
   */
  readonly state: "starting" | "ready" | "stopping" | "stale" | "stopped"
  /** The hinted service, when its supervisor and process are alive. */
  readonly info: ServiceInfo.ServiceInfo | undefined
  /** The hint, whether or not its processes are alive. */
  readonly hint: ServiceInfo.ServiceInfo | undefined
  readonly hintError: CorruptHint | undefined
  readonly hintPath: string
  readonly fingerprint: string | undefined
  readonly startedAt: number | undefined
  readonly running: boolean
}

export const inspect = (name: string): Effect.Effect<ServiceStatus, SystemError | InvalidName> =>
  Effect.gen(function*() {
    yield* validate(name)
    const rc = yield* RefCounter
    const counter = yield* rc.openExisting(name)
    // A set removed under us counts as none: inspection never re-creates it.
    const count = counter === undefined ? 0 : yield* counter.count.pipe(
      Effect.catchTag("SemaphoreSetRemoved", () => Effect.succeed(0))
    )
    const view = counter ?? (yield* rc.view(name))
    const hasSupervisor = yield* view.owner.held
    const raw = yield* view.hints.read
    const hint = raw instanceof Hint.Hint ? raw : undefined
    const supervisorLive = hint !== undefined && hasSupervisor && (counter === undefined || supervisorAlive(counter, hint))
    const service = hint?.info
    const alive = supervisorLive && service !== undefined &&
      ((counter !== undefined && remote(counter)) || Process.isAliveUnsafe(service.pid, service.startTime))
    return {
      name,
      count,
      exact: counter?.exact ?? true,
      hasSupervisor,
      supervisor: supervisorLive ? hint!.supervisor.pid : undefined,
      state: alive
        ? (hint!.state === "abandoned" ? "stopping" : hint!.state)
        // A database counter's row outlives its generations (it holds the name's keys): only a hint is stale.
        : raw !== undefined || (counter !== undefined && counter.kind !== "postgres") ? "stale" : "stopped",
      info: alive ? service : undefined,
      hint: service,
      hintError: raw instanceof CorruptHint ? raw : undefined,
      hintPath: view.hints.where,
      fingerprint: hint?.fingerprint,
      startedAt: hint?.startedAt,
      running: alive
    }
  })

export const list: Effect.Effect<ReadonlyArray<ServiceStatus>, SystemError> = Effect.flatMap(RefCounter, (rc) =>
  Effect.flatMap(rc.names ?? Effect.sync(() => Hint.names(runtimeDirPath())), (names) =>
    Effect.forEach(
      names,
      (name) => inspect(name).pipe(Effect.catchTag("InvalidName", () => Effect.succeed(undefined))),
      { concurrency: 1 }
    ).pipe(Effect.map((all) => all.filter((s): s is ServiceStatus => s !== undefined)))))

/**
 * Stops the service of `name` now, whoever holds it: under the startup lock, its supervisor is
 * retired (it stops the service's tree: its stop signal, SIGKILL after its stop timeout) or, if
 * it does not leave within `timeout` (default: its stop timeout, at least 10 s) + 2 s, killed;
 * leftovers are swept and the files removed; the set is removed when nobody holds it. Holders
 * keep their (now dangling) references; the next acquisition starts afresh. Completes with
 * whether a live service was stopped.
 */
export const forceStop = (
  name: string,
  options?: {
    readonly timeout?: Duration.Input | undefined
    readonly lockTimeout?: Duration.Input | undefined
  }
): Effect.Effect<boolean, SystemError | InvalidName | LockTimeout> =>
  Effect.gen(function*() {
    yield* validate(name)
    const rc = yield* RefCounter
    const counter = yield* rc.open(name)
    const lockTimeout = Duration.fromInputUnsafe(options?.lockTimeout ?? Duration.seconds(30))
    return yield* Effect.uninterruptible(Effect.gen(function*() {
      yield* counter.lock(lockTimeout).pipe(
        Effect.catchTag("SemaphoreSetRemoved", () => Effect.andThen(counter.reopen, counter.lock(lockTimeout)))
      )
      let owned = yield* counter.owner.take
      const hint = yield* counter.hints.read
      const running = owned === undefined && hint instanceof Hint.Hint && hint.info !== undefined
      if (owned === undefined) {
        const pid = hint instanceof Hint.Hint ? hint.supervisor.pid : yield* counter.owner.stamp
        yield* requestRetire(counter, hint instanceof Hint.Hint ? { _tag: "Gen", gen: hint } : { _tag: "Stamp" })
        // By default the supervisor is given its own stop timeout (recorded in the hint), at least 10 s.
        const timeout = options?.timeout !== undefined
          ? Duration.toMillis(Duration.fromInputUnsafe(options.timeout))
          : Math.max(10_000, hint instanceof Hint.Hint ? hint.stopTimeoutMillis ?? 0 : 0)
        owned = yield* counter.owner.awaitFree(timeout + 2000)
        if (owned === undefined && pid !== undefined) {
          yield* signalSupervisor(counter, pid, undefined, "kill")
          owned = yield* counter.owner.awaitFree(2000)
        }
      }
      yield* sweepLeftovers<never, never>(undefined, counter)
      yield* counter.hints.remove()
      retireLog(logPath(counter))
      if (owned !== undefined) yield* owned.remove
      const count = yield* Effect.orElseSucceed(counter.count, () => 1)
      yield* Effect.ignore(count === 0 ? counter.remove : counter.unlock)
      return running
    }))
  })

/** Removes the counter's kernel object (`IPC_RMID`); holders re-register through their watchdogs. */
export const removeCounter = (name: string): Effect.Effect<void, SystemError | InvalidName> =>
  Effect.gen(function*() {
    const rc = yield* RefCounter
    const counter = yield* rc.openExisting(name)
    if (counter !== undefined) yield* counter.remove
  })

/** Counting creates nothing: no set means nobody holds it. */
export const count = <E, R>(self: SharedService<E, R>): Effect.Effect<number, SystemError | InvalidName> =>
  Effect.flatMap(RefCounter, (rc) =>
    Effect.flatMap(rc.openExisting(self.name), (counter) =>
      counter === undefined ? Effect.succeed(0) : counter.count.pipe(Effect.catchTag("SemaphoreSetRemoved", () => Effect.succeed(0)))))

/** Lets this process's references survive an `execve` (`quiesce run`); see `Counter.prepareExec`. */
export const prepareExec = (name: string): Effect.Effect<void, SystemError | InvalidName> =>
  Effect.flatMap(RefCounter, (rc) => Effect.flatMap(rc.open(name), (counter) => counter.prepareExec))

