/**
 * A service shared across machines: started and stopped by the user's commands (a `docker -H`,
 * a `kubectl`, an `ssh`), its references held by sessions of a PostgreSQL database
 * (`RefCounter.postgres`), supervised in-process by the client that started it (a standby in
 * another client takes over when that one's process or machine is gone).
 *
 * `start` runs to completion (exit 0: started; its output, trimmed, is the instance's
 * `QUIESCE_START_OUTPUT`, e.g. a container id), then the readiness targets are polled within the
 * start timeout; `stop` runs with `QUIESCE_START_OUTPUT` once the last client is gone and the
 * grace period has passed, bounded by the stop timeout. Either is killed with its process group
 * when it overruns or fails (what a successful `start` leaves running in its group is the service).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChildProcess from "effect/process/ChildProcess"
import { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Stream from "effect/Stream"
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import * as QuiesceConfig from "../QuiesceConfig.ts"
import type { Definition, Remote } from "../QuiesceConfig.ts"
import { ServiceStartError } from "../QuiesceError.ts"
import * as Readiness from "../Readiness.ts"
import type { Progress } from "./manager.ts"
import { describeTargets, targetsOf } from "./targets.ts"

/** Kept of a command's output: enough for a container id or an error, bounded. */
const outputLimit = 16 * 1024

const text = (stream: Stream.Stream<Uint8Array, unknown>) =>
  stream.pipe(
    Stream.decodeText(),
    Stream.runFold(() => "", (all, chunk) => (all.length >= outputLimit ? all : (all + chunk).slice(0, outputLimit)))
  )

interface Ran {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** `/bin/sh -c command` to completion within `timeoutMillis` (else its group is killed and it fails). */
const shell = (command: string, options: {
  readonly cwd: string
  readonly env: Record<string, string>
  readonly timeoutMillis: number
}): Effect.Effect<Ran, string, ChildProcessSpawner> =>
  Effect.scoped(Effect.gen(function*() {
    const spawner = yield* ChildProcessSpawner
    const handle = yield* spawner.spawn(ChildProcess.make("/bin/sh", ["-c", command], {
      cwd: options.cwd,
      env: options.env,
      extendEnv: false,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      // Its own group, killed as a whole if it overruns (the scope's release).
      detached: true
    }))
    const [stdout, stderr, code] = yield* Effect.all([text(handle.stdout), text(handle.stderr), handle.exitCode], {
      concurrency: "unbounded"
    })
    // What a successful command left running in its group is the service (`pg_ctl start`, a
    // `nohup … &`): the scope's release must not kill it. A failed or overrunning one's group goes.
    if (code === 0) yield* handle.unref
    return { code: Number(code), stdout: stdout.trim(), stderr: stderr.trim() }
  })).pipe(
    Effect.mapError((error) => String((error as { readonly message?: unknown }).message ?? error)),
    Effect.timeoutOrElse({
      duration: options.timeoutMillis,
      orElse: () => Effect.fail(`did not finish within ${options.timeoutMillis}ms (killed)`)
    })
  )

const lastLines = (ran: Ran): string | undefined => {
  const all = [ran.stderr, ran.stdout].filter((s) => s !== "").join("\n")
  return all === "" ? undefined : all.split("\n").slice(-10).join("\n")
}

/** The environment of `start`, `stop` and the `cmd:` probes. */
const environmentOf = (definition: Definition, remote: Remote) => ({
  ...process.env as Record<string, string>,
  ...definition.env,
  QUIESCE_SERVICE_NAME: definition.name,
  QUIESCE_SERVICE_HOST: remote.host,
  ...(typeof definition.port === "number" ? { PORT: String(definition.port), QUIESCE_SERVICE_PORT: String(definition.port) } : {})
})

/**
 * Holds a reference to the remote `definition` for the scope, starting it if no one (on any
 * machine) holds it. The database's sessions live in the scope too.
 */
export const acquire = (definition: Definition, remote: Remote, progress: Progress) =>
  Effect.gen(function*() {
    const counter = yield* Layer.build(RefCounter.postgres({ url: remote.backend }))
    const env = environmentOf(definition, remote)
    const targets = targetsOf(definition, typeof definition.port === "number" ? definition.port : undefined, remote.host)
    progress.target = describeTargets(targets, "started")
    const probeOptions = { attemptTimeoutMillis: definition.readyTimeoutMillis, cwd: definition.cwd, env }
    const failed = (reason: string, ran?: Ran) =>
      new ServiceStartError({
        service: definition.name,
        reason,
        ...(ran === undefined || lastLines(ran) === undefined ? {} : { output: lastLines(ran)! })
      })
    const stop = (startOutput: string) =>
      remote.stop === undefined
        ? Effect.void
        : Effect.ignore(shell(remote.stop, {
          cwd: definition.cwd,
          env: { ...env, QUIESCE_START_OUTPUT: startOutput },
          timeoutMillis: definition.stopTimeoutMillis
        }))
    const start = Effect.gen(function*() {
      const began = Date.now()
      const ran = yield* shell(definition.command, { cwd: definition.cwd, env, timeoutMillis: definition.startTimeoutMillis }).pipe(
        Effect.mapError((reason) => failed(`its start command ${reason}`))
      )
      if (ran.code !== 0) return yield* failed(`its start command exited with status ${ran.code}`, ran)
      yield* Readiness.waitUntilReady(targets, {
        ...probeOptions,
        service: definition.name,
        timeoutMillis: Math.max(0, definition.startTimeoutMillis - (Date.now() - began))
      }).pipe(Effect.tapError(() => stop(ran.stdout)))
      return ServiceInfo.make({
        pid: 0,
        ...(typeof definition.port === "number" ? { port: definition.port } : {}),
        metadata: {
          host: remote.host,
          startOutput: ran.stdout,
          command: definition.command,
          definition: QuiesceConfig.identity(definition),
          startedAt: new Date().toISOString()
        }
      })
    })
    const service = SharedService.makeUnsafe({
      name: definition.name,
      start,
      stop: (info) => stop(info.metadata["startOutput"] ?? ""),
      ...(targets.length === 0 ? {} : {
        healthCheck: () => Readiness.probeAll(targets, probeOptions)
      }),
      fingerprint: QuiesceConfig.fingerprint(definition),
      idleTimeToLive: definition.graceMillis,
      startTimeout: definition.startTimeoutMillis + 1_000,
      stopTimeout: definition.stopTimeoutMillis
    })
    const handle = yield* Effect.provideContext(SharedService.acquire(service), counter)
    return {
      name: definition.name,
      pid: undefined,
      host: remote.host,
      port: handle.info.port,
      started: handle.started,
      lost: handle.lost
    }
  })
