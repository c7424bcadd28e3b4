/**
 * The flags and arguments of `quiesce`, with their parsing. Values are checked here, so a bad
 * invocation is refused by the parser (one line, exit code 2) before anything starts.
 */
import * as Argument from "effect/cli/Argument"
import * as Flag from "effect/cli/Flag"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import { SharedService } from "@quiesce/shared-service"
import * as Readiness from "../Readiness.ts"
import { constants } from "node:os"
import { defaults } from "../QuiesceConfig.ts"
import { formatMillis } from "../QuiesceError.ts"
import { aliveMillis } from "./manager.ts"

const fromResult = <A>(result: Result.Result<A, string>): Option.Option<A> =>
  Result.isSuccess(result) ? Option.some(result.success) : Option.none()

const errorOf = <A>(result: Result.Result<A, string>): string => Result.isFailure(result) ? result.failure : ""

/** The shared-service package's rule (names become file names and semaphore keys). */
const nameIsValid = (name: string): boolean => SharedService.validateName(name) === undefined
const nameRule = "1-64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"

export const name = Flag.String("name").pipe(
  Flag.withAlias("n"),
  Flag.withMetavar("NAME"),
  Flag.withDescription(
    `With --service, a service defined on the command line: every \`quiesce run\` with the same name and ` +
      `definition shares one service (${nameRule})`
  ),
  Flag.filter(nameIsValid, () => nameRule),
  Flag.optional
)

export const positionalName = Argument.String("name").pipe(
  Argument.withDescription(`The service's name (${nameRule})`),
  Argument.filter(nameIsValid, () => nameRule)
)

export const names = Argument.String("name").pipe(
  Argument.withDescription(`The services, as the config file names them (${nameRule})`),
  Argument.filter(nameIsValid, () => nameRule),
  Argument.variadic({ min: 1 })
)

export const service = Flag.String("service").pipe(
  Flag.withAlias("s"),
  Flag.withMetavar("COMMAND"),
  Flag.withDescription(
    "Shell command that starts the service if no one holds it; with a port (--port, or the --ready target's), " +
      "it gets PORT and QUIESCE_SERVICE_PORT in its environment"
  ),
  Flag.filter((value) => value.trim() !== "", () => "a non-empty shell command"),
  Flag.optional
)

const parseReady = (text: string) => Readiness.parse(text)

export const ready = Flag.String("ready").pipe(
  Flag.withMetavar("TARGET"),
  Flag.withDescription(
    "When the service is ready (repeat it: all must pass): tcp:PORT or tcp:HOST:PORT (a connection succeeds), " +
      "http://HOST:PORT/PATH or https://… (an answer with an --expect status, over a verified certificate unless " +
      "--insecure), log:REGEX (a line of the service's output matches), cmd:COMMAND (a shell command exits 0, e.g. " +
      `cmd:"pg_isready -h 127.0.0.1"), or none (at once). Default: tcp:PORT with --port; with neither, once the ` +
      `service has stayed alive for ${aliveMillis}ms. Later clients check the same targets before they join`
  ),
  Flag.filterMap((text) => fromResult(parseReady(text)), (text) => errorOf(parseReady(text))),
  Flag.atLeast(0)
)

export const expect = Flag.String("expect").pipe(
  Flag.withMetavar("STATUSES"),
  Flag.withDescription("The statuses an http(s) --ready target must answer with, e.g. 200,204 or 200-299,404 (default 200-399)"),
  Flag.filterMap((text) => fromResult(Readiness.parseExpect(text)), (text) => errorOf(Readiness.parseExpect(text))),
  Flag.optional
)

export const insecure = Flag.Boolean("insecure").pipe(
  Flag.withDescription("Accept an https --ready target's certificate unverified (a local self-signed one)"),
  Flag.withDefault(false)
)

const parsePort = (text: string): Result.Result<number | "auto", string> => {
  const n = Number(text)
  return text === "auto"
    ? Result.succeed("auto")
    : /^\d{1,5}$/.test(text) && n > 0 && n <= 65535
    ? Result.succeed(n)
    : Result.fail("a port number from 1 to 65535, or auto")
}

export const port = Flag.String("port").pipe(
  Flag.withAlias("p"),
  Flag.withMetavar("PORT|auto"),
  Flag.withDescription(
    "The service's port, given to it as PORT and to the command as QUIESCE_SERVICE_PORT, and probed unless --ready " +
      "says otherwise; auto: a free port quiesce picks (default: the --ready port, else none)"
  ),
  Flag.filterMap((text) => fromResult(parsePort(text)), (text) => errorOf(parsePort(text))),
  Flag.optional
)

/** A duration flag; optional, so that `run` can tell a flag given from a default (config services refuse them). */
const duration = (flag: string, description: string) =>
  Flag.String(flag).pipe(
    Flag.withMetavar("DURATION"),
    Flag.withDescription(description),
    Flag.filterMap(
      (text) => fromResult(Readiness.parseDuration(text)),
      (text) => errorOf(Readiness.parseDuration(text))
    ),
    Flag.optional
  )

export const grace = duration(
  "grace",
  `How long the service outlives its last client, so that back-to-back commands reuse it (default ${formatMillis(defaults.graceMillis)})`
)

export const startTimeout = duration(
  "start-timeout",
  `How long the service may take to become ready (default ${formatMillis(defaults.startTimeoutMillis)})`
)

export const readyTimeout = duration(
  "ready-timeout",
  `Bound on each readiness probe attempt (default ${formatMillis(defaults.readyTimeoutMillis)})`
)

export const stopTimeout = duration(
  "stop-timeout",
  `How long the service has to exit after its stop signal before it is killed (default ${formatMillis(defaults.stopTimeoutMillis)})`
)

const signalNames = new Set(Object.keys(constants.signals))

export const stopSignal = Flag.String("stop-signal").pipe(
  Flag.withMetavar("SIGNAL"),
  Flag.withDescription(`The signal that asks the service to stop, e.g. SIGINT for a graceful shutdown (default ${defaults.stopSignal})`),
  Flag.filter((name) => signalNames.has(name), () => "a signal name such as SIGTERM, SIGINT or SIGQUIT"),
  Flag.optional
)

export const serviceOutput = Flag.Literals("service-output", ["file", "prefix", "inherit"]).pipe(
  Flag.withDescription(
    "Where the output of a service this run starts goes: only its log (file, the default: quiesce logs NAME), " +
      "also this terminal (inherit), or this terminal with each line prefixed by the service's name (prefix)"
  ),
  Flag.optional
)

export const quiet = Flag.Boolean("quiet").pipe(
  Flag.withAlias("q"),
  Flag.withDescription("Print nothing while waiting for services (errors are still printed)"),
  Flag.withDefault(false)
)

export const backend = Flag.String("backend").pipe(
  Flag.withMetavar("URL"),
  Flag.withDescription(
    "The PostgreSQL database (postgres://…) through which services with a start command are shared across " +
      "machines, instead of the config file's backend (local services keep the kernel's counters)"
  ),
  Flag.filter((url) => /^postgres(ql)?:\/\//.test(url), () => "a postgres:// or postgresql:// URL"),
  Flag.optional
)

export const config = Flag.String("config").pipe(
  Flag.withAlias("c"),
  Flag.withMetavar("FILE"),
  Flag.withDescription(
    "The config file defining the services named (default: quiesce.config.json, or package.json's \"quiesce\" key, " +
      "in the working directory or the nearest directory above)"
  ),
  Flag.optional
)

export const follow = Flag.Boolean("follow").pipe(
  Flag.withAlias("f"),
  Flag.withDescription("Keep printing the service's output as it comes, until the service stops (or Ctrl-C)"),
  Flag.withDefault(false)
)

export const json = Flag.Boolean("json").pipe(
  Flag.withDescription("Print machine-readable JSON"),
  Flag.withDefault(false)
)

export const command = Argument.String("command").pipe(
  Argument.withDescription(
    "The services named in the config file, then --, then the command and its arguments, run once every service " +
      "is ready (with --service: the command alone; quiesce's own options end at the first word that is not one " +
      "of them, or at --). Everything after the -- is the command's, untouched"
  ),
  Argument.variadic({ min: 1 })
)
