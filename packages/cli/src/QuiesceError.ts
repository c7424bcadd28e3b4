/**
 * The errors of the `quiesce` command line, one `Schema.TaggedError` each, carrying what a user
 * needs to act, in one or two lines (a failed start adds the service's last output). Every error
 * knows the process exit code it maps to (`ExitCode`): `2` for a bad invocation (as for any
 * well-behaved command line), 122–125 when `quiesce` itself could not do its part (the
 * convention of `env`, `timeout` and `xargs`, so it cannot be confused with the code of the
 * command it runs), `126` when the command cannot be executed, `127` when it does not exist.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The exit codes of `quiesce` itself (any other code is the command's own). 122–125 are taken
 * only before the command runs, so a script can tell why quiesce did not run it.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * // What a wrapper script might do with the exit status of `quiesce run`.
 * const why = (status: number): string =>
 *   status === QuiesceError.ExitCode.notReady
 *     ? "the service never became ready"
 *     : status === QuiesceError.ExitCode.lockTimeout
 *     ? "another quiesce run held the startup lock"
 *     : `the command exited with ${status}`
 *
 * console.log(why(124)) // the service never became ready
 * ```
 *
 * @since 0.1.0
 * @category exit codes
 */
export const ExitCode = {
  /** A bad invocation: an unknown flag, a missing value, an invalid name. */
  usage: 2,
  /** A service of that name runs with another definition (command, directory, environment) and has clients. */
  definitionMismatch: 121,
  /** The service's port is held by a process that is not the service (`PortInUse`). */
  portInUse: 122,
  /** The startup lock stayed held by another process (a stopped or hung `quiesce run`). */
  lockTimeout: 123,
  /** The service did not pass its readiness probe within `--start-timeout` (as `timeout`'s 124). */
  notReady: 124,
  /** quiesce could not do its part: the service failed to start, the runtime directory or IPC is unusable. */
  failure: 125,
  /** The command cannot be executed. */
  cannotExecute: 126,
  /** The command does not exist. */
  notFound: 127
} as const

/**
 * An argument that parsed but makes no sense (a port out of range, a bad readiness target).
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.UsageError({ message: "--port: 70000 is not a port (1-65535)" })
 * console.log(QuiesceError.render(error)) // quiesce: --port: 70000 is not a port (1-65535)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.usage` (2).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.UsageError({ message: "--port: 70000 is not a port (1-65535)" }).exitCode) // 2
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.usage
}

const serviceOutput = {
  /** How the service process ended ("exited with status 127", "killed by SIGKILL"), when it did. */
  status: Schema.optional(Schema.String),
  /** The last lines of the service's output (quiesce's own supervisor lines left out). */
  output: Schema.optional(Schema.String),
  /** Where all of the service's output is. */
  log: Schema.optional(Schema.String)
}

/**
 * The lines a failed start shows after its one-line summary: the service's last output,
 * indented, and where the rest is.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * console.log(QuiesceError.outputLines({ service: "db", output: "listening on 5432\nready" }).join("\n"))
 * // its last output (all of it: quiesce logs db):
 * //   | listening on 5432
 * //   | ready
 * console.log(QuiesceError.outputLines({ service: "db" })) // [ "the service printed nothing (quiesce logs db)" ]
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const outputLines = (e: { readonly service: string; readonly output?: string | undefined }): ReadonlyArray<string> =>
  e.output === undefined || e.output.trim() === ""
    ? [`the service printed nothing (quiesce logs ${e.service})`]
    : [`its last output (all of it: quiesce logs ${e.service}):`, ...e.output.split("\n").map((line) => `  | ${line}`)]

/**
 * The service did not answer its readiness probe in time.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.NotReadyError({
 *   service: "db",
 *   target: "tcp:localhost:5432",
 *   timeoutMillis: 30_000,
 *   lastFailure: "[::1]:5432 ECONNREFUSED, 127.0.0.1:5432 ECONNREFUSED"
 * })
 * console.log(error.message)
 * // service "db" was not ready at tcp:localhost:5432 after 30s (last probe: [::1]:5432 ECONNREFUSED, 127.0.0.1:5432 ECONNREFUSED)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class NotReadyError extends Schema.TaggedError<NotReadyError>()("NotReadyError", {
  service: Schema.String,
  target: Schema.String,
  timeoutMillis: Schema.Number,
  lastFailure: Schema.String,
  ...serviceOutput
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.notReady` (124).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.NotReadyError({ service: "db", target: "tcp:5432", timeoutMillis: 30_000, lastFailure: "ECONNREFUSED" }).exitCode) // 124
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.notReady
  override get message(): string {
    return `service "${this.service}" was not ready at ${this.target} after ${
      formatMillis(this.timeoutMillis)
    } (last probe: ${this.lastFailure})`
  }
}

/**
 * The service command could not be started, or exited before it became ready.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.ServiceStartError({
 *   service: "db",
 *   reason: "it exited with status 1 before it was ready",
 *   output: "FATAL: data directory \"./data\" does not exist"
 * })
 * console.log(QuiesceError.render(error))
 * // quiesce: service "db" failed to start: it exited with status 1 before it was ready
 * // quiesce: its last output (all of it: quiesce logs db):
 * //   | FATAL: data directory "./data" does not exist
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ServiceStartError extends Schema.TaggedError<ServiceStartError>()("ServiceStartError", {
  service: Schema.String,
  reason: Schema.String,
  ...serviceOutput
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.failure` (125).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.ServiceStartError({ service: "db", reason: "it exited with status 1" }).exitCode) // 125
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}" failed to start: ${this.reason}`
  }
}

/**
 * The service's port is already held by a process outside the service: quiesce would otherwise
 * hand the command someone else's server.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.PortInUseError({ service: "db", port: 5432, holder: "pid 123 (postgres -D data)" })
 * console.log(error.message)
 * // port 5432 of service "db" is already in use by pid 123 (postgres -D data)
 * // stop that process, or give the service another port (--port auto picks a free one)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class PortInUseError extends Schema.TaggedError<PortInUseError>()("PortInUseError", {
  service: Schema.String,
  port: Schema.Number,
  /** Who holds it: `pid 123 (postgres -D data)`, `a process of uid 1001`, or `another process`. */
  holder: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.portInUse` (122).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.PortInUseError({ service: "db", port: 5432, holder: "another process" }).exitCode) // 122
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.portInUse
  override get message(): string {
    return `port ${this.port} of service "${this.service}" is already in use by ${this.holder}\n` +
      `stop that process, or give the service another port (--port auto picks a free one)`
  }
}

/**
 * Another process held the service's startup lock for the whole lock timeout (a `quiesce run`
 * that is stopped, or whose service takes that long to start or stop).
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.LockTimeoutError({ service: "db", timeoutMillis: 120_000, holder: 4242, holderState: "stopped" })
 * console.log(error.message)
 * // service "db": pid 4242 (stopped) held its startup lock for 2m
 * // pid 4242 is stopped: continue it (kill -CONT 4242) or end it
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LockTimeoutError extends Schema.TaggedError<LockTimeoutError>()("LockTimeoutError", {
  service: Schema.String,
  timeoutMillis: Schema.Number,
  holder: Schema.optional(Schema.Number),
  /** `running`, `stopped` (SIGSTOP, a debugger) or `gone`. */
  holderState: Schema.optional(Schema.String)
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.lockTimeout` (123).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.LockTimeoutError({ service: "db", timeoutMillis: 120_000 }).exitCode) // 123
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.lockTimeout
  override get message(): string {
    const who = this.holder === undefined
      ? "another process"
      : `pid ${this.holder}${this.holderState === undefined ? "" : ` (${this.holderState})`}`
    const hint = this.holderState === "stopped"
      ? `pid ${this.holder} is stopped: continue it (kill -CONT ${this.holder}) or end it`
      : `it is starting or stopping the service; try again, or see quiesce status ${this.service}`
    return `service "${this.service}": ${who} held its startup lock for ${formatMillis(this.timeoutMillis)}\n${hint}`
  }
}

/**
 * The runtime directory (hints, logs, lock files) cannot be used: not a directory, a link,
 * another user's, read-only or full.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.RuntimeDirectoryError({ service: "db", path: "/run/user/1000/quiesce", reason: "it is read-only (EROFS)" })
 * console.log(error.message)
 * // service "db": the runtime directory /run/user/1000/quiesce is unusable: it is read-only (EROFS)
 * // set QUIESCE_RUNTIME_DIR to a directory of your own (default: $XDG_RUNTIME_DIR/quiesce)
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class RuntimeDirectoryError extends Schema.TaggedError<RuntimeDirectoryError>()("RuntimeDirectoryError", {
  service: Schema.String,
  path: Schema.String,
  reason: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.failure` (125).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.RuntimeDirectoryError({ service: "db", path: "/run/user/1000/quiesce", reason: "read-only" }).exitCode) // 125
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}": the runtime directory ${this.path} is unusable: ${this.reason}\n` +
      `set QUIESCE_RUNTIME_DIR to a directory of your own (default: $XDG_RUNTIME_DIR/quiesce)`
  }
}

/**
 * Another operation on the shared service failed (the semaphores, the hint file, the IPC limits):
 * `reason` is the shared-service error's own message, which names the system call and errno.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.SharedServiceFailure({ service: "db", reason: "semop on the service's semaphores failed: EINVAL" })
 * console.log(QuiesceError.render(error)) // quiesce: semop on the service's semaphores failed: EINVAL
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class SharedServiceFailure extends Schema.TaggedError<SharedServiceFailure>()("SharedServiceFailure", {
  service: Schema.String,
  reason: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.failure` (125).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.SharedServiceFailure({ service: "db", reason: "semop failed: EINVAL" }).exitCode) // 125
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return this.reason
  }
}

/**
 * `quiesce logs NAME`: the service has no output to show (it never ran under this runtime
 * directory, or its files were removed).
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.NoLogError({ service: "db", path: "/run/user/1000/quiesce/db.log" })
 * console.log(error.message)
 * // service "db" has no log: neither /run/user/1000/quiesce/db.log nor /run/user/1000/quiesce/db.log.1 exists
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class NoLogError extends Schema.TaggedError<NoLogError>()("NoLogError", {
  service: Schema.String,
  path: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.failure` (125).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.NoLogError({ service: "db", path: "/run/user/1000/quiesce/db.log" }).exitCode) // 125
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}" has no log: neither ${this.path} nor ${this.path}.1 exists`
  }
}

/**
 * The command given after `--` could not be run.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.CommandError({ command: "npm-tset", reason: "command not found", exitCode: QuiesceError.ExitCode.notFound })
 * console.log(QuiesceError.render(error)) // quiesce: cannot run "npm-tset": command not found
 * console.log(error.exitCode) // 127
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class CommandError extends Schema.TaggedError<CommandError>()("CommandError", {
  command: Schema.String,
  reason: Schema.String,
  exitCode: Schema.Number
}) {
  override get message(): string {
    return `cannot run ${JSON.stringify(this.command)}: ${this.reason}`
  }
}

/**
 * A config file that cannot be used: not found, not JSON, or not a valid definition. The message
 * names the file, the path in it and the problem, on one line.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.ConfigError({
 *   file: "/srv/app/quiesce.config.json",
 *   path: "services.db.port",
 *   problem: "Expected a value between 1 and 65535, got 70000"
 * })
 * console.log(QuiesceError.render(error))
 * // quiesce: /srv/app/quiesce.config.json: services.db.port: Expected a value between 1 and 65535, got 70000
 * console.log(error.exitCode) // 2
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  file: Schema.String,
  /** Where in the file (`services.db.ready[1]`); empty for the file as a whole. */
  path: Schema.String,
  problem: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.usage` (2).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.ConfigError({ file: "/app/quiesce.config.json", path: "", problem: "no such file" }).exitCode) // 2
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.usage
  override get message(): string {
    return `${this.file}: ${this.path === "" ? "" : `${this.path}: `}${this.problem}`
  }
}

/**
 * A service of that name is running with another definition (its fingerprint: command,
 * directory, environment), and other commands use it: quiesce refuses to hand this command a
 * service it did not ask for (another checkout's, an older version's). When nobody uses it, it is
 * replaced instead.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.DefinitionMismatchError({
 *   service: "db",
 *   clients: 1,
 *   running: "{\"command\":\"postgres -D ./data\",\"cwd\":\"/home/ann/app-old\",\"env\":{}}",
 *   requested: "{\"command\":\"postgres -D ./data\",\"cwd\":\"/home/ann/app\",\"env\":{}}"
 * })
 * console.log(QuiesceError.render(error))
 * // quiesce: service "db" is running with another definition, for 1 client:
 * // quiesce:   running:   {"command":"postgres -D ./data","cwd":"/home/ann/app-old","env":{}}
 * // quiesce:   requested: {"command":"postgres -D ./data","cwd":"/home/ann/app","env":{}}
 * // quiesce: wait for it to stop, stop it (quiesce stop db), or give this one another name
 * console.log(error.exitCode) // 121
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class DefinitionMismatchError extends Schema.TaggedError<DefinitionMismatchError>()("DefinitionMismatchError", {
  service: Schema.String,
  clients: Schema.Number,
  /** The running instance's definition (or fingerprint, when it recorded no definition). */
  running: Schema.String,
  requested: Schema.String
}) {
  /**
   * The exit code of `quiesce` for this error: `ExitCode.definitionMismatch` (121).
   *
   * @example
   * ```ts
   * import { QuiesceError } from "@quiesce/cli"
   *
   * console.log(new QuiesceError.DefinitionMismatchError({ service: "db", clients: 2, running: "a", requested: "b" }).exitCode) // 121
   * ```
   *
   * @since 0.1.0
   */
  readonly exitCode: number = ExitCode.definitionMismatch
  override get message(): string {
    return [
      `service ${JSON.stringify(this.service)} is running with another definition, for ${this.clients} client${this.clients === 1 ? "" : "s"}:`,
      `  running:   ${this.running}`,
      `  requested: ${this.requested}`,
      `wait for it to stop, stop it (quiesce stop ${this.service}), or give this one another name`
    ].join("\n")
  }
}

/**
 * Any error of the command line. Each has a `_tag` to match on and an `exitCode`.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const retryable = (error: QuiesceError.QuiesceError): boolean =>
 *   error._tag === "LockTimeoutError" || error._tag === "NotReadyError"
 *
 * console.log(retryable(new QuiesceError.LockTimeoutError({ service: "db", timeoutMillis: 120_000 }))) // true
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type QuiesceError =
  | UsageError
  | NotReadyError
  | ServiceStartError
  | PortInUseError
  | LockTimeoutError
  | RuntimeDirectoryError
  | SharedServiceFailure
  | NoLogError
  | CommandError
  | ConfigError
  | DefinitionMismatchError

/**
 * Whether `u` is one of the command line's errors (a `_tag` and a numeric `exitCode`), as
 * opposed to a library's own error on its way to being mapped.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * console.log(QuiesceError.isQuiesceError(new QuiesceError.UsageError({ message: "bad" }))) // true
 * console.log(QuiesceError.isQuiesceError(new Error("bad"))) // false
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isQuiesceError = (u: unknown): u is QuiesceError =>
  typeof u === "object" && u !== null && "_tag" in u && "exitCode" in u && typeof u.exitCode === "number"

/**
 * What `quiesce` prints for an error: its message, each line prefixed `quiesce: `, then for a
 * failed start the service's last output.
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * const error = new QuiesceError.PortInUseError({ service: "db", port: 5432, holder: "another process" })
 * console.error(QuiesceError.render(error))
 * // quiesce: port 5432 of service "db" is already in use by another process
 * // quiesce: stop that process, or give the service another port (--port auto picks a free one)
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const render = (error: QuiesceError): string => {
  const lines = error.message.split("\n")
  if (error._tag === "ServiceStartError" || error._tag === "NotReadyError") lines.push(...outputLines(error))
  return lines.map((line) => line.startsWith("  | ") ? line : `quiesce: ${line}`).join("\n")
}

/**
 * Formats milliseconds the way the flags accept them (`250ms`, `5s`, `1.5s`, `2m`).
 *
 * @example
 * ```ts
 * import { QuiesceError } from "@quiesce/cli"
 *
 * console.log([250, 5_000, 1_500, 120_000].map(QuiesceError.formatMillis)) // [ "250ms", "5s", "1.5s", "2m" ]
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatMillis = (ms: number): string =>
  ms < 1000 ? `${Math.round(ms)}ms` : ms < 60_000 ? `${+(ms / 1000).toFixed(2)}s` : `${+(ms / 60_000).toFixed(2)}m`
