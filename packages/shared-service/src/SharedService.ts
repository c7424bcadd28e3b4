/**
 * One service process shared by many client processes: the first client starts it, the last
 * one out stops it (after `idleTimeToLive`), and when a client crashes the kernel drops its
 * reference. The protocol is in `PROTOCOL.md`; its model check is `test/lifecycle.model.test.ts`.
 *
 * **Guarantees** (with the default SysV `RefCounter` on Linux)
 *
 * - **One instance, one owner.** A generation of the service exists exactly while its
 *   supervisor lives: the supervisor is the service's parent, holds the owner lock (a kernel
 *   flock, held from the instant it is spawned), and its death kills the service
 *   (parent-death signal). A new generation is only started when nobody holds the owner lock,
 *   after sweeping whatever an earlier one left; so there are never two live instances.
 * - **Every decision under the startup lock**, a crash-safe SysV lock (`{wait-for-zero, +1}`
 *   with `SEM_UNDO`): a process that dies holding it releases it at once.
 * - **Crash-safe count.** Each process holds at most one kernel reference (+1 with `SEM_UNDO`),
 *   however many handles it has; the kernel drops it when the process dies, SIGKILL included.
 * - **Stopped after the last client, never before.** The supervisor waits for count 0, then
 *   for `idleTimeToLive` counted from the last release (every registration rings it), then
 *   re-checks under the lock and stops the service's whole tree (SIGTERM, SIGKILL after
 *   `stopTimeout`), removes the hint, the owner file and the set. A client arriving meanwhile
 *   waits for the lock and starts a fresh generation.
 * - **Bounded everything.** The lock wait runs in `semtimedop` slices of at most 50 ms on the
 *   libuv pool (never the event loop) and fails with `LockTimeout`; health checks run under the
 *   lock within `healthTimeout`, and a stopped (SIGSTOP) service is unhealthy and replaced.
 * - **Nothing trusted, nothing hijacked.** The runtime directory is checked (a directory of this
 *   user, not a link, 0700) before anything starts and every file in it is opened `O_NOFOLLOW`;
 *   the hint is verified against the owner lock and the process table; a port held by another
 *   process is `PortInUse`, at once and during readiness, never someone else's server.
 *
 * @since 0.1.0
 */
import type { Duration, Effect, Layer, Scope } from "effect"
import { Effect as Effect_, Layer as L } from "effect"
import type { Context } from "effect"
import * as command_ from "./internal/command.ts"
import * as internal from "./internal/sharedService.ts"
import * as Hint from "./internal/hint.ts"
import { invalidReason, validate } from "./internal/name.ts"
import { runtimeDir, runtimeDirPath } from "./internal/paths.ts"
import type { ServiceInfo } from "./ServiceInfo.ts"
import { CorruptHint } from "./SharedServiceError.ts"
import type { InvalidName, LockTimeout, PortInUse, SharedServiceError, StartFailed, SystemError } from "./SharedServiceError.ts"

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
 * Who supervises a generation (and stops the service after the last client):
 *
 * - `"detached"` (default): a supervisor process (`bin/supervisor`), spawned by the first
 *   client before `start` runs, holding the owner lock and no reference. Survives every client,
 *   SIGKILL included. Stops the service by its recorded pid (SIGTERM, then SIGKILL after
 *   `stopTimeout`); a custom `stop` is not used by it.
 * - `"in-process"`: a daemon fiber in the starting process holds the owner lock and runs `stop`.
 *   The fiber keeps that process alive until it has stopped the service. If that process dies,
 *   a standby in another process holding the service adopts it (it queues on the owner lock
 *   while it holds the service), or else the last releaser runs `stop` on it; only a service
 *   whose supervisor dies after the last release stays until the next acquisition sweeps it.
 *   Every service on the PostgreSQL counter is supervised this way (`RefCounter.postgres`).
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
 * `stopTimeout` 5 s, `healthTimeout` 5 s, `lockTimeout` = startTimeout + stopTimeout + 5 s (a
 * lock holder may be starting the service), `stop` = `Process.stop(info.pid)` verified by start
 * time, no health check, no `recover` (an unhealthy generation is replaced by a new one),
 * `reaper: "detached"`.
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
 * client (no live generation) spawns the generation's supervisor and runs `start` under the
 * startup lock; later clients verify the hint against the owner lock and run `healthCheck`
 * (bounded), and an unhealthy generation is recovered or replaced. Fibers of one process share
 * one kernel reference: only the first of them takes the lock.
 *
 * Fails with `LockTimeout` (lock not obtained within `lockTimeout`), `StartFailed` (including
 * `startTimeout`, with the service's exit status and last output for a `command`), `PortInUse`,
 * `RecoveryFailed`, the system errors of the `RefCounter` (`RuntimeDirectoryUnusable` among
 * them), or `start`'s own `E`. On any failure nothing is registered, the lock is released, and
 * whatever was started is stopped by its supervisor. Interruptible while waiting for the lock
 * and while `start`/`healthCheck`/`recover` run (an interrupted start is cleaned up like a
 * failed one).
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
export interface CommandOptions {
  readonly name: string
  /** A `/bin/sh -c` command line. It must stay in the foreground (its process is the service). */
  readonly command: string
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  /** The service's TCP port: checked free before the start, and owned by the service once ready. */
  readonly port?: number | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  /** Polled (every ≤ 4 ms, each attempt within `healthTimeout`) until it succeeds; none: ready once spawned. */
  readonly ready?: Readiness | undefined
  /** Health check for later clients; defaults to the `ready` check. `false` disables it. */
  readonly healthCheck?: Readiness | false | undefined
  /** What identifies this definition (command, directory, environment), recorded in the hint. */
  readonly fingerprint?: string | undefined
  readonly idleTimeToLive?: Duration.Input | undefined
  readonly startTimeout?: Duration.Input | undefined
  readonly lockTimeout?: Duration.Input | undefined
  readonly stopTimeout?: Duration.Input | undefined
  readonly healthTimeout?: Duration.Input | undefined
}

const loopback = /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\]|0\.0\.0\.0|::)$/

/** The local port a readiness target names, if any (its listener must be the service). */
const localPort = (ready: Readiness | undefined): number | undefined => {
  if (ready === undefined) return undefined
  if (ready._tag === "Tcp") return ready.host === undefined || loopback.test(ready.host) ? ready.port : undefined
  if (ready._tag === "Http") {
    try {
      const url = new URL(ready.url)
      if (!loopback.test(url.hostname)) return undefined
      return url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port)
    } catch {
      return undefined
    }
  }
  return undefined
}

/**
 * A shared service that is a shell command (`/bin/sh -c`). The first client spawns its
 * supervisor, which runs the command in its own session with the supervisor as its parent
 * (it dies if the supervisor dies), its output in a fresh `<runtime dir>/<name>.log` (the
 * previous one kept as `<name>.log.1`). The client polls `ready` until it succeeds (the service
 * dying, a foreign listener on its port, or `startTimeout` fail the start, with the service's
 * exit status and last lines of output), then registers. The supervisor stops the whole tree
 * `idleTimeToLive` after the last client is gone. This is what `quiesce run` uses.
 *
 * **Example**
 *
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const redis = yield* SharedService.command({
 *     name: "dev-redis",
 *     command: "exec redis-server --port 6390",
 *     port: 6390,
 *     ready: SharedService.tcp(6390),
 *     idleTimeToLive: "10 seconds"
 *   })
 *   const handle = yield* SharedService.acquire(redis)
 *   console.log(handle.info.pid, handle.info.port)
 * }).pipe(Effect.scoped)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const command = (
  options: CommandOptions
): Effect.Effect<SharedService<StartFailed | PortInUse>, InvalidName> => {
  const health = options.healthCheck === undefined ? options.ready : options.healthCheck === false ? undefined : options.healthCheck
  const ready = localPort(options.ready)
  const ownedPorts = [...new Set([...(options.port === undefined ? [] : [options.port]), ...(ready === undefined ? [] : [ready])])]
  return internal.makeCommand({
    name: options.name,
    healthCheck: health === undefined ? undefined : (info) => command_.probe(options.name, health, info),
    idleTimeToLive: options.idleTimeToLive,
    startTimeout: options.startTimeout,
    lockTimeout: options.lockTimeout,
    stopTimeout: options.stopTimeout,
    healthTimeout: options.healthTimeout
  }, {
    command: options.command,
    cwd: options.cwd,
    env: options.env,
    port: options.port,
    metadata: options.metadata,
    ready: options.ready,
    ownedPorts,
    fingerprint: options.fingerprint
  })
}

// ---------------------------------------------------------------------------------------------
// Inspection (quiesce status / list / stop)
// ---------------------------------------------------------------------------------------------

/**
 * What `inspect` reports about a name: the live count, whether a supervisor holds the owner
 * lock, the generation's state (`starting`, `ready`, `stale` for leftovers of one that died),
 * and the hint with whether its processes are alive.
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
 * Stops the service of `name` now, whoever holds it: under the startup lock its supervisor is
 * retired (it stops the whole tree: SIGTERM, SIGKILL after its stop timeout) or, if it does not
 * leave within `timeout`, killed; leftovers are swept, the files removed, and the set removed
 * when nobody holds it. Clients still holding it keep their references to a stopped service;
 * the next one to acquire starts a new generation. Also cleans up after a generation that died
 * (`state: "stale"`). Completes with whether a live service was stopped.
 *
 * @category inspection
 * @since 0.1.0
 */
export const forceStop: (
  name: string,
  options?: {
    readonly timeout?: Duration.Input | undefined
    readonly lockTimeout?: Duration.Input | undefined
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
export const readHint = (name: string): Effect.Effect<ServiceInfo | undefined, CorruptHint | InvalidName | SystemError> =>
  Effect_.flatMap(validate(name), () =>
    Effect_.suspend((): Effect.Effect<ServiceInfo | undefined, CorruptHint | SystemError> => {
      const dir = runtimeDir(name)
      if (typeof dir !== "string") return Effect_.fail(dir)
      const hint = Hint.read(dir, name)
      return hint instanceof CorruptHint ? Effect_.fail(hint) : Effect_.succeed(hint?.info)
    }))

/**
 * The per-user runtime directory holding hints, logs and lock files: `$QUIESCE_RUNTIME_DIR`,
 * else `$XDG_RUNTIME_DIR/quiesce`, else `<tmpdir>/quiesce-<uid>` (created 0700; refused when it
 * is relative, a link, or another user's).
 *
 * @category inspection
 * @since 0.1.0
 */
export const runtimeDirectory = (): string => runtimeDirPath()

/**
 * Where the output of `name`'s current instance goes (`command` services): `<runtime dir>/<name>.log`;
 * the previous instance's is `<name>.log.1`.
 *
 * @category inspection
 * @since 0.1.0
 */
export const logFile = (name: string): string => `${runtimeDirPath()}/${name}.log`

/**
 * `undefined` if `name` is a valid service name, otherwise why not.
 *
 * @category guards
 * @since 0.1.0
 */
export const validateName: (name: string) => string | undefined = invalidReason

/**
 * Prepares this process to replace itself with another program (`process.execve`) while it
 * holds `name`: SysV references (undo records) survive an exec by themselves; the flock
 * counter's descriptor is made inheritable. After the exec no code of this package runs in the
 * process: its reference is dropped when the exec'd program exits, and it is not re-registered
 * if the set is removed meanwhile (`ipcrm`).
 *
 * @category combinators
 * @since 0.1.0
 */
export const prepareExec: (name: string) => Effect.Effect<void, SystemError | InvalidName> = internal.prepareExec
