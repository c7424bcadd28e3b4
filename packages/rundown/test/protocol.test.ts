/**
 * The shared ref's cross-thread protocol, checked exhaustively (test/model/protocol.ts): every
 * interleaving of the atomic steps of a few threads, any of them dying at any step, the slots of
 * dead threads (and, a bounded number of times, of live threads with a blocked event loop)
 * reclaimed by a waiter's lease check at any point. The number of states explored is printed.
 *
 * Then the same checker against deliberately broken variants of the protocol: each must be
 * caught, which shows that the checks can fail.
 */
import { assert, describe, it } from "vitest"
import { check, type Scenario, type Variant } from "./model/protocol.ts"

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "two holders in two slots, one waiter",
    programs: [["acquire", "release"], ["acquire", "release"], ["wait"]],
    slots: 2,
    stalls: 1,
    checks: 1
  },
  {
    name: "two waiters (two beginners), one holder",
    programs: [["acquire", "release"], ["wait"], ["wait"]],
    slots: 1,
    stalls: 1,
    checks: 1
  },
  {
    name: "a holder that acquires again after the waiter's reInit",
    programs: [["acquire", "release", "acquire", "release"], ["wait", "reinit", "wait"]],
    slots: 1,
    stalls: 2,
    checks: 2
  },
  {
    name: "a holder evicted twice, re-claiming its slot",
    programs: [["acquire", "release", "acquire", "release"], ["wait"]],
    slots: 2,
    stalls: 2,
    checks: 3
  }
]

describe("the shared ref's protocol, every interleaving", () => {
  for (const scenario of scenarios) {
    it(scenario.name, () => {
      const started = performance.now()
      const result = check(scenario)
      console.log(
        `protocol model, ${scenario.name}: ${result.states.toLocaleString("en")} states, ` +
          `${result.violation === undefined ? "no violation" : "VIOLATION"} ` +
          `(${scenario.programs.length} threads, ${scenario.slots} slot(s), ${scenario.stalls} stall(s), ` +
          `${scenario.checks} check(s) per wait; ${Math.round(performance.now() - started)} ms)`
      )
      assert.isUndefined(result.violation, result.violation)
      assert.isAbove(result.states, 1000)
    }, 60_000)
  }
})

/** The first scenario without stalls or lease checks: deaths only. */
const holdersOnly: Scenario = { ...scenarios[0]!, stalls: 0, checks: 0 }

const mutants: ReadonlyArray<{ readonly variant: Variant; readonly scenario: Scenario; readonly why: string }> = [
  { variant: { noStateCheck: true }, scenario: holdersOnly, why: "an acquisition admitted after the rundown began" },
  { variant: { noTags: true }, scenario: scenarios[0]!, why: "a stalled owner's release takes the next owner's reference" },
  { variant: { noScan: true }, scenario: holdersOnly, why: "a rundown completed while another slot still counts" },
  { variant: { noRecheck: true }, scenario: scenarios[2]!, why: "a repair wipes a live claim's count" },
  {
    variant: { noOwnerBump: true },
    scenario: scenarios[2]!,
    why: "a reclaim that leaves the owner thinking it still owns the slot"
  }
]

describe("the checker catches broken variants of the protocol", () => {
  for (const { scenario, variant, why } of mutants) {
    it(`${Object.keys(variant)[0]}: ${why}`, () => {
      const result = check(scenario, variant)
      assert.isDefined(result.violation, `the variant ${JSON.stringify(variant)} went unnoticed`)
    }, 60_000)
  }
})
