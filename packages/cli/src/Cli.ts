/**
 * The `quiesce` command line: `run`, `status`, `list`, `stop` and `logs`, built with `effect/cli`.
 *
 * `main(argv)` parses, runs, prints errors in one or two lines on stderr and returns the process exit
 * code; `bin.ts` is a thin shell around it.
 *
 * @since 0.1.0
 */
import * as Command from "effect/cli/Command"
import * as CliConfig from "effect/cli/CliConfig"
import * as CliError from "effect/cli/CliError"
import * as GlobalFlag from "effect/cli/GlobalFlag"
import * as CliOutput from "effect/cli/CliOutput"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { SharedService } from "@quiesce/shared-service"
import * as Argv from "./internal/argv.ts"
import * as Exec from "./internal/exec.ts"
import * as Run from "./internal/run.ts"
import * as Up from "./internal/up.ts"
import * as Flags from "./internal/flags.ts"
import { statusDetail, statusTable, stopLine, toJson } from "./internal/format.ts"
import { Manager } from "./internal/manager.ts"
import { runCommand } from "./internal/runCommand.ts"
import { layer as managerLayer } from "./internal/shared.ts"
import { CommandError, ExitCode, isQuiesceError, render } from "./QuiesceError.ts"

/**
 * The package's version, as its package.json says (one level up from both `src/` and `dist/`,
 * where the bundle is too). `quiesce --version` prints it.
 *
 * @example
 * ```ts
 * import { Cli } from "@quiesce/cli"
 *
 * console.log(`quiesce ${Cli.version}`) // quiesce 0.1.0
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const version: string = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version

/** The exit code a handler decided, for `main` to return (handlers themselves return void). */
class ExitStatus extends Context.Service<ExitStatus, { code: number }>()("@quiesce/cli/Cli/ExitStatus") {}

const setExitCode = (code: number) => Effect.map(Effect.service(ExitStatus), (status) => {
  status.code = code
})

/** Prints a result, as JSON with `--json`; a result that is not `ok` makes the exit code 1. */
const report = <A>(json: boolean, value: A, text: (value: A) => string, ok: (value: A) => boolean) =>
  Effect.andThen(Console.log(json ? toJson(value) : text(value)), ok(value) ? Effect.void : setExitCode(1))

const runFlags = {
  name: Flags.name,
  service: Flags.service,
  ready: Flags.ready,
  expect: Flags.expect,
  insecure: Flags.insecure,
  port: Flags.port,
  grace: Flags.grace,
  startTimeout: Flags.startTimeout,
  readyTimeout: Flags.readyTimeout,
  stopSignal: Flags.stopSignal,
  stopTimeout: Flags.stopTimeout,
  serviceOutput: Flags.serviceOutput,
  quiet: Flags.quiet,
  config: Flags.config,
  backend: Flags.backend
}

/** The flags of `run` that take a value, for `Argv.delimit`. */
const runValueFlags = Argv.valueFlags(Object.values(runFlags))

const run = Command.make("run", { ...runFlags, command: Flags.command }, (input) =>
  Effect.gen(function*() {
    const plan = yield* Run.plan(input)
    // Before anything starts: a command that cannot run needs no service.
    const program = Exec.resolve(plan.command)
    if (program instanceof CommandError) return yield* program
    const manager = yield* Manager
    // Scoped, but on the exec path the scope is never closed: the references outlive this
    // process's code, held by the command the process becomes, until it exits.
    // A reference on a database is a session of this process: it stays the client, the command its child.
    const remote = plan.definitions.some((definition) => definition.remote !== undefined)
    yield* Effect.scoped(Effect.gen(function*() {
      const leases = yield* Run.acquireAll(plan.definitions, { quiet: input.quiet })
      const env = Run.environment(leases)
      if (Exec.available() && !remote) {
        for (const lease of leases) yield* manager.prepareExec(lease.name)
        return yield* Exec.replace(program, env)
      }
      // No execve (Windows, Node < 22.15), or a remote service: run the command as a child, forward signals, wait.
      // A database session lost meanwhile is said at once: the service may be stopped or replaced under the command.
      yield* Effect.forkScoped(Effect.forEach(leases, (lease) =>
        lease.lost === undefined ? Effect.void : Effect.flatMap(lease.lost, (lost) =>
          Console.error(`quiesce: ${lost.message}; the command runs on, but "${lease.name}" may be stopped or replaced under it`)),
        { concurrency: "unbounded", discard: true }))
      yield* setExitCode(yield* runCommand(plan.command, env))
    }))
    // The last one out stops what it supervises (or leaves it to another client's standby).
    if (remote) yield* SharedService.awaitHandover
  })).pipe(
    Command.withShortDescription("Run a command with shared services, starting those no one holds"),
    Command.withDescription(
      "Run a command with shared services: start each unless another `quiesce run` already holds it, wait until " +
        "it is ready, then become the command (exec). The services are those named before -- (defined in " +
        "quiesce.config.json, or package.json's \"quiesce\" key, found upward from here), or one defined with " +
        "--name and --service. The command gets QUIESCE_<NAME>_PORT and QUIESCE_<NAME>_PID for each service " +
        "(with one service, also QUIESCE_SERVICE_NAME, QUIESCE_SERVICE_PID and QUIESCE_SERVICE_PORT), and holds " +
        "the references: its exit status, signals and terminal are its own, as if run directly. A service stops " +
        "once its last client has exited (or was killed) and its grace period has passed. A service running with " +
        "another definition (command, directory, environment) is never handed over: it is replaced when no one " +
        "holds it, refused (exit 121) when someone does."
    ),
    Command.withExamples([
      { command: "quiesce run db cache -- npm test", description: "Run npm test with db and cache from quiesce.config.json" },
      {
        command: `quiesce run --name db --service "postgres -D ./data -p 5432" --ready tcp:5432 -- npm test`,
        description: "Share one Postgres between concurrent test runs, defined on the command line"
      },
      {
        command:
          `quiesce run -n web -s "npm run dev" --ready http://localhost:3000/health --grace 30s --service-output prefix -- npx playwright test`,
        description: "Reuse a dev server across back-to-back commands, its output on this terminal"
      },
      {
        command: `quiesce run -n demo -s "quiesce-demo-service" --port auto sh -c 'curl -s localhost:$QUIESCE_SERVICE_PORT'`,
        description: "The embedded demo service on a free port (no -- needed: options end at the command)"
      }
    ])
  )

/** How `up` runs `quiesce run` again: this executable when it is one (its entry recorded the descriptors), else the package's. */
const entry = (): Up.Entry =>
  (globalThis as { [key: symbol]: unknown })[Symbol.for("@quiesce/cli/stdio")] !== undefined && process.argv[1] !== undefined
    ? { file: process.execPath, args: [...process.execArgv, process.argv[1]] }
    : { file: process.execPath, args: [fileURLToPath(new URL("../bin/quiesce.js", import.meta.url))] }

const up = Command.make("up", { names: Flags.names, config: Flags.config, backend: Flags.backend, quiet: Flags.quiet }, (input) =>
  Up.up(entry(), input.names, {
    config: Option.getOrUndefined(input.config),
    backend: Option.getOrUndefined(input.backend),
    quiet: input.quiet
  }).pipe(
    Effect.flatMap((lines) => Console.log(lines.join("\n"))),
    Effect.catchIf((error): error is { readonly exitCode: number } => !("_tag" in error), (error) => setExitCode(error.exitCode))
  )).pipe(
    Command.withShortDescription("Start services from the config file and hold them until quiesce down"),
    Command.withDescription(
      "Start each service (unless it runs already) and hold a reference to it after this command returns, as a " +
        "`quiesce run` would for a command, until `quiesce down` releases it: for a terminal session, or a CI job's " +
        "steps that run one after another."
    ),
    Command.withExamples([{ command: "quiesce up db", description: "Keep db up between the commands that follow" }])
  )

const down = Command.make("down", { names: Flags.names }, (input) =>
  Effect.flatMap(Up.down(input.names), (lines) => Console.log(lines.join("\n")))).pipe(
    Command.withShortDescription("Release what quiesce up holds"),
    Command.withDescription(
      "Release the references `quiesce up` holds: each service then stops after its grace period, unless other " +
        "commands hold it (quiesce stop stops it whoever holds it)."
    ),
    Command.withExamples([{ command: "quiesce down db", description: "Let db stop once nothing else uses it" }])
  )

const status = Command.make("status", {
  name: Flags.positionalName,
  json: Flags.json,
  backend: Flags.backend
}, (input) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    const s = yield* manager.status(input.name, Option.getOrUndefined(input.backend))
    yield* report(input.json, s, (s) => statusDetail(s, Date.now()), (s) => s.state === "running")
  })).pipe(
    Command.withShortDescription("Show one service"),
    Command.withDescription("Show one service: running or not, pid, port, clients, uptime. Exits 1 when it is not running."),
    Command.withExamples([
      { command: "quiesce status db", description: "Is db running, and for whom?" },
      { command: "quiesce status db --json", description: "The same, for scripts" }
    ])
  )

const list = Command.make("list", { json: Flags.json, backend: Flags.backend }, (input) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    const services = yield* manager.list(Option.getOrUndefined(input.backend))
    yield* report(input.json, services, (services) => statusTable(services, Date.now()), () => true)
  })).pipe(
    Command.withAlias("ls"),
    Command.withShortDescription("List this user's services"),
    Command.withDescription("List this user's services: name, state, pid, port, clients, uptime, command."),
    Command.withExamples([
      { command: "quiesce list", description: "A table of services" },
      { command: "quiesce list --json", description: "An array of services" }
    ])
  )

const stop = Command.make("stop", {
  name: Flags.positionalName,
  json: Flags.json,
  backend: Flags.backend
}, (input) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    const stopped = yield* manager.stop(input.name, { timeoutMillis: 10_000, backend: Option.getOrUndefined(input.backend) })
    yield* report(input.json, stopped, stopLine, (r) => r.stopped)
  })).pipe(
    Command.withShortDescription("Stop a service now"),
    Command.withDescription(
      "Stop a service now, whoever holds it (SIGTERM, then SIGKILL after 10s). Commands using it will see it gone."
    ),
    Command.withExamples([{ command: "quiesce stop db", description: "Stop db now" }])
  )

const logs = Command.make("logs", {
  name: Flags.positionalName,
  follow: Flags.follow
}, (input) => Effect.flatMap(Manager, (manager) => manager.logs(input.name, { follow: input.follow }))).pipe(
  Command.withShortDescription("Show a service's output"),
  Command.withDescription(
    "Show the output of the service's current instance (<runtime dir>/NAME.log, fresh at every start); when it is " +
      "not running, its last instance's (NAME.log.1). With --follow, keep printing what it writes until it stops."
  ),
  Command.withExamples([
    { command: "quiesce logs db", description: "What db has printed since it started" },
    { command: "quiesce logs db --follow", description: "And what it prints next, until it stops (or Ctrl-C)" }
  ])
)

/** The `quiesce` command tree. */
const quiesce = Command.make("quiesce").pipe(
  Command.withDescription("Share one local service (a database, an emulator, a dev server) between concurrent commands."),
  Command.withSubcommands([run, up, down, status, list, stop, logs]),
  Command.withExamples([
    {
      command: `quiesce run --name db --service "postgres -D ./data" --ready tcp:5432 -- npm test`,
      description: "Run npm test with a shared Postgres"
    },
    { command: "quiesce list", description: "Which services are running" },
    { command: "quiesce logs db", description: "What it printed" },
    { command: "quiesce stop db", description: "Stop one now" }
  ])
)

/** A suggestion list as a clause: `--name`, `--name or --grace`. */
const didYouMean = (suggestions: ReadonlyArray<string>): string =>
  suggestions.length === 0
    ? ""
    : `; did you mean ${suggestions.slice(0, -1).join(", ")}${suggestions.length > 1 ? " or " : ""}${suggestions.at(-1)}?`

/** effect/cli's message, on one line (its "Did you mean" block is several). */
const oneLine = (error: CliError.CliError): string => {
  switch (error._tag) {
    case "UnrecognizedOption":
      return `Unrecognized flag: ${error.option}${didYouMean(error.suggestions)}`
    case "UnknownSubcommand":
      return `Unknown subcommand "${error.subcommand}"${didYouMean(error.suggestions)}`
    default:
      return error.message.replace(/\s*\n\s*/g, " ")
  }
}

/** Bad invocations print one line, then where to look: the full help is one `--help` away. */
const presenter: CliOutput.Presenter = {
  present: (event) => {
    if (event._tag !== "InvalidInvocation") return CliOutput.defaultPresenter.present(event)
    const first = event.errors[0]
    const where = event.commandPath.join(" ")
    return Console.error(
      `${where}: ${first === undefined ? "invalid invocation" : oneLine(first)} (see '${where} --help')`
    )
  }
}

let defaults: CliOutput.Formatter | undefined
/** Built on first use: it checks whether stdout is a terminal, which opens it, on a path (`run`) that does not need it. */
const base = (): CliOutput.Formatter => defaults ??= CliOutput.defaultFormatter()

/** effect/cli's formatter, except that `run`'s usage line shows where its options end. */
const formatter: CliOutput.Formatter = {
  formatHelpDoc: (doc) =>
    base().formatHelpDoc(
      doc.commandPath?.join(" ") === "quiesce run"
        ? { ...doc, usage: doc.usage.replace(/<command\.\.\.>$/, "[NAME... --] <command> [args...]") }
        : doc
    ),
  formatCliError: (error) => base().formatCliError(error),
  formatError: (error) => base().formatError(error),
  formatErrors: (errors) => base().formatErrors(errors),
  formatVersion: (name, version) => base().formatVersion(name, version)
}

/**
 * Runs `quiesce` with `argv` (without the node and script paths) and returns the exit code.
 * Errors are printed on stderr, each in one or two lines (a failed start adds the service's last
 * output). `NodeServices.layer` of `@effect/platform-node` provides what it needs.
 *
 * `run` replaces the calling process with its command (`process.execve`) where it can: it does
 * not return then. In a worker thread, or without `process.execve`, it runs the command as a
 * child and returns its exit code.
 *
 * @example
 * ```ts
 * import { NodeServices } from "@effect/platform-node"
 * import { Cli } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * // As `quiesce --version`: prints "quiesce v0.1.0" and returns the exit code.
 * const code = await Effect.runPromise(Cli.main(["--version"]).pipe(Effect.provide(NodeServices.layer)))
 * console.log(code) // 0
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const main = (
  argv: ReadonlyArray<string>
): Effect.Effect<number, never, Command.Environment | ChildProcessSpawner> =>
  Effect.suspend(() => {
    const status = { code: 0 }
    return Command.runWith(quiesce, { version })(Argv.delimit(argv, "run", runValueFlags)).pipe(
      Effect.provideService(ExitStatus, status),
      Effect.map(() => status.code)
    )
  }).pipe(
    Effect.provide(CliOutput.layerPresenter(presenter)),
    Effect.provide(CliOutput.layer(formatter)),
    Effect.provide(CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version] })),
    Effect.provide(managerLayer),
    Effect.catch((error) => {
      if (CliError.isCliError(error)) {
        // ShowHelp has been presented: with errors it was a bad invocation; without, a bare
        // `quiesce` that named no subcommand, which is also a usage error.
        return Effect.succeed(ExitCode.usage)
      }
      if (isQuiesceError(error)) {
        return Effect.as(Console.error(render(error)), error.exitCode)
      }
      return Effect.as(Console.error(`quiesce: ${String(error)}`), ExitCode.failure)
    })
  )


