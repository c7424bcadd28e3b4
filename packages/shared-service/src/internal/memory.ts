/**
 * In-memory `RefCounter` for unit tests: one `MemoryKernel` shared by simulated processes.
 * Waits are woken by state changes and time out on the Effect clock (TestClock-friendly).
 *
 * @internal
 */
import { Duration, Effect } from "effect"
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
  const waitUntil = <A>(
    attempt: () => A | undefined,
    timeout: Duration.Duration | undefined,
    onTimeout: () => LockTimeout
  ): Effect.Effect<A, LockTimeout> =>
    Effect.suspend(() => {
      const a = attempt()
      if (a !== undefined) return Effect.succeed(a)
      // Interruptible only while waiting, when nothing is held (see `Counter.lock`).
      const loop: Effect.Effect<A, LockTimeout> = Effect.flatMap(Effect.interruptible(nextChange), () => {
        const b = attempt()
        return b !== undefined ? Effect.succeed(b) : loop
      })
      return timeout === undefined
        ? loop
        : loop.pipe(Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.fail(onTimeout()) }))
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
            () => new LockTimeout({ name, timeoutMillis: Duration.toMillis(timeout) })
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
