/**
 * Every code example in the root README is one of the packages' example files, verbatim; the
 * packages' tests run those files (rundown/test/readme.test.ts, stage/test/examples.test.ts,
 * shared-service/test/example.test.ts, cli/test/example.test.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import { readFileSync } from "node:fs"

const root = new URL("../../../", import.meta.url)
const read = (path: string) => readFileSync(new URL(path, root), "utf8")

const examples = [
  "packages/rundown/examples/quickstart.ts",
  "packages/stage/examples/quickstart.ts",
  "packages/shared-service/examples/quick-start.ts",
  "packages/cli/examples/share.sh"
]

describe("root README", () => {
  const readme = read("README.md")
  const blocks = [...readme.matchAll(/```(ts|sh)\n([\s\S]*?)```/g)].map((m) => m[2]!)
  const quickStart = "npm ci && npm run demo\nnpm ci && npm test\n"

  it("shows the two quick-start lines", () => {
    assert.strictEqual(blocks[0], quickStart)
  })

  it.each(examples)("shows %s verbatim", (path) => {
    assert.include(blocks, read(path))
  })

  it("shows no code that is not a tested example", () => {
    const known = new Set([quickStart, ...examples.map(read)])
    assert.deepStrictEqual(blocks.filter((b) => !known.has(b)), [])
  })
})
