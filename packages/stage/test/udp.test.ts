import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { udpExample } from "../examples/udp.ts"

describe("UDP example (real sockets, peers in a worker thread)", () => {
  it.live("64 fibers × 8 requests over one socket: every fiber gets exactly its own replies", () =>
    Effect.gen(function*() {
      const report = yield* udpExample({ peers: 4, fibers: 64, requestsPerFiber: 8 })
      assert.strictEqual(report.requests, 512)
      assert.strictEqual(report.misrouted, 0)
      // Headship moved between fibers as their replies arrived.
      assert.isAbove(report.heads, 1)
    }), { timeout: 60_000 })
})
