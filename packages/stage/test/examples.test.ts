import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { quickstart } from "../examples/quickstart.ts"

describe("README quick start (examples/quickstart.ts)", () => {
  it.effect("three fibers, one reader at a time, each gets its own event", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* quickstart, ["hi alice", "hi bob", "hi carol"])
    }))
})
