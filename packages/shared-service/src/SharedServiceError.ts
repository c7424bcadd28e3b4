/**
 * The typed failures of `@quiesce/shared-service`. Every error names the shared service it is
 * about (`service`; `name` is left to `Error`, the error's class name) and, where a system call
 * failed, the `syscall` and its `errno` / `code`, so a caller can tell "IPC is not available
 * here" from "another user owns this name" from "the kernel is out of semaphore sets" without
 * parsing messages.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { constants as osConstants } from "node:os"

const sysFields = {
  service: Schema.String,
  syscall: Schema.String,
  errno: Schema.Number,
  code: Schema.String
}

const where = (e: { readonly syscall: string; readonly code: string; readonly errno: number }) =>
  `${e.syscall}: ${e.code} (errno ${e.errno})`

/**
 * System V IPC (or the fallback's locking) is not usable here: the libc could not be loaded,
 * the kernel has no SysV IPC (`ENOSYS`), or an unexpected errno came back.
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // ENOSYS from semget: a kernel without SysV IPC (some containers); fall back to flock.
 * const error = SharedServiceError.fromErrno("dev-db", "semget", 38)
 * console.log(error._tag, error.message) // "IpcUnavailable" '... semget: ENOSYS (errno 38)'
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class IpcUnavailable extends Schema.TaggedError<IpcUnavailable>()("IpcUnavailable", sysFields) {
  override get message(): string {
    return `IPC unavailable for shared service "${this.service}": ${where(this)}`
  }
}

/**
 * The semaphore set (or lock file) for this name exists but belongs to someone else, or its
 * mode does not let this user in (`EACCES` / `EPERM`). Sets are created mode 0600 and keyed by
 * (uid, name), so this means another user's set collides with ours, or a hostile one.
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * const error = SharedServiceError.fromErrno("dev-db", "semget", 13)
 * console.log(error._tag, error.message) // "PermissionDenied" ... "semget: EACCES (errno 13)"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", sysFields) {
  override get message(): string {
    return `permission denied for shared service "${this.service}": ${where(this)}`
  }
}

/**
 * A kernel limit was hit: no semaphore set left (`ENOSPC`, SEMMNI/SEMMNS), too many undo
 * structures (`ENOMEM`), or a semaphore value would exceed SEMVMX (`ERANGE`).
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // ENOSPC from semget: the system-wide limit of semaphore sets (SEMMNI) is reached.
 * const error = SharedServiceError.fromErrno("dev-db", "semget", 28)
 * console.log(error._tag) // "LimitExceeded"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()("LimitExceeded", sysFields) {
  override get message(): string {
    return `kernel IPC limit exceeded for shared service "${this.service}": ${where(this)}`
  }
}

/**
 * The semaphore set was removed (`EIDRM`, or `EINVAL` for a stale id) while this process was
 * using it, e.g. by `ipcrm`. `SharedService` recovers from this once by re-opening the set; the
 * error escapes only when the set disappears again during the retry.
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * const error = SharedServiceError.fromErrno("dev-db", "semop", 43)
 * console.log(error._tag) // "SemaphoreSetRemoved": someone ran ipcrm, or SharedService.remove
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class SemaphoreSetRemoved extends Schema.TaggedError<SemaphoreSetRemoved>()("SemaphoreSetRemoved", sysFields) {
  override get message(): string {
    return `the semaphore set of shared service "${this.service}" was removed: ${where(this)}`
  }
}

/**
 * The cross-process startup lock was not obtained within `lockTimeout` (another live process
 * held it that long: a crashed holder releases it at once, since the kernel undoes its lock).
 *
 * @example
 * ```ts
 * import { Duration, Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const program = Effect.gen(function*() {
 *   const a = yield* kernel.process().open("docs-lock")
 *   const b = yield* kernel.process().open("docs-lock")
 *   yield* a.lock(Duration.seconds(1))
 *   // Another process holds the startup lock: b gives up after 20 ms.
 *   return yield* b.lock(Duration.millis(20)).pipe(
 *     Effect.catchTag("LockTimeout", (error) => Effect.succeed(`gave up after ${error.timeoutMillis} ms`))
 *   )
 * })
 *
 * Effect.runPromise(program).then(console.log) // "gave up after 20 ms"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class LockTimeout extends Schema.TaggedError<LockTimeout>()("LockTimeout", {
  service: Schema.String,
  timeoutMillis: Schema.Number,
  /** The process that holds the lock, when the kernel tells (SysV: the last to take it). */
  holder: Schema.optional(Schema.Number),
  /** Its state: `running`, `stopped` (SIGSTOP, a debugger) or `gone`. */
  holderState: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const by = this.holder === undefined ? "" : ` (held by pid ${this.holder}${this.holderState === undefined ? "" : `, ${this.holderState}`})`
    return `timed out after ${this.timeoutMillis} ms waiting for the startup lock of shared service "${this.service}"${by}`
  }
}

/**
 * `start` failed, did not finish within `startTimeout` (`timeoutMillis` is set), or the started
 * service never became ready. The startup lock is released, no reference is kept, and the
 * service's supervisor stops whatever was started and removes what it leaves. For a `command`,
 * `status` says how the service process ended ("exited with status 127") when it did, `output`
 * holds the last lines it printed (its supervisor's own lines left out) and `logFile` where all
 * of it is once the supervisor has cleaned up (`<name>.log.1`, the last instance's log).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, SharedService } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const stuck = yield* SharedService.make({ name: "docs-stuck", start: Effect.never, startTimeout: "20 millis" })
 *   return yield* SharedService.acquire(stuck)
 * }).pipe(
 *   Effect.scoped,
 *   Effect.catchTag("StartFailed", (error) => Effect.succeed(error.reason)),
 *   Effect.provideService(RefCounter.RefCounter, RefCounter.memoryKernel().process())
 * )
 *
 * Effect.runPromise(program).then(console.log) // "not started within 20ms"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class StartFailed extends Schema.TaggedError<StartFailed>()("StartFailed", {
  service: Schema.String,
  reason: Schema.String,
  timeoutMillis: Schema.optional(Schema.Number),
  status: Schema.optional(Schema.String),
  output: Schema.optional(Schema.String),
  logFile: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `shared service "${this.service}" failed to start: ${this.reason}`
  }
}

/**
 * A health check failed. Raised by `healthCheck` helpers; `SharedService.acquire` reacts to a
 * failing check by running `recover` instead of failing with this.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process, RefCounter, ServiceInfo, SharedService, SharedServiceError } from "@quiesce/shared-service"
 *
 * // A health check of one's own fails with Unhealthy; a later client then replaces the service.
 * let healthy = true
 * const kernel = RefCounter.memoryKernel()
 * const service = SharedService.makeUnsafe({
 *   name: "docs-unhealthy",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! })),
 *   healthCheck: (info) =>
 *     Effect.flatMap(Process.isAlive(info.pid), (alive) =>
 *       alive && healthy ? Effect.void : Effect.fail(new SharedServiceError.Unhealthy({ service: "docs-unhealthy", reason: "not answering" })))
 * })
 * const client = () => Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, kernel.process())
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const first = yield* client()
 *   healthy = false
 *   const second = yield* client()
 *   return second.started && second.info.pid !== first.info.pid
 * }))
 * Effect.runPromise(program).then(console.log) // true: a new generation was started
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class Unhealthy extends Schema.TaggedError<Unhealthy>()("Unhealthy", {
  service: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `shared service "${this.service}" is unhealthy: ${this.reason}`
  }
}

/**
 * The service failed its health check and `recover` failed too (or the recovered service
 * failed its health check again).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const service = SharedService.makeUnsafe({
 *   name: "docs-recovery",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! })),
 *   healthCheck: () => Effect.fail("migrations pending"),
 *   recover: () => Effect.fail("cannot migrate")
 * })
 * const client = () => Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, kernel.process())
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* client()
 *   return yield* client().pipe(Effect.catchTag("RecoveryFailed", (error) => Effect.succeed(error._tag)))
 * }))
 * Effect.runPromise(program).then(console.log) // "RecoveryFailed"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class RecoveryFailed extends Schema.TaggedError<RecoveryFailed>()("RecoveryFailed", {
  service: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {
  override get message(): string {
    return `shared service "${this.service}" was unhealthy and could not be recovered: ${this.reason}`
  }
}

/**
 * The service name is not usable: names are 1–64 characters of `[A-Za-z0-9._-]`, not starting
 * with `.` or `-` (they become file names and part of the IPC key).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const program = SharedService.make({ name: "../etc/passwd", start: Effect.succeed(ServiceInfo.make({ pid: 1 })) }).pipe(
 *   Effect.catchTag("InvalidName", (error) => Effect.succeed(error.reason))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "only letters, digits, '.', '_' and '-' are allowed, ..."
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidName extends Schema.TaggedError<InvalidName>()("InvalidName", {
  service: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `invalid shared service name ${JSON.stringify(this.service)}: ${this.reason}`
  }
}

/**
 * An option of a definition is not usable (e.g. a `stopSignal` that is not a signal name):
 * refused when the definition is made, before anything starts. `option` names the option,
 * `value` is what was given.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * const program = SharedService.command({ name: "docs-bad-signal", command: "exec sleep 5", stopSignal: "SIGSTOPP" }).pipe(
 *   Effect.catchTag("InvalidOption", (error) => Effect.succeed(`${error.option}: ${error.reason}`))
 * )
 *
 * Effect.runPromise(program).then(console.log) // 'stopSignal: not a signal name (e.g. "SIGTERM", "SIGINT", ...)'
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  service: Schema.String,
  option: Schema.String,
  value: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `shared service "${this.service}": invalid ${this.option} ${JSON.stringify(this.value)}: ${this.reason}`
  }
}

/**
 * The service runs another definition than the acquiring client's (their `fingerprint`s
 * differ) and has clients: it is not shared and not touched — the acquisition fails, the
 * running instance and its clients carry on. `running` is the running generation's fingerprint
 * (`undefined` when it recorded none), `requested` the client's, `clients` the live count, and
 * `metadata` the running instance's (`ServiceInfo.metadata`), to show what runs. A generation of
 * another definition that nobody holds (in its grace period) is replaced instead, without error.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * const kernel = RefCounter.memoryKernel()
 * const define = (fingerprint: string) =>
 *   SharedService.makeUnsafe({
 *     name: "docs-mismatch",
 *     fingerprint,
 *     reaper: "in-process",
 *     start: Effect.succeed(ServiceInfo.make({ pid: process.pid, metadata: { version: fingerprint } })),
 *     stop: () => Effect.void
 *   })
 * // Two simulated processes: the first holds version 15, the second asks for version 16.
 * const client = (fingerprint: string) =>
 *   Effect.provideService(SharedService.acquire(define(fingerprint)), RefCounter.RefCounter, kernel.process())
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   yield* client("pg-15")
 *   return yield* client("pg-16").pipe(
 *     Effect.as("shared"),
 *     Effect.catchTag("DefinitionMismatch", (e) =>
 *       Effect.succeed(`${e.running} runs for ${e.clients} client(s), not ${e.requested} (${e.metadata?.["version"]})`))
 *   )
 * }))
 * Effect.runPromise(program).then(console.log) // "pg-15 runs for 1 client(s), not pg-16 (pg-15)"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class DefinitionMismatch extends Schema.TaggedError<DefinitionMismatch>()("DefinitionMismatch", {
  service: Schema.String,
  running: Schema.optional(Schema.String),
  requested: Schema.String,
  clients: Schema.Number,
  metadata: Schema.optional(Schema.Record(Schema.String, Schema.String))
}) {
  override get message(): string {
    const running = this.running === undefined ? "a definition without a fingerprint" : `fingerprint ${this.running}`
    return `shared service "${this.service}" runs another definition (${running}, not ${this.requested}) for ${this.clients} ` +
      `client(s): it is not shared; stop it, or wait until its clients are gone`
  }
}

/**
 * The hint file could not be parsed, or is not a regular file owned by this user with mode
 * 0600. Acquisition never fails with this: the hint is ignored and replaced. Inspection
 * (`SharedService.inspect`) reports it.
 *
 * @example
 * ```ts
 * import { rmSync, writeFileSync } from "node:fs"
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // A hint file that is not JSON (e.g. written by something else).
 * const path = `${SharedService.runtimeDirectory()}/docs-corrupt.json`
 * writeFileSync(path, "not json", { mode: 0o600 })
 * const program = SharedService.readHint("docs-corrupt").pipe(
 *   Effect.catchTag("CorruptHint", (error) => Effect.succeed(`${error.path}: ${error.reason}`)),
 *   Effect.ensuring(Effect.sync(() => rmSync(path)))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "<runtime dir>/docs-corrupt.json: Expected a valid JSON string"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class CorruptHint extends Schema.TaggedError<CorruptHint>()("CorruptHint", {
  service: Schema.String,
  path: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `corrupt hint file for shared service "${this.service}" at ${this.path}: ${this.reason}`
  }
}

/**
 * The platform has no crash-safe reference counter implemented here (Windows, or a system
 * without SysV IPC and without `flock`). Nothing pretends otherwise.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
 *
 * // What a client on macOS or Windows meets today (`RefCounter.platformDefault` there).
 * const service = SharedService.makeUnsafe({
 *   name: "docs-platform",
 *   start: Effect.sync(() => ServiceInfo.make({ pid: spawn("sleep", ["5"], { stdio: "ignore" }).pid! }))
 * })
 * const program = Effect.scoped(SharedService.acquire(service)).pipe(
 *   Effect.provideService(RefCounter.RefCounter, RefCounter.unsupported("darwin")),
 *   Effect.catchTag("UnsupportedPlatform", (error) => Effect.succeed(`not on ${error.platform}`))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "not on darwin"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class UnsupportedPlatform extends Schema.TaggedError<UnsupportedPlatform>()("UnsupportedPlatform", {
  service: Schema.String,
  platform: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `shared service "${this.service}": platform ${this.platform} is not supported: ${this.reason}`
  }
}

/**
 * The runtime directory (hints, logs, the owner file) cannot be used safely: it is relative,
 * not a directory, a symbolic link, owned by another user (`owner`), not writable, or full.
 * Checked before anything is started; `syscall`/`errno`/`code` name the failing call (errno 0
 * when the refusal is ours, e.g. a directory owned by someone else).
 *
 * @example
 * ```ts
 * import { Console, Effect } from "effect"
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // Tell the user what to fix: the directory, and why it was refused.
 * const explain = <A, R>(effect: Effect.Effect<A, SharedServiceError.RuntimeDirectoryUnusable, R>) =>
 *   effect.pipe(Effect.catchTag("RuntimeDirectoryUnusable", (error) =>
 *     Console.log(`fix ${error.path} (${error.reason}) or set QUIESCE_RUNTIME_DIR`)))
 *
 * // e.g. what an acquisition fails with when the directory belongs to another user
 * const refused = new SharedServiceError.RuntimeDirectoryUnusable({
 *   service: "dev-db",
 *   syscall: "lstat",
 *   errno: 0,
 *   code: "",
 *   path: "/tmp/quiesce-1000",
 *   reason: "owned by uid 0",
 *   owner: 0
 * })
 * Effect.runPromise(explain(Effect.fail(refused))) // "fix /tmp/quiesce-1000 (owned by uid 0) or set QUIESCE_RUNTIME_DIR"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class RuntimeDirectoryUnusable extends Schema.TaggedError<RuntimeDirectoryUnusable>()("RuntimeDirectoryUnusable", {
  ...sysFields,
  path: Schema.String,
  reason: Schema.String,
  owner: Schema.optional(Schema.Number)
}) {
  override get message(): string {
    const call = this.errno === 0 ? "" : ` (${where(this)})`
    return `the runtime directory of shared service "${this.service}" is unusable: ${this.path}: ${this.reason}${call}`
  }
}

/**
 * The service's TCP port is already held by a process outside the service (checked before the
 * start, and against the listening socket's owner during readiness): never a wait for someone
 * else's server, never a handle to it. `pid` and `command` name the holder when this user may
 * see it; `uid` is the socket's owner.
 *
 * @example
 * ```ts
 * import { createServer } from "node:net"
 * import { Effect } from "effect"
 * import { SharedService } from "@quiesce/shared-service"
 *
 * // Something else already listens on the service's port: refused before anything starts.
 * const other = createServer().listen(0, "127.0.0.1")
 * const program = Effect.gen(function*() {
 *   yield* Effect.promise(() => new Promise((resolve) => other.once("listening", resolve)))
 *   const port = (other.address() as { port: number }).port
 *   const server = yield* SharedService.command({ name: "docs-port", command: "exec sleep 5", port, ready: SharedService.tcp(port) })
 *   return yield* Effect.scoped(SharedService.acquire(server))
 * }).pipe(
 *   Effect.catchTag("PortInUse", (error) => Effect.succeed(`port ${error.port} is taken`)),
 *   Effect.ensuring(Effect.sync(() => other.close()))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "port <port> is taken"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class PortInUse extends Schema.TaggedError<PortInUse>()("PortInUse", {
  service: Schema.String,
  port: Schema.Number,
  uid: Schema.optional(Schema.Number),
  pid: Schema.optional(Schema.Number),
  command: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const holder = this.pid === undefined
      ? this.uid === undefined ? "another process" : `a process of uid ${this.uid}`
      : `pid ${this.pid}${this.command === undefined ? "" : ` (${this.command})`}`
    return `port ${this.port} of shared service "${this.service}" is already in use by ${holder}`
  }
}

/**
 * The PostgreSQL server of a `RefCounter.postgres` could not be reached (connection refused, no
 * route, DNS, a connect that did not finish within the connect timeout). `address` is the
 * server without credentials; `code` is the socket's error code or SQLSTATE when there is one.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { RefCounter } from "@quiesce/shared-service"
 *
 * const program = Effect.scoped(RefCounter.makePostgres({ url: "postgres://quiesce@127.0.0.1:1/quiesce", connectTimeout: "200 millis" })).pipe(
 *   Effect.catchTag("DatabaseUnreachable", (error) => Effect.succeed(error.reason))
 * )
 *
 * Effect.runPromise(program).then(console.log) // "connect ECONNREFUSED 127.0.0.1:1"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseUnreachable extends Schema.TaggedError<DatabaseUnreachable>()("DatabaseUnreachable", {
  service: Schema.String,
  address: Schema.String,
  reason: Schema.String,
  code: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `shared service "${this.service}": the database ${this.address} is unreachable: ${this.reason}`
  }
}

/**
 * The PostgreSQL server refused the credentials (SQLSTATE class 28: unknown role, wrong
 * password, no `pg_hba.conf` entry).
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // Wrong credentials are not worth retrying, unlike an unreachable database.
 * const retryable = (error: SharedServiceError.SystemError) => error._tag !== "AuthenticationFailed"
 *
 * const error = new SharedServiceError.AuthenticationFailed({
 *   service: "(setup)",
 *   address: "postgres://ci@db:5432/quiesce",
 *   reason: "password authentication failed for user \"ci\"",
 *   code: "28P01"
 * })
 * console.log(retryable(error)) // false
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class AuthenticationFailed extends Schema.TaggedError<AuthenticationFailed>()("AuthenticationFailed", {
  service: Schema.String,
  address: Schema.String,
  reason: Schema.String,
  code: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `shared service "${this.service}": authentication to ${this.address} failed: ${this.reason}`
  }
}

/**
 * The database session that held this process's locks ended while it was in use: the server
 * closed it (restart, `pg_terminate_backend`, its keepalives found this machine gone) or it
 * stopped answering within the keepalive bound. Whatever it held is released by the server: a
 * reference is no longer counted, a startup or owner lock is free. `ServiceHandle.lost`
 * completes with this error.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // The reference itself is gone: a client holding a service on PostgreSQL re-acquires it.
 * const onLost = (use: Effect.Effect<string, SharedServiceError.SessionLost>) =>
 *   use.pipe(Effect.catchTag("SessionLost", (error) => Effect.succeed(`re-acquire: ${error.reason}`)))
 *
 * const lost = new SharedServiceError.SessionLost({ service: "dev-db", address: "postgres://db:5432/quiesce", reason: "keepalive timed out" })
 * Effect.runPromise(onLost(Effect.fail(lost))).then(console.log) // "re-acquire: keepalive timed out"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class SessionLost extends Schema.TaggedError<SessionLost>()("SessionLost", {
  service: Schema.String,
  address: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `shared service "${this.service}": the database session to ${this.address} was lost: ${this.reason}`
  }
}

/**
 * A statement of the PostgreSQL counter failed for another reason (`code` is the SQLSTATE, e.g.
 * `42501` when the role may not create the package's table).
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * const error = new SharedServiceError.DatabaseError({
 *   service: "dev-db",
 *   address: "postgres://db:5432/quiesce",
 *   statement: "create table quiesce_shared_service",
 *   reason: "permission denied for schema public",
 *   code: "42501"
 * })
 * console.log(error.message)
 * // 'shared service "dev-db": create table quiesce_shared_service on postgres://db:5432/quiesce failed (42501): ...'
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  service: Schema.String,
  address: Schema.String,
  statement: Schema.String,
  reason: Schema.String,
  code: Schema.optional(Schema.String)
}) {
  override get message(): string {
    return `shared service "${this.service}": ${this.statement} on ${this.address} failed${this.code === undefined ? "" : ` (${this.code})`}: ${this.reason}`
  }
}

/**
 * Failures of the kernel primitives (what a `RefCounter` can fail with).
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * const hint = (error: SharedServiceError.SystemError): string => {
 *   switch (error._tag) {
 *     case "IpcUnavailable":
 *       return "use RefCounter.flock"
 *     case "LimitExceeded":
 *       return "raise kernel.sem or remove unused sets"
 *     default:
 *       return error.message
 *   }
 * }
 * console.log(hint(SharedServiceError.fromErrno("dev-db", "semget", 28))) // "raise kernel.sem or remove unused sets"
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export type SystemError =
  | IpcUnavailable
  | PermissionDenied
  | LimitExceeded
  | SemaphoreSetRemoved
  | UnsupportedPlatform
  | RuntimeDirectoryUnusable
  | DatabaseUnreachable
  | AuthenticationFailed
  | SessionLost
  | DatabaseError

/**
 * Every failure of this package.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ServiceInfo, SharedService, SharedServiceError } from "@quiesce/shared-service"
 *
 * // A command-line tool's exit code for each way an acquisition can fail.
 * const exitCode = (error: SharedServiceError.SharedServiceError): number =>
 *   error._tag === "LockTimeout" ? 75 : error._tag === "InvalidName" ? 64 : 70
 *
 * const program = SharedService.make({ name: "", start: Effect.succeed(ServiceInfo.make({ pid: 1 })) }).pipe(
 *   Effect.flatMap((service) => Effect.scoped(SharedService.acquire(service))),
 *   Effect.as(0),
 *   Effect.catch((error) => Effect.succeed(exitCode(error)))
 * )
 * Effect.runPromise(program).then(console.log) // 64
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export type SharedServiceError =
  | SystemError
  | LockTimeout
  | StartFailed
  | Unhealthy
  | RecoveryFailed
  | InvalidName
  | InvalidOption
  | CorruptHint
  | PortInUse
  | DefinitionMismatch

/**
 * Maps a failed system call to the typed error a caller can act on.
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * // In a platform module: a failed semop becomes the error a caller can act on.
 * const error = SharedServiceError.fromErrno("dev-db", "semop", 43)
 * console.log(error._tag, error.message)
 * // "SemaphoreSetRemoved" 'the semaphore set of shared service "dev-db" was removed: semop: EIDRM (errno 43)'
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromErrno = (service: string, syscall: string, errno: number): SystemError => {
  const code = errnoCode(errno)
  const fields = { service, syscall, errno, code }
  switch (code) {
    case "EACCES":
    case "EPERM":
      return new PermissionDenied(fields)
    case "ENOSPC":
    case "ENOMEM":
    case "ERANGE":
    case "E2BIG":
    case "EFBIG":
      return new LimitExceeded(fields)
    case "EIDRM":
      return new SemaphoreSetRemoved(fields)
    default:
      return new IpcUnavailable(fields)
  }
}

// The platform's own errno table (node:os), inverted: the numbers come from this platform's libc.
// Where two names share a number (EAGAIN/EWOULDBLOCK) the first, canonical one is kept.
const codes: ReadonlyMap<number, string> = Object.entries(osConstants.errno).reduce(
  (map, [code, errno]) => map.has(errno) ? map : map.set(errno, code),
  new Map<number, string>()
)

/**
 * The symbolic name of a Linux errno (`"E?"` with the number when unknown).
 *
 * @example
 * ```ts
 * import { SharedServiceError } from "@quiesce/shared-service"
 *
 * console.log(SharedServiceError.errnoCode(13)) // "EACCES"
 * console.log(SharedServiceError.errnoCode(9999)) // "E?9999"
 * ```
 *
 * @category utils
 * @since 0.1.0
 */
export const errnoCode = (errno: number): string => codes.get(errno) ?? `E?${errno}`
