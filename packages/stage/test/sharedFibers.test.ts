/**
 * Randomized test of the shared stage's worker-local side (parking, inbox
 * records, wake-up sequence numbers, cancellation): fibers on two attachments
 * of one shared stage, with real doorbells and pumps, random timeouts, random
 * interruptions, heads that notify random tokens (their own included), fail
 * or return. Checked: never two heads; every notify that found a holder was
 * delivered to it exactly once (a `Token`, or still pending when it
 * withdrew); everyone finishes once heads stop (liveness).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { SharedStage } from "@quiesce/stage"
import { mulberry32 } from "./random.ts"

interface Internals {
  readonly shared: { pendingOf(slot: number): number; checkLocked(): string | undefined }
}

interface Participant {
  readonly token: string
  notified: number
  tokens: number
  pendingAtEnd: number
  fiber: Fiber.Fiber<void, unknown> | undefined
}

const TOKENS = Array.from({ length: 8 }, (_, i) => `t${i}`)
const yieldToLoop = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

const runSeed = (seed: number, steps: number) =>
  Effect.scoped(Effect.gen(function*() {
    const random = mulberry32(seed)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
    const memory = SharedStage.makeMemory({ capacity: 32, maxWorkers: 2 })
    const stages = [
      yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null }),
      yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
    ]
    const shared = (stages[0] as unknown as Internals).shared
    const holder = new Map<string, Participant>()
    const all: Array<Participant> = []
    const violations: Array<string> = []
    let heads = 0
    let stopping = false

    const head = (director: SharedStage.Director<null, string, null, never>) =>
      Effect.gen(function*() {
        if (++heads !== 1) violations.push(`seed ${seed}: ${heads} heads`)
        for (let i = 0; i < 20 && !stopping; i++) {
          const r = random()
          if (r < 0.5) {
            const token = pick(TOKENS)
            const expected = holder.get(token)
            const delivered = yield* director.notify(token)
            if (delivered !== (expected !== undefined)) violations.push(`seed ${seed}: notify(${token}) = ${delivered}`)
            if (delivered && expected !== undefined) expected.notified++
          } else if (r < 0.65) {
            return
          } else if (r < 0.7) {
            return yield* Effect.fail("head failed")
          } else {
            yield* yieldToLoop
          }
        }
      }).pipe(Effect.ensuring(Effect.sync(() => heads--)))

    const participant = (p: Participant, stage: SharedStage.SharedStage<null, string, null>) =>
      Effect.scoped(Effect.gen(function*() {
        const exit = yield* Effect.exit(SharedStage.ticket(stage, p.token))
        if (Exit.isFailure(exit)) {
          if (!holder.has(p.token)) violations.push(`seed ${seed}: ${p.token} refused while free`)
          return
        }
        const ticket = exit.value as unknown as { slot: number }
        holder.set(p.token, p)
        // Runs before the ticket is withdrawn (finalizers run in reverse order).
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            holder.delete(p.token)
            p.pendingAtEnd = shared.pendingOf(ticket.slot)
          })
        )
        while (!stopping) {
          const timeout = random() < 0.5 ? undefined : 1 + Math.floor(random() * 3)
          yield* Effect.exit(Effect.onExit(
            SharedStage.enter(stage, exit.value, timeout === undefined ? { head } : { head, timeout }),
            (e) => Effect.sync(() => Exit.isSuccess(e) && e.value._tag === "Token" && p.tokens++)
          ))
        }
      }))

    for (let step = 0; step < steps; step++) {
      const r = random()
      const live = all.filter((p) => p.fiber !== undefined && p.fiber.pollUnsafe() === undefined)
      if (r < 0.25 && live.length < 8) {
        const p: Participant = { token: pick(TOKENS), notified: 0, tokens: 0, pendingAtEnd: 0, fiber: undefined }
        all.push(p)
        p.fiber = yield* Effect.forkDetach(participant(p, pick(stages)))
      } else if (r < 0.3 && live.length > 0) {
        yield* Fiber.interrupt(pick(live).fiber!)
      } else {
        yield* yieldToLoop
      }
      const problem = shared.checkLocked()
      if (problem !== undefined) violations.push(`seed ${seed}: ${problem}`)
    }
    stopping = true
    for (let i = 0; i < 5_000 && all.some((p) => p.fiber!.pollUnsafe() === undefined); i++) yield* yieldToLoop
    const stuck = all.filter((p) => p.fiber!.pollUnsafe() === undefined).length
    if (stuck > 0) violations.push(`seed ${seed}: ${stuck} participants never finished`)
    for (const p of all) {
      if (p.notified !== p.tokens + p.pendingAtEnd) {
        violations.push(`seed ${seed}: ${p.token} notified ${p.notified}, saw ${p.tokens} + pending ${p.pendingAtEnd}`)
      }
    }
    return violations
  }))

describe("SharedStage fibers", () => {
  it.live("random fibers on two attachments: one head, exactly-once delivery, liveness", () =>
    Effect.gen(function*() {
      for (let seed = 1; seed <= 12; seed++) {
        assert.deepStrictEqual(yield* runSeed(seed, 400), [])
      }
    }), { timeout: 90_000 })
})
