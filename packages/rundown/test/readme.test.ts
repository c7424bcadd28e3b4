import { assert, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
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

it("the README's example is examples/quickstart.ts, verbatim", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
  const snippet = /```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  assert.strictEqual(snippet, readFileSync(new URL("../examples/quickstart.ts", import.meta.url), "utf8"))
})
