/**
 * End-to-end helpers: `quiesce` run as a real process, the way a user runs it.
 */
import { Deferred, Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import type { Scope } from "effect"
import { SharedService } from "@quiesce/shared-service"

export const root = join(import.meta.dirname, "..")
export const bin = join(root, "src", "bin.ts")
export const demoService = join(root, "src", "bin", "demo-service.ts")
export const client = join(root, "examples", "client.ts")
export const node = process.execPath
export const nodeArgs = ["--conditions=@quiesce/source"]

/**
 * How `quiesce run` runs the command: `exec` (it becomes the command, the default where
 * `process.execve` exists) or `spawn` (the fallback where it does not: Windows, Node < 22.15),
 * which tests force by removing `process.execve` before quiesce loads.
 */
export type Mode = "exec" | "spawn"
export const spawnMode = ["--import=data:text/javascript,delete process.execve"]
const modeArgs = (mode: Mode | undefined) => mode === "spawn" ? spawnMode : []

/** A service name no other test (or test run) uses. */
export const uniqueName = (label: string): string =>
  `t-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

/**
 * A test's own service: a unique name, a log of its starts and stops, and an environment whose
 * runtime directory (hints, service logs) is the test's temporary directory. When the scope
 * closes the service is stopped if still running and its semaphore set removed (sets persist by
 * design), so a test run leaves nothing behind in the kernel.
 */
export const testService = (label: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const name = uniqueName(label)
    const env = { QUIESCE_RUNTIME_DIR: dir }
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Effect.scoped(Effect.flatMap(quiesce(["stop", name], { env }), (q) => q.exit))
        yield* Effect.ignore(SharedService.remove(name))
      })
    )
    return { name, log: join(dir, "service.log"), env, dir }
  })

export interface Quiesce {
  readonly pid: number
  /** Resolves with the first stdout line that contains `text`. */
  readonly line: (text: string) => Effect.Effect<string>
  readonly stdout: () => string
  readonly stderr: () => string
  /** Its exit status, once its output has ended too. */
  readonly exit: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Its exit status, as soon as the process is gone (children may still hold its output open). */
  readonly exited: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly kill: (signal: NodeJS.Signals) => Effect.Effect<void>
  readonly closeStdin: Effect.Effect<void>
}

export interface QuiesceOptions {
  readonly env?: Record<string, string>
  readonly mode?: Mode
  /** The working directory (where a config file is looked for); default the test's. */
  readonly cwd?: string
}

/** Starts `quiesce ARGS` as a child process; killed with SIGKILL if still running when the scope closes. */
export const quiesce = (args: ReadonlyArray<string>, options?: QuiesceOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(node, [...nodeArgs, ...modeArgs(options?.mode), bin, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, ...options?.env },
        ...(options?.cwd === undefined ? {} : { cwd: options.cwd })
      })
      let out = ""
      let err = ""
      const waiters: Array<{ text: string; deferred: Deferred.Deferred<string> }> = []
      const check = () => {
        for (const line of out.split("\n")) {
          for (const w of waiters) if (line.includes(w.text)) Deferred.doneUnsafe(w.deferred, Exit.succeed(line))
        }
      }
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        check()
      })
      child.stderr.on("data", (chunk: Buffer) => {
        err += chunk.toString()
      })
      const closed = Deferred.makeUnsafe<{ code: number | null; signal: NodeJS.Signals | null }>()
      child.on("close", (code, signal) => Deferred.doneUnsafe(closed, Exit.succeed({ code, signal })))
      const exited = Deferred.makeUnsafe<{ code: number | null; signal: NodeJS.Signals | null }>()
      child.on("exit", (code, signal) => Deferred.doneUnsafe(exited, Exit.succeed({ code, signal })))
      const handle: Quiesce = {
        pid: child.pid!,
        line: (text) =>
          Effect.suspend(() => {
            const deferred = Deferred.makeUnsafe<string>()
            waiters.push({ text, deferred })
            check()
            return Deferred.await(deferred).pipe(
              Effect.timeoutOrElse({
                duration: 60_000,
                orElse: () =>
                  Effect.die(new Error(`no line with ${JSON.stringify(text)}; stdout: ${out}; stderr: ${err}`))
              })
            )
          }),
        stdout: () => out,
        stderr: () => err,
        exit: Deferred.await(closed),
        exited: Deferred.await(exited),
        kill: (signal) => Effect.sync(() => void child.kill(signal)),
        closeStdin: Effect.sync(() => void child.stdin.end())
      }
      return { child, handle }
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
      })
  ).pipe(Effect.map(({ handle }) => handle))

/** Runs `quiesce ARGS` to completion. */
export const quiesceExit = (args: ReadonlyArray<string>, options?: QuiesceOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const q = yield* quiesce(args, options)
    yield* q.closeStdin
    const exit = yield* q.exit
    return { ...exit, stdout: q.stdout(), stderr: q.stderr() }
  }))

/** A temporary directory removed with the scope. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "quiesce-cli-test-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** The demo service, logging its starts and stops to `log`. */
export const serviceCommand = (log: string): string => `'${node}' '${demoService}' --log '${log}'`

export const logLines = (log: string): ReadonlyArray<string> =>
  existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((line) => line !== "") : []

export const starts = (log: string) => logLines(log).filter((line) => line.includes(" started "))
export const stops = (log: string) => logLines(log).filter((line) => line.includes(" stopped "))

/**
 * Polls `condition` every 25 ms of real time until it holds, dying after `timeoutMillis`: for
 * what only an outside process can tell (a service exiting after its grace period).
 */
export const eventually = (what: string, condition: () => boolean, timeoutMillis = 15_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for: ${what}`))
      yield* Effect.sleep(25)
    }
  })

/** A port nothing listens on right now. */
export const freePort: Effect.Effect<number> = Effect.callback((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const zombie = (pid: number | string): boolean => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")
}

/** Live (not zombie) processes whose command line contains every one of `markers`. */
export const processesWith = (...markers: ReadonlyArray<string>): ReadonlyArray<number> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      if (zombie(entry)) return []
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8")
      return markers.every((marker) => cmdline.includes(marker)) ? [Number(entry)] : []
    } catch {
      return []
    }
  })

/**
 * Whether `pid` is a live process. A zombie is not: a service `quiesce run` started is a child
 * of the process that started it, which is now the command, and the command need not reap it.
 */
export const isAlive = (pid: number): boolean => {
  try {
    return !zombie(pid)
  } catch {
    return false
  }
}
