/**
 * `quiesce logs NAME [--follow]`: the output of the service's current instance,
 * `<runtime dir>/<name>.log` (each start begins a fresh one; the previous is kept as `.log.1`,
 * and a stopped service leaves only that).
 *
 * `--follow` keeps the file open and prints what is appended until that instance has ended: its
 * log is retired (renamed to `.log.1`, or a new start replaced it) or no supervisor holds the
 * service any more (a SIGKILLed supervisor takes its service with it and retires nothing).
 */
import * as Effect from "effect/Effect"
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs"
import { SharedService } from "@quiesce/shared-service"
import { NoLogError, type QuiesceError, RuntimeDirectoryError, UsageError } from "../QuiesceError.ts"

/** How often `--follow` looks for new output (as `tail -f`, which looks every second). */
const pollMillis = 200

const open = (path: string): number | undefined => {
  try {
    // A link planted in the runtime directory is not followed.
    return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "ENOENT") return undefined
    throw error
  }
}

const buffer = Buffer.alloc(64 * 1024)

/** Copies everything from `fd`'s position to its end onto stdout (synchronous on Linux for files, pipes and terminals). */
const drain = (fd: number): void => {
  for (;;) {
    const n = readSync(fd, buffer, 0, buffer.length, null)
    if (n === 0) return
    process.stdout.write(Buffer.from(buffer.subarray(0, n)))
  }
}

/** Whether `path` is still the file open as `fd` (not renamed away, not replaced by a new instance's). */
const stillAt = (path: string, fd: number): boolean => {
  try {
    return statSync(path).ino === fstatSync(fd).ino
  } catch {
    return false
  }
}

const ended = (name: string, path: string, fd: number): Effect.Effect<boolean> =>
  stillAt(path, fd)
    ? Effect.match(SharedService.inspect(name), {
      onFailure: () => true,
      onSuccess: (status) => !status.hasSupervisor
    })
    : Effect.succeed(true)

const follow = (name: string, path: string, fd: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (;;) {
      drain(fd)
      if (yield* ended(name, path, fd)) {
        // What was written between the last read and the end.
        drain(fd)
        process.stderr.write(`quiesce: service "${name}" has stopped\n`)
        return
      }
      yield* Effect.sleep(pollMillis)
    }
  })

export const logs = (name: string, options: { readonly follow: boolean }): Effect.Effect<void, QuiesceError> =>
  Effect.suspend((): Effect.Effect<void, QuiesceError> => {
    const invalid = SharedService.validateName(name)
    if (invalid !== undefined) return Effect.fail(new UsageError({ message: `invalid service name ${JSON.stringify(name)}: ${invalid}` }))
    const path = SharedService.logFile(name)
    return Effect.acquireUseRelease(
      Effect.try({
        try: () => {
          const current = open(path)
          if (current !== undefined) return { fd: current, current: true }
          const previous = open(`${path}.1`)
          return previous === undefined ? undefined : { fd: previous, current: false }
        },
        catch: (error) =>
          new RuntimeDirectoryError({
            service: name,
            path,
            reason: `cannot open the log (${(error as NodeJS.ErrnoException).code ?? String(error)})`
          })
      }),
      (opened) => {
        if (opened === undefined) return Effect.fail(new NoLogError({ service: name, path }))
        if (!opened.current) {
          process.stderr.write(`quiesce: service "${name}" is not running; its last instance's output (${path}.1):\n`)
          return Effect.sync(() => drain(opened.fd))
        }
        return options.follow ? follow(name, path, opened.fd) : Effect.sync(() => drain(opened.fd))
      },
      (opened) => Effect.sync(() => opened === undefined || closeSync(opened.fd))
    )
  })
