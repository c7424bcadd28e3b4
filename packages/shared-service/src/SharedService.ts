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
 *   re-checks under the lock and stops the service's whole tree (its stop signal, SIGKILL after
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
import type { InvalidName, InvalidOption, LockTimeout, PortInUse, SharedServiceError, StartFailed, SystemError } from "./SharedServiceError.ts"

/**
 * The property every `SharedService` definition carries, which {@link isSharedService} looks for.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const db = SharedService.makeUnsafe({ name: "docs-typeid", start: Effect.succeed(ServiceInfo.make({ pid: 1 })) })
 * console.log(SharedService.TypeId in db) // true
 * ```
 *
 * @category type ids
 * @since 0.1.0
 */
export const TypeId: typeof internal.TypeId = internal.TypeId

/**
 * A shared service definition: its name and how to start, stop, check and recover it. It holds
 * no state of its own; acquiring it coordinates through the `RefCounter` (the kernel).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // A definition is plain data: build it once, acquire it wherever the service is needed.
 * const cache: SharedService.SharedService = SharedService.makeUnsafe({
 *   name: "docs-cache",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 * })
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const handle = yield* SharedService.acquire(cache)
 *   return handle.started
 * })).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 *
 * Effect.runPromise(program).then(console.log) // true: this client started it
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface SharedService<out E = never, out R = never> extends internal.SharedService<E, R> {}

/**
 * What `acquire` gives back: the verified `ServiceInfo` (pid, port, metadata) of the running
 * service, valid until the acquiring scope closes.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const service = SharedService.makeUnsafe({
 *   name: "docs-handle",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid!, port: 8080 }))
 * })
 * // Two simulated processes: the first starts the service, the second finds it running.
 * const client = (name: string) =>
 *   Effect.gen(function*() {
 *     const handle: SharedService.ServiceHandle = yield* SharedService.acquire(service)
 *     console.log(name, handle.started, handle.info.port)
 *   }).pipe(Effect.provideService(RefCounter.RefCounter, kernel.process()))
 *
 * Effect.runPromise(Effect.scoped(Effect.andThen(client("first"), client("second"))))
 * // first true 8080
 * // second false 8080
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // Supervise in this process, with a custom stop, instead of a detached supervisor process.
 * const reaper: SharedService.ReaperMode = "in-process"
 * const service = SharedService.makeUnsafe({
 *   name: "docs-reaper",
 *   reaper,
 *   start: Effect.succeed(ServiceInfo.make({ pid: process.pid })),
 *   stop: () => Effect.log("stopping the emulator")
 * })
 * console.log(service.name) // "docs-reaper"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type ReaperMode = internal.ReaperMode

/**
 * Options of {@link make}: the service's name, how to start it, and optionally how to stop, check and recover it, with the time limits.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const options: SharedService.Options<never, never> = {
 *   name: "docs-options",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! })),
 *   healthCheck: (info) => Effect.flatMap(Process.isAlive(info.pid), (alive) => alive ? Effect.void : Effect.fail("gone")),
 *   idleTimeToLive: "2 seconds",
 *   startTimeout: "10 seconds"
 * }
 *
 * Effect.runPromise(SharedService.make(options)).then((service) => console.log(service.name)) // "docs-options"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options<E, R> extends internal.Options<E, R> {}

/**
 * Whether `u` is a `SharedService` definition (made by {@link make}, {@link makeUnsafe} or {@link command}).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const service = SharedService.makeUnsafe({ name: "docs-guard", start: Effect.succeed(ServiceInfo.make({ pid: 1 })) })
 * console.log(SharedService.isSharedService(service)) // true
 * console.log(SharedService.isSharedService({ name: "docs-guard" })) // false
 * ```
 *
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
 * `reaper: "detached"`, no `fingerprint` (a client joins whatever generation of the name runs).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // The service: a process this client spawns (here `sleep`, standing for a database).
 * const startDatabase = () => spawn("sleep", ["5"], { stdio: "ignore" }).pid!
 *
 * const program = Effect.gen(function*() {
 *   const db = yield* SharedService.make({
 *     name: "docs-dev-db",
 *     start: Effect.sync(() => ServiceInfo.make({ pid: startDatabase(), port: 5432 })),
 *     idleTimeToLive: "10 millis"
 *   })
 *   const handle = yield* SharedService.acquire(db)
 *   console.log(handle.info.port) // 5432
 * }).pipe(
 *   Effect.scoped,
 *   // The in-memory kernel, as in unit tests; without it the kernel's own SysV semaphores are used.
 *   Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process())
 * )
 * Effect.runPromise(program)
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // A module-level definition, e.g. in the file that exports the service's layer.
 * export const Emulator = SharedService.makeUnsafe({
 *   name: "docs-emulator",
 *   start: Effect.succeed(ServiceInfo.make({ pid: process.pid, metadata: { url: "http://127.0.0.1:8085" } }))
 * })
 *
 * try {
 *   SharedService.makeUnsafe({ name: "-bad", start: Effect.succeed(ServiceInfo.make({ pid: 1 })) })
 * } catch (error) {
 *   console.log((error as Error).name) // "InvalidName"
 * }
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const makeUnsafe: <E = never, R = never>(options: Options<E, R>) => SharedService<E, R> = internal.makeUnsafe

/**
 * Acquires a reference to the shared service, held until the current `Scope` closes. The first
 * client (no live generation) spawns the generation's supervisor and runs `start` under the
 * startup lock; later clients verify the hint against the owner lock, check that it runs their
 * definition (`fingerprint`) and run `healthCheck` (bounded), and an unhealthy generation is
 * recovered or replaced. Fibers of one process share one kernel reference: only the first of
 * them takes the lock (the others only compare fingerprints).
 *
 * Fails with `LockTimeout` (lock not obtained within `lockTimeout`), `StartFailed` (including
 * `startTimeout`, with the service's exit status and last output for a `command`), `PortInUse`,
 * `RecoveryFailed`, `DefinitionMismatch` (another definition runs and has clients; nothing of
 * it is touched), the system errors of the `RefCounter` (`RuntimeDirectoryUnusable` among
 * them), or `start`'s own `E`. On any failure nothing is registered, the lock is released, and
 * whatever was started is stopped by its supervisor. Interruptible while waiting for the lock
 * and while `start`/`healthCheck`/`recover` run (an interrupted start is cleaned up like a
 * failed one).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const service = SharedService.makeUnsafe({
 *   name: "docs-acquire",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 * })
 *
 * const program = Effect.gen(function*() {
 *   yield* SharedService.acquire(service)
 *   // Fibers of one process share one kernel reference.
 *   yield* SharedService.acquire(service)
 *   console.log(kernel.countOf("docs-acquire")) // 1
 * }).pipe(Effect.scoped, Effect.provideService(RefCounter.RefCounter, kernel.process()))
 * Effect.runPromise(program).then(() => console.log(kernel.countOf("docs-acquire"))) // 0: released with the scope
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const acquire: <E, R>(self: SharedService<E, R>) => Effect.Effect<ServiceHandle, SharedServiceError | E, R | Scope.Scope> =
  internal.acquire

/**
 * The number of processes holding the service (exact with SysV; 0 or 1 with `flock`).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const service = SharedService.makeUnsafe({
 *   name: "docs-count",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 * })
 * // Each client is a simulated process of its own.
 * const client = () => Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, kernel.process())
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* client()
 *   yield* client()
 *   return yield* SharedService.count(service)
 * })).pipe(Effect.provideService(RefCounter.RefCounter, kernel.process()))
 *
 * Effect.runPromise(program).then(console.log) // 2
 * ```
 *
 * @category getters
 * @since 0.1.0
 */
export const count: <E, R>(self: SharedService<E, R>) => Effect.Effect<number, SystemError | InvalidName> = internal.count

/**
 * A layer that holds the shared service for the layer's lifetime and provides its handle.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Context, Effect, Layer } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * class Db extends Context.Service<Db, SharedService.ServiceHandle>()("app/Db") {}
 * const DbLive = SharedService.layer(Db, {
 *   name: "docs-layer-db",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid!, port: 5432 }))
 * })
 *
 * const program = Effect.gen(function*() {
 *   const db = yield* Db
 *   return `postgres://127.0.0.1:${db.info.port}`
 * })
 * const memory = Layer.succeed(RefCounter.RefCounter, RefCounter.memoryKernel().process())
 *
 * Effect.runPromise(program.pipe(Effect.provide(DbLive.pipe(Layer.provide(memory))))).then(console.log)
 * // "postgres://127.0.0.1:5432"
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
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const checks: ReadonlyArray<SharedService.Readiness> = [
 *   SharedService.tcp(5432),
 *   SharedService.http("http://127.0.0.1:8080/health")
 * ]
 * console.log(checks.map((check) => check._tag)) // ["Tcp", "Http"]
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Readiness = command_.Readiness

/**
 * Ready when a TCP connection to `host:port` (default 127.0.0.1) succeeds.
 *
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const ready = SharedService.tcp(6379, "127.0.0.1")
 * console.log(ready) // { _tag: "Tcp", port: 6379, host: "127.0.0.1" }
 * ```
 *
 * @category readiness
 * @since 0.1.0
 */
export const tcp = (port: number, host?: string): Readiness => ({ _tag: "Tcp", port, host })

/**
 * Ready when `GET url` answers with a status below 500.
 *
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const ready = SharedService.http("http://127.0.0.1:3000/health")
 * console.log(ready._tag) // "Http"
 * ```
 *
 * @category readiness
 * @since 0.1.0
 */
export const http = (url: string): Readiness => ({ _tag: "Http", url })

/**
 * Ready when `check(info)` succeeds.
 *
 * @example
 * ```ts
 * import { existsSync } from "node:fs"
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // Ready once the service has created its socket.
 * const ready = SharedService.check((info) =>
 *   existsSync(info.metadata["socket"] ?? "") ? Effect.void : Effect.fail("no socket yet")
 * )
 * console.log(ready._tag) // "Check"
 * ```
 *
 * @category readiness
 * @since 0.1.0
 */
export const check = (check: (info: ServiceInfo) => Effect.Effect<void, unknown>): Readiness => ({ _tag: "Check", check })

/**
 * Parses the CLI form of a readiness check: `tcp:PORT`, `tcp:HOST:PORT`, or an `http://` /
 * `https://` URL. `undefined` when it is not one of these.
 *
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * console.log(SharedService.parseReadiness("tcp:5432")) // { _tag: "Tcp", port: 5432, host: undefined }
 * console.log(SharedService.parseReadiness("http://localhost:8080/")) // { _tag: "Http", url: "http://localhost:8080/" }
 * console.log(SharedService.parseReadiness("udp:53")) // undefined
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const options: SharedService.CommandOptions = {
 *   name: "docs-command-options",
 *   command: "exec sleep 5",
 *   env: { MODE: "dev" },
 *   metadata: { role: "worker" },
 *   idleTimeToLive: "1 second",
 *   // Stopped with SIGINT, SIGKILLed 10 s later if still there.
 *   stopSignal: "SIGINT",
 *   stopTimeout: "10 seconds",
 *   // A client of another definition of this name is refused while this one has clients.
 *   fingerprint: "sleep-5/dev"
 * }
 *
 * Effect.runPromise(SharedService.command(options)).then((service) => console.log(service.name)) // "docs-command-options"
 * ```
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
  /**
   * What identifies this definition (command, directory, environment), recorded in the hint.
   * A client with a fingerprint never shares an instance of another definition: while that one
   * has clients the acquisition fails with `DefinitionMismatch` (nothing is touched); when nobody
   * holds it (its grace period) it is stopped and this definition started. An instance that
   * recorded no fingerprint counts as another definition. Without one, a client joins whatever runs.
   */
  readonly fingerprint?: string | undefined
  readonly idleTimeToLive?: Duration.Input | undefined
  readonly startTimeout?: Duration.Input | undefined
  readonly lockTimeout?: Duration.Input | undefined
  /** How long the service has to end after its stop signal before it is SIGKILLed. Default 5 s. */
  readonly stopTimeout?: Duration.Input | undefined
  /**
   * The signal every stop by the supervisor begins with (after the last client and the grace
   * period, a replacement or `forceStop`, the supervisor's own SIGTERM), sent to every process
   * of the service's tree with a SIGCONT; SIGKILL follows after `stopTimeout`. A signal name of
   * the platform (`"SIGINT"`, `"SIGQUIT"`, `"SIGHUP"`, `"SIGUSR1"`, …); one that suspends or
   * resumes (`SIGSTOP`, `SIGTSTP`, `SIGCONT`, …) or an unknown name is `InvalidOption`. Default
   * `"SIGTERM"`. (The service starts with SIGINT and SIGQUIT at their default dispositions where
   * `env --default-signal` exists, coreutils ≥ 8.31: a background shell would otherwise ignore them.)
   */
  readonly stopSignal?: string | undefined
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
 * `idleTimeToLive` after the last client is gone (`stopSignal`, SIGKILL after `stopTimeout`).
 * This is what `quiesce run` uses. Fails with `InvalidName`, or `InvalidOption` for a
 * `stopSignal` that is not a signal that can stop a process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // A real service: the first client's supervisor starts it, and stops it when the last is gone.
 * const program = Effect.gen(function*() {
 *   const server = yield* SharedService.command({
 *     name: "docs-dev-server",
 *     command: "exec sleep 30", // e.g. "exec redis-server --port 6390", with port and ready
 *     idleTimeToLive: "10 millis"
 *   })
 *   const handle = yield* SharedService.acquire(server)
 *   console.log(handle.started, handle.info.pid > 0) // true true
 * }).pipe(Effect.scoped)
 * Effect.runPromise(program)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const command = (
  options: CommandOptions
): Effect.Effect<SharedService<StartFailed | PortInUse>, InvalidName | InvalidOption> => {
  const health = options.healthCheck === undefined ? options.ready : options.healthCheck === false ? undefined : options.healthCheck
  const ready = localPort(options.ready)
  const ownedPorts = [...new Set([...(options.port === undefined ? [] : [options.port]), ...(ready === undefined ? [] : [ready])])]
  return internal.makeCommand({
    name: options.name,
    // `false`: nothing to probe (the service's process being alive is checked anyway); without a
    // check of its own the interpreter would fall back to `ready`, which may be a one-shot check.
    healthCheck: options.healthCheck === false
      ? () => Effect_.void
      : health === undefined
      ? undefined
      : (info) => command_.probe(options.name, health, info),
    idleTimeToLive: options.idleTimeToLive,
    startTimeout: options.startTimeout,
    lockTimeout: options.lockTimeout,
    stopTimeout: options.stopTimeout,
    healthTimeout: options.healthTimeout,
    fingerprint: options.fingerprint
  }, {
    command: options.command,
    cwd: options.cwd,
    env: options.env,
    port: options.port,
    metadata: options.metadata,
    ready: options.ready,
    ownedPorts,
    stopSignal: options.stopSignal
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
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const describe = (status: SharedService.ServiceStatus) =>
 *   `${status.name}: ${status.state}, ${status.count} client(s), pid ${status.info?.pid ?? "-"}`
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const service = yield* SharedService.make({
 *     name: "docs-status",
 *     start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 *   })
 *   yield* SharedService.acquire(service)
 *   return describe(yield* SharedService.inspect("docs-status"))
 * })).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 *
 * Effect.runPromise(program).then(console.log) // "docs-status: ready, 1 client(s), pid 12345"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ServiceStatus extends internal.ServiceStatus {}

/**
 * Reads the hint and the live count for `name`, creating nothing. A corrupt hint is reported in
 * `hintError`, not raised.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, SharedService } from "@quiesce/shared-service"
 *
 * // Nothing runs under this name: inspecting creates nothing.
 * const program = SharedService.inspect("docs-nothing-here").pipe(
 *   Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process())
 * )
 *
 * Effect.runPromise(program).then((status) => console.log(status.count, status.running)) // 0 false
 * ```
 *
 * @category inspection
 * @since 0.1.0
 */
export const inspect: (name: string) => Effect.Effect<ServiceStatus, SystemError | InvalidName> = internal.inspect

/**
 * `inspect` for every name with a hint file in the runtime directory.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // What `quiesce list` prints.
 * const program = Effect.map(SharedService.list, (statuses) => statuses.map((s) => `${s.name} ${s.state}`))
 *
 * Effect.runPromise(program).then((lines) => console.log(Array.isArray(lines))) // true
 * ```
 *
 * @category inspection
 * @since 0.1.0
 */
export const list: Effect.Effect<ReadonlyArray<ServiceStatus>, SystemError> = internal.list

/**
 * Stops the service of `name` now, whoever holds it: under the startup lock its supervisor is
 * retired (it stops the whole tree as its definition says: its `stopSignal`, SIGKILL after its
 * `stopTimeout`) or, if it does not leave within `timeout` (default: its stop timeout, at least
 * 10 s) + 2 s, killed; leftovers are swept, the files removed, and the set removed
 * when nobody holds it. Clients still holding it keep their references to a stopped service;
 * the next one to acquire starts a new generation. Also cleans up after a generation that died
 * (`state: "stale"`). Completes with whether a live service was stopped.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const service = yield* SharedService.make({
 *     name: "docs-force-stop",
 *     start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 *   })
 *   yield* SharedService.acquire(service)
 *   // What `quiesce stop` does: stop it now, although a client still holds it.
 *   return yield* SharedService.forceStop("docs-force-stop", { timeout: "1 second" })
 * })).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 *
 * Effect.runPromise(program).then(console.log) // true
 * ```
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // Clean up the kernel object a name's services used (e.g. after a test run).
 * Effect.runPromise(SharedService.remove("docs-scratch")).then(() => console.log("removed"))
 * ```
 *
 * @category inspection
 * @since 0.1.0
 */
export const remove: (name: string) => Effect.Effect<void, SystemError | InvalidName> = internal.removeCounter

/**
 * Reads the hint file of `name` as is (not verified): `undefined` when there is none.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const program = SharedService.readHint("docs-no-such-service")
 * Effect.runPromise(program).then(console.log) // undefined: no hint file
 * ```
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
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // e.g. /run/user/1000/quiesce
 * console.log(SharedService.runtimeDirectory())
 * ```
 *
 * @category inspection
 * @since 0.1.0
 */
export const runtimeDirectory = (): string => runtimeDirPath()

/**
 * Where the output of `name`'s current instance goes (`command` services): `<runtime dir>/<name>.log`;
 * the previous instance's is `<name>.log.1`.
 *
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // Where a `command` service's output goes, e.g. to show it on a failed start.
 * console.log(SharedService.logFile("dev-redis").endsWith("/dev-redis.log")) // true
 * ```
 *
 * @category inspection
 * @since 0.1.0
 */
export const logFile = (name: string): string => `${runtimeDirPath()}/${name}.log`

/**
 * `undefined` if `name` is a valid service name, otherwise why not.
 *
 * @example
 * ```ts
 * import { SharedService } from "@quiesce/shared-service"
 *
 * console.log(SharedService.validateName("dev-db")) // undefined: valid
 * console.log(SharedService.validateName("../etc") !== undefined) // true
 * ```
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
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // Before `process.execve(...)`, as `quiesce run -- command` does with the service held.
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const service = yield* SharedService.make({
 *     name: "docs-exec",
 *     start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 *   })
 *   yield* SharedService.acquire(service)
 *   yield* SharedService.prepareExec("docs-exec")
 *   return "ready to exec"
 * })).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 *
 * Effect.runPromise(program).then(console.log) // "ready to exec"
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const prepareExec: (name: string) => Effect.Effect<void, SystemError | InvalidName> = internal.prepareExec

/**
 * Completes once no service this process supervises in-process (the services of a database
 * counter, or `reaper: "in-process"`) needs it any more: each has been stopped (its last client
 * gone and its grace period over), or is held by clients elsewhere one of which has a standby
 * queued for the owner lock (database counters, where the server shows the queue), which takes
 * it over when this process exits. On a kernel counter it waits until the service is stopped.
 * A process that started such a service calls it after releasing its handles and before it
 * exits, so that the last one out still stops the service. It completes at once when this
 * process supervises nothing.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const emulator = SharedService.makeUnsafe({
 *   name: "docs-handover",
 *   reaper: "in-process",
 *   start: Effect.succeed(ServiceInfo.make({ pid: process.pid })),
 *   stop: () => Effect.sync(() => console.log("stopped")),
 *   idleTimeToLive: "50 millis"
 * })
 * const program = Effect.gen(function*() {
 *   yield* Effect.scoped(SharedService.acquire(emulator))
 *   yield* SharedService.awaitHandover // the grace period passes, then "stopped"
 * }).pipe(Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process()))
 * Effect.runPromise(program)
 * ```
 *
 * @category lifecycle
 * @since 0.1.0
 */
export const awaitHandover: Effect.Effect<void> = internal.awaitHandover
