import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { program } from "../examples/quickstart.ts"

it.live("the README example runs as documented", () =>
  Effect.gen(function*() {
    assert.deepStrictEqual(yield* program, [
      "late user: refused",
      "user done",
      "run down: safe to destroy the resource"
    ])
  }))
