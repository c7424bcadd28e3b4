/**
 * Shared services for test runners, acquired in-process: the services of `quiesce.config.json`
 * held by the test runner's main process for as long as it runs its tests, as `quiesce run`
 * holds them for its command.
 *
 * `services(names)` is a global setup function for vitest (the default export of a
 * `globalSetup` file) and for Playwright (its `globalSetup`): it starts each service unless
 * another process already holds it (another test run, a `quiesce run`, `quiesce up`), waits
 * until it is ready, and puts its coordinates in `process.env` (`QUIESCE_<NAME>_PORT`,
 * `QUIESCE_<NAME>_PID`), which both runners hand to the workers they start; the teardown it
 * returns releases the services. The references are the kernel's (SysV semaphores with
 * `SEM_UNDO`): a runner killed with SIGKILL drops its own, and a service stops after its grace
 * period once its last holder is gone, whoever that was.
 *
 * ```ts
 * // vitest.config.ts: export default defineConfig({ test: { globalSetup: ["./test/services.ts"] } })
 * // test/services.ts:
 * import { GlobalSetup } from "@quiesce/cli"
 *
 * export default GlobalSetup.services(["db"])
 * ```
 *
 * `acquire(names)` is the same as an Effect, for a program of its own. Both need
 * `@effect/platform-node` (an optional peer dependency of this package), which they load when
 * first called.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Scope from "effect/Scope"
import { SharedService, type SharedServiceError } from "@quiesce/shared-service"
import { acquireAll, environment, select } from "./internal/run.ts"
import { layer as managerLayer } from "./internal/shared.ts"
import * as QuiesceConfig from "./QuiesceConfig.ts"
import { isQuiesceError, outputLines, type QuiesceError, UsageError } from "./QuiesceError.ts"

/**
 * Where the services come from, and how their start is shown.
 *
 * @example
 * ```ts
 * import type { GlobalSetup } from "@quiesce/cli"
 *
 * const options: GlobalSetup.Options = { config: "test/quiesce.config.json", quiet: true }
 * console.log(options.config) // test/quiesce.config.json
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where the config file is looked for, upward (default: the working directory); also what a relative `config` is relative to. */
  readonly cwd?: string | undefined
  /** The config file, instead of the nearest `quiesce.config.json` (or `package.json` with a `"quiesce"` key). */
  readonly config?: string | undefined
  /** No progress lines on stderr while a service starts (default: shown, as `quiesce run` shows them). */
  readonly quiet?: boolean | undefined
}

/**
 * A held reference to a ready service.
 *
 * @example
 * ```ts
 * import type { GlobalSetup } from "@quiesce/cli"
 *
 * const lease: GlobalSetup.Lease = { name: "db", pid: 4242, port: 5432, started: true }
 * console.log(`${lease.name} on port ${lease.port}`) // db on port 5432
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Lease {
  readonly name: string
  /** The service's process; none for one shared through a database (it runs elsewhere). */
  readonly pid: number | undefined
  /** Where it runs, for a service shared through a database. */
  readonly host?: string | undefined
  /** Its port, when its definition names one (or `"auto"`, or a readiness target's). */
  readonly port: number | undefined
  /** Whether this acquisition started it (`false`: it was running, held by others). */
  readonly started: boolean
  /**
   * Completes if the reference is lost while held: a service shared through a database whose
   * session ended (the server restarted, the network was cut). Never, for a local service.
   */
  readonly lost?: Effect.Effect<SharedServiceError.SessionLost> | undefined
}

/**
 * What `acquire` holds: a lease per service, in the order named, and the variables a test
 * needs to reach them.
 *
 * @example
 * ```ts
 * import type { GlobalSetup } from "@quiesce/cli"
 *
 * const acquired: GlobalSetup.Acquired = {
 *   leases: [{ name: "db", pid: 4242, port: 5432, started: false }],
 *   env: { QUIESCE_DB_PORT: "5432", QUIESCE_DB_PID: "4242" }
 * }
 * console.log(acquired.env["QUIESCE_DB_PORT"]) // 5432
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Acquired {
  readonly leases: ReadonlyArray<Lease>
  /**
   * What `quiesce run` adds to its command's environment: `QUIESCE_<NAME>_PORT` (when the
   * service has a port) and `QUIESCE_<NAME>_PID` for each service (`my-db`: `QUIESCE_MY_DB_*`);
   * with one service, also `QUIESCE_SERVICE_NAME`, `QUIESCE_SERVICE_PID` and `QUIESCE_SERVICE_PORT`.
   */
  readonly env: Readonly<Record<string, string>>
}

/** `@effect/platform-node`'s process spawner, loaded on first use: the package must not need it to load. */
const platform: Effect.Effect<Layer.Layer<ChildProcessSpawner>, UsageError> = Effect.tryPromise({
  try: async () => {
    const [spawner, fileSystem, path] = await Promise.all([
      import("@effect/platform-node/NodeChildProcessSpawner"),
      import("@effect/platform-node/NodeFileSystem"),
      import("@effect/platform-node/NodePath")
    ])
    return Layer.provide(spawner.layer, Layer.merge(fileSystem.layer, path.layer))
  },
  catch: (cause) =>
    new UsageError({
      message: (cause as NodeJS.ErrnoException | undefined)?.code === "ERR_MODULE_NOT_FOUND"
        ? "GlobalSetup needs @effect/platform-node, an optional peer dependency of @quiesce/cli: npm install --save-dev @effect/platform-node"
        : `GlobalSetup could not load @effect/platform-node: ${cause instanceof Error ? cause.message : String(cause)}`
    })
})

const definitionsOf = (names: ReadonlyArray<string>, options: Options | undefined) =>
  Effect.flatMap(QuiesceConfig.load({ cwd: options?.cwd, file: options?.config }), (config) => select(config, names))

/**
 * Acquires the services `names` of the config file, in order, for the lifetime of the scope:
 * each is started unless another process holds it, and is ready when this succeeds. Closing
 * the scope releases them (a service stops after its grace period once no one holds it); so
 * does the end of this process, however it ends. A failure releases those already acquired.
 *
 * Fails with a `QuiesceError`: `ConfigError` (no config file, an invalid one, an unknown name),
 * `UsageError` (no names, or `@effect/platform-node` missing), or the service's own (it did not
 * start, was not ready in time, its port is taken).
 *
 * @example
 * ```ts
 * import { GlobalSetup } from "@quiesce/cli"
 * import { Effect } from "effect"
 * import { mkdtempSync, writeFileSync } from "node:fs"
 * import { tmpdir } from "node:os"
 * import { join } from "node:path"
 *
 * const project = mkdtempSync(join(tmpdir(), "app-"))
 * writeFileSync(join(project, "quiesce.config.json"), JSON.stringify({
 *   services: { web: { command: "quiesce-demo-service", port: "auto", grace: "0s" } }
 * }))
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const { leases, env } = yield* GlobalSetup.acquire(["web"], { cwd: project, quiet: true })
 *   const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${env["QUIESCE_WEB_PORT"]}/health`))
 *   const health = yield* Effect.promise(() => response.text())
 *   return [leases[0]?.started, Object.keys(env).filter((key) => key.startsWith("QUIESCE_WEB_")), health.trim()]
 * }))
 * console.log(await Effect.runPromise(program)) // [ true, [ "QUIESCE_WEB_PORT", "QUIESCE_WEB_PID" ], "ok" ]
 * ```
 *
 * @since 0.1.0
 * @category acquiring
 */
export const acquire = (
  names: ReadonlyArray<string>,
  options?: Options
): Effect.Effect<Acquired, QuiesceError, Scope.Scope> =>
  Effect.gen(function*() {
    const definitions = yield* definitionsOf(names, options)
    const manager = yield* Layer.build(Layer.provide(managerLayer, yield* platform))
    const leases = yield* acquireAll(definitions, { quiet: options?.quiet ?? false }).pipe(Effect.provide(manager))
    return { leases, env: environment(leases, {}) }
  })

/**
 * Sets `env` on `process.env`, also removing the `QUIESCE_SERVICE_*` variables it does not set
 * (an outer `quiesce run`'s: they would name another service); returns what restores them.
 */
const applyEnv = (leases: ReadonlyArray<Lease>): () => void => {
  const next = environment(leases, process.env)
  const before = new Map<string, string | undefined>()
  for (const key of new Set([...Object.keys(next), ...Object.keys(process.env)])) {
    const value = next[key]
    if (process.env[key] === value) continue
    before.set(key, process.env[key])
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  return () => {
    for (const [key, value] of before) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
}

/**
 * A global setup function: when called, it acquires the services `names` (as `acquire`) in
 * this process, sets their variables on `process.env` and resolves to the teardown, which
 * releases them and restores `process.env`. It rejects with the `QuiesceError` when a service
 * cannot be acquired (its message is one or two lines, as `quiesce run` prints it; its stack,
 * what runners print, adds the service's last output when it failed to start).
 *
 * For vitest, the default export of a `globalSetup` file: vitest starts its workers after the
 * global setup, with `process.env` as it is then (in every pool; `forks`, the default, and
 * `threads` are tested), so `project.provide` is not needed. For Playwright, the default export
 * of its `globalSetup` file (a global setup that returns a function has it as its global
 * teardown); its workers get the variables the same way. Each call holds references of its own.
 *
 * @example
 * ```ts
 * import { GlobalSetup } from "@quiesce/cli"
 * import { mkdtempSync, writeFileSync } from "node:fs"
 * import { tmpdir } from "node:os"
 * import { join } from "node:path"
 *
 * const project = mkdtempSync(join(tmpdir(), "app-"))
 * writeFileSync(join(project, "quiesce.config.json"), JSON.stringify({
 *   services: { api: { command: "quiesce-demo-service", port: "auto", grace: "0s" } }
 * }))
 *
 * // In a vitest globalSetup file: export default GlobalSetup.services(["api"])
 * const setup = GlobalSetup.services(["api"], { cwd: project, quiet: true })
 * const teardown = await setup()
 * const response = await fetch(`http://127.0.0.1:${process.env["QUIESCE_API_PORT"]}/health`)
 * console.log((await response.text()).trim()) // ok
 * await teardown()
 * console.log(process.env["QUIESCE_API_PORT"]) // undefined
 *
 * const missing = await GlobalSetup.services(["db"], { cwd: project })().catch((error) => error)
 * console.log(missing._tag, missing.message.endsWith(`services: no service "db" (defined: api)`)) // ConfigError true
 * ```
 *
 * @since 0.1.0
 * @category test runners
 */
export const services = (
  names: ReadonlyArray<string>,
  options?: Options
): () => Promise<() => Promise<void>> =>
async () => {
  const scope = Scope.makeUnsafe()
  const exit = await Effect.runPromiseExit(Scope.provide(acquire(names, options), scope))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, exit))
    throw presentable(Cause.squash(exit.cause))
  }
  const restore = applyEnv(exit.value.leases)
  let released: Promise<void> | undefined
  return () =>
    released ??= Effect.runPromise(Effect.sync(restore).pipe(
      Effect.andThen(Scope.close(scope, Exit.void)),
      // The last one out stops a database-shared service it started (or leaves it to a standby).
      Effect.andThen(SharedService.awaitHandover)
    ))
}

/**
 * The error as a runner shows it: its name and message, then for a failed start the
 * service's last output, instead of a stack of Effect's internals that says nothing about it.
 */
const presentable = (error: unknown): unknown => {
  if (!isQuiesceError(error) || !(error instanceof Error)) return error
  const detail = error._tag === "ServiceStartError" || error._tag === "NotReadyError" ? `\n${outputLines(error).join("\n")}` : ""
  Object.defineProperty(error, "stack", { value: `${error._tag}: ${error.message}${detail}`, configurable: true, writable: true })
  return error
}
