/**
 * Signal routing for the `quiesce` process. Until it becomes the command, SIGINT, SIGTERM and
 * SIGHUP interrupt the main fiber, so that scopes close and the service reference is released
 * before the process exits with 128 + N; once it has become the command, they are the command's.
 *
 * On the fallback path without `execve`, while the command runs as a child, they are forwarded
 * to it instead (and `quiesce` waits for it to exit, keeping its reference until then), except
 * one case: the command shares quiesce's process group, so when that group is the
 * foreground group of a terminal, the terminal's Ctrl-C (SIGINT) and hang-up (SIGHUP) reach
 * the command directly from the kernel. Forwarding them again would make one Ctrl-C a double
 * one, which many tools read as "force quit, skip cleanup". A SIGINT sent with `kill` to a
 * foreground `quiesce` is then not forwarded either; SIGTERM always is.
 */
import * as Effect from "effect/Effect"
import { readFileSync } from "node:fs"
import type * as Scope from "effect/Scope"

const forwarded = ["SIGINT", "SIGTERM", "SIGHUP"] as const

let forwardTo: number | undefined
let received: NodeJS.Signals | undefined

/** The first signal `quiesce` received, if any: the exit status reports it when no command ran. */
export const receivedSignal = (): NodeJS.Signals | undefined => received

/**
 * Whether this process's group is the foreground group of its controlling terminal (Linux:
 * `/proc/self/stat` fields 5 `pgrp`, 7 `tty_nr`, 8 `tpgid`). `false` where it cannot tell.
 */
const inTerminalForeground = (): boolean => {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8")
    // Fields after the command name (which may contain spaces): state, ppid, pgrp, session, tty_nr, tpgid.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return fields[4] !== "0" && fields[2] === fields[5]
  } catch {
    return false
  }
}

const deliveredByTerminal = (signal: NodeJS.Signals): boolean =>
  (signal === "SIGINT" || signal === "SIGHUP") && inTerminalForeground()

/**
 * Routes the process's signals: `interrupt` (the main fiber's) until a command runs as a child.
 * Installed before the main fiber starts: its first steps run synchronously inside
 * `Effect.runFork`, and a signal arriving meanwhile would otherwise meet the default action and
 * kill quiesce (Node runs handlers from the event loop, so none is missed once installed).
 * Returns the uninstaller.
 */
export const install = (interrupt: () => void): () => void => {
  const onSignal = (signal: NodeJS.Signals) => {
    received ??= signal
    if (forwardTo !== undefined) {
      if (deliveredByTerminal(signal)) return
      try {
        process.kill(forwardTo, signal)
      } catch {
        // The command has already exited; its exit status is on its way.
      }
    } else {
      interrupt()
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
