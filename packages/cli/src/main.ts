/**
 * The `quiesce` process: parses `process.argv`, runs, exits with the code `Cli.main` decided.
 * Loaded by `bin.ts` once the compile cache is on.
 *
 * Not `NodeRuntime.runMain`: on the fallback path without `execve`, while a command runs,
 * SIGINT and SIGTERM must go to it (and `quiesce` must wait for it, keeping its reference on the
 * service), not interrupt `quiesce`.
 *
 * @since 0.1.0
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constants } from "node:os"
import * as Cli from "./Cli.ts"
import * as Signals from "./internal/signals.ts"

const program = Cli.main(process.argv.slice(2)).pipe(
  Effect.provide(NodeServices.layer)
)

const interrupt = new AbortController()
const uninstall = Signals.install(() => interrupt.abort())
const fiber = Effect.runFork(program, { signal: interrupt.signal })
fiber.addObserver((exit) => {
  uninstall()
  if (Exit.isSuccess(exit)) {
    process.exit(exit.value)
  }
  const signal = Signals.receivedSignal()
  if (Cause.hasInterruptsOnly(exit.cause) && signal !== undefined) {
    process.exit(128 + (constants.signals[signal] ?? 0))
  }
  process.stderr.write(`quiesce: unexpected failure: ${Cause.pretty(exit.cause)}\n`)
  process.exit(125)
})
