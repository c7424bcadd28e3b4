/**
 * What the kernel-backed counters (`sysv.ts`, `flock.ts`) share: libc as an Effect, and the
 * per-process registry that hands out one counter per name.
 *
 * @internal
 */
import { Effect } from "effect"
import type { Counter } from "../RefCounter.ts"
import { IpcUnavailable } from "../SharedServiceError.ts"
import type { InvalidName, SystemError } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import { validate } from "./name.ts"
import { runtimeDir } from "./paths.ts"

/** libc, or `IpcUnavailable` for `service` when it cannot be loaded. */
export const libcFor = (service: string): L.Libc | IpcUnavailable => {
  const lib = L.libc()
  return lib instanceof Error
    ? new IpcUnavailable({ service, syscall: "dlopen(libc)", errno: 0, code: lib.message })
    : lib
}

/**
 * `RefCounter.open` over `counters`: the validated name's cached counter in the (checked)
 * runtime directory, else a new one from `create`. The look-up, the creation and the caching run
 * in one synchronous step, so two fibers opening the same name cannot both create one (a process
 * holds at most one reference per name, through one counter).
 */
export const opener = <C extends Counter>(
  counters: Map<string, C>,
  create: (lib: L.Libc, name: string, dir: string) => C | SystemError
) =>
(name: string): Effect.Effect<C, SystemError | InvalidName> =>
  Effect.flatMap(validate(name), () =>
    Effect.suspend(() => {
      const dir = runtimeDir(name)
      if (typeof dir !== "string") return Effect.fail(dir)
      const key = `${dir}\0${name}`
      const existing = counters.get(key)
      if (existing !== undefined) return Effect.succeed(existing)
      const lib = libcFor(name)
      if (lib instanceof Error) return Effect.fail(lib)
      const counter = create(lib, name, dir)
      if (counter instanceof Error) return Effect.fail(counter)
      counters.set(key, counter)
      return Effect.succeed(counter)
    }))
