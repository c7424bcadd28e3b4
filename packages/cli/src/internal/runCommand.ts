/**
 * Where `quiesce run` cannot become its command (no `process.execve`: Windows, Node < 22.15; or
 * a service shared through a database, whose session is quiesce's): runs it as a child in the
 * foreground, with inherited stdio, the environment it is given, signals forwarded, and returns
 * its exit status as a process exit code.
 */
import * as Effect from "effect/Effect"
import * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { existsSync } from "node:fs"
import { constants } from "node:os"
import { CommandError, ExitCode } from "../QuiesceError.ts"
import { forwardSignals } from "./signals.ts"

/** util-linux's `setpriv`, where there is one (Linux). */
const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => existsSync(path))

const signalExitCode = (error: PlatformError.PlatformError): number | undefined => {
  // The Node spawner reports death by signal only in the error's text.
  const cause = error.reason.cause
  const text = cause instanceof Error ? cause.message : error.message
  const match = /signal: '(SIG[A-Z0-9]+)'/.exec(text)
  if (match === null) return undefined
  const number = (constants.signals as Record<string, number | undefined>)[match[1]!]
  return number === undefined ? undefined : 128 + number
}

const spawnFailure = (display: string, error: PlatformError.PlatformError): CommandError => {
  const reason = error.reason
  if (reason._tag === "NotFound") {
    return new CommandError({ command: display, reason: "command not found", exitCode: ExitCode.notFound })
  }
  if (reason._tag === "PermissionDenied") {
    return new CommandError({ command: display, reason: "permission denied", exitCode: ExitCode.cannotExecute })
  }
  return new CommandError({ command: display, reason: error.message, exitCode: ExitCode.cannotExecute })
}

/**
 * Runs `argv` to completion and returns the exit code `quiesce` should exit with: the command's
 * own, or 128 + the signal number when a signal ended it (as a shell reports it).
 */
export const runCommand = Effect.fnUntraced(function*(
  argv: ReadonlyArray<string>,
  env: Record<string, string>
): Effect.fn.Return<number, CommandError, ChildProcessSpawner> {
  const [command, ...args] = argv
  const display = argv.join(" ")
  if (command === undefined) {
    return yield* new CommandError({ command: "", reason: "no command given", exitCode: ExitCode.usage })
  }
  const spawner = yield* ChildProcessSpawner
  // The command dies with quiesce (`setpriv --pdeathsig`, which then execs it): a SIGKILLed
  // quiesce leaves no command running without the reference it held for it.
  const [file, fileArgs] = setpriv === undefined ? [command, args] : [setpriv, ["--pdeathsig=KILL", "--", command, ...args]]
  return yield* Effect.scoped(Effect.gen(function*() {
    const handle = yield* spawner.spawn(ChildProcess.make(file, fileArgs, {
      // Already the whole environment (quiesce's own, with the service's coordinates).
      env,
      extendEnv: false,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      // The command stays in quiesce's process group, so it keeps the terminal (an interactive
      // command can read it) and a terminal's Ctrl-C reaches it directly, as with `npm run`.
      detached: false
    })).pipe(Effect.mapError((error) => spawnFailure(display, error)))
    yield* forwardSignals(handle.pid)
    return yield* handle.exitCode.pipe(
      Effect.map((code): number => code),
      Effect.catch((error) => {
        const code = signalExitCode(error)
        return code === undefined
          ? Effect.fail(new CommandError({ command: display, reason: error.message, exitCode: ExitCode.failure }))
          : Effect.succeed(code)
      })
    )
  }))
})
