/**
 * `reaper: "in-process"` on the kernel counter, with real processes: a `make` service supervised
 * by a fiber of the client that started it, whose service does not die with that client. Other
 * processes join it (the owner lock is stamped with the supervising process), a holder's standby
 * adopts it when its supervisor is SIGKILLed, and a service that outlived its supervisor is
 * stopped after the last client either way (by the standby that adopted it, or by the last
 * releaser).
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { mkdtempSync, existsSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, eventuallyAsync, harness, inspect, starts } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-inprocess-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir
const h = harness(dir)
afterAll(() => h.cleanup())

const stops = (name: string): Array<number> => {
  const f = join(dir, `${name}.stops`)
  return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter((l) => l !== "").map(Number) : []
}

describe("in-process supervision across processes (SysV)", () => {
  it("a second process joins the generation; the supervising process SIGKILLed, the holder's standby adopts it and stops it after the last release", async () => {
    const name = h.newName("inproc")
    const a = h.client({ inProcess: true })
    const b = h.client({ inProcess: true })
    await Promise.all([a.ready(), b.ready()])
    assert.strictEqual((await a.request(`acquire ${name}`)).started, true)
    assert.strictEqual((await b.request(`acquire ${name}`)).started, false)
    const [service] = starts(dir, name)
    assert.strictEqual((await inspect(name)).supervisor, a.pid)
    a.kill("SIGKILL")
    assert.isTrue(await eventuallyAsync(async () => (await inspect(name)).supervisor === b.pid, 15_000), "b adopted the generation")
    assert.isTrue(alive(service!), "the service outlived its first supervisor")
    await b.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(service!), 15_000), "stopped after the last release")
    assert.deepStrictEqual(stops(name), [b.pid])
    assert.strictEqual(starts(dir, name).length, 1)
  }, 60_000)

  it("the supervising process SIGKILLed and the last holder released at once: the service is stopped all the same", async () => {
    const name = h.newName("inproc-last")
    const a = h.client({ inProcess: true })
    const b = h.client({ inProcess: true })
    await Promise.all([a.ready(), b.ready()])
    await a.request(`acquire ${name}`)
    await b.request(`acquire ${name}`)
    const [service] = starts(dir, name)
    a.kill("SIGKILL")
    await a.exited
    await b.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(service!), 15_000), "stopped after the last release")
    assert.deepStrictEqual(stops(name), [b.pid])
    const status = await inspect(name)
    assert.isFalse(status.running)
  }, 60_000)
})
