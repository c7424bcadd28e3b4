import { Effect, Fiber } from "effect"
import { RundownRef } from "@quiesce/rundown"

// A resource used by many fibers, torn down once they are done with it.
export const program = Effect.gen(function*() {
  const log: Array<string> = []
  const ref = RundownRef.makeUnsafe()

  // A user inside the resource...
  const user = yield* Effect.forkChild(
    RundownRef.protect(ref, Effect.sleep("50 millis").pipe(Effect.andThen(Effect.sync(() => log.push("user done")))))
  )
  yield* Effect.yieldNow

  // ...while the owner runs it down: from now on nobody new gets in,
  const rundown = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
  yield* Effect.yieldNow
  const late = yield* Effect.exit(RundownRef.protect(ref, Effect.void))
  log.push(`late user: ${late._tag === "Failure" ? "refused" : "admitted"}`)

  // and the rundown returns once the last user has left.
  yield* Fiber.join(rundown)
  log.push("run down: safe to destroy the resource")
  yield* Fiber.join(user)
  return log
})
// ["late user: refused", "user done", "run down: safe to destroy the resource"]
