/**
 * In-memory `RefCounter` for unit tests: one `MemoryKernel` shared by simulated processes, with
 * the startup lock, the count, the ring and the owner lock of each name. Waits are woken by
 * state changes and time out on the Effect clock (TestClock-friendly). `crash` undoes what the
 * kernel would undo for a dead process.
 *
 * @internal
 */
import { Clock, Duration, Effect } from "effect"
import type { Counter, MemoryKernel, MemoryProcess, Owned } from "../RefCounter.ts"
import { LockTimeout, SemaphoreSetRemoved } from "../SharedServiceError.ts"
import { fileHints } from "./hint.ts"
import { validate } from "./name.ts"
import { runtimeDir } from "./paths.ts"

interface Entry {
  /** Bumped by `remove`: a process holding an older generation sees the set removed. */
  generation: number
  lock: number | undefined
  readonly holders: Set<number>
  ring: number
  owner: number | undefined
  stamp: number | undefined
  retire: boolean
}

export const makeKernel = (): MemoryKernel => {
  const entries = new Map<string, Entry>()
  const listeners = new Set<() => void>()
  let nextPid = 1000
  let generations = 0
  const entry = (name: string): Entry => {
    let e = entries.get(name)
    if (e === undefined) {
      e = {
        generation: ++generations,
        lock: undefined,
        holders: new Set(),
        ring: 0,
        owner: undefined,
        stamp: undefined,
        retire: false
      }
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
  /** Waits up to `millis` (forever when undefined) for `attempt` to give a value. */
  const waitUntil = <A>(attempt: () => A | undefined, millis: number | undefined): Effect.Effect<A | undefined> =>
    Effect.suspend(() => {
      const a = attempt()
      if (a !== undefined) return Effect.succeed(a)
      return Effect.flatMap(Clock.currentTimeMillis, (start) => {
        const deadline = millis === undefined ? undefined : start + millis
        const loop: Effect.Effect<A | undefined> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (deadline !== undefined && now >= deadline) return Effect.succeed(undefined)
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
    const open = (name: string, dir: string): Counter => {
      let generation = entry(name).generation
      const e = () => entry(name)
      const removed = (syscall: string) =>
        new SemaphoreSetRemoved({ service: name, syscall, errno: 43, code: "EIDRM" })
      /** The entry this process has open, or the error it would see for a removed one. */
      const live = (syscall: string): Entry | SemaphoreSetRemoved => {
        const x = entries.get(name)
        return x === undefined || x.generation !== generation ? removed(syscall) : x
      }
      const withLive = <A>(syscall: string, f: (x: Entry) => A) =>
        Effect.suspend(() => {
          const x = live(syscall)
          if (x instanceof SemaphoreSetRemoved) return Effect.fail(x)
          const a = f(x)
          changed()
          return Effect.succeed(a)
        })
      const owned = (x: Entry): Owned => ({
        fd: undefined,
        clearStamp: Effect.sync(() => {
          x.stamp = undefined
        }),
        writeStamp: (stamp) =>
          Effect.sync(() => {
            x.stamp = stamp
          }),
        release: Effect.sync(() => {
          if (x.owner === pid) x.owner = undefined
          changed()
        }),
        remove: Effect.sync(() => {
          if (x.owner === pid) x.owner = undefined
          x.stamp = undefined
          changed()
        }),
        stillHeld: () => x.owner === pid,
        retireRequested: Effect.sync(() => x.retire),
        stampSelf: Effect.sync(() => {
          if (x.owner === pid) x.stamp = pid
        })
      })
      /** Taking the lock under the startup lock stamps it; a standby's wait does not (it stamps when it adopts). */
      const tryTake = (stamp: boolean) => (): Owned | undefined => {
        const x = e()
        if (x.owner !== undefined) return undefined
        x.owner = pid
        x.stamp = stamp ? pid : undefined
        x.retire = false
        changed()
        return owned(x)
      }
      return {
        name,
        kind: "memory",
        exact: true,
        dir,
        lock: (timeout): Effect.Effect<void, LockTimeout | SemaphoreSetRemoved> =>
          Effect.flatMap(
            waitUntil(() => {
              const x = live("semop(lock)")
              if (x instanceof SemaphoreSetRemoved) return x
              if (x.lock !== undefined) return undefined
              x.lock = pid
              return true as const
            }, Duration.toMillis(timeout)),
            (r): Effect.Effect<void, LockTimeout | SemaphoreSetRemoved> =>
              r === undefined
                ? Effect.fail(new LockTimeout({ service: name, timeoutMillis: Duration.toMillis(timeout) }))
                : r === true
                ? Effect.void
                : Effect.fail(r)
          ),
        tryLock: withLive("semop(lock)", (x) => {
          if (x.lock !== undefined) return false
          x.lock = pid
          return true
        }),
        unlock: withLive("semop(unlock)", (x) => {
          if (x.lock === pid) x.lock = undefined
        }),
        register: withLive("semop(register)", (x) => {
          x.holders.add(pid)
          x.ring++
          if (x.lock === pid) x.lock = undefined
        }),
        reregister: withLive("semop(re-register)", (x) => {
          x.holders.add(pid)
          if (x.lock === pid) x.lock = undefined
        }),
        decrement: withLive("semop(release)", (x) => {
          x.holders.delete(pid)
        }),
        count: withLive("semctl(GETVAL)", (x) => x.holders.size),
        rings: withLive("semctl(GETVAL)", (x) => x.ring),
        awaitZero: (millis) =>
          Effect.flatMap(
            waitUntil(() => {
              const x = live("semtimedop(wait for zero)")
              return x instanceof SemaphoreSetRemoved ? x : x.holders.size === 0 ? true as const : undefined
            }, millis),
            (r) => r === undefined ? Effect.succeed(false) : r === true ? Effect.succeed(true) : Effect.fail(r)
          ),
        awaitRing: (millis) =>
          Effect.flatMap(
            waitUntil(() => {
              const x = live("semtimedop(ring)")
              if (x instanceof SemaphoreSetRemoved) return x
              if (x.ring === 0) return undefined
              x.ring = 0
              return true as const
            }, millis),
            (r) => r === undefined ? Effect.succeed(false) : r === true ? Effect.succeed(true) : Effect.fail(r)
          ),
        reopen: Effect.sync(() => {
          generation = entry(name).generation
        }),
        remove: Effect.suspend(() => {
          const x = entries.get(name)
          if (x !== undefined && x.generation === generation) entries.delete(name)
          changed()
          return Effect.void
        }),
        lockHolder: Effect.sync(() => entries.get(name)?.lock),
        instance: () => generation,
        hints: fileHints(dir, name),
        prepareExec: Effect.void,
        owner: {
          take: Effect.sync(tryTake(true)),
          awaitFree: (millis) => waitUntil(tryTake(false), millis),
          held: Effect.sync(() => entries.get(name)?.owner !== undefined),
          stamp: Effect.sync(() => entries.get(name)?.stamp),
          request: () =>
            Effect.sync(() => {
              const x = entries.get(name)
              if (x !== undefined && x.owner !== undefined) x.retire = true
              changed()
            })
        }
      }
    }
    const openCounter = (name: string) =>
      Effect.flatMap(validate(name), () =>
        Effect.suspend(() => {
          const dir = runtimeDir(name)
          if (typeof dir !== "string") return Effect.fail(dir)
          let c = counters.get(name)
          if (c === undefined) {
            c = open(name, dir)
            counters.set(name, c)
          }
          return Effect.succeed(c)
        }))
    return {
      kind: "memory",
      pid,
      open: openCounter,
      openExisting: (name) =>
        Effect.flatMap(validate(name), () =>
          entries.has(name) ? Effect.map(openCounter(name), (c): Counter | undefined => c) : Effect.succeed(undefined)),
      // Simulated objects cost nothing: the view is the (cached) counter itself.
      view: openCounter,
      crash: Effect.sync(() => {
        for (const x of entries.values()) {
          x.holders.delete(pid)
          if (x.lock === pid) x.lock = undefined
          if (x.owner === pid) x.owner = undefined
        }
        changed()
      })
    }
  }
  return {
    process: makeProcess,
    countOf: (name) => entries.get(name)?.holders.size ?? 0
  }
}
