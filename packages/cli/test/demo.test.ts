import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { join } from "node:path"

const demo = join(import.meta.dirname, "..", "..", "..", "examples", "demo.ts")

describe("npm run demo", () => {
  it.live("shows everything it claims, and exits 0", () =>
    Effect.gen(function*() {
      const result = yield* Effect.callback<{ code: number | null; output: string }>((resume) => {
        const child = ChildProcess.spawn(process.execPath, ["--conditions=@quiesce/source", demo], {
          stdio: ["ignore", "pipe", "pipe"]
        })
        let output = ""
        child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
        child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
        child.on("close", (code) => resume(Effect.succeed({ code, output })))
        return Effect.sync(() => void child.kill("SIGKILL"))
      })
      assert.strictEqual(result.code, 0, result.output)
      assert.notInclude(result.output, "✗")
      assert.include(result.output, "the service was started exactly once")
      assert.include(result.output, "the killed command no longer counts")
      assert.include(result.output, "a request arriving during the drain was turned away with 503")
      assert.include(result.output, "the server did not close while a request was in flight")
      assert.include(result.output, "every fiber got exactly its own replies")
      assert.include(result.output, "Everything shown happened")
    }), { timeout: 90_000 })
})
