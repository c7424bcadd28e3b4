/**
 * Signal routing for the `quiesce` process. While a command runs, SIGINT, SIGTERM and SIGHUP
 * sent to `quiesce` are forwarded to it (and `quiesce` waits for it to exit, keeping its
 * reference on the service until then); at any other time they interrupt the main fiber, so
 * scopes close and the service reference is released before the process exits.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"

const forwarded = ["SIGINT", "SIGTERM", "SIGHUP"] as const

let forwardTo: number | undefined
let received: NodeJS.Signals | undefined

/** The first signal `quiesce` received, if any: the exit status reports it when no command ran. */
export const receivedSignal = (): NodeJS.Signals | undefined => received

/** Routes the process's signals for the lifetime of `fiber`. Returns the uninstaller. */
export const install = (fiber: Fiber.Fiber<unknown, unknown>): () => void => {
  const onSignal = (signal: NodeJS.Signals) => {
    received ??= signal
    if (forwardTo !== undefined) {
      try {
        process.kill(forwardTo, signal)
      } catch {
        // The command has already exited; its exit status is on its way.
      }
    } else {
      fiber.interruptUnsafe(fiber.id)
    }
  }
  for (const signal of forwarded) process.on(signal, onSignal)
  return () => {
    for (const signal of forwarded) process.removeListener(signal, onSignal)
  }
}

/** Forwards signals to `pid` until the scope closes. */
export const forwardSignals = (pid: number): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      forwardTo = pid
    }),
    () =>
      Effect.sync(() => {
        forwardTo = undefined
      })
  )
