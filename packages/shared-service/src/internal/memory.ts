/**
 * In-memory `RefCounter` for unit tests: one `MemoryKernel` shared by simulated processes.
 * Waits are woken by state changes and time out on the Effect clock (TestClock-friendly).
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import type { Counter, MemoryKernel, MemoryProcess } from "../RefCounter.ts"
import { LockTimeout } from "../SharedServiceError.ts"
import { validate } from "./name.ts"

interface Entry {
  lock: number | undefined
  readonly holders: Map<number, number>
  reaper: number | undefined
}

export const makeKernel = (): MemoryKernel => {
  const entries = new Map<string, Entry>()
  const listeners = new Set<() => void>()
  let nextPid = 1000
  const entry = (name: string): Entry => {
    let e = entries.get(name)
    if (e === undefined) {
      e = { lock: undefined, holders: new Map(), reaper: undefined }
      entries.set(name, e)
    }
    return e
  }
  const changed = () => {
    const all = [...listeners]
    listeners.clear()
    for (const f of all) f()
  }
  const nextChange = Effect.callback<void>((resume) => {
    const f = () => resume(Effect.void)
    listeners.add(f)
    return Effect.sync(() => listeners.delete(f))
  })
  const total = (e: Entry) => {
    let n = 0
    for (const v of e.holders.values()) n += v
    return n
  }
  /**
   * Waits for `attempt` to succeed. Only the waiting is interruptible (and the time-out race
   * lives inside that interruptible region, so an interrupt reaches it): `attempt` itself runs
   * synchronously, so whatever it takes is always handed to the caller.
   */
  const waitUntil = <A>(
    attempt: () => A | undefined,
    timeout: Duration.Duration | undefined,
    onTimeout: () => LockTimeout
  ): Effect.Effect<A, LockTimeout> =>
    Effect.suspend(() => {
      const a = attempt()
      if (a !== undefined) return Effect.succeed(a)
      return Effect.flatMap(Clock.currentTimeMillis, (start) => {
        const deadline = timeout === undefined ? undefined : start + Duration.toMillis(timeout)
        const loop: Effect.Effect<A, LockTimeout> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (deadline !== undefined && now >= deadline) return Effect.fail(onTimeout())
          const wait = deadline === undefined
            ? nextChange
            : Effect.asVoid(Effect.timeoutOption(nextChange, Duration.millis(deadline - now)))
          return Effect.flatMap(Effect.interruptible(wait), () => {
            const b = attempt()
            return b !== undefined ? Effect.succeed(b) : loop
          })
        })
        return loop
      })
    })

  const makeProcess = (): MemoryProcess => {
    const pid = nextPid++
    const counters = new Map<string, Counter>()
    const open = (name: string): Counter => {
      const e = () => entry(name)
      const adjust = (delta: number) => {
        const h = e().holders
        const v = (h.get(pid) ?? 0) + delta
        if (v <= 0) h.delete(pid)
        else h.set(pid, v)
      }
      return {
        name,
        kind: "memory",
        exact: true,
        lock: (timeout) =>
          waitUntil(
            () => {
              const x = e()
              if (x.lock !== undefined) return undefined
              x.lock = pid
              return true
            },
            timeout,
            () => new LockTimeout({ service: name, timeoutMillis: Duration.toMillis(timeout) })
          ).pipe(Effect.asVoid),
        unlock: (delta) =>
          Effect.sync(() => {
            adjust(delta)
            if (e().lock === pid) e().lock = undefined
            changed()
          }),
        decrement: Effect.sync(() => {
          adjust(-1)
          changed()
        }),
        count: Effect.sync(() => total(e())),
        hasReaper: Effect.sync(() => e().reaper !== undefined),
        claimReaper: Effect.sync(() => {
          if (e().reaper !== undefined) return false
          e().reaper = pid
          changed()
          return true
        }),
        releaseReaper: Effect.sync(() => {
          if (e().reaper === pid) e().reaper = undefined
          changed()
        }),
        awaitZero: waitUntil(() => total(e()) === 0 ? true : undefined, undefined, () => {
          throw new Error("unreachable")
        }).pipe(Effect.asVoid, Effect.orDie),
        reopen: () => Effect.void,
        remove: Effect.sync(() => {
          entries.delete(name)
          changed()
        })
      }
    }
    return {
      kind: "memory",
      pid,
      open: (name) =>
        Effect.map(validate(name), () => {
          let c = counters.get(name)
          if (c === undefined) {
            c = open(name)
            counters.set(name, c)
          }
          return c
        }),
      openExisting: (name) =>
        Effect.map(validate(name), () => {
          if (!entries.has(name) && !counters.has(name)) return undefined
          let c = counters.get(name)
          if (c === undefined) {
            c = open(name)
            counters.set(name, c)
          }
          return c
        }),
      crash: Effect.sync(() => {
        for (const e of entries.values()) {
          e.holders.delete(pid)
          if (e.lock === pid) e.lock = undefined
          if (e.reaper === pid) e.reaper = undefined
        }
        changed()
      })
    }
  }
  return {
    process: makeProcess,
    countOf: (name) => {
      const e = entries.get(name)
      return e === undefined ? 0 : total(e)
    }
  }
}
