/**
 * Randomized test of the shared stage's worker-local side (parking, inbox
 * records, wake-up sequence numbers, cancellation): fibers on two attachments
 * of one shared stage, with real doorbells and pumps, random timeouts, random
 * interruptions, tickets withdrawn from outside at random (heading ones
 * included), heads that notify random tokens (their own included), fail,
 * return, or clean up slowly (uninterruptibly, over event-loop turns).
 * Checked: never two heads (a withdrawn head counts until its clean-up is
 * done); a withdrawn token is free the moment the withdrawal returns; every
 * notify that found a holder was delivered to it exactly once (a `Token`, or
 * still pending when it withdrew); everyone finishes once heads stop
 * (liveness).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
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
  ticketScope: Scope.Closeable | undefined
  withdrawn: boolean
  heading: boolean
  stage: SharedStage.SharedStage<null, string, null> | undefined
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
    let withdrawals = 0
    let headsWithdrawn = 0

    const head = (p: Participant) => (director: SharedStage.Director<null, string, null, never>) =>
      Effect.gen(function*() {
        p.heading = true
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
      }).pipe(Effect.ensuring(Effect.suspend(() => {
        p.heading = false
        // Some heads take event-loop turns to clean up, uninterruptibly: nobody may head meanwhile.
        return Effect.andThen(random() < 0.3 ? yieldToLoop : Effect.void, Effect.sync(() => heads--))
      })))

    const participant = (p: Participant, stage: SharedStage.SharedStage<null, string, null>) =>
      Effect.scoped(Effect.gen(function*() {
        // Its own scope, closed when the participant ends or, at random, from outside.
        const ticketScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(ticketScope, Exit.void))
        const exit = yield* Effect.exit(Effect.provideService(SharedStage.ticket(stage, p.token), Scope.Scope, ticketScope))
        if (Exit.isFailure(exit)) {
          if (!holder.has(p.token)) violations.push(`seed ${seed}: ${p.token} refused while free`)
          return
        }
        const ticket = exit.value as unknown as { slot: number }
        holder.set(p.token, p)
        p.ticketScope = ticketScope
        // Runs before the ticket is withdrawn (finalizers run in reverse order).
        yield* Scope.addFinalizer(
          ticketScope,
          Effect.sync(() => {
            p.withdrawn = true
            holder.delete(p.token)
            p.pendingAtEnd = shared.pendingOf(ticket.slot)
          })
        )
        while (!stopping && !p.withdrawn) {
          const timeout = random() < 0.5 ? undefined : 1 + Math.floor(random() * 3)
          yield* Effect.exit(Effect.onExit(
            SharedStage.enter(stage, exit.value, timeout === undefined ? { head: head(p) } : { head: head(p), timeout }),
            (e) => Effect.sync(() => Exit.isSuccess(e) && e.value._tag === "Token" && p.tokens++)
          ))
        }
      }))

    for (let step = 0; step < steps; step++) {
      const r = random()
      const live = all.filter((p) => p.fiber !== undefined && p.fiber.pollUnsafe() === undefined)
      if (r < 0.25 && live.length < 8) {
        const p: Participant = {
          token: pick(TOKENS),
          notified: 0,
          tokens: 0,
          pendingAtEnd: 0,
          fiber: undefined,
          ticketScope: undefined,
          withdrawn: false,
          heading: false,
          stage: undefined
        }
        all.push(p)
        p.stage = pick(stages)
        p.fiber = yield* Effect.forkDetach(participant(p, p.stage))
      } else if (r < 0.3 && live.length > 0) {
        yield* Fiber.interrupt(pick(live).fiber!)
      } else if (r < 0.36) {
        // Withdraw a ticket from outside, whatever its holder is doing (heads more often than not).
        const holders = live.filter((p) => p.ticketScope !== undefined && !p.withdrawn)
        const heading = holders.filter((p) => p.heading)
        const victim = heading.length > 0 && random() < 0.6 ? pick(heading) : holders.length > 0 ? pick(holders) : undefined
        if (victim !== undefined) {
          withdrawals++
          if (victim.heading) headsWithdrawn++
          yield* Scope.close(victim.ticketScope!, Exit.void)
          // Free the moment the withdrawal returns: another worker may take it at once.
          const other = stages.find((s) => s !== victim.stage)!
          const retaken = yield* Effect.exit(Effect.scoped(SharedStage.ticket(other, victim.token)))
          if (Exit.isFailure(retaken)) violations.push(`seed ${seed}: ${victim.token} still held after its withdrawal`)
        }
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
    return { violations, withdrawals, headsWithdrawn }
  }))

describe("SharedStage fibers", () => {
  it.live("random fibers on two attachments: one head, exactly-once delivery, liveness", () =>
    Effect.gen(function*() {
      let withdrawals = 0
      let headsWithdrawn = 0
      for (let seed = 1; seed <= 12; seed++) {
        const result = yield* runSeed(seed, 400)
        assert.deepStrictEqual(result.violations, [])
        withdrawals += result.withdrawals
        headsWithdrawn += result.headsWithdrawn
      }
      // The generator exercised withdrawals, of heads too.
      assert.isAbove(withdrawals, 50)
      assert.isAbove(headsWithdrawn, 10)
    }), { timeout: 90_000 })
})
