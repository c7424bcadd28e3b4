/**
 * `quiesce run`: which services, defined where, and how their acquisition is shown.
 *
 * Either one service defined on the command line (`--name` and `--service`: the command starts
 * where quiesce's options end), or services defined in the config file, named before `--`:
 * `quiesce run db cache -- npm test`. They are acquired in order and released together (the
 * command holds them all), and each one's coordinates reach the command's environment.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import { statSync, writeSync } from "node:fs"
import { SharedService } from "@quiesce/shared-service"
import * as QuiesceConfig from "../QuiesceConfig.ts"
import type { Definition, Output } from "../QuiesceConfig.ts"
import { ConfigError, formatMillis, type QuiesceError, UsageError } from "../QuiesceError.ts"
import type * as Readiness from "../Readiness.ts"
import { type Lease, Manager, type Progress } from "./manager.ts"

/** `run`'s parsed flags and arguments. */
export interface RunInput {
  readonly name: Option.Option<string>
  readonly service: Option.Option<string>
  readonly ready: ReadonlyArray<Readiness.Target>
  readonly expect: Option.Option<ReadonlyArray<Readiness.StatusRange>>
  readonly insecure: boolean
  readonly port: Option.Option<number | "auto">
  readonly grace: Option.Option<number>
  readonly startTimeout: Option.Option<number>
  readonly readyTimeout: Option.Option<number>
  readonly stopSignal: Option.Option<string>
  readonly stopTimeout: Option.Option<number>
  readonly serviceOutput: Option.Option<Output>
  readonly quiet: boolean
  readonly config: Option.Option<string>
  readonly backend: Option.Option<string>
  readonly command: ReadonlyArray<string>
}

export interface Plan {
  readonly definitions: ReadonlyArray<Definition>
  readonly command: ReadonlyArray<string>
}

/** The flags that define a service on the command line, by their input key. */
const definitionFlags = {
  ready: "--ready",
  expect: "--expect",
  insecure: "--insecure",
  port: "--port",
  grace: "--grace",
  startTimeout: "--start-timeout",
  readyTimeout: "--ready-timeout",
  stopSignal: "--stop-signal",
  stopTimeout: "--stop-timeout"
} as const

const usage = (message: string) => new UsageError({ message })

const isDirectory = (path: string): boolean => {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** The service defined by `--name` and `--service`, the rest from its flags. */
const fromFlags = (input: RunInput, name: string, command: string): Definition =>
  QuiesceConfig.define({
    name,
    command,
    cwd: process.cwd(),
    port: Option.getOrUndefined(input.port),
    ready: QuiesceConfig.withHttpOptions(input.ready, { expect: Option.getOrUndefined(input.expect), insecure: input.insecure }),
    readyTimeoutMillis: Option.getOrElse(input.readyTimeout, () => QuiesceConfig.defaults.readyTimeoutMillis),
    graceMillis: Option.getOrElse(input.grace, () => QuiesceConfig.defaults.graceMillis),
    startTimeoutMillis: Option.getOrElse(input.startTimeout, () => QuiesceConfig.defaults.startTimeoutMillis),
    stopSignal: Option.getOrElse(input.stopSignal, () => QuiesceConfig.defaults.stopSignal),
    stopTimeoutMillis: Option.getOrElse(input.stopTimeout, () => QuiesceConfig.defaults.stopTimeoutMillis)
  })

/** The services named before `--`, from the config file. */
const fromConfig = (input: RunInput): Effect.Effect<Plan, QuiesceError> =>
  Effect.gen(function*() {
    if (Option.isSome(input.name)) {
      return yield* usage(
        "--name goes with --service (a service defined on the command line); a service from the config file is named before --: quiesce run NAME -- COMMAND"
      )
    }
    const separator = input.command.indexOf("--")
    if (separator === -1) {
      return yield* usage(
        "put -- between the services and the command (quiesce run NAME... -- COMMAND), or define one with --name and --service"
      )
    }
    const names = input.command.slice(0, separator)
    const command = input.command.slice(separator + 1)
    const option = names.find((name) => name.startsWith("-"))
    if (option !== undefined) return yield* usage(`quiesce's options go before the services: ${option} is not a service name`)
    if (names.length === 0) return yield* usage("name the services to run the command with before -- (or define one with --name and --service)")
    if (command.length === 0) return yield* usage("no command after --")
    const given = Object.entries(definitionFlags).filter(([key]) => {
      const value: unknown = input[key as keyof typeof definitionFlags]
      return Array.isArray(value) ? value.length > 0 : value === true || (Option.isOption(value) && Option.isSome(value))
    })
    const config = yield* QuiesceConfig.load({
      file: Option.getOrUndefined(input.config),
      backend: Option.getOrUndefined(input.backend)
    })
    if (given.length > 0) {
      return yield* usage(
        `${given.map(([, flag]) => flag).join(", ")} define a service on the command line (with --service); ` +
          `${names.join(", ")} ${names.length === 1 ? "is" : "are"} defined in ${config.file}`
      )
    }
    const definitions = yield* select(config, names)
    // A directory that is not there fails here, in the file's terms, not as a spawn error.
    const missing = definitions.find((d) => !isDirectory(d.cwd))
    if (missing !== undefined) {
      return yield* new ConfigError({ file: config.file, path: `services.${missing.name}.cwd`, problem: `${missing.cwd} is not a directory` })
    }
    return { definitions, command }
  })

/** The definitions of `names`, in order: each named once, and no two sharing their variables. */
export const select = (
  config: QuiesceConfig.Config,
  names: ReadonlyArray<string>
): Effect.Effect<ReadonlyArray<Definition>, QuiesceError> =>
  Effect.gen(function*() {
    if (names.length === 0) return yield* usage("name the services to acquire")
    const duplicate = names.find((name, i) => names.indexOf(name) !== i)
    if (duplicate !== undefined) return yield* usage(`service ${JSON.stringify(duplicate)} is named twice`)
    const definitions = yield* QuiesceConfig.select(config, names)
    const collision = names.find((name, i) => names.findIndex((other) => envName(other) === envName(name)) !== i)
    if (collision !== undefined) {
      return yield* usage(
        `services ${names.filter((n) => envName(n) === envName(collision)).join(" and ")} would share the variables QUIESCE_${envName(collision)}_*`
      )
    }
    return definitions
  })

export const plan = (input: RunInput): Effect.Effect<Plan, QuiesceError> =>
  Effect.gen(function*() {
    const output = Option.getOrUndefined(input.serviceOutput)
    const withOutput = (plan: Plan): Plan =>
      output === undefined ? plan : { ...plan, definitions: plan.definitions.map((d) => ({ ...d, output })) }
    if (Option.isSome(input.service)) {
      if (Option.isNone(input.name)) return yield* usage("--service needs --name: the name every `quiesce run` sharing it uses")
      if (Option.isSome(input.backend)) {
        return yield* usage("--backend is for the config file's services with a start command; a --service runs here, on the kernel's counters")
      }
      return withOutput({ definitions: [fromFlags(input, input.name.value, input.service.value)], command: input.command })
    }
    return withOutput(yield* fromConfig(input))
  })

/** A service name as it appears in environment variables: `my-db` is `QUIESCE_MY_DB_PORT`. */
export const envName = (name: string): string => name.toUpperCase().replace(/[^A-Z0-9]/g, "_")

/**
 * The command's environment: quiesce's own, with each service's `QUIESCE_<NAME>_PORT` and
 * `QUIESCE_<NAME>_PID` (`_HOST` for a remote one); with one service, also `QUIESCE_SERVICE_NAME`,
 * `_PID` and `_PORT`.
 */
export const environment = (leases: ReadonlyArray<Lease>, base: NodeJS.ProcessEnv = process.env): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(base)) if (value !== undefined) env[key] = value
  const set = (key: string, value: string | number | undefined) => {
    if (value === undefined) delete env[key]
    else env[key] = String(value)
  }
  for (const lease of leases) {
    set(`QUIESCE_${envName(lease.name)}_PORT`, lease.port)
    set(`QUIESCE_${envName(lease.name)}_PID`, lease.pid)
    set(`QUIESCE_${envName(lease.name)}_HOST`, lease.host)
  }
  const only = leases.length === 1 ? leases[0] : undefined
  set("QUIESCE_SERVICE_NAME", only?.name)
  set("QUIESCE_SERVICE_PID", only?.pid)
  set("QUIESCE_SERVICE_PORT", only?.port)
  return env
}

const tty = (): boolean => process.getBuiltinModule("node:tty").isatty(2)

/** Written straight to descriptor 2: creating `process.stderr` would make it non-blocking, for the command to inherit. */
const write = (text: string) => {
  try {
    writeSync(2, text)
  } catch {
    // A closed or full stderr loses progress lines, nothing else.
  }
}

/**
 * While `effect` waits for `name`: on a terminal, one line rewritten in place ("waiting for db:
 * tcp:localhost:5432 (3.2s)"), erased once done; elsewhere, a plain line after a second and
 * another every ten, then one saying it is ready. Nothing when `quiet`, or when it is quick.
 */
const withProgress = <A, E, R>(
  name: string,
  progress: Progress,
  quiet: boolean,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => {
  if (quiet) return effect
  return Effect.suspend(() => {
    const start = Date.now()
    const terminal = tty()
    let shown = false
    const elapsed = () => formatMillis(Date.now() - start)
    const what = () => `${name}: ${progress.target ?? "starting"}`
    const ticker = terminal
      ? Effect.andThen(
        Effect.sleep(250),
        Effect.forever(Effect.andThen(
          Effect.sync(() => {
            shown = true
            // Cut to the terminal's width: a wrapped line would not be erased by the next one.
            const width = Math.max(20, (process.stderr.columns || 80) - 1)
            const line = `quiesce: waiting for ${what()} (${elapsed()})`
            write(`\r\x1b[2K${line.length > width ? `${line.slice(0, width - 1)}…` : line}`)
          }),
          Effect.sleep(100)
        ))
      )
      : Effect.andThen(
        Effect.sleep(1_000),
        Effect.andThen(
          Effect.sync(() => {
            shown = true
            write(`quiesce: waiting for ${what()}\n`)
          }),
          Effect.forever(Effect.andThen(
            Effect.sleep(10_000),
            Effect.sync(() =>
              write(`quiesce: still waiting for ${name} (${elapsed()})${progress.lastFailure === undefined ? "" : `: ${progress.lastFailure}`}\n`)
            )
          ))
        )
      )
    return Effect.gen(function*(): Effect.fn.Return<A, E, R> {
      const fiber = yield* Effect.forkChild(ticker)
      return yield* effect.pipe(
        Effect.onExit((exit) =>
          Effect.andThen(
            Fiber.interrupt(fiber),
            Effect.sync(() => {
              if (!shown) return
              if (terminal) write("\r\x1b[2K")
              else if (exit._tag === "Success") write(`quiesce: ${name} is ready (${elapsed()})\n`)
            })
          )
        )
      )
    })
  })
}

/**
 * Copies the output of a service this run started onto its stderr (`inherit`; `prefix`: each
 * line led by `[name] `), from the instance's first line, until the command (this process, once
 * it has become the command) exits. Done by `tail --pid` in the background, detached from the
 * command's job: nothing of quiesce runs after the exec.
 */
const showOutput = (name: string, output: Output): Effect.Effect<void> =>
  output === "file" ? Effect.void : Effect.callback<void>((resume) => {
    const child = spawn("/bin/sh", [
      "-c",
      // The supervisor's own lines (it writes to the same log) are left out.
      `tail -n +1 -s 0.2 -f --pid="$1" -- "$2" 2>/dev/null | sed -u -e '/^\\[quiesce supervisor /d' -e "s/^/$3/" >&2 &`,
      "sh",
      String(process.pid),
      SharedService.logFile(name),
      output === "prefix" ? `[${name}] ` : ""
    ], { stdio: ["ignore", "ignore", "inherit"] })
    // The shell exits once the pipeline is in the background: reaped here, not left to the command.
    child.once("exit", () => resume(Effect.void))
    child.once("error", () => resume(Effect.void))
  })

/**
 * Acquires every service in order (a later one failing releases the earlier ones, with the
 * scope), each with its progress line, and shows the output of those this run started as asked.
 */
export const acquireAll = (
  definitions: ReadonlyArray<Definition>,
  options: { readonly quiet: boolean }
): Effect.Effect<ReadonlyArray<Lease>, QuiesceError, Manager | Scope.Scope> =>
  Effect.flatMap(Manager, (manager) =>
    Effect.forEach(definitions, (definition) => {
      const progress: Progress = { target: undefined, lastFailure: undefined }
      return withProgress(definition.name, progress, options.quiet, manager.acquire(definition, progress)).pipe(
        Effect.tap((lease) => lease.started ? showOutput(definition.name, definition.output) : Effect.void)
      )
    }))
