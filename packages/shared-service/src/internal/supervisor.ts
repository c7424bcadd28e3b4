/**
 * The supervisor: performs the steps of `Protocol.supervisor` until it exits. The same
 * interpreter runs in the detached supervisor process (`bin/supervisor.ts`: the service's
 * parent, stopping it by signals) and in-process (`reaper: "in-process"`: a fiber running the
 * service definition's own `stop`); `Env` is what differs.
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import type { Counter } from "../RefCounter.ts"
import type { SystemError } from "../SharedServiceError.ts"
import * as Protocol from "./protocol.ts"

/** How long a wait runs before it looks at pending events again. */
export const EVENT_SLICE_MS = 100

/**
 * After an `ipcrm`, how long holders get to re-register (their watchdogs check every 500 ms): a
 * holder whose event loop is blocked longer than this, while its set is removed, loses its place.
 */
export const REREGISTER_WINDOW_MS = 5000

/** How long a supervisor waits before trying again to re-create a removed set it could not (no free set). */
const REOPEN_RETRY_MS = 1000

export interface Env {
  readonly counter: Counter
  /** Whether it is still the owner (a simulated process that crashed is not: it stops acting). */
  readonly alive: () => boolean
  readonly idleTimeToLive: Duration.Duration
  readonly lockTimeout: Duration.Duration
  /** A request received (retire, term: signals, or the hint), or the service found dead; checked between slices. */
  readonly pending: Effect.Effect<ReadonlyArray<"Retire" | "Term" | "Exited">>
  /** Stops the service (its whole tree); for `reason` (Retire: the requester holds the lock). */
  readonly stop: (reason: Protocol.Reason) => Effect.Effect<void>
  /** Under the lock: remove the hint if it is ours, keep the log as `.1`. */
  readonly cleanup: Effect.Effect<void>
  /** Under the lock, count 0, just before the set is removed: remove the owner file. */
  readonly removeOwnerFile: Effect.Effect<void>
  /** Called between slices of every wait (the detached supervisor reaps its children there). */
  readonly tick: Effect.Effect<void>
  readonly log: (message: string) => void
}

type Result = Protocol.SupervisorResult

const event = (e: Protocol.SupervisorEvent): Result => ({ _tag: "Event", event: e })

/**
 * The first pending event that interrupts `state`, in order of precedence. A supervisor that is
 * no longer the owner (a simulated crash) leaves its wait as if retired, and `run` then stops
 * before acting.
 */
const interrupting = (env: Env, state: Protocol.Supervisor): Effect.Effect<Result | undefined> =>
  env.alive()
    ? Effect.map(env.pending, (pending) => {
      for (const e of pending) if (Protocol.interrupts(state, e)) return event(e)
      return undefined
    })
    : Effect.succeed(event("Retire"))

/** `f` of what `effect` gives, or the Removed event when the set was removed under it. */
const removedOr = <A, R extends Result | undefined>(
  effect: Effect.Effect<A, SystemError>,
  f: (a: A) => R
): Effect.Effect<R | Result, SystemError> =>
  Effect.catchTag(Effect.map(effect, f), "SemaphoreSetRemoved", () => Effect.succeed(event("Removed")))

/**
 * Waits in slices until `attempt` gives a result or `millis` pass (`onTimeout`), looking at
 * pending events between slices. `attempt` runs at least once (with a 0 ms slice when no time
 * is left), so what is already there is always seen: a pending ring ends even a 0 ms grace.
 */
const sliced = (
  env: Env,
  state: Protocol.Supervisor,
  millis: number,
  attempt: (slice: number) => Effect.Effect<Result | undefined, SystemError>,
  onTimeout: Result
): Effect.Effect<Result, SystemError> =>
  Effect.flatMap(Clock.currentTimeMillis, (start) => {
    const loop: Effect.Effect<Result, SystemError> = Effect.flatMap(Effect.all([Clock.currentTimeMillis, interrupting(env, state)]), ([now, e]) => {
      if (e !== undefined) return Effect.succeed(e)
      const left = Math.max(0, start + millis - now)
      return Effect.flatMap(
        Effect.andThen(env.tick, attempt(Math.min(EVENT_SLICE_MS, left))),
        (r) => r !== undefined ? Effect.succeed(r) : left === 0 ? Effect.succeed(onTimeout) : loop
      )
    })
    return loop
  })

const perform = (env: Env, state: Protocol.Supervisor): Effect.Effect<Result, SystemError> => {
  const c = env.counter
  switch (state._tag) {
    case "AwaitZero":
      return sliced(
        env,
        state,
        Number.POSITIVE_INFINITY,
        (slice) => removedOr(c.awaitZero(slice), (zero): Result | undefined => zero ? { _tag: "Zero" } : undefined),
        { _tag: "Zero" }
      )
    case "Grace":
      return sliced(
        env,
        state,
        Duration.toMillis(env.idleTimeToLive),
        (slice) => removedOr(c.awaitRing(slice), (rung): Result | undefined => rung ? { _tag: "Rung" } : undefined),
        { _tag: "Expired" }
      )
    case "Lock":
      return sliced(
        env,
        state,
        Duration.toMillis(env.lockTimeout),
        (slice) =>
          c.lock(Duration.millis(slice)).pipe(
            Effect.as<Result | undefined>({ _tag: "Locked" }),
            Effect.catchTags({
              LockTimeout: () => Effect.succeed(undefined),
              SemaphoreSetRemoved: () => Effect.succeed(event("Removed"))
            })
          ),
        { _tag: "LockTimeout" }
      )
    case "Recheck":
      return removedOr(
        Effect.all([c.count, c.rings]),
        ([count, rings]): Result => {
          if (debug) env.log(`recheck: count ${count}, rings ${rings}, set ${(c as { id?: number }).id}`)
          return count > 0 || rings > 0 ? { _tag: "Busy" } : { _tag: "Idle" }
        }
      )
    case "Unlock":
      return removedOr(c.unlock, (): Result => ({ _tag: "Ok" }))
    case "Stop":
      return Effect.as(env.stop(state.reason), { _tag: "Ok" } as const)
    case "Cleanup":
      return Effect.as(env.cleanup, { _tag: "Ok" } as const)
    case "Release":
      return removedOr(c.count, (n): Result => n === 0 ? { _tag: "SetRemoved" } : { _tag: "Kept" }).pipe(
        Effect.flatMap((r) => {
          if (r._tag === "SetRemoved") {
            // Nobody holds it and nothing runs: remove the owner file, then the set (with the
            // lock in it), so nothing is left behind. Clients waiting for the lock see the set
            // removed and start over on a fresh one.
            return Effect.as(Effect.andThen(env.removeOwnerFile, Effect.ignore(c.remove)), r)
          }
          if (r._tag === "Kept") return removedOr(c.unlock, (): Result => r)
          return Effect.succeed(r)
        })
      )
    case "Reopen": {
      // Until the set exists again nobody can be counted, so nothing is stopped: keep trying (a
      // full kernel table frees a slot sooner or later), answering events meanwhile.
      const reopen: Effect.Effect<Result, SystemError> = Effect.matchEffect(c.reopen, {
        onSuccess: () => sliced(env, state, REREGISTER_WINDOW_MS, () => Effect.succeed(undefined), { _tag: "Ok" }),
        onFailure: (error) => {
          env.log(`cannot re-create the removed set (${error.message}); trying again`)
          return Effect.flatMap(
            sliced(env, state, REOPEN_RETRY_MS, () => Effect.succeed(undefined), { _tag: "Ok" }),
            (r) => r._tag === "Ok" ? reopen : Effect.succeed(r)
          )
        }
      })
      return reopen
    }
    case "Exit":
      return Effect.succeed({ _tag: "Ok" })
  }
}

const debug = process.env["QUIESCE_DEBUG"] === "1"

/**
 * Runs a supervisor from `from` (`AwaitZero`; `Reopen` for one whose set was removed before it
 * booted) until it exits (with `QUIESCE_DEBUG=1` it logs every transition).
 */
export const run = (env: Env, from: Protocol.Supervisor = Protocol.supervisorStart): Effect.Effect<void, SystemError> =>
  Effect.suspend(() => {
    const loop = (state: Protocol.Supervisor): Effect.Effect<void, SystemError> =>
      state._tag === "Exit" || !env.alive() ? Effect.void : Effect.flatMap(perform(env, state), (result) => {
        const next = Protocol.supervisor(state, result)
        if (debug && next._tag !== state._tag) {
          env.log(`${state._tag} → ${result._tag === "Event" ? result.event : result._tag} → ${next._tag}`)
        }
        return loop(next)
      })
    return loop(from)
  })
