/**
 * Runs the README example (`examples/quick-start.ts`) for real: a TCP echo server shared by
 * two concurrent programs, started once, stopped after the last one is done.
 */
import { SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { program } from "../examples/quick-start.ts"
import { alive, eventually, freePort, supervisors, uniqueName } from "./util.ts"

process.env["QUIESCE_RUNTIME_DIR"] = mkdtempSync(join(tmpdir(), "quiesce-example-"))
const name = uniqueName("example")

afterAll(async () => {
  await Effect.runPromise(Effect.ignore(SharedService.forceStop(name)))
})

describe("README example", () => {
  it("the README shows examples/quick-start.ts verbatim", () => {
    const file = readFileSync(fileURLToPath(new URL("../examples/quick-start.ts", import.meta.url)), "utf8")
    const readme = readFileSync(fileURLToPath(new URL("../README.md", import.meta.url)), "utf8")
    assert.include(readme, "```ts\n" + file + "```")
  })

  it("two concurrent programs share one server; it stops after the grace period", async () => {
    const port = await freePort()
    const [a, b] = await Promise.all([Effect.runPromise(program(name, port)), Effect.runPromise(program(name, port))])
    assert.strictEqual(a.pid, b.pid)
    assert.strictEqual(a.port, port)
    assert.isTrue(alive(a.pid))
    assert.isTrue(await eventually(() => !alive(a.pid), 15000), "stopped ~1 s after both finished")
    assert.isTrue(await eventually(() => supervisors(name).length === 0, 15000))
  }, 60_000)
})
