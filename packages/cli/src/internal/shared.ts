/**
 * The `Manager` over `@quiesce/shared-service`: `SharedService.command` starts the service
 * under the cross-process startup lock with its detached supervisor (output to
 * `<runtime dir>/<name>.log`), which stops it `--grace` after the last client, SIGKILL included. Readiness and health use this package's probe (every resolved address).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Result from "effect/Result"
import * as Net from "node:net"
import { RefCounter, type ServiceInfo, SharedService, type SharedServiceError } from "@quiesce/shared-service"
import {
  DefinitionMismatchError,
  isQuiesceError,
  LockTimeoutError,
  NotReadyError,
  PortInUseError,
  type QuiesceError,
  RuntimeDirectoryError,
  ServiceStartError,
  SharedServiceFailure,
  UsageError
} from "../QuiesceError.ts"
import * as QuiesceConfig from "../QuiesceConfig.ts"
import type { Definition } from "../QuiesceConfig.ts"
import * as Readiness from "../Readiness.ts"
import type { ServiceStatus, StopReport } from "./format.ts"
import { logs } from "./logs.ts"
import * as Remote from "./remote.ts"
import { describeTargets, targetsOf } from "./targets.ts"
import { aliveMillis, type Lease, Manager, type Progress } from "./manager.ts"

/** A port nothing listens on right now, for `--port auto`. */
const freePort: Effect.Effect<number, SharedServiceFailure> = Effect.callback((resume) => {
  const server = Net.createServer()
  server.once("error", (error) =>
    resume(Effect.fail(new SharedServiceFailure({ service: "", reason: `no free port: ${error.message}` }))))
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

// Words `exec` cannot run: the shell's special builtins (POSIX), the builtins that act on the
// shell itself, and the reserved words; `exec exit 3` would fail with 127 instead of exiting 3.
const notExecable = new Set([
  ...[":", ".", "break", "continue", "eval", "exec", "exit", "export", "readonly", "return", "set", "shift", "times", "trap", "unset"],
  ...["alias", "bg", "cd", "command", "fg", "getopts", "hash", "jobs", "local", "read", "source", "type", "ulimit", "umask", "unalias", "wait"],
  ...["!", "{", "case", "for", "if", "until", "while"]
])

/**
 * `exec COMMAND` when COMMAND is one simple command, so that the service's recorded pid (what
 * QUIESCE_SERVICE_PID shows and what `status` probes) is the service itself rather than the
 * `/bin/sh` that `SharedService.command` runs it under. Compound commands are left alone; the
 * process group still covers them.
 */
export const execSimple = (command: string): string => {
  const trimmed = command.trim()
  const first = trimmed.split(/\s+/, 1)[0] ?? ""
  const simple = !/[;&|(){}\n`]/.test(trimmed) && !first.includes("=") && !notExecable.has(first)
  return simple ? `exec ${trimmed}` : command
}

const outputOf = (error: SharedServiceError.StartFailed) => {
  // The service's own lines (StartFailed leaves its supervisor's out).
  const output = error.output?.trim() === "" ? undefined : error.output
  return {
    ...(error.status === undefined ? {} : { status: error.status }),
    ...(output === undefined ? {} : { output }),
    ...(error.logFile === undefined ? {} : { log: error.logFile })
  }
}

/** A command line on one short line (an argument may hold newlines, or a whole script). */
const oneLine = (command: string): string => {
  const flat = command.replace(/\s+/g, " ").trim()
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat
}

const holderOf = (error: SharedServiceError.PortInUse): string =>
  error.pid === undefined
    ? error.uid === undefined ? "another process" : `a process of uid ${error.uid}`
    : `pid ${error.pid}${error.command === undefined ? "" : ` (${oneLine(error.command)})`}`

/** The shared-service error as the CLI's: what to print and which exit code. */
const failure = (service: string, definition?: Definition) => (error: SharedServiceError.SharedServiceError): QuiesceError => {
  switch (error._tag) {
    case "InvalidName":
    case "InvalidOption":
      return new UsageError({ message: error.message })
    case "DefinitionMismatch":
      return new DefinitionMismatchError({
        service,
        clients: error.clients,
        running: error.metadata?.["definition"] ?? (error.running === undefined ? "(none recorded)" : `fingerprint ${error.running}`),
        requested: definition === undefined ? `fingerprint ${error.requested}` : QuiesceConfig.identity(definition)
      })
    case "StartFailed":
      return new ServiceStartError({ service, reason: error.reason, ...outputOf(error) })
    case "PortInUse":
      return new PortInUseError({ service, port: error.port, holder: holderOf(error) })
    case "LockTimeout":
      return new LockTimeoutError({
        service,
        timeoutMillis: error.timeoutMillis,
        ...(error.holder === undefined ? {} : { holder: error.holder }),
        ...(error.holderState === undefined ? {} : { holderState: error.holderState })
      })
    case "RuntimeDirectoryUnusable":
      return new RuntimeDirectoryError({
        service,
        path: error.path,
        reason: error.errno === 0 ? error.reason : `${error.reason} (${error.syscall}: ${error.code})`
      })
    default:
      return new SharedServiceFailure({ service, reason: error.message })
  }
}

/**
 * The targets as a hint records them (in its metadata, for `status` and later clients): JSON,
 * each target's spec with an http target's expected statuses and certificate policy.
 */
const encodeTargets = (targets: ReadonlyArray<Readiness.Target>): string =>
  JSON.stringify(targets.map((t) =>
    t._tag === "HttpGet"
      ? { spec: t.url, expect: Readiness.formatExpect(t.expect), insecure: t.insecure }
      : { spec: Readiness.format(t) }
  ))

/** The targets a hint recorded (a single spec as plain text, before). */
const decodeTargets = (recorded: string | undefined): ReadonlyArray<Readiness.Target> | undefined => {
  if (recorded === undefined) return undefined
  let entries: ReadonlyArray<{ spec?: unknown; expect?: unknown; insecure?: unknown }>
  try {
    const parsed: unknown = JSON.parse(recorded)
    entries = Array.isArray(parsed) ? parsed : [{ spec: recorded }]
  } catch {
    entries = [{ spec: recorded }]
  }
  const targets: Array<Readiness.Target> = []
  for (const entry of entries) {
    const target = Readiness.parse(String(entry.spec))
    if (Result.isFailure(target)) return undefined
    const expect = typeof entry.expect === "string" ? Readiness.parseExpect(entry.expect) : undefined
    targets.push(
      target.success._tag === "HttpGet"
        ? Readiness.http(target.success.url, {
          expect: expect !== undefined && Result.isSuccess(expect) ? expect.success : undefined,
          insecure: entry.insecure === true
        })
        : target.success
    )
  }
  return targets
}

const acquire = (
  definition: Definition,
  progress: Progress = { target: undefined, lastFailure: undefined }
): Effect.Effect<Lease, QuiesceError, ChildProcessSpawner | Scope.Scope> =>
  definition.remote === undefined ? acquireLocal(definition, progress) : Remote.acquire(definition, definition.remote, progress).pipe(
    Effect.mapError((error) => isQuiesceError(error) ? error : failure(definition.name, definition)(error))
  )

const acquireLocal = (definition: Definition, progress: Progress) =>
  Effect.gen(function*() {
    // Only a port the user named (or asked quiesce to pick) is given to the service and probed.
    const port = definition.port === "auto"
      ? yield* freePort
      : definition.port ?? definition.ready.map(Readiness.port).find((p) => p !== undefined)
    const targets = targetsOf(definition, port)
    const target = describeTargets(targets, `alive for ${aliveMillis}ms`)
    progress.target = target
    const env = {
      ...definition.env,
      ...(port === undefined ? {} : { PORT: String(port), QUIESCE_SERVICE_PORT: String(port) })
    }
    // One probe per instance port: its attempts of a log: target read only what the log gained.
    // A later client probes the running instance's port (with --port auto, not the one it picked).
    const probes = new Map<number | undefined, Effect.Effect<void, string>>()
    const probeFor = (key: number | undefined) =>
      Effect.suspend(() => {
        const known = probes.get(key)
        if (known !== undefined) return Effect.succeed(known)
        return Effect.tap(
          Readiness.makeProbe(targetsOf(definition, key), {
            attemptTimeoutMillis: definition.readyTimeoutMillis,
            logFile: SharedService.logFile(definition.name),
            cwd: definition.cwd,
            env: { ...process.env, ...env }
          }),
          (probe) => Effect.sync(() => probes.set(key, probe))
        )
      })
    const check = (info: ServiceInfo.ServiceInfo) =>
      Effect.flatten(probeFor(info.port ?? port)).pipe(
        Effect.tapError((reason) =>
          Effect.sync(() => {
            progress.lastFailure = reason
          })
        )
      )
    // Polled from the service's spawn until it passes; the process dying meanwhile fails the start.
    let firstPoll: number | undefined
    const alive = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      firstPoll ??= now
      return now - firstPoll >= aliveMillis ? Effect.void : Effect.fail(`alive for ${now - firstPoll}ms`)
    })
    const service = yield* SharedService.command({
      name: definition.name,
      command: execSimple(definition.command),
      cwd: definition.cwd,
      port,
      env,
      metadata: {
        command: definition.command,
        ready: encodeTargets(targets),
        definition: QuiesceConfig.identity(definition),
        startedAt: new Date().toISOString()
      },
      fingerprint: QuiesceConfig.fingerprint(definition),
      stopSignal: definition.stopSignal,
      ready: SharedService.check(targets.length === 0 ? () => alive : check),
      // A later client finds the service alive (its hint is verified) and has nothing else to check.
      ...(targets.length === 0 ? { healthCheck: false } : {}),
      idleTimeToLive: definition.graceMillis,
      startTimeout: definition.startTimeoutMillis,
      stopTimeout: definition.stopTimeoutMillis
    }).pipe(Effect.mapError(failure(definition.name, definition)))
    const handle = yield* SharedService.acquire(service).pipe(
      Effect.mapError((error) =>
        // The start timed out while the service lived and the probe still failed: say what the probe saw.
        error._tag === "StartFailed" && error.timeoutMillis !== undefined && error.status === undefined
          ? new NotReadyError({
            service: definition.name,
            target,
            timeoutMillis: definition.startTimeoutMillis,
            lastFailure: progress.lastFailure ?? "no probe finished",
            ...outputOf(error)
          })
          : failure(definition.name, definition)(error)
      )
    )
    return {
      name: definition.name,
      pid: handle.info.pid,
      port: handle.info.port,
      started: handle.started
    }
  })

const probeNow = (status: SharedService.ServiceStatus): Effect.Effect<boolean | null> => {
  const info = status.info
  if (info === undefined) return Effect.succeed(null)
  const targets = decodeTargets(info.metadata["ready"]) ?? (info.port === undefined ? [] : [Readiness.tcp(info.port)])
  if (targets.every((target) => target._tag === "None")) return Effect.succeed(null)
  return Readiness.probeAll(targets, { attemptTimeoutMillis: 500, logFile: SharedService.logFile(status.name) }).pipe(
    Effect.as(true),
    Effect.catch(() => Effect.succeed(false))
  )
}

const toStatus = (status: SharedService.ServiceStatus): Effect.Effect<ServiceStatus> =>
  Effect.map(probeNow(status), (ready): ServiceStatus => {
    const info = status.info
    return {
      name: status.name,
      state: status.running ? "running" : "stopped",
      pid: info?.pid ?? null,
      port: info?.port ?? null,
      clients: status.exact ? status.count : null,
      command: info?.metadata["command"] ?? null,
      startedAt: info?.metadata["startedAt"] ?? null,
      ready,
      fingerprint: status.fingerprint ?? null
    }
  })

/** `effect` on the database's counter when a backend is given (its sessions closed after), else the kernel's. */
const on = <A>(backend: string | undefined, service: string, effect: Effect.Effect<A, QuiesceError | SharedServiceError.SharedServiceError>) =>
  (backend === undefined ? effect : Effect.provide(effect, RefCounter.postgres({ url: backend }))).pipe(
    Effect.mapError((error) => isQuiesceError(error) ? error : failure(service)(error))
  )

const status = (name: string, backend?: string) =>
  on(backend, name, Effect.flatMap(SharedService.inspect(name), toStatus))

const list = (backend?: string) =>
  on(backend, "*", Effect.flatMap(SharedService.list, (all) => Effect.forEach(all, toStatus, { concurrency: 4 })))

const stop = (name: string, options: { readonly timeoutMillis: number; readonly backend?: string | undefined }) =>
  on(options.backend, name, Effect.gen(function*() {
    const before = yield* SharedService.inspect(name)
    const stopped = yield* SharedService.forceStop(name, { timeout: options.timeoutMillis })
    const report: StopReport = {
      name,
      stopped,
      pid: before.info?.pid ?? null,
      clients: before.exact ? before.count : null
    }
    return report
  }))

/**
 * The `Manager` on the platform's shared-service kernel objects. Needs a `ChildProcessSpawner`
 * to start services.
 */
export const layer: Layer.Layer<Manager, never, ChildProcessSpawner> = Layer.effect(
  Manager,
  // Only the spawner: a captured context would also carry this layer's Scope, and the
  // references would then be released with the layer, not with the caller's scope.
  Effect.map(Effect.service(ChildProcessSpawner), (spawner) =>
    Manager.of({
      acquire: (definition, progress) => Effect.provideService(acquire(definition, progress), ChildProcessSpawner, spawner),
      prepareExec: (service) => Effect.mapError(SharedService.prepareExec(service), failure(service)),
      status,
      list,
      stop,
      logs
    }))
)
