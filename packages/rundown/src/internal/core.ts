/**
 * What the in-process ref (`rundownRef.ts`) and the shared-memory ref (`shared.ts`) have in
 * common: the state bits, the base class whose methods the public operations call, and the
 * recording of the rundown duration.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Inspectable from "effect/Inspectable"
import type * as Metric from "effect/Metric"
import { pipeArguments } from "effect/Pipeable"
import type * as RundownRef from "../RundownRef.ts"
import { RundownInProgressError } from "../RundownError.ts"

/** @internal */
export const TypeId = "~@quiesce/rundown/RundownRef"

/** @internal rundown has begun: every acquisition is refused from now on */
export const RUNDOWN = 1
/** @internal rundown has completed: the count reached zero after RUNDOWN was set */
export const DRAINED = 2
/** @internal */
export const MAX_COUNT = 0x1fffffff

/**
 * What an acquisition returns: a receipt (> 0) to give back to the release, or one of these.
 * Numbers rather than objects so that the hot path allocates nothing.
 *
 * @internal
 */
export const REFUSED = -1
/** @internal */
export const OVERFLOW = -2

/** @internal */
export const stateRunDown: RundownRef.RundownState = { _tag: "RunDown" }

// One immutable instance: a refused acquisition is an expected outcome on a hot path, and
// building an Error (with its stack) per refusal would cost more than the whole protect.
const refusedError = new RundownInProgressError()
/** @internal */
export const refused = Exit.fail(refusedError)

/** @internal */
export const underflow = (n: number, held: number): Error =>
  new Error(`RundownRef: release(${n}) with only ${held} reference(s) held (the count would underflow)`)

/**
 * What every ref implements. The public functions in `RundownRef.ts` only call these, so the
 * in-process and the shared ref behave identically by construction.
 *
 * @internal
 */
export abstract class RundownRefBase extends Inspectable.Class implements RundownRef.RundownRef {
  readonly [TypeId]: typeof TypeId = TypeId
  readonly metrics: RundownRef.RundownMetrics | undefined

  constructor(metrics: RundownRef.RundownMetrics | undefined) {
    super()
    this.metrics = metrics
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  /** A cheap, possibly stale read of the state bits, for a fast refusal only. */
  abstract hint(): number
  /** Takes `n` references: a receipt for `releaseUnsafe`, or REFUSED / OVERFLOW. */
  abstract acquireUnsafe(n: number): number
  /** Gives back `n` references taken with `receipt`. */
  abstract releaseUnsafe(n: number, receipt: number): void
  /** Sets RUNDOWN (completing at once if nothing is held); returns a token for `awaitDrained`. */
  abstract beginUnsafe(): number
  abstract awaitDrained(token: number): Effect.Effect<void>
  /** Back to Active; `undefined` on success, otherwise the state that refused it. */
  abstract reInitUnsafe(): RundownRef.RundownState | undefined
  abstract stateUnsafe(): RundownRef.RundownState
  /** References held by the caller's side (the thread's slot for a shared ref), for errors. */
  abstract heldHere(): number

  toJSON() {
    return { _id: "RundownRef", shared: "handle" in this, state: this.stateUnsafe() }
  }
}

/** @internal */
export const countOf = (state: RundownRef.RundownState): number => state._tag === "RunDown" ? 0 : state.count

/**
 * The start of a rundown whose duration is to be recorded when it completes — whoever waits,
 * and whether or not anyone still does. The clock and the context (whose metric registry the
 * timer lives in) are those of the fiber that began the rundown.
 *
 * @internal
 */
export interface Timing {
  readonly token: number
  readonly metric: Metric.Metric<Duration.Duration, any>
  readonly clock: Clock.Clock
  readonly context: Context.Context<never>
  readonly start: bigint
}

/** @internal */
export const startTiming = (
  metrics: RundownRef.RundownMetrics | undefined,
  token: number
): Timing | undefined => {
  const metric = metrics?.rundownDuration
  // A rundown is only ever begun by `waitForRundown`, inside a fiber.
  const fiber = Fiber.getCurrent()
  if (metric === undefined || fiber === undefined) return undefined
  const clock = fiber.getRef(Clock.Clock)
  return { token, metric, clock, context: fiber.context, start: clock.monotonicTimeNanosUnsafe() }
}

/** @internal */
export const recordTiming = (timing: Timing): void => {
  timing.metric.updateUnsafe(
    Duration.nanos(timing.clock.monotonicTimeNanosUnsafe() - timing.start),
    timing.context
  )
}

/** @internal */
export const reportActive = (self: RundownRefBase): void => {
  const active = self.metrics!.active
  if (active === undefined) return
  const fiber = Fiber.getCurrent()
  active.updateUnsafe(countOf(self.stateUnsafe()), fiber === undefined ? Context.empty() : fiber.context)
}
