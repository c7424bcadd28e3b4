/**
 * The graceful-shutdown example, on real sockets: new requests get 503 while the server
 * drains, the in-flight request finishes, and only then does the server close.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { claims, runScenario, runScenarioWith } from "../examples/http-shutdown.ts"

describe("examples/http-shutdown.ts", () => {
  it.live("drains in-flight requests, answers 503 meanwhile, then closes", () =>
    Effect.gen(function*() {
      const report = yield* runScenario
      const context = report.narration.join("\n")
      assert.deepStrictEqual(report.before, { _tag: "Response", status: 200, body: "ok" }, context)
      assert.deepStrictEqual(report.duringShutdown, { _tag: "Response", status: 503, body: "shutting down" }, context)
      assert.isTrue(report.shutdownWaitedForInFlight, context)
      assert.deepStrictEqual(report.inFlight, { _tag: "Response", status: 200, body: "slow request finished" }, context)
      assert.deepStrictEqual(report.afterShutdown, { _tag: "ConnectionError", code: "ECONNREFUSED" }, context)
      assert.strictEqual(report.narration.length, 9)
      // What examples/demo.ts prints as checked claims.
      assert.deepStrictEqual(claims(report).filter((c) => !c.held), [], context)
    }), { timeout: 30_000 })

  it.live("narrates live, line by line, what the report records", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const report = yield* runScenarioWith({ narrate: (line) => lines.push(line) })
      assert.deepStrictEqual(lines, report.narration)
      assert.match(lines[4]!, /503/)
    }), { timeout: 30_000 })
})
