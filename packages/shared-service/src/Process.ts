/**
 * Processes as Effects: a pid is only ever trusted together with the process start time
 * (`/proc/<pid>/stat`, field 22), so a recycled pid is never mistaken for the service.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Schedule } from "effect"
import * as L from "./internal/linux.ts"

/**
 * The start time of `pid` (clock ticks since boot), `undefined` when it does not exist or is a
 * zombie. Linux only (`/proc`); `undefined` elsewhere.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * // Recorded with a pid, so that a later process reusing the pid is not mistaken for it.
 * Effect.runPromise(Process.startTime(process.pid)).then((ticks) => console.log(typeof ticks)) // "number" on Linux
 * ```
 *
 * @category getters
 * @since 0.1.0
 */
export const startTime = (pid: number): Effect.Effect<number | undefined> =>
  Effect.sync(() => L.processStartTime(pid))

/**
 * Synchronous `isAlive`, for hot paths and finalizers.
 *
 * @example
 * ```ts
 * import { Process } from "@quiesce/shared-service"
 *
 * console.log(Process.isAliveUnsafe(process.pid)) // true
 * console.log(Process.isAliveUnsafe(-1)) // false
 * ```
 *
 * @category getters
 * @since 0.1.0
 */
export const isAliveUnsafe = (pid: number, startTime?: number): boolean => {
  if (!Number.isInteger(pid) || pid <= 0) return false
  if (process.platform === "linux") {
    const st = L.processStartTime(pid)
    return st !== undefined && (startTime === undefined || st === startTime)
  }
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Whether process `pid` is alive and, when `startTime` is given, is the same process that had
 * that start time (not a later process that got the recycled pid). Zombies count as dead.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   const child = spawn("sleep", ["5"], { stdio: "ignore" })
 *   const started = yield* Process.startTime(child.pid!)
 *   const before = yield* Process.isAlive(child.pid!, started)
 *   child.kill("SIGKILL")
 *   yield* Effect.promise(() => new Promise((resolve) => child.once("exit", resolve)))
 *   return [before, yield* Process.isAlive(child.pid!, started)]
 * })
 *
 * Effect.runPromise(program).then(console.log) // [true, false]
 * ```
 *
 * @category getters
 * @since 0.1.0
 */
export const isAlive = (pid: number, startTime?: number): Effect.Effect<boolean> =>
  Effect.sync(() => isAliveUnsafe(pid, startTime))

/**
 * Options of `terminate`, `kill` and `stop`.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * const program = Effect.gen(function*() {
 *   // A detached child leads its own process group: signal the group, and only this process.
 *   const child = spawn("sleep", ["5"], { stdio: "ignore", detached: true })
 *   const options: Process.SignalOptions = { startTime: yield* Process.startTime(child.pid!), group: true }
 *   return yield* Process.terminate(child.pid!, options)
 * })
 *
 * Effect.runPromise(program).then(console.log) // true
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface SignalOptions {
  /** Only signal the process if it still has this start time (PID-reuse proof). */
  readonly startTime?: number | undefined
  /** Signal the whole process group led by `pid` (a detached service and its children). */
  readonly group?: boolean | undefined
}

const groupSignalable = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const signal = (pid: number, sig: NodeJS.Signals, options: SignalOptions | undefined): Effect.Effect<boolean> =>
  Effect.sync(() => {
    if (!isAliveUnsafe(pid, options?.startTime)) return false
    try {
      process.kill(options?.group === true ? -pid : pid, sig)
      return true
    } catch {
      try {
        // The group may be gone while its leader lingers.
        if (options?.group === true) process.kill(pid, sig)
        return true
      } catch {
        return false
      }
    }
  })

/**
 * Sends SIGTERM, if the process is (still) the one with `startTime`. `true` when sent.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * const child = spawn("sleep", ["5"], { stdio: "ignore" })
 * const program = Effect.flatMap(Process.startTime(child.pid!), (startTime) => Process.terminate(child.pid!, { startTime }))
 *
 * Effect.runPromise(program).then(console.log) // true: SIGTERM sent
 * ```
 *
 * @category signals
 * @since 0.1.0
 */
export const terminate = (pid: number, options?: SignalOptions): Effect.Effect<boolean> =>
  signal(pid, "SIGTERM", options)

/**
 * Sends SIGKILL, if the process is (still) the one with `startTime`. `true` when sent.
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * const child = spawn("sleep", ["5"], { stdio: "ignore" })
 * Effect.runPromise(Process.kill(child.pid!)).then(console.log) // true: SIGKILL sent
 * ```
 *
 * @category signals
 * @since 0.1.0
 */
export const kill = (pid: number, options?: SignalOptions): Effect.Effect<boolean> => signal(pid, "SIGKILL", options)

/**
 * Stops a process gracefully: SIGTERM (or `signal`), wait up to `timeout` (polling every 15 ms),
 * then SIGKILL and wait for it to be gone (bounded by another `timeout`). Completes with `true`
 * if the process is gone at the end. Never signals a recycled pid when `startTime` is given.
 *
 * With `group`, the whole process group led by `pid` is signalled, and "gone" means the leader
 * and every member of the group. The leader is verified first; after that the group id is safe
 * to signal even once the leader has exited, because Linux does not hand out a pid that is still
 * in use as a process group id. If the leader is already gone at the start, nothing is
 * signalled (the group can no longer be told apart from a later one).
 *
 * @example
 * ```ts
 * import { spawn } from "node:child_process"
 * import { Effect } from "effect"
 * import { Process } from "@quiesce/shared-service"
 *
 * // A process that ignores SIGTERM: killed after the 100 ms grace period.
 * const child = spawn("sh", ["-c", "trap '' TERM; sleep 5"], { stdio: "ignore" })
 * const program = Effect.gen(function*() {
 *   yield* Effect.sleep("50 millis") // let the shell install its trap
 *   return yield* Process.stop(child.pid!, { timeout: "100 millis" })
 * })
 *
 * Effect.runPromise(program).then(console.log) // true: gone
 * ```
 *
 * @category signals
 * @since 0.1.0
 */
export const stop = (
  pid: number,
  options?: SignalOptions & {
    readonly timeout?: Duration.Input | undefined
    /** The graceful signal (default `SIGTERM`), e.g. `SIGINT` for a service that stops cleanly on it. */
    readonly signal?: NodeJS.Signals | undefined
  }
): Effect.Effect<boolean> => {
  const timeout = Duration.fromInputUnsafe(options?.timeout ?? Duration.seconds(5))
  const group = options?.group === true
  const st = options?.startTime ?? L.processStartTime(pid)
  const groupExists = () => process.platform === "linux" ? L.groupAlive(pid) : groupSignalable(pid)
  const gone = Effect.sync(() => !isAliveUnsafe(pid, st) && (!group || !groupExists()))
  const waitGone = gone.pipe(
    Effect.repeat({
      until: (g) => g,
      schedule: Schedule.spaced(Duration.millis(15))
    }),
    Effect.timeoutOption(timeout),
    Effect.map((o) => o._tag === "Some" && o.value)
  )
  const signalAll = (sig: NodeJS.Signals) =>
    Effect.sync(() => {
      try {
        if (group) process.kill(-pid, sig)
        else if (isAliveUnsafe(pid, st)) process.kill(pid, sig)
      } catch {
        // already gone
      }
    })
  return Effect.gen(function*() {
    if (st === undefined || !isAliveUnsafe(pid, st)) return true
    yield* signalAll(options?.signal ?? "SIGTERM")
    if (yield* waitGone) return true
    yield* signalAll("SIGKILL")
    return yield* waitGone
  })
}
