/**
 * `quiesce run` becomes its command: once it holds its reference on the service, it replaces
 * its own process with the command (`process.execve`), so the command is the client the kernel
 * counts, and signals, the terminal, exit statuses and SIGKILL reach it exactly as if it had been
 * run directly. Nothing of quiesce runs afterwards.
 *
 * Node's `execve` does not search `PATH`, and (Node 24) a failed call aborts the process instead
 * of throwing, so `resolve` first finds what can be foreseen, as execvp(3) and a shell would:
 * 127 for a command that does not exist, 126 for one that cannot be executed.
 *
 * A Node process also changes a few things a program inherits across `execve`, which `replace`
 * puts back: SIGPIPE and SIGXFSZ are ignored (and an ignored signal stays ignored), and a
 * standard descriptor Node has used (a pipe or a terminal) is left non-blocking.
 */
import * as Effect from "effect/Effect"
import { accessSync, closeSync, constants, openSync, readFileSync, readSync, statSync } from "node:fs"
import * as Module from "node:module"
import { join } from "node:path"
import { CommandError, ExitCode } from "../QuiesceError.ts"

/** Whether this process can replace itself: POSIX, Node >= 22.15, not a worker thread. */
export const available = (): boolean =>
  typeof process.execve === "function" && process.getBuiltinModule("node:worker_threads").isMainThread

/** What to execute: the file, and the argv it gets (`argv[0]` as the user wrote it, as a shell passes it). */
export interface Program {
  readonly file: string
  readonly argv: ReadonlyArray<string>
}

const access = (path: string): "ok" | "missing" | "denied" => {
  try {
    if (statSync(path).isDirectory()) return "denied"
    accessSync(path, constants.X_OK)
    return "ok"
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === "ENOENT" || code === "ENOTDIR" ? "missing" : "denied"
  }
}

/** The first bytes of `file` (the kernel reads 256 to recognise it); empty if it cannot be read (execute-only). */
const header = (file: string): Buffer => {
  let fd: number
  try {
    fd = openSync(file, "r")
  } catch {
    return Buffer.alloc(0)
  }
  try {
    const buffer = Buffer.alloc(256)
    return buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, 0))
  } catch {
    return Buffer.alloc(0)
  } finally {
    closeSync(fd)
  }
}

const elf = Buffer.from([0x7f, 0x45, 0x4c, 0x46])

const failure = (command: string, reason: string, exitCode: number) =>
  new CommandError({ command, reason, exitCode })

/**
 * Finds `argv[0]` as execvp(3) does: as a path when it contains a `/`, else in each directory of
 * `searchPath` (an empty entry is the current directory), taking the first executable regular
 * file. A `#!` script whose interpreter is missing cannot be executed (126, as a shell says "bad
 * interpreter"); a file that is neither a script nor a binary runs under `/bin/sh`, as execvp
 * runs it after `ENOEXEC` (a format only `binfmt_misc` knows would be taken for one).
 */
export const resolve = (
  argv: ReadonlyArray<string>,
  searchPath: string | undefined = process.env["PATH"]
): Program | CommandError => {
  const [command, ...args] = argv
  const display = argv.join(" ")
  if (command === undefined || command === "") return failure(display, "command not found", ExitCode.notFound)
  const candidates = command.includes("/")
    ? [command]
    : (searchPath ?? "/bin:/usr/bin").split(":").map((dir) => join(dir === "" ? "." : dir, command))
  let denied = false
  const file = candidates.find((candidate) => {
    const found = access(candidate)
    denied ||= found === "denied"
    return found === "ok"
  })
  if (file === undefined) {
    return denied
      ? failure(display, "permission denied", ExitCode.cannotExecute)
      : failure(display, command.includes("/") ? "no such file" : "command not found", ExitCode.notFound)
  }
  const head = header(file)
  if (head.length === 0 || head.subarray(0, 4).equals(elf)) return { file, argv }
  if (head[0] === 0x23 && head[1] === 0x21) {
    const line = head.toString("latin1", 2, head.includes(0x0a) ? head.indexOf(0x0a) : head.length)
    const interpreter = line.trim().split(/[ \t]/, 1)[0] ?? ""
    return interpreter !== "" && access(interpreter) === "ok"
      ? { file, argv }
      : failure(display, `bad interpreter ${JSON.stringify(interpreter)}`, ExitCode.cannotExecute)
  }
  return { file: "/bin/sh", argv: ["/bin/sh", file, ...args] }
}

const O_NONBLOCK = 0o4000

/** The status flags in a `/proc/<pid>/fdinfo/<fd>` text. */
const flagsIn = (fdinfo: string | undefined): number | undefined => {
  const match = fdinfo === undefined ? null : /^flags:\s*([0-7]+)$/m.exec(fdinfo)
  return match === null ? undefined : Number.parseInt(match[1]!, 8)
}

const fdinfo = (fd: number): string | undefined => {
  try {
    return readFileSync(`/proc/self/fdinfo/${fd}`, "latin1")
  } catch {
    return undefined
  }
}

/**
 * `/proc/self/fdinfo/{0,1,2}` as the process got them, recorded by the entry point (`bin.ts`,
 * `bin/launch.js`) before it loads anything: loading `node:util` already opens stderr.
 */
const stdioKey = Symbol.for("@quiesce/cli/stdio")

/**
 * Node makes a pipe or terminal it reads or writes through non-blocking (effect/cli's terminal
 * service opens stdin and stdout just by being built, `node:util` opens stderr), on the open
 * file description the command would inherit: a program reading a non-blocking stdin gets
 * `EAGAIN`. Only a stream Node created can have changed, so touching it here creates nothing.
 * Without a record (nothing ran the entry point first), the descriptors count as blocking.
 */
const restoreStdio = (): void => {
  const recorded = (globalThis as { [stdioKey]?: ReadonlyArray<string | undefined> })[stdioKey] ?? []
  const streams = [() => process.stdin, () => process.stdout, () => process.stderr]
  streams.forEach((stream, fd) => {
    const now = flagsIn(fdinfo(fd))
    const before = flagsIn(recorded[fd]) ?? 0
    if (now === undefined || (now & O_NONBLOCK) === 0 || (before & O_NONBLOCK) !== 0) return
    const handle = (stream() as { _handle?: { setBlocking?: (blocking: boolean) => number } })._handle
    handle?.setBlocking?.(true)
  })
}

/** One turn of the event loop: a signal that arrived while the service was acquired is handled now (it interrupts quiesce, which releases and exits 128 + N) instead of vanishing with the exec. */
const drainSignals: Effect.Effect<void> = Effect.callback<void>((resume) => {
  const immediate = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(immediate))
})

const ignore = () => {}

/**
 * Replaces this process with `program` and the environment `env`. Does not return on success;
 * fails with a `CommandError` (126, or 127 for `ENOENT`) where Node reports a failed `execve`
 * instead of aborting.
 */
export const replace = (program: Program, env: Record<string, string>): Effect.Effect<void, CommandError> =>
  Effect.andThen(
    drainSignals,
    Effect.try({
      try: () => {
        restoreStdio()
        // Node ignores SIGPIPE and SIGXFSZ; a caught signal is reset to its default by execve.
        process.on("SIGPIPE", ignore)
        process.on("SIGXFSZ", ignore)
        // The compile cache is written at exit, and this process never exits.
        Module.flushCompileCache?.()
        process.execve!(program.file, [...program.argv], env)
      },
      catch: (error) => {
        const code = (error as NodeJS.ErrnoException).code
        return failure(
          program.argv.join(" "),
          code ?? String(error),
          code === "ENOENT" ? ExitCode.notFound : ExitCode.cannotExecute
        )
      }
    })
  )
