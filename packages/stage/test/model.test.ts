/**
 * Randomized model test of the in-process stage: many seeds, random
 * participants (tokens drawn from a small pool, so tokens are reused and
 * refused), random timeouts, heads that notify random tokens (their own
 * included), sleep, return, fail, die, clean up slowly (uninterruptibly, over
 * scheduler turns), participants interrupted at random points, and tickets
 * withdrawn from outside at random points — while waiting, promoted, heading
 * or idle. Checked throughout: never two heads (a withdrawn head counts until
 * its clean-up is done), never a parked waiter without a head, a ticket is
 * refused only while its token is held, a withdrawn token is free the moment
 * the withdrawal returns and no head (however soon it runs) sees it held; at
 * the end: every notify that found a holder was delivered to exactly that
 * holder exactly once (as a `Token` exit, or still pending when it withdrew),
 * and every participant finished (liveness).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { PreventSchedulerYield } from "effect/Scheduler"
import { TestClock } from "effect/testing"
import { Stage } from "@quiesce/stage"
import { internals, type TicketInternals } from "./internals.ts"
import { mulberry32 } from "./random.ts"

interface Participant {
  readonly id: number
  readonly token: string
  ticket: TicketInternals | undefined
  /** The scope the ticket was taken in; closing it from outside withdraws the ticket. */
  ticketScope: Scope.Closeable | undefined
  withdrawn: boolean
  fiber: Fiber.Fiber<void, unknown> | undefined
  notified: number
  tokens: number
  refused: boolean
  heading: boolean
}

interface Stats {
  operations: number
  notifies: number
  delivered: number
  headed: number
  timeouts: number
  refusals: number
  interrupts: number
  withdrawals: number
  headsWithdrawn: number
}

const TOKENS = Array.from({ length: 12 }, (_, i) => `t${i}`)

const runSeed = (seed: number, steps: number, stats: Stats) =>
  Effect.gen(function*() {
    const random = mulberry32(seed)
    const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
    const stage = Stage.makeUnsafe<null, string, null>({ resource: null, buffer: null })
    const impl = internals(stage)
    const holder = new Map<string, Participant>()
    const all: Array<Participant> = []
    let heads = 0
    let stopping = false
    const violations: Array<string> = []

    const head = (p: Participant) => (director: Stage.Director<null, string, null>) =>
      Effect.gen(function*() {
        stats.headed++
        if (++heads !== 1) violations.push(`seed ${seed}: ${heads} heads at once`)
        for (let i = 0; i < 50 && !stopping; i++) {
          const r = random()
          stats.operations++
          if (r < 0.5) {
            const token = pick(TOKENS)
            const expected = holder.get(token)
            const delivered = director.notifyUnsafe(token)
            stats.notifies++
            if (delivered !== (expected !== undefined)) violations.push(`seed ${seed}: notify(${token}) returned ${delivered}`)
            if (expected !== undefined && delivered) expected.notified++
          } else if (r < 0.65) {
            return "returned"
          } else if (r < 0.7) {
            return yield* Effect.fail("head failed" as const)
          } else if (r < 0.73) {
            return yield* Effect.die("head died")
          } else {
            yield* Effect.sleep(Math.floor(random() * 3))
          }
        }
        return "done"
      }).pipe(
        // Some heads take scheduler turns to clean up, uninterruptibly: nobody may head meanwhile.
        Effect.ensuring(Effect.suspend(() => {
          let turns = random() < 0.3 ? 1 + Math.floor(random() * 4) : 0
          return Effect.andThen(
            Effect.whileLoop({ while: () => turns-- > 0, body: () => Effect.yieldNow, step: () => {} }),
            Effect.sync(() => heads--)
          )
        })),
        Effect.ensuring(Effect.sync(() => p.heading = false)),
        (effect) => Effect.andThen(Effect.sync(() => p.heading = true), effect)
      )

    const participant = (p: Participant) =>
      Effect.scoped(Effect.gen(function*() {
        // Its own scope, closed when the participant ends or, at random, from outside.
        const ticketScope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(ticketScope, Exit.void))
        const ticket = yield* Effect.provideService(
          Effect.gen(function*() {
            const exit = yield* Effect.exit(Stage.ticket(stage, p.token))
            if (Exit.isFailure(exit)) {
              stats.refusals++
              p.refused = true
              if (!holder.has(p.token)) violations.push(`seed ${seed}: ${p.token} refused while free`)
              return undefined
            }
            if (holder.has(p.token)) violations.push(`seed ${seed}: ${p.token} granted twice`)
            holder.set(p.token, p)
            p.ticket = exit.value as unknown as TicketInternals
            p.ticketScope = ticketScope
            // Runs before the ticket's own finalizer (finalizers run in reverse order).
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                p.withdrawn = true
                holder.delete(p.token)
              })
            )
            return exit.value
          }),
          Scope.Scope,
          ticketScope
        ).pipe(Effect.provideService(PreventSchedulerYield, true))
        if (ticket === undefined) return
        while (!stopping && !p.withdrawn) {
          const timeout = random() < 0.5 ? undefined : Math.floor(random() * 5)
          yield* Effect.exit(Effect.onExit(
            Stage.enter(stage, ticket, timeout === undefined ? { head: head(p) } : { head: head(p), timeout }),
            (exit) =>
              Effect.sync(() => {
                if (Exit.isSuccess(exit) && exit.value._tag === "Token") p.tokens++
                if (Exit.isSuccess(exit) && exit.value._tag === "Timeout") stats.timeouts++
              })
          ))
          stats.operations++
        }
      }))

    let nextId = 0
    const checkInvariants = () => {
      if (heads > 1) violations.push(`seed ${seed}: two heads`)
      if (impl.head === undefined && impl.waiting !== 0) violations.push(`seed ${seed}: ${impl.waiting} parked without a head`)
    }

    for (let step = 0; step < steps; step++) {
      stats.operations++
      const r = random()
      const live = all.filter((p) => p.fiber !== undefined && p.fiber.pollUnsafe() === undefined)
      if (r < 0.3 && live.length < 10) {
        const p: Participant = {
          id: nextId++,
          token: pick(TOKENS),
          ticket: undefined,
          ticketScope: undefined,
          withdrawn: false,
          fiber: undefined,
          notified: 0,
          tokens: 0,
          refused: false,
          heading: false
        }
        all.push(p)
        p.fiber = yield* Effect.forkDetach(participant(p))
      } else if (r < 0.38 && live.length > 0) {
        stats.interrupts++
        const victim = pick(live)
        // Sometimes wait for the interruption, sometimes let it race with the next steps.
        if (random() < 0.5) yield* Fiber.interrupt(victim.fiber!)
        else victim.fiber!.interruptUnsafe()
      } else if (r < 0.44) {
        // Withdraw a ticket from outside, whatever its holder is doing (heads more often than not).
        const holders = live.filter((p) => p.ticketScope !== undefined && !p.withdrawn)
        const heading = holders.filter((p) => p.heading)
        const victim = heading.length > 0 && random() < 0.6 ? pick(heading) : holders.length > 0 ? pick(holders) : undefined
        if (victim !== undefined) {
          stats.withdrawals++
          if (victim.heading) stats.headsWithdrawn++
          yield* Scope.close(victim.ticketScope!, Exit.void)
          // Free the moment the withdrawal returns: a notify finds nobody (and changes nothing).
          if (impl.notify(victim.token)) violations.push(`seed ${seed}: ${victim.token} still held after its withdrawal`)
        }
      } else if (r < 0.7) {
        yield* TestClock.adjust(Math.floor(random() * 4))
      } else {
        const n = 1 + Math.floor(random() * 4)
        for (let i = 0; i < n; i++) yield* Effect.yieldNow
      }
      checkInvariants()
    }

    // Liveness: once heads stop polling, every participant leaves.
    stopping = true
    for (let round = 0; round < 2_000; round++) {
      if (all.every((p) => p.fiber === undefined || p.fiber.pollUnsafe() !== undefined)) break
      yield* TestClock.adjust(5)
      yield* Effect.yieldNow
      checkInvariants()
    }
    const stuck = all.filter((p) => p.fiber !== undefined && p.fiber.pollUnsafe() === undefined)
    if (stuck.length > 0) violations.push(`seed ${seed}: ${stuck.length} participants never finished`)
    assert.strictEqual(impl.head, undefined)
    assert.strictEqual(impl.waiting, 0)
    for (const p of all) {
      if (p.ticket === undefined) continue
      stats.delivered += p.notified
      const pending = p.ticket.pending
      if (p.notified !== p.tokens + pending) {
        violations.push(`seed ${seed}: participant ${p.id} (${p.token}) notified ${p.notified}, saw ${p.tokens} + pending ${pending}`)
      }
    }
    assert.deepStrictEqual(violations, [])
  })

describe("Stage model", () => {
  it.effect("random schedules: one head, exactly-once delivery, liveness (≥100,000 operations)", () =>
    Effect.gen(function*() {
      const stats: Stats = {
        operations: 0,
        notifies: 0,
        delivered: 0,
        headed: 0,
        timeouts: 0,
        refusals: 0,
        interrupts: 0,
        withdrawals: 0,
        headsWithdrawn: 0
      }
      let seeds = 0
      for (let seed = 1; stats.operations < 100_000 && seed <= 500; seed++) {
        yield* runSeed(seed, 1_500, stats)
        seeds++
      }
      assert.isAtLeast(stats.operations, 100_000)
      // The generator actually exercised every path it claims to.
      assert.isAbove(stats.delivered, 1_000)
      assert.isAbove(stats.timeouts, 100)
      assert.isAbove(stats.refusals, 100)
      assert.isAbove(stats.interrupts, 100)
      assert.isAbove(stats.withdrawals, 100)
      assert.isAbove(stats.headsWithdrawn, 50)
      assert.isAbove(stats.headed, 1_000)
      console.log(`model: ${seeds} seeds`, stats)
    }), { timeout: 120_000 })
})
