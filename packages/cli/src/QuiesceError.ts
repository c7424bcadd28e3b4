/**
 * The errors of the `quiesce` command line, one `Schema.TaggedError` each, carrying what a user
 * needs to act. Every error knows the process exit code it maps to: `2` for a bad invocation (as
 * for any well-behaved command line), `125` when `quiesce` itself could not do its part (the
 * convention of `env`, `timeout` and `xargs`, so it cannot be confused with the code of the
 * command it runs), `126` when the command cannot be executed, `127` when it does not exist.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * @since 0.1.0
 * @category exit codes
 */
export const ExitCode = {
  usage: 2,
  failure: 125,
  cannotExecute: 126,
  notFound: 127
} as const

/**
 * An argument that parsed but makes no sense (a port out of range, a bad readiness target).
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {
  readonly exitCode: number = ExitCode.usage
}

/**
 * The service did not answer its readiness probe in time.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotReadyError extends Schema.TaggedError<NotReadyError>()("NotReadyError", {
  service: Schema.String,
  target: Schema.String,
  timeoutMillis: Schema.Number,
  lastFailure: Schema.String,
  /** Where the service's output went, when known. */
  log: Schema.optional(Schema.String)
}) {
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}" was not ready at ${this.target} after ${
      formatMillis(this.timeoutMillis)
    } (last probe: ${this.lastFailure})${this.log === undefined ? "" : `; its output is in ${this.log}`}`
  }
}

/**
 * The service command could not be started, or exited before it became ready.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServiceStartError extends Schema.TaggedError<ServiceStartError>()("ServiceStartError", {
  service: Schema.String,
  reason: Schema.String,
  /** Where the service's output went, when known. */
  log: Schema.optional(Schema.String)
}) {
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}" failed to start: ${this.reason}${
      this.log === undefined ? "" : `; its output is in ${this.log}`
    }`
  }
}

/**
 * An operation on the shared service failed (the semaphores, the lock, the hint file).
 *
 * @since 0.1.0
 * @category errors
 */
export class SharedServiceFailure extends Schema.TaggedError<SharedServiceFailure>()("SharedServiceFailure", {
  service: Schema.String,
  reason: Schema.String
}) {
  readonly exitCode: number = ExitCode.failure
  override get message(): string {
    return `service "${this.service}": ${this.reason}`
  }
}

/**
 * The command given after `--` could not be run.
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
 * @since 0.1.0
 * @category models
 */
export type QuiesceError =
  | UsageError
  | NotReadyError
  | ServiceStartError
  | SharedServiceFailure
  | CommandError

/**
 * Formats milliseconds the way the flags accept them (`250ms`, `5s`, `1.5s`, `2m`).
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatMillis = (ms: number): string =>
  ms < 1000 ? `${Math.round(ms)}ms` : ms < 60_000 ? `${+(ms / 1000).toFixed(2)}s` : `${+(ms / 60_000).toFixed(2)}m`
