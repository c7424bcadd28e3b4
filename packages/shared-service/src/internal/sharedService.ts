/**
 * The SharedService state machine. Per process and name there is one `Local`: the in-process
 * count of handles and the info they share, over the single kernel reference the process holds
 * while that count is positive.
 *
 * Per acquisition (under the in-process mutex):
 *
 *   local > 0                      → local += 1 (no system call)
 *   local = 0, lock, then by count:
 *     count = 0, no live service   → start             → unlock(+1)
 *     count = 0, live service      → health check      → (grace period: keep it) unlock(+1)
 *     count > 0, live service      → health check      → fails: recover → unlock(+1)
 *     count > 0, service gone      → start             → unlock(+1)
 *   any failure                    → unlock(0), nothing registered
 *
 * Release: local -= 1; at 0 the kernel reference is dropped (no lock needed: the reaper
 * re-checks under the lock before stopping anything).
 *
 * @internal
 */
import { Cause, Duration, Effect, Exit, Scope, Semaphore } from "effect"
import type { Pipeable } from "effect/Pipeable"
import { pipeArguments } from "effect/Pipeable"
import { spawn } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { setPriority } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Process from "../Process.ts"
import type { Counter } from "../RefCounter.ts"
import { RefCounter } from "../RefCounter.ts"
import type { ServiceInfo } from "../ServiceInfo.ts"
import { CorruptHint, RecoveryFailed, StartFailed, Unhealthy } from "../SharedServiceError.ts"
import type { InvalidName, LockTimeout, SharedServiceError, SystemError } from "../SharedServiceError.ts"
import * as Hint from "./hint.ts"
import { validate } from "./name.ts"
import { ensureRuntimeDir, runtimeDirPath } from "./paths.ts"

export const TypeId = "~@quiesce/shared-service/SharedService"

export type ReaperMode = "detached" | "in-process" | "none"

export interface Options<E, R> {
  /** 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`; with the uid, it names the kernel objects. */
  readonly name: string
  /**
   * Starts the service (only for the first client, under the startup lock) and describes it.
   * To survive a starter SIGKILLed mid-start it must leave a process whose pid it returns:
   * until it returns, only `command` services are known to the reaper.
   */
  readonly start: Effect.Effect<ServiceInfo, E, R>
  /** Stops it (recovery, the in-process reaper). Default: `Process.stop` of the verified pid (its group if `processGroup`). */
  readonly stop?: ((info: ServiceInfo) => Effect.Effect<void, E, R>) | undefined
  /** Run by every later client's first handle, under the lock; a failure runs `recover`. Default: none. */
  readonly healthCheck?: ((info: ServiceInfo) => Effect.Effect<void, unknown, R>) | undefined
  /** Replaces an unhealthy service. Default: `stop`, then `start`. */
  readonly recover?: ((info: ServiceInfo) => Effect.Effect<ServiceInfo, E, R>) | undefined
  /** How long the service outlives its last client (a client arriving meanwhile keeps it). Default 0. */
  readonly idleTimeToLive?: Duration.Input | undefined
  /** Bound on `start` (and `recover`): `StartFailed` with `timeoutMillis`. Default 30 s. */
  readonly startTimeout?: Duration.Input | undefined
  /** Bound on waiting for the startup lock: `LockTimeout`. Default startTimeout + stopTimeout + 5 s. */
  readonly lockTimeout?: Duration.Input | undefined
  /** SIGTERM → SIGKILL delay of the default `stop` and the detached reaper. Default 5 s. */
  readonly stopTimeout?: Duration.Input | undefined
  /** Who stops the service after the last client (see `ReaperMode`). Default `"detached"`. */
  readonly reaper?: ReaperMode | undefined
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
  readonly reaper: ReaperMode
}

export interface ServiceHandle {
  readonly name: string
  readonly info: ServiceInfo
  /** `true` when this acquisition started (or restarted) the service. */
  readonly started: boolean
}

const variance = { _E: (_: never) => _, _R: (_: never) => _ }

class SharedServiceImpl<E, R> implements SharedService<E, R> {
  readonly [TypeId] = variance
  readonly name: string
  readonly start: Effect.Effect<ServiceInfo, E, R>
  readonly stop: (info: ServiceInfo) => Effect.Effect<void, E, R>
  readonly healthCheck: ((info: ServiceInfo) => Effect.Effect<void, unknown, R>) | undefined
  readonly recover: (info: ServiceInfo) => Effect.Effect<ServiceInfo, E, R>
  readonly idleTimeToLive: Duration.Duration
  readonly startTimeout: Duration.Duration
  readonly lockTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly reaper: ReaperMode
  /** See `StartHooked`. */
  readonly startHooked: StartHooked<E, R> | undefined

  constructor(options: Options<E, R>, startHooked?: StartHooked<E, R>) {
    this.startHooked = startHooked
    this.name = options.name
    this.start = options.start
    this.idleTimeToLive = Duration.fromInputUnsafe(options.idleTimeToLive ?? 0)
    this.startTimeout = Duration.fromInputUnsafe(options.startTimeout ?? Duration.seconds(30))
    this.stopTimeout = Duration.fromInputUnsafe(options.stopTimeout ?? Duration.seconds(5))
    // A lock holder may be starting the service: by default wait for a whole start and a stop.
    this.lockTimeout = Duration.fromInputUnsafe(
      options.lockTimeout ?? Duration.sum(Duration.sum(this.startTimeout, this.stopTimeout), Duration.seconds(5))
    )
    this.stop = options.stop ?? ((info) => Effect.asVoid(stopProcess(info, this.stopTimeout)))
    this.healthCheck = options.healthCheck
    this.recover = options.recover ?? ((info) => Effect.andThen(this.stop(info), this.start))
    this.reaper = options.reaper ?? "detached"
  }

  pipe() {
    return pipeArguments(this, arguments)
  }
}

export const stopProcess = (info: ServiceInfo, timeout: Duration.Duration): Effect.Effect<boolean> =>
  Process.stop(info.pid, { timeout, startTime: info.startTime, group: info.processGroup })

export const isSharedService = (u: unknown): u is SharedService<unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u

export const make = <E = never, R = never>(options: Options<E, R>): Effect.Effect<SharedService<E, R>, InvalidName> =>
  Effect.map(validate(options.name), () => new SharedServiceImpl(options))

/**
 * A start that can launch the reaper itself, right after spawning the service and off the
 * critical path of this process (`command` does it from the service's shell wrapper, which
 * knows the service's pid): given a `ReaperLaunch` when a reaper is needed.
 */
export type StartHooked<E, R> = (reaper: ReaperLaunch | undefined) => Effect.Effect<ServiceInfo, E | SharedServiceError, R>

export const makeHooked = <E, R>(
  options: Options<E, R>,
  startHooked: StartHooked<E, R>
): Effect.Effect<SharedService<E, R>, InvalidName> =>
  Effect.map(validate(options.name), () => new SharedServiceImpl(options, startHooked))

export const makeUnsafe = <E = never, R = never>(options: Options<E, R>): SharedService<E, R> => {
  const r = Effect.runSyncExit(validate(options.name))
  if (Exit.isFailure(r)) throw Cause.squash(r.cause)
  return new SharedServiceImpl(options)
}

// ---------------------------------------------------------------------------------------------
// Per-process state
// ---------------------------------------------------------------------------------------------

interface Local {
  holders: number
  info: ServiceInfo | undefined
  readonly mutex: Semaphore.Semaphore
  watchdog: ReturnType<typeof setInterval> | undefined
}

const locals = new WeakMap<Counter, Local>()
const localOf = (counter: Counter): Local => {
  let l = locals.get(counter)
  if (l === undefined) {
    l = { holders: 0, info: undefined, mutex: Semaphore.makeUnsafe(1), watchdog: undefined }
    locals.set(counter, l)
  }
  return l
}

/** How often a holding process checks that its semaphore set still exists. */
const WATCHDOG_MS = 500

/**
 * While this process holds a reference, check every `WATCHDOG_MS` that the set still exists;
 * if it was removed (`ipcrm`), re-open it and re-register, so the count stays true and the
 * reaper does not stop a service that is still in use.
 */
const startWatchdog = (counter: Counter, local: Local) => {
  if (local.watchdog !== undefined || counter.exact === false) return
  local.watchdog = setInterval(() => {
    Effect.runFork(
      counter.count.pipe(
        Effect.catchTag("SemaphoreSetRemoved", () => local.holders > 0 ? counter.reopen(true) : Effect.void),
        Effect.ignore
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

/** Retries `f` once after re-opening the set when it was removed under us. */
const reopening = <A, E2, R2>(
  counter: Counter,
  holding: boolean,
  f: () => Effect.Effect<A, E2 | SystemError, R2>
): Effect.Effect<A, E2 | SystemError, R2> =>
  Effect.catchTag(
    f(),
    "SemaphoreSetRemoved",
    () => Effect.andThen(counter.reopen(holding), f()),
    (e) => Effect.fail(e)
  ) as Effect.Effect<A, E2 | SystemError, R2>

/** The hinted service if its process is alive (same pid and start time); a corrupt hint counts as none. */
const verifiedHint = (name: string): ServiceInfo | undefined => {
  const info = Hint.readUnsafe(name)
  if (info === undefined || info instanceof CorruptHint) return undefined
  return Process.isAliveUnsafe(info.pid, info.startTime) ? info : undefined
}

// ---------------------------------------------------------------------------------------------
// acquire / release
// ---------------------------------------------------------------------------------------------

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
  if (local.holders > 0 && local.info !== undefined) {
    local.holders++
    yield* Scope.addFinalizer(scope, release(counter, local))
    return { name: self.name, info: local.info, started: false }
  }
  // Not under `restore`: the lock is interruptible while waiting, and once taken it must reach
  // the unlock below (see `Counter.lock`).
  yield* reopening(counter, false, () => counter.lock(self.lockTimeout))
  const exit = yield* Effect.exit(restore(decide(self, counter)))
  if (Exit.isFailure(exit)) {
    yield* Effect.ignore(counter.unlock(0))
    return yield* exit
  }
  // A refused registration (semop is atomic: ERANGE at SEMVMX leaves the lock taken and the
  // count as it was) still frees the lock, as every other failure here does.
  yield* Effect.onError(counter.unlock(1), () => Effect.ignore(counter.unlock(0)))
  local.holders = 1
  local.info = exit.value.info
  startWatchdog(counter, local)
  yield* Scope.addFinalizer(scope, release(counter, local))
  return exit.value
})

/**
 * Needs no mutex: it runs synchronously to the end (every `decrement` is a non-blocking call),
 * and it can never overlap an acquisition's kernel path, which only runs while `holders` is 0,
 * when no handle exists to release.
 */
const release = (counter: Counter, local: Local): Effect.Effect<void> =>
  Effect.suspend(() => {
    local.holders--
    if (local.holders > 0) return Effect.void
    local.info = undefined
    stopWatchdog(local)
    // A removed set took our reference with it: nothing left to drop.
    return Effect.ignore(counter.decrement)
  })

/** Runs under the startup lock: every decision about the count is taken here. */
const decide = Effect.fnUntraced(function*<E, R>(
  self: SharedServiceImpl<E, R>,
  counter: Counter
): Effect.fn.Return<ServiceHandle, SharedServiceError | E, R> {
  const count = yield* counter.count
  const hinted = verifiedHint(self.name)
  // The reaper comes no later than the service: if this process dies while starting (after
  // the service was spawned but before anything was registered), the reaper still finds count 0
  // and stops what the start recorded. A hooked start (`command`) has the service's own shell
  // launch it, so that spawning it costs this process nothing on the service's critical path.
  const hooked = self.startHooked
  const needReaper = yield* reaperNeeded(self, counter)
  // Whether the start that ran launched the reaper (only a hooked start does).
  let launched = false
  const start = hooked === undefined
    ? self.start
    : Effect.suspend(() => {
      launched = needReaper
      return hooked(needReaper ? reaperLaunch(self, counter) : undefined)
    })
  if (needReaper && hooked === undefined) spawnReaper(self.name, reaperSpec(self, counter))
  if (self.reaper === "in-process") yield* ensureInProcessReaper(self, counter)
  let handle: ServiceHandle
  if (hinted === undefined) {
    // Cold start, or the service died while clients held it: start a new one.
    handle = { name: self.name, info: yield* startService(self, start), started: true }
  } else if (self.healthCheck === undefined) {
    handle = { name: self.name, info: hinted, started: false }
  } else {
    const healthy = yield* Effect.exit(self.healthCheck(hinted))
    if (Exit.isSuccess(healthy)) {
      handle = { name: self.name, info: hinted, started: false }
    } else if (count === 0) {
      // Nobody holds it (a reaper's grace period): replace it.
      yield* self.stop(hinted)
      handle = { name: self.name, info: yield* startService(self, start), started: true }
    } else {
      handle = { name: self.name, info: yield* recoverService(self, hinted, healthy.cause), started: true }
    }
  }
  // No hooked start ran (the service was reused, or `recover` ran): launch the reaper here.
  if (needReaper && hooked !== undefined && !launched) {
    spawnReaper(self.name, { ...reaperSpec(self, counter), service: handle.info })
  }
  if (handle.started) yield* Hint.write(self.name, handle.info)
  return handle
})

const startService = <E, R>(
  self: SharedServiceImpl<E, R>,
  start: Effect.Effect<ServiceInfo, E | SharedServiceError, R>
): Effect.Effect<ServiceInfo, E | SharedServiceError, R> =>
  start.pipe(
    Effect.timeoutOrElse({
      duration: self.startTimeout,
      orElse: () =>
        Effect.fail(
          new StartFailed({
            service: self.name,
            reason: `not started within ${Duration.format(self.startTimeout)}`,
            timeoutMillis: Duration.toMillis(self.startTimeout)
          })
        )
    })
  )

const recoverService = <E, R>(
  self: SharedServiceImpl<E, R>,
  info: ServiceInfo,
  unhealthy: Cause.Cause<unknown>
): Effect.Effect<ServiceInfo, SharedServiceError, R> =>
  self.recover(info).pipe(
    Effect.timeoutOrElse({
      duration: self.startTimeout,
      orElse: () => Effect.fail(new StartFailed({ service: self.name, reason: "recovery timed out" }))
    }),
    Effect.tap((recovered) =>
      self.healthCheck === undefined
        ? Effect.void
        : Effect.mapError(
          self.healthCheck(recovered),
          (cause) => new Unhealthy({ service: self.name, reason: "still unhealthy after recovery", cause })
        )
    ),
    Effect.mapError((cause) =>
      new RecoveryFailed({
        service: self.name,
        reason: `health check failed (${Cause.pretty(unhealthy).split("\n")[0]}) and recovery failed`,
        cause
      })
    )
  )

// ---------------------------------------------------------------------------------------------
// The reaper
// ---------------------------------------------------------------------------------------------

/**
 * Under the lock: whether a detached reaper must be launched. A fresh reaper takes a while to
 * boot and claim its slot, so its pid is recorded (`<name>.reaper-pid`); later clients launch
 * another only when neither a slot holder nor the recorded reaper process is alive.
 */
const reaperNeeded = <E, R>(self: SharedServiceImpl<E, R>, counter: Counter): Effect.Effect<boolean, SystemError> => {
  // A simulated kernel has no process to hand the reaping to.
  if (self.reaper !== "detached" || counter.kind === "memory") return Effect.succeed(false)
  return Effect.map(counter.hasReaper, (has) => !has && !launchedReaperAlive(self.name))
}

const reaperSpec = <E, R>(self: SharedServiceImpl<E, R>, counter: Counter): ReaperSpec => ({
  kind: counter.kind === "flock" ? "flock" : "sysv",
  idleTimeToLive: self.idleTimeToLive,
  stopTimeout: self.stopTimeout,
  lockTimeout: self.lockTimeout
})

const reaperLaunch = <E, R>(self: SharedServiceImpl<E, R>, counter: Counter): ReaperLaunch => ({
  argv: reaperCommand(self.name, reaperSpec(self, counter)),
  pidFile: reaperPidPath(self.name)
})

const ensureInProcessReaper = <E, R>(self: SharedServiceImpl<E, R>, counter: Counter): Effect.Effect<void, SystemError, R> =>
  Effect.flatMap(counter.hasReaper, (has) =>
    has ? Effect.void : Effect.flatMap(counter.claimReaper, (claimed) =>
      claimed
        ? Effect.asVoid(
          Effect.forkDetach(
            reap(counter, { idleTimeToLive: self.idleTimeToLive, lockTimeout: self.lockTimeout, stop: self.stop }).pipe(
              Effect.ignore
            )
          )
        )
        : Effect.void))

export interface ReapOptions<E, R> {
  /** A service known from the start (its pid), stopped too if no hint names it any more. */
  readonly service?: ServiceInfo | undefined
  readonly idleTimeToLive: Duration.Duration
  readonly lockTimeout: Duration.Duration
  readonly stop: (info: ServiceInfo) => Effect.Effect<void, E, R>
}

/**
 * The reaper's loop, for a process that holds the reaper slot and no reference: wait for the
 * count to reach zero, wait `idleTimeToLive`, then under the lock re-check and, if still zero,
 * stop the hinted service and remove the hint. A client arriving in the grace period keeps it.
 * Completes (releasing the slot) after stopping the service.
 */
export const reap = Effect.fnUntraced(function*<E, R>(
  counter: Counter,
  options: ReapOptions<E, R>
): Effect.fn.Return<void, SystemError | E, R> {
  while (true) {
    const waited = yield* counter.awaitZero.pipe(
      Effect.as("zero" as const),
      Effect.catchTag("SemaphoreSetRemoved", () => Effect.succeed("removed" as const))
    )
    if (waited === "removed") {
      // The set was removed (ipcrm): re-open it and give holders' watchdogs time to
      // re-register before counting again.
      yield* counter.reopen(false)
      if (!(yield* counter.claimReaper)) return
      yield* Effect.sleep(Duration.millis(WATCHDOG_MS * 3))
      continue
    }
    yield* Effect.sleep(options.idleTimeToLive)
    // Lock, decide, stop, unlock: one uninterruptible step (the wait inside is interruptible
    // while nothing is held).
    const outcome = yield* Effect.uninterruptible(Effect.gen(function*() {
      const locked = yield* counter.lock(options.lockTimeout).pipe(
        Effect.as(true),
        Effect.catchTags({
          LockTimeout: () => Effect.succeed(false),
          SemaphoreSetRemoved: () => Effect.succeed(false)
        })
      )
      if (!locked) return Exit.succeed(false)
      const done = yield* Effect.exit(Effect.gen(function*() {
        if ((yield* counter.count) > 0) return false
        const info = Hint.readUnsafe(counter.name)
        if (info !== undefined && !(info instanceof CorruptHint)) {
          if (Process.isAliveUnsafe(info.pid, info.startTime)) yield* options.stop(info)
          yield* Hint.remove(counter.name, info.instanceId)
        }
        const initial = options.service
        if (
          initial !== undefined && (info === undefined || info instanceof CorruptHint || info.pid !== initial.pid) &&
          Process.isAliveUnsafe(initial.pid, initial.startTime)
        ) {
          // Its starter died before recording it: nobody else knows it.
          yield* options.stop(initial)
        }
        yield* counter.releaseReaper
        return true
      }))
      if (Exit.isSuccess(done) && done.value && counter.kind === "sysv") {
        // Nobody holds it and nothing runs: remove the set (with the lock in it), so nothing is
        // left behind. A client waiting for the lock, or about to use the set, sees it removed
        // and re-opens a fresh one (its one retry). Not done for flock: a client blocked on an
        // unlinked lock file would not notice.
        yield* Effect.ignore(counter.remove)
      } else {
        yield* Effect.ignore(counter.unlock(0))
      }
      return done
    }))
    if (yield* outcome) return
  }
})

interface ReaperSpec {
  readonly kind: "sysv" | "flock"
  /** The service just spawned, stopped by the reaper even if no hint names it. */
  readonly service?: ServiceInfo | undefined
  readonly idleTimeToLive: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly lockTimeout: Duration.Duration
}

/** How a start launches the reaper: its command line (the service's pid is appended) and pid file. */
export interface ReaperLaunch {
  readonly argv: ReadonlyArray<string>
  readonly pidFile: string
}

/**
 * The reaper's niceness. It boots while the service starts and must not slow it down; but it
 * must not starve either, or the grace period would stretch on a loaded machine (at 19 its CPU
 * weight is 15 against 1024 for a normal process; at 10, 110).
 */
export const REAPER_NICE = 10

/** The pid of the last reaper launched for a name, so that clients arriving while it boots do not launch more. */
const reaperPidPath = (name: string): string => join(runtimeDirPath(), `${name}.reaper-pid`)

const launchedReaperAlive = (name: string): boolean => {
  try {
    const pid = Number.parseInt(readFileSync(reaperPidPath(name), "utf8"), 10)
    if (!Number.isInteger(pid) || pid <= 0 || !Process.isAliveUnsafe(pid)) return false
    // The file outlives its reaper: make sure the pid was not recycled by some other process.
    // Until it execs node, the launched process is the service's shell (waiting to launch it)
    // or `nice … setsid … reaper NAME`; all of them name the reaper entry and the service.
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8")
    return /[\\/]reaper\.[jt]s\b/.test(cmdline) && cmdline.includes(name)
  } catch {
    return false
  }
}

/**
 * The reaper's entry, resolved through this package's own exports (a package self-reference),
 * so it is found wherever this code runs: from `src/` under `--conditions=@quiesce/source`
 * (tests; vitest passes its resolve conditions to its workers, and its module runner implements
 * `import.meta.resolve` with Node's resolver), from `dist/`, and from a bundle that inlined
 * this module (the `quiesce` executable), where the specifier resolves through `node_modules`.
 */
const reaperEntry = (): string => fileURLToPath(import.meta.resolve("@quiesce/shared-service/bin/reaper"))

/** The command line of the detached reaper (`bin/reaper.ts`); it exits at once if a reaper exists. */
const reaperCommand = (name: string, options: ReaperSpec): ReadonlyArray<string> => {
  const entry = reaperEntry()
  // The TypeScript source imports its siblings through the same condition.
  const execArgv = entry.endsWith(".ts") ? ["--conditions=@quiesce/source", "--no-warnings"] : []
  return [
    process.execPath,
    ...execArgv,
    entry,
    name,
    String(Duration.toMillis(options.idleTimeToLive)),
    String(Duration.toMillis(options.stopTimeout)),
    String(Duration.toMillis(options.lockTimeout)),
    options.kind,
    ...(options.service === undefined
      ? []
      : [String(options.service.pid), String(options.service.startTime ?? ""), options.service.processGroup ? "group" : ""])
  ]
}

/** How long a freshly launched reaper waits before it boots (see `spawnReaper`). */
export const REAPER_DELAY_SECONDS = 1

/**
 * Spawns the detached reaper (its own session) from this process and records its pid. A shell
 * holds it back for `REAPER_DELAY_SECONDS` before it execs Node, so that the reaper's boot does
 * not compete for the CPU with the service that is starting now. Nothing is lost meanwhile: the
 * reaper decides only from the kernel count, under the lock, once it runs.
 */
const spawnReaper = (name: string, options: ReaperSpec): number | undefined => {
  const child = spawn(
    "/bin/sh",
    ["-c", `sleep ${REAPER_DELAY_SECONDS}; exec "$@"`, "sh", ...reaperCommand(name, options)],
    { detached: true, stdio: "ignore" }
  )
  child.on("error", () => {})
  child.unref()
  if (child.pid === undefined) return undefined
  try {
    setPriority(child.pid, REAPER_NICE)
  } catch {
    // not permitted: it runs at normal priority
  }
  try {
    ensureRuntimeDir()
    writeFileSync(reaperPidPath(name), `${child.pid}\n`, { mode: 0o600 })
  } catch {
    // without the record, a client arriving while it boots may launch a spare (which exits)
  }
  return child.pid
}

// ---------------------------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------------------------

export interface ServiceStatus {
  readonly name: string
  /** Processes holding a reference (`undefined` when the counter does not exist). */
  readonly count: number
  /** Whether `count` is exact (SysV) or only says "some" (flock). */
  readonly exact: boolean
  readonly hasReaper: boolean
  /** The hinted service, when the hint exists and its process is alive. */
  readonly info: ServiceInfo | undefined
  /** The hint, whether or not its process is alive. */
  readonly hint: ServiceInfo | undefined
  readonly hintError: CorruptHint | undefined
  readonly hintPath: string
  readonly running: boolean
}

export const inspect = (name: string): Effect.Effect<ServiceStatus, SystemError | InvalidName> =>
  Effect.gen(function*() {
    yield* validate(name)
    const rc = yield* RefCounter
    const counter = yield* rc.openExisting(name)
    // A set removed under us counts as none: inspection never re-creates it.
    const [count, hasReaper] = counter === undefined ? [0, false] : yield* Effect.all([counter.count, counter.hasReaper]).pipe(
      Effect.catchTag("SemaphoreSetRemoved", () => Effect.succeed([0, false] as const))
    )
    const raw = Hint.readUnsafe(name)
    const hint = raw instanceof CorruptHint ? undefined : raw
    const alive = hint !== undefined && Process.isAliveUnsafe(hint.pid, hint.startTime)
    return {
      name,
      count,
      exact: counter?.exact ?? true,
      hasReaper,
      info: alive ? hint : undefined,
      hint,
      hintError: raw instanceof CorruptHint ? raw : undefined,
      hintPath: Hint.hintPath(name),
      running: alive
    }
  })

export const list: Effect.Effect<ReadonlyArray<ServiceStatus>, SystemError> = Effect.flatMap(
  Hint.list(),
  (names) =>
    Effect.forEach(
      names,
      (name) => inspect(name).pipe(Effect.catchTag("InvalidName", () => Effect.succeed(undefined))),
      { concurrency: 1 }
    ).pipe(Effect.map((all) => all.filter((s): s is ServiceStatus => s !== undefined)))
)

export const forceStop = (
  name: string,
  options?: {
    readonly timeout?: Duration.Input | undefined
    readonly lockTimeout?: Duration.Input | undefined
    readonly removeSet?: boolean | undefined
  }
): Effect.Effect<boolean, SystemError | InvalidName | LockTimeout> =>
  Effect.gen(function*() {
    yield* validate(name)
    const rc = yield* RefCounter
    const counter = yield* rc.open(name)
    const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(5))
    return yield* Effect.uninterruptible(
      Effect.gen(function*() {
        yield* reopening(counter, localOf(counter).holders > 0, () =>
          counter.lock(Duration.fromInputUnsafe(options?.lockTimeout ?? Duration.seconds(30))))
        const stopped = yield* Effect.gen(function*() {
          const raw = Hint.readUnsafe(name)
          if (raw === undefined || raw instanceof CorruptHint) {
            yield* Hint.remove(name)
            return false
          }
          const alive = Process.isAliveUnsafe(raw.pid, raw.startTime)
          if (alive) yield* stopProcess(raw, timeout)
          yield* Hint.remove(name, raw.instanceId)
          return alive
        }).pipe(Effect.ensuring(Effect.ignore(counter.unlock(0))))
        if (options?.removeSet === true) yield* Effect.ignore(counter.remove)
        return stopped
      })
    )
  })

/** Removes the counter's kernel object (`IPC_RMID`); holders re-register through their watchdogs. */
export const removeCounter = (name: string): Effect.Effect<void, SystemError | InvalidName> =>
  Effect.gen(function*() {
    const rc = yield* RefCounter
    const counter = yield* rc.openExisting(name)
    if (counter !== undefined) yield* counter.remove
  })

export const count = <E, R>(self: SharedService<E, R>): Effect.Effect<number, SystemError | InvalidName> =>
  Effect.flatMap(RefCounter, (rc) =>
    Effect.flatMap(rc.open(self.name), (counter) =>
      reopening(counter, localOf(counter).holders > 0, () => counter.count)))
