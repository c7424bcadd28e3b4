/**
 * Starting a shell command as a detached shared service, on `effect/process`: the command is
 * spawned in its own process group (`detached`), unref'd so that closing the spawning scope
 * leaves it running, its output appended to `<runtime dir>/<name>.log`, and readiness polled
 * until `ready` succeeds (or the process dies, or the start timeout interrupts the poll, which
 * kills the group).
 *
 * @internal
 */
import { Duration, Effect, Exit, Schedule, Scope } from "effect"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { connect } from "node:net"
import { join } from "node:path"
import * as Process from "../Process.ts"
import * as ServiceInfo from "../ServiceInfo.ts"
import { StartFailed, Unhealthy } from "../SharedServiceError.ts"
import { existsSync } from "node:fs"
import * as Hint from "./hint.ts"
import { REAPER_DELAY_SECONDS, REAPER_NICE } from "./sharedService.ts"
import type { ReaperLaunch } from "./sharedService.ts"
import { ensureRuntimeDir } from "./paths.ts"

export type Readiness =
  | { readonly _tag: "Tcp"; readonly port: number; readonly host?: string | undefined }
  | { readonly _tag: "Http"; readonly url: string }
  | { readonly _tag: "Check"; readonly check: (info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown> }

export const tcpProbe = (name: string, port: number, host = "127.0.0.1"): Effect.Effect<void, Unhealthy> =>
  Effect.callback<void, Unhealthy>((resume) => {
    const socket = connect({ port, host })
    const done = (e?: Error) => {
      socket.removeAllListeners()
      socket.destroy()
      resume(e === undefined ? Effect.void : Effect.fail(new Unhealthy({ service: name, reason: `tcp ${host}:${port}: ${e.message}` })))
    }
    socket.once("connect", () => done())
    socket.once("error", (e) => done(e))
    return Effect.sync(() => socket.destroy())
  })

export const httpProbe = (name: string, url: string): Effect.Effect<void, Unhealthy> =>
  Effect.tryPromise({
    try: (signal) => fetch(url, { signal, redirect: "manual" }),
    catch: (e) => new Unhealthy({ service: name, reason: `GET ${url}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(
    Effect.flatMap((res) => {
      void res.body?.cancel()
      return res.status < 500
        ? Effect.void
        : Effect.fail(new Unhealthy({ service: name, reason: `GET ${url}: HTTP ${res.status}` }))
    })
  )

export const probe = (name: string, ready: Readiness, info: ServiceInfo.ServiceInfo): Effect.Effect<void, unknown> => {
  switch (ready._tag) {
    case "Tcp":
      return tcpProbe(name, ready.port, ready.host)
    case "Http":
      return httpProbe(name, ready.url)
    case "Check":
      return ready.check(info)
  }
}

export interface CommandOptions {
  readonly name: string
  readonly command: string
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly port?: number | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
  readonly ready?: Readiness | undefined
  /** Where the service's stdout/stderr go (appended); default `<runtime dir>/<name>.log`. */
  readonly logFile?: string | undefined
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

const which = (names: ReadonlyArray<string>): string | undefined => names.find((p) => existsSync(p))
let tools: { readonly setsid: string | undefined; readonly nice: string | undefined } | undefined

/** The shell line that launches the reaper in the background and records its pid. */
const reaperLine = (reaper: ReaperLaunch): string => {
  tools ??= {
    setsid: which(["/usr/bin/setsid", "/bin/setsid"]),
    nice: which(["/usr/bin/nice", "/bin/nice"])
  }
  const prefix = [
    ...(tools.nice === undefined ? [] : [tools.nice, "-n", String(REAPER_NICE)]),
    ...(tools.setsid === undefined ? [] : [tools.setsid])
  ]
  const argv = [...prefix, ...reaper.argv].map(quote).join(" ")
  // The subshell sleeps before it execs the reaper, so that the reaper's own boot (a Node
  // process) does not compete with the service's for the CPU. Nothing is lost meanwhile: the
  // reaper decides only from the kernel count, under the lock, once it runs; if the starter
  // dies in that second, the reaper still comes and finds the count at zero.
  // It reads the service's start time at once, with builtins only (nothing to fork while the
  // service boots): the shell is still `sh`, so field 22 of its stat line is the start time.
  // The reaper then never mistakes a recycled pid for the service.
  return `(read -r l < /proc/$$/stat; set -- $l; st=\${22}; sleep ${REAPER_DELAY_SECONDS}; ` +
    `exec ${argv} "$$" "$st" group) & echo $! > ${quote(reaper.pidFile)}; `
}

export const startCommand = (
  options: CommandOptions,
  reaper: ReaperLaunch | undefined
): Effect.Effect<ServiceInfo.ServiceInfo, StartFailed, ChildProcessSpawner.ChildProcessSpawner> =>
  Effect.gen(function*() {
    const { name } = options
    const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
    const dir = ensureRuntimeDir()
    const log = options.logFile ?? (dir instanceof Error ? "/dev/null" : join(dir, `${name}.log`))
    // `exec` keeps the service's pid the shell's pid for single commands; the process group
    // covers whatever a compound command forks. The reaper, when one is needed, is launched by
    // this shell before the service: in its own session (it must not be in the group it will
    // stop), at a lower priority (it must not slow the service's start), told the service's
    // pid ($$), and recorded in its pid file. Spawning it from here costs the client nothing.
    const launch = reaper === undefined ? "" : reaperLine(reaper)
    const script = `exec >>${quote(log)} 2>&1 </dev/null; ${launch}${options.command}`
    const scope = yield* Scope.make()
    const handle = yield* spawner.spawn(
      ChildProcess.make(script, {
        shell: "/bin/sh",
        detached: true,
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        env: { ...options.env, QUIESCE_SERVICE_NAME: name },
        extendEnv: true
      })
    ).pipe(
      Scope.provide(scope),
      Effect.mapError((cause) => new StartFailed({ service: name, reason: `spawn failed: ${cause.message}`, cause }))
    )
    // Unref'd, closing the spawning scope leaves the detached service running.
    yield* Effect.orDie(handle.unref)
    yield* Scope.close(scope, Exit.void)
    const pid = handle.pid
    const info = ServiceInfo.make({
      pid,
      startTime: yield* Process.startTime(pid),
      processGroup: true,
      port: options.port,
      metadata: options.metadata
    })
    // Recorded before the readiness wait (the reaper also knows the pid from its command line).
    yield* Effect.ignore(Hint.write(name, info))
    const ready = options.ready
    if (ready === undefined) return info
    const poll = Effect.gen(function*() {
      if (!Process.isAliveUnsafe(pid, info.startTime)) {
        return yield* Effect.fail(new StartFailed({ service: name, reason: `the service process ${pid} exited before it was ready` }))
      }
      return yield* Effect.mapError(probe(name, ready, info), (cause) => ({ _tag: "NotReady" as const, cause }))
    })
    yield* poll.pipe(
      Effect.retry({
        while: (e) => e._tag === "NotReady",
        schedule: Schedule.min([Schedule.exponential(Duration.millis(1), 1.5), Schedule.spaced(Duration.millis(4))])
      }),
      Effect.catchTag("NotReady", (e) => Effect.fail(new StartFailed({ service: name, reason: "not ready", cause: e.cause }))),
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : Effect.andThen(
          Process.kill(pid, { startTime: info.startTime, group: true }),
          Hint.remove(name, info.instanceId)
        )
      )
    )
    return info
  })
