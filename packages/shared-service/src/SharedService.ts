/**
 * One service process shared by many client processes: the first client starts it, the last
 * one out stops it, and when a client crashes the kernel drops its reference.
 *
 * **Guarantees** (with the default SysV `RefCounter` on Linux)
 *
 * - **Exactly one start.** `start` runs only under a cross-process startup lock, and only when
 *   no live service is recorded; every decision about the count is taken under that lock. The
 *   lock is the atomic semop pair {wait-for-zero, +1 with `SEM_UNDO`}: a process that dies
 *   holding it releases it, so the next client gets it at once, not after a timeout.
 * - **Crash-safe count.** Each process holds at most one kernel reference (+1 with `SEM_UNDO`),
 *   however many handles it has; the kernel drops it when the process dies, SIGKILL included.
 * - **No orphaned service.** A reaper process that holds no reference waits for the count to
 *   reach zero (semop wait-for-zero wakes when the last holder dies), waits `idleTimeToLive`,
 *   re-checks under the lock and stops the service. A client arriving in the grace period keeps
 *   the running service. A dead reaper is replaced by the next client.
 * - **Hints are verified.** The service's `ServiceInfo` is shared through a hint file (per-user
 *   runtime dir, 0600, written atomically) that is checked against the process table (pid and
 *   start time) and the health check, never trusted; a corrupt hint is ignored and replaced.
 * - **Bounded waits.** The lock wait runs in `semtimedop` slices of at most 50 ms on the libuv
 *   pool (never the event loop), is interruptible between slices, and fails with `LockTimeout`
 *   after `lockTimeout`.
 * - **Never `SETVAL`.** Sets are created (mode 0600, keyed by uid and name) and used, never
 *   re-initialised, so no process's undo records are wiped.
 *
 * **Limits.** `stop`, `recover` and `healthCheck` are Effects and run in client processes
 * (recovery) or the in-process reaper. The detached reaper (the default, and the only one that
 * survives the last client being SIGKILLed) stops the service by its verified pid, with SIGTERM
 * and SIGKILL after `stopTimeout` (the whole process group when `processGroup` is set).
 *
 * @since 0.1.0
 */
import type { Duration, Effect, Layer, Scope } from "effect"
import { Effect as Effect_, Layer as L } from "effect"
import type { Context } from "effect"
import type { ChildProcessSpawner } from "effect/process"
import * as command_ from "./internal/command.ts"
import { keepAcrossExec } from "./internal/flock.ts"
import * as internal from "./internal/sharedService.ts"
import { invalidReason } from "./internal/name.ts"
import * as Hint from "./internal/hint.ts"
import { runtimeDirPath } from "./internal/paths.ts"
import type { Counter } from "./RefCounter.ts"
import { RefCounter } from "./RefCounter.ts"
import type { ServiceInfo } from "./ServiceInfo.ts"
import type { CorruptHint, InvalidName, LockTimeout, SharedServiceError, StartFailed, SystemError } from "./SharedServiceError.ts"

/**
 * @category type ids
 * @since 0.1.0
 */
export const TypeId: typeof internal.TypeId = internal.TypeId

/**
 * A shared service definition: its name and how to start, stop, check and recover it. It holds
 * no state of its own; acquiring it coordinates through the `RefCounter` (the kernel).
 *
 * @category models
 * @since 0.1.0
 */
export interface SharedService<out E = never, out R = never> extends internal.SharedService<E, R> {}

/**
 * What `acquire` gives back: the verified `ServiceInfo` (pid, port, metadata) of the running
 * service, valid until the acquiring scope closes.
 *
 * @category models
 * @since 0.1.0
 */
export interface ServiceHandle extends internal.ServiceHandle {}

/**
 * Who stops the service after the last client:
 *
 * - `"detached"` (default): a separate reaper process (`bin/reaper`), spawned by the first
 *   client, holding no reference. Survives every client, SIGKILL included. Stops the service
 *   by its recorded pid (SIGTERM, then SIGKILL after `stopTimeout`); a custom `stop` is not
 *   used by it.
 * - `"in-process"`: a daemon fiber in the starting process runs `stop`. Not crash-safe: if
 *   that process dies the service is left running until a later client's reaper takes over.
 *   The fiber keeps that process alive until it has stopped the service.
 * - `"none"`: nothing stops it (use `forceStop`).
 *
 * @category models
 * @since 0.1.0
 */
export type ReaperMode = internal.ReaperMode

/**
 * @category models
 * @since 0.1.0
 */
export interface Options<E, R> extends internal.Options<E, R> {}

/**
 * @category guards
 * @since 0.1.0
 */
export const isSharedService: (u: unknown) => u is SharedService<unknown, unknown> = internal.isSharedService

/**
 * Defines a shared service. Validates the name (1–64 of `[A-Za-z0-9._-]`, not starting with
 * `.` or `-`); starts nothing.
 *
 * Defaults: `idleTimeToLive` 0 (stop as soon as the last client is gone), `startTimeout` 30 s,
 * `stopTimeout` 5 s, `lockTimeout` = startTimeout + stopTimeout + 5 s (a lock holder may be
 * starting the service), `stop` = `Process.stop(info.pid)` verified by start time, `recover` =
 * stop then start, no health check, `reaper: "detached"`.
 *
 * **Example**
 *
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const db = yield* SharedService.make({
 *     name: "dev-db",
 *     start: Effect.sync(() => ServiceInfo.make({ pid: startDatabase(), port: 5432 })),
 *     idleTimeToLive: "5 seconds"
 *   })
 *   const handle = yield* SharedService.acquire(db)
 *   console.log(handle.info.port)
 * }).pipe(Effect.scoped)
 * declare const startDatabase: () => number
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: <E = never, R = never>(options: Options<E, R>) => Effect.Effect<SharedService<E, R>, InvalidName> =
  internal.make

/**
 * Synchronous `make`; throws `InvalidName`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeUnsafe: <E = never, R = never>(options: Options<E, R>) => SharedService<E, R> = internal.makeUnsafe

/**
 * Acquires a reference to the shared service, held until the current `Scope` closes. The first
 * client (count 0 → 1, no live service) runs `start` under the startup lock and writes the
 * hint; later clients verify the hint and run `healthCheck`, and a failing check runs `recover`.
 * Fibers of one process share one kernel reference: only the first of them takes the lock.
 *
 * Fails with `LockTimeout` (lock not obtained within `lockTimeout`), `StartFailed` (including
 * `startTimeout`), `RecoveryFailed`, the system errors of the `RefCounter`, or `start`'s own
 * `E`. On any failure nothing is registered and the lock is released. Interruptible while
 * waiting for the lock and while `start`/`healthCheck`/`recover` run.
 *
 * @category combinators
 * @since 0.1.0
 */
export const acquire: <E, R>(self: SharedService<E, R>) => Effect.Effect<ServiceHandle, SharedServiceError | E, R | Scope.Scope> =
  internal.acquire

/**
 * The number of processes holding the service (exact with SysV; 0 or 1 with `flock`).
 *
 * @category getters
 * @since 0.1.0
 */
export const count: <E, R>(self: SharedService<E, R>) => Effect.Effect<number, SystemError | InvalidName> = internal.count

/**
 * A layer that holds the shared service for the layer's lifetime and provides its handle.
 *
 * **Example**
 *
 * ```ts
 * import { Context, Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * class Db extends Context.Service<Db, SharedService.ServiceHandle>()("app/Db") {}
 * const DbLive = SharedService.layer(Db, {
 *   name: "dev-db",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: 1234, port: 5432 }))
 * })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <I, E = never, R = never>(
  tag: Context.Key<I, ServiceHandle>,
  service: SharedService<E, R> | Options<E, R>
): Layer.Layer<I, SharedServiceError | E, R> =>
  L.effect(
    tag,
    internal.isSharedService(service)
      ? internal.acquire(service as SharedService<E, R>)
      : Effect_.flatMap(internal.make(service as Options<E, R>), internal.acquire)
  )

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/**
 * How to tell that a started service is ready (and, by default, healthy).
 *
 * @category models
 * @since 0.1.0
 */
export type Readiness = command_.Readiness

/**
 * Ready when a TCP connection to `host:port` (default 127.0.0.1) succeeds.
 *
 * @category readiness
 * @since 0.1.0
 */
export const tcp = (port: number, host?: string): Readiness => ({ _tag: "Tcp", port, host })

/**
 * Ready when `GET url` answers with a status below 500.
 *
 * @category readiness
 * @since 0.1.0
 */
export const http = (url: string): Readiness => ({ _tag: "Http", url })

/**
 * Ready when `check(info)` succeeds.
 *
 * @category readiness
 * @since 0.1.0
 */
export const check = (check: (info: ServiceInfo) => Effect.Effect<void, unknown>): Readiness => ({ _tag: "Check", check })

/**
 * Parses the CLI form of a readiness check: `tcp:PORT`, `tcp:HOST:PORT`, or an `http://` /
 * `https://` URL. `undefined` when it is not one of these.
 *
 * @category readiness
 * @since 0.1.0
 */
export const parseReadiness = (s: string): Readiness | undefined => {
  if (s.startsWith("http://") || s.startsWith("https://")) return http(s)
  const m = /^tcp:(?:([^:]+):)?(\d{1,5})$/.exec(s)
  if (m === null) return undefined
  const port = Number(m[2])
  return port > 0 && port < 65536 ? tcp(port, m[1]) : undefined
}

/**
 * Options of `command`.
 *
 * @category models
 * @since 0.1.0
 */
export interface CommandOptions extends command_.CommandOptions {
  readonly idleTimeToLive?: Duration.Input | undefined
  readonly startTimeout?: Duration.Input | undefined
  readonly lockTimeout?: Duration.Input | undefined
  readonly stopTimeout?: Duration.Input | undefined
  /** Health check for later clients; defaults to the `ready` check. `false` disables it. */
  readonly healthCheck?: Readiness | false | undefined
}

/**
 * A shared service that is a shell command (`/bin/sh -c`), started detached in its own process
 * group through `effect/process` so that it outlives the client that started it, with its
 * output appended to `<runtime dir>/<name>.log` (or `logFile`). The first client spawns it,
 * polls `ready` until it succeeds (the process dying or `startTimeout` elapsing fails the start
 * and kills the group), records the hint and spawns the detached reaper, which stops the group
 * `idleTimeToLive` after the last client is gone. This is what `quiesce run` uses.
 *
 * Requires a `ChildProcessSpawner` (`NodeServices.layer` from `@effect/platform-node`).
 *
 * @category constructors
 * @since 0.1.0
 */
export const command = (
  options: CommandOptions
): Effect.Effect<SharedService<StartFailed, ChildProcessSpawner.ChildProcessSpawner>, InvalidName> => {
  const health = options.healthCheck === undefined ? options.ready : options.healthCheck === false ? undefined : options.healthCheck
  return internal.makeHooked<StartFailed, ChildProcessSpawner.ChildProcessSpawner>({
    name: options.name,
    start: command_.startCommand(options, undefined),
    healthCheck: health === undefined ? undefined : (info) => command_.probe(options.name, health, info),
    idleTimeToLive: options.idleTimeToLive,
    startTimeout: options.startTimeout,
    lockTimeout: options.lockTimeout,
    stopTimeout: options.stopTimeout,
    reaper: "detached"
  }, (reaper) => command_.startCommand(options, reaper))
}

// ---------------------------------------------------------------------------------------------
// Inspection (quiesce status / list / stop)
// ---------------------------------------------------------------------------------------------

/**
 * What `inspect` reports about a name: the live count, whether a reaper is alive, and the hint
 * with whether its process is alive.
 *
 * @category models
 * @since 0.1.0
 */
export interface ServiceStatus extends internal.ServiceStatus {}

/**
 * Reads the hint and the live count for `name`, creating nothing. A corrupt hint is reported in
 * `hintError`, not raised.
 *
 * @category inspection
 * @since 0.1.0
 */
export const inspect: (name: string) => Effect.Effect<ServiceStatus, SystemError | InvalidName> = internal.inspect

/**
 * `inspect` for every name with a hint file in the runtime directory.
 *
 * @category inspection
 * @since 0.1.0
 */
export const list: Effect.Effect<ReadonlyArray<ServiceStatus>, SystemError> = internal.list

/**
 * Stops the hinted service now, under the startup lock (SIGTERM, SIGKILL after `timeout`,
 * verified by pid and start time), and removes the hint. Clients still holding it keep their
 * references; the next one to acquire starts a new service. With `removeSet`, also removes the
 * semaphore set (holders re-register). Completes with whether a live service was stopped.
 *
 * @category inspection
 * @since 0.1.0
 */
export const forceStop: (
  name: string,
  options?: {
    readonly timeout?: Duration.Input | undefined
    readonly lockTimeout?: Duration.Input | undefined
    readonly removeSet?: boolean | undefined
  }
) => Effect.Effect<boolean, SystemError | InvalidName | LockTimeout> = internal.forceStop

/**
 * Removes the kernel object of `name` (SysV: `IPC_RMID`). Sets persist by design (like named
 * semaphores) so that nothing ever has to re-initialise one; use this to clean up.
 *
 * @category inspection
 * @since 0.1.0
 */
export const remove: (name: string) => Effect.Effect<void, SystemError | InvalidName> = internal.removeCounter

/**
 * Reads the hint file of `name` as is (not verified): `undefined` when there is none.
 *
 * @category inspection
 * @since 0.1.0
 */
export const readHint = (name: string): Effect.Effect<ServiceInfo | undefined, CorruptHint> => Hint.read(name)

/**
 * The per-user runtime directory holding hints, logs and lock files: `$QUIESCE_RUNTIME_DIR`,
 * else `$XDG_RUNTIME_DIR/quiesce`, else `<tmpdir>/quiesce-<uid>` (created 0700).
 *
 * @category inspection
 * @since 0.1.0
 */
export const runtimeDirectory = (): string => runtimeDirPath()

/**
 * `undefined` if `name` is a valid service name, otherwise why not.
 *
 * @category guards
 * @since 0.1.0
 */
export const validateName: (name: string) => string | undefined = invalidReason

/**
 * Options of `reap`: the grace period, the lock wait, how to stop the service, and optionally
 * a service known from its start (stopped too when no hint names it).
 *
 * @category reaper
 * @since 0.1.0
 */
export interface ReapOptions<E, R> extends internal.ReapOptions<E, R> {}

/**
 * The reaper loop, exported for custom supervisors: in a process that holds the reaper slot
 * (`Counter.claimReaper`) and no reference, waits for zero, waits `idleTimeToLive`, re-checks
 * under the lock and runs `stop` on the hinted service.
 *
 * @category reaper
 * @since 0.1.0
 */
export const reap: <E, R>(counter: Counter, options: ReapOptions<E, R>) => Effect.Effect<void, SystemError | E, R> =
  internal.reap

/**
 * Makes the references this process holds outlive `execve(2)`, for a process that hands them to
 * the program it replaces itself with (`quiesce run` execs the user's command, which is then the
 * client the kernel counts). Call it right before the exec, with the acquiring scopes left open:
 * nothing of this process runs afterwards, and the kernel drops the references when the new
 * program exits or is killed.
 *
 * - `sysV`: nothing to do: a `SEM_UNDO` adjustment belongs to the process, and a process keeps
 *   it across `execve`.
 * - `flock`: the reference is a shared lock on the clients file through a close-on-exec
 *   descriptor; this clears `FD_CLOEXEC` on it, so the new program keeps the lock, and so does
 *   any child it forks while the descriptor is open (a program that closes descriptors it did not
 *   open drops its reference).
 * - `memory`: nothing (simulated processes do not exec).
 *
 * What the new program does not get: the in-process watchdog that re-registers a reference after
 * its semaphore set was removed (`ipcrm`, `forceStop` with `removeSet`), since no code of this
 * package runs in it.
 *
 * @category combinators
 * @since 0.1.0
 */
export const prepareExec: Effect.Effect<void, SystemError> = Effect_.flatMap(
  RefCounter,
  (rc) => rc.kind === "flock" ? keepAcrossExec : Effect_.void
)
