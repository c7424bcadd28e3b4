/**
 * RundownRef.protect against Semaphore.withPermits(1), interleaved in one process.
 *
 * Each side builds its protected effect per operation (as a request handler would) and runs
 * it inside one `Effect.whileLoop`, so the loop's own cost is the same on both sides. The
 * protected effect is `Effect.void`, so the figures are the cost of the protection itself.
 */
import { Effect, Fiber, Semaphore } from "effect"
import { compare } from "../../../bench/harness.ts"
import { RundownRef } from "@quiesce/rundown"

const iterations = 40_000
// More rounds than the harness default: the medians are taken on a machine shared with other work.
const rounds = 25

const loop = (make: () => Effect.Effect<unknown, unknown>) => (n: number) => {
  let i = 0
  Effect.runSync(Effect.whileLoop({ while: () => i++ < n, body: make, step: () => {} }))
}

// The refused cases fail; both sides of those comparisons absorb the outcome with Effect.exit.
const exitOf = (make: () => Effect.Effect<unknown, unknown>) => () => Effect.exit(make())

const work = Effect.void
const semaphore = Semaphore.makeUnsafe(1)
const withPermit = { name: "Semaphore.withPermits(1)", run: loop(() => semaphore.withPermits(1)(work)) }
const withPermitExit = {
  name: "Effect.exit(Semaphore.withPermits(1))",
  run: loop(exitOf(() => semaphore.withPermits(1)(work)))
}

const local = RundownRef.makeUnsafe()
await compare({
  title: "RundownRef.protect (in-process) vs Semaphore.withPermits(1)",
  subject: { name: "protect", run: loop(() => RundownRef.protect(local, work)) },
  baseline: withPermit,
  iterations,
  rounds,
  goal: { maxRatio: 0.9 }
})

const shared = RundownRef.makeSharedUnsafe()
await compare({
  title: "RundownRef.protect (SharedArrayBuffer) vs Semaphore.withPermits(1)",
  subject: { name: "protect (shared)", run: loop(() => RundownRef.protect(shared, work)) },
  baseline: withPermit,
  iterations,
  rounds,
  goal: { maxRatio: 1.0 }
})

/** Puts `ref` in RunningDown for good (one reference held forever): every protect is refused. */
const holdRunningDown = (ref: RundownRef.RundownRef) => {
  Effect.runSync(RundownRef.tryAcquire(ref))
  const waiter = Effect.runFork(RundownRef.waitForRundown(ref))
  if (RundownRef.stateUnsafe(ref)._tag !== "RunningDown") throw new Error("bench setup: not running down")
  return waiter
}

const runningDown = RundownRef.makeUnsafe()
holdRunningDown(runningDown)
await compare({
  title: "RundownRef.protect on a ref being run down (refused) vs Semaphore.withPermits(1)",
  subject: { name: "protect (refused)", run: loop(exitOf(() => RundownRef.protect(runningDown, work))) },
  baseline: withPermitExit,
  iterations,
  rounds,
  goal: { maxRatio: 0.7 }
})

const sharedRunningDown = RundownRef.makeSharedUnsafe()
const waiter = holdRunningDown(sharedRunningDown)
await compare({
  title: "RundownRef.protect on a shared ref being run down (refused) vs Semaphore.withPermits(1)",
  subject: { name: "protect (shared, refused)", run: loop(exitOf(() => RundownRef.protect(sharedRunningDown, work))) },
  baseline: withPermitExit,
  iterations,
  rounds,
  goal: { maxRatio: 0.7 }
})
// The shared waiter keeps the event loop alive until it is interrupted.
Effect.runFork(Fiber.interrupt(waiter))
