import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { quickstart } from "../examples/quickstart.ts"
import { sharedExample } from "../examples/shared.ts"

describe("README quick start (examples/quickstart.ts)", () => {
  it.effect("three fibers, one reader at a time, each gets its own event", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* quickstart, ["hi alice", "hi bob", "hi carol"])
    }))
})

describe("SharedStage example (examples/shared.ts and examples/sharedWorker.ts, quoted by SharedStage.attach)", () => {
  it.live("two workers × 8 fibers: each fiber gets the answer to its own request, whichever worker heads", () =>
    Effect.gen(function*() {
      const answers = yield* sharedExample(8)
      assert.deepStrictEqual(answers, [0, 1].map((w) => Array.from({ length: 8 }, (_, f) => `answer to ${w * 1000 + f}`)))
    }), { timeout: 60_000 })
})
