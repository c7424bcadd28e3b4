/**
 * `quiesce up NAME…` and `quiesce down NAME…`: a reference held on purpose, between commands.
 *
 * A reference belongs to a process (the kernel drops it when that process exits), so `up` leaves
 * one behind: a holder, `quiesce run NAME… -- sh -c 'echo ready; exec sleep infinity'` in a
 * session of its own, which holds the services like any command would. `up` relays its output
 * until it says ready (or fails, with its error and exit code), then records it in
 * `<runtime dir>/NAME.up` and returns. `down` ends the holder recorded there (SIGTERM: it is
 * `sleep` by then), which releases the reference: the service stops after its grace period,
 * unless other commands hold it.
 */
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import { closeSync, constants, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs"
import { constants as os } from "node:os"
import { SharedService } from "@quiesce/shared-service"
import { type QuiesceError, RuntimeDirectoryError, SharedServiceFailure } from "../QuiesceError.ts"

/** How to run `quiesce` again: this executable when it is one, else the package's. */
export interface Entry {
  readonly file: string
  readonly args: ReadonlyArray<string>
}

const upFile = (name: string): string => `${SharedService.runtimeDirectory()}/${name}.up`

interface Holder {
  readonly pid: number
  /** `/proc/<pid>/stat`'s start time, so that a recycled pid is never signalled. */
  readonly startTime: number
  /** The record of an `up` still bringing the service up (its pid is that `up`'s). */
  readonly claiming?: boolean | undefined
}

const startTime = (pid: number): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
  } catch {
    return undefined
  }
}

/** The holder recorded for `name`, if it is alive (a record of a dead one is removed). */
const holderOf = (name: string): Holder | undefined => {
  let text: string
  try {
    const fd = openSync(upFile(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
    try {
      text = readFileSync(fd, "utf8")
    } finally {
      closeSync(fd)
    }
  } catch {
    return undefined
  }
  try {
    const holder = JSON.parse(text) as Holder
    if (Number.isInteger(holder.pid) && holder.pid > 0 && startTime(holder.pid) === holder.startTime) return holder
  } catch {
    // A torn or foreign record: as good as none.
  }
  forget(name)
  return undefined
}

const forget = (name: string) => {
  try {
    unlinkSync(upFile(name))
  } catch {
    // already gone
  }
}

/** Replaces the record of `name` at once (a reader sees the old record or the new, never a torn one). */
const record = (name: string, holder: Holder) => {
  const temporary = `${upFile(name)}.${process.pid}`
  const fd = openSync(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  try {
    writeSync(fd, JSON.stringify(holder))
  } finally {
    closeSync(fd)
  }
  renameSync(temporary, upFile(name))
}

/**
 * Claims `name` for this `up` (its record names this process until its holder is ready), so
 * that of concurrent `up`s exactly one starts a holder; or the live holder (or `up`) that has it.
 */
const claim = (name: string): Holder | undefined => {
  const self: Holder = { pid: process.pid, startTime: startTime(process.pid) ?? 0, claiming: true }
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(upFile(name), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
      try {
        writeSync(fd, JSON.stringify(self))
      } finally {
        closeSync(fd)
      }
      return undefined
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw error
      // Someone's record: alive, it has the name; a dead one's is removed, and we try once more.
      const holder = holderOf(name)
      if (holder !== undefined) return holder
    }
  }
}

/** Removes the record of `name` if it still names `pid` (a failed `up` lets go of its claim only). */
const forgetIf = (name: string, pid: number) => {
  if (holderOf(name)?.pid === pid) forget(name)
}

const relay = (chunk: Buffer) => {
  try {
    writeSync(2, chunk)
  } catch {
    // stderr closed: the holder's output is lost, not the holder
  }
}

type UpError = QuiesceError | { readonly exitCode: number }

/** Starts the holder of `name` and waits until it holds it; fails with its exit code when it could not (its error relayed). */
const hold = (entry: Entry, name: string, options: UpOptions): Effect.Effect<number, UpError> =>
  Effect.callback<number, UpError>((resume) => {
    const child = spawn(entry.file, [
      ...entry.args,
      "run",
      ...(options.config === undefined ? [] : ["--config", options.config]),
      ...(options.backend === undefined ? [] : ["--backend", options.backend]),
      ...(options.quiet ? ["--quiet"] : []),
      name,
      "--",
      "/bin/sh",
      "-c",
      "echo ready; exec sleep infinity"
    ], { detached: true, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let settled = false
    const settle = (effect: Effect.Effect<number, UpError>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    child.stderr.on("data", (chunk: Buffer) => {
      if (!settled) relay(chunk)
    })
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      if (!out.includes("ready\n") || settled) return
      const pid = child.pid!
      try {
        record(name, { pid, startTime: startTime(pid) ?? 0 })
      } catch (error) {
        process.kill(pid, "SIGTERM")
        settle(Effect.fail(
          new RuntimeDirectoryError({
            service: name,
            path: SharedService.runtimeDirectory(),
            reason: `cannot record its holder (${(error as NodeJS.ErrnoException).code ?? String(error)})`
          })
        ))
        return
      }
      // The holder lives on alone: nothing here waits for it.
      child.stdout.destroy()
      child.stderr.destroy()
      child.unref()
      settle(Effect.succeed(pid))
    })
    child.once("error", (error) =>
      settle(Effect.fail(new SharedServiceFailure({ service: name, reason: `cannot start its holder: ${error.message}` }))))
    child.once("exit", (code, signal) =>
      settle(Effect.fail({ exitCode: code ?? 128 + (signal === null ? 0 : os.signals[signal] ?? 0) })))
    return Effect.sync(() => {
      if (!settled) child.kill("SIGTERM")
    })
  })

export interface UpOptions {
  readonly config: string | undefined
  readonly backend: string | undefined
  readonly quiet: boolean
}

/**
 * Holds each of `names` (one holder each, in order; one already up is left as it is). Each line
 * says what happened. A failure stops there, with the holder's exit code, and ends the holders
 * this call started: all or nothing. The names are valid (the parser checks them).
 */
export const up = (entry: Entry, names: ReadonlyArray<string>, options: UpOptions): Effect.Effect<ReadonlyArray<string>, UpError> =>
  Effect.suspend(() => {
    // All or nothing: when one fails (or this is interrupted), the holders started here go.
    const started: Array<{ readonly name: string; readonly pid: number }> = []
    return Effect.forEach(names, (name) => {
      // Another `up` bringing it up: wait until it has (or has failed, and it is ours to try).
      const claimed: Effect.Effect<Holder | undefined, RuntimeDirectoryError> = Effect.suspend(() => {
        let holder: Holder | undefined
        try {
          holder = claim(name)
        } catch (error) {
          return Effect.fail(new RuntimeDirectoryError({
            service: name,
            path: upFile(name),
            reason: `cannot record its holder (${(error as NodeJS.ErrnoException).code ?? String(error)})`
          }))
        }
        return holder?.claiming === true ? Effect.andThen(Effect.sleep(100), claimed) : Effect.succeed(holder)
      })
      return Effect.flatMap(claimed, (holder) =>
        holder !== undefined ? Effect.succeed(`${name} is already up, held by pid ${holder.pid}`) : hold(entry, name, options).pipe(
        Effect.tap((pid) => Effect.sync(() => started.push({ name, pid }))),
        Effect.onExit((exit) => exit._tag === "Success" ? Effect.void : Effect.sync(() => forgetIf(name, process.pid))),
        Effect.map((pid) => `${name} is up, held by pid ${pid} (quiesce down ${name} releases it)`)
      ))
    }).pipe(
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : Effect.sync(() => {
          for (const { name, pid } of started) {
            try {
              process.kill(pid, "SIGTERM")
            } catch {
              // gone already
            }
            forgetIf(name, pid)
          }
        })
      )
    )
  })

/** Ends the holders of `names`; each line says what happened. Waits (bounded) until each holder is gone. */
export const down = (names: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, QuiesceError> =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    for (const name of names) {
      const holder = holderOf(name)
      if (holder === undefined) {
        lines.push(`${name} was not up`)
        continue
      }
      try {
        process.kill(holder.pid, "SIGTERM")
        // A stopped holder acts on it once continued.
        process.kill(holder.pid, "SIGCONT")
      } catch {
        // it died meanwhile
      }
      for (let i = 0; i < 100 && startTime(holder.pid) === holder.startTime; i++) yield* Effect.sleep(50)
      forget(name)
      lines.push(`${name} released; it stops after its grace period unless other commands hold it`)
    }
    return lines
  })
