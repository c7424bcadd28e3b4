/**
 * `receive` for both stages. The in-process and the shared stage differ in how
 * a ticket is registered and how a fiber enters; the rounds, the head's poll
 * loop and the race between a notify and the time-out are the same, and live
 * here once.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type * as Stage from "../Stage.ts"
import { ReceiveTimeoutError } from "../StageError.ts"

/** @internal */
export const showToken = (token: unknown): string => {
  try {
    return JSON.stringify(token) ?? String(token)
  } catch {
    return String(token)
  }
}

/** @internal */
export const receiveWith = <Tk, D extends { readonly buffer: B }, B, T, A, E, R, ET>(options: {
  readonly token: T
  readonly buffer: B
  readonly take: (buffer: B, token: T) => A | undefined
  readonly poll: (director: D) => Effect.Effect<void, E, R>
  readonly timeoutMillis: number | undefined
  readonly ticket: Effect.Effect<Tk, ET, Scope.Scope>
  readonly onTicket: Effect.Effect<void, E, R> | undefined
  readonly enter: (
    ticket: Tk,
    head: (director: D) => Effect.Effect<A | undefined, E, R>,
    timeout: number | undefined
  ) => Effect.Effect<Stage.StageExit<A | undefined>, E, R>
}): Effect.Effect<A, E | ET | ReceiveTimeoutError, R> => {
  const { buffer, enter, poll, take, timeoutMillis, token } = options
  const headLoop = (director: D): Effect.Effect<A, E, R> =>
    Effect.suspend(function loop(): Effect.Effect<A, E, R> {
      const found = take(director.buffer, token)
      if (found !== undefined) return Effect.succeed(found)
      return Effect.flatMap(poll(director), loop)
    })
  return Effect.scoped(Effect.clockWith((clock) => {
    const deadline = timeoutMillis === undefined ? Infinity : clock.currentTimeMillisUnsafe() + timeoutMillis
    const timedOut = (): Effect.Effect<A, ReceiveTimeoutError> => {
      // A notify may have raced the time-out: its event is then in the buffer.
      const late = take(buffer, token)
      if (late !== undefined) return Effect.succeed(late)
      return Effect.fail(new ReceiveTimeoutError({ token: showToken(token), timeoutMillis: timeoutMillis ?? 0 }))
    }
    return Effect.flatMap(options.ticket, (t) => {
      const round = (): Effect.Effect<A, E | ReceiveTimeoutError, R> => {
        const found = take(buffer, token)
        if (found !== undefined) return Effect.succeed(found)
        const remaining = deadline === Infinity ? undefined : Math.max(0, deadline - clock.currentTimeMillisUnsafe())
        const entered = remaining === undefined
          ? enter(t, headLoop, undefined)
          : enter(
            t,
            // The head polls under the same deadline; when it runs out, headship passes on.
            (director) => Effect.map(Effect.timeoutOption(headLoop(director), remaining), (o) => o._tag === "Some" ? o.value : undefined),
            remaining
          )
        return Effect.flatMap(entered, (exit): Effect.Effect<A, E | ReceiveTimeoutError, R> => {
          switch (exit._tag) {
            case "Finished":
              return exit.value === undefined ? timedOut() : Effect.succeed(exit.value)
            case "Token":
              return Effect.suspend(round)
            case "Timeout":
              return timedOut()
          }
        })
      }
      return options.onTicket === undefined ? round() : Effect.andThen(options.onTicket, Effect.suspend(round))
    })
  }))
}
