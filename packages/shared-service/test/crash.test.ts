/**
 * SIGKILL at every phase, with real processes: the starter while it holds the startup lock, a
 * holder, the last client, and the supervisor.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, eventuallyAsync, harness, inspect, supervisors, starts } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-crash-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { cleanup, client, newName } = harness(dir)
afterAll(cleanup)

describe("SIGKILL at every phase", () => {
  it("the starter, while holding the startup lock: the next client gets the lock at once and starts", async () => {
    const name = newName("kill-starter")
    const a = client({ startDelayMs: 30000 })
    const b = client({ lockTimeoutMs: 10000 })
    await Promise.all([a.ready(), b.ready()])
    const starting = a.next((e) => e.ev === "starting")
    a.send(`acquire ${name}`)
    await starting
    const waiting = b.request(`acquire ${name}`)
    // b is now waiting on the lock a holds (a sleeps in `start` for 30 s).
    assert.strictEqual((await inspect(name)).count, 0)
    const killedAt = performance.now()
    a.kill("SIGKILL")
    const got = await waiting
    assert.strictEqual(got.ev, "acquired", JSON.stringify(got))
    assert.isTrue(got.started === true)
    assert.isBelow(performance.now() - killedAt, 8000, "well before b's 10 s lock timeout")
    await eventually(() => starts(dir, name).length > 0, 5000)
    assert.deepStrictEqual(starts(dir, name), [got.pid], "only b started the service")
    await b.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(got.pid as number), 15000), "stopped after the last release")
  }, 60_000)

  it("the starter, after spawning the service and before it is ready: its supervisor stops it (no orphan)", async () => {
    const name = newName("kill-spawned")
    const a = client({ ttlMs: 200, commandNeverReadyPort: 1 })
    await a.ready()
    a.send(`acquire ${name}`)
    // The service is up (it recorded itself) and a waits for a readiness that never comes.
    assert.isTrue(await eventually(() => starts(dir, name).length === 1, 15000))
    const [pid] = starts(dir, name)
    assert.isTrue(await eventually(() => supervisors(name).length === 1, 15000), "the supervisor came with it")
    a.kill("SIGKILL")
    await a.exited
    assert.isTrue(await eventually(() => !alive(pid!), 15000), "no orphaned service")
    assert.isTrue(await eventually(() => supervisors(name).length === 0, 15000))
  }, 60_000)

  it("a holder: the count drops, the service keeps running for the others", async () => {
    const name = newName("kill-holder")
    const a = client({ ttlMs: 300 })
    const b = client({ ttlMs: 300 })
    await Promise.all([a.ready(), b.ready()])
    const ga = await a.request(`acquire ${name}`)
    const gb = await b.request(`acquire ${name}`)
    assert.strictEqual(ga.pid, gb.pid)
    assert.strictEqual((await inspect(name)).count, 2)
    b.kill("SIGKILL")
    await b.exited
    assert.strictEqual((await inspect(name)).count, 1)
    // Beyond the grace period the service is still there: a still holds it.
    await new Promise((r) => setTimeout(r, 800))
    assert.isTrue(alive(ga.pid as number))
    assert.isTrue((await inspect(name)).running)
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(ga.pid as number), 15000))
  }, 60_000)

  it("the last client: the supervisor stops the service after the grace period", async () => {
    const name = newName("kill-last")
    const a = client({ ttlMs: 500 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    const pid = got.pid as number
    assert.isTrue(await eventually(() => supervisors(name).length === 1, 15000), "a supervisor is waiting")
    // The count cannot drop before the kill, so the service cannot stop before kill + grace.
    const killedAt = performance.now()
    a.kill("SIGKILL")
    await a.exited
    assert.strictEqual((await inspect(name)).count, 0)
    assert.isTrue(await eventually(() => !alive(pid), 15000), "no orphaned service")
    const took = performance.now() - killedAt
    assert.isAtLeast(took, 495, "not before the grace period")
    assert.isBelow(took, 10000, "grace + a margin (loaded 2-core CI)")
    assert.isTrue(await eventually(() => supervisors(name).length === 0, 10000), "the supervisor exited")
    const status = await inspect(name)
    assert.isUndefined(status.hint, "hint removed")
    assert.strictEqual(status.state, "stopped", "nothing left: no set, no hint, no owner file")
  }, 60_000)

  it("the supervisor: the next client sweeps what its generation left and starts a fresh one; it too stops after the last", async () => {
    const name = newName("kill-supervisor")
    const a = client({ ttlMs: 300 })
    const b = client({ ttlMs: 300 })
    await Promise.all([a.ready(), b.ready()])
    const ga = await a.request(`acquire ${name}`)
    assert.isTrue(await eventually(() => supervisors(name).length === 1, 15000))
    assert.isTrue((await inspect(name)).hasSupervisor, "it holds the owner lock")
    const [supervisor] = supervisors(name)
    process.kill(supervisor!, "SIGKILL")
    assert.isTrue(await eventuallyAsync(() => inspect(name).then((s) => !s.hasSupervisor), 5000), "the kernel dropped its owner lock")
    // A `make` service is not its supervisor's child: it survives it, until the next client sweeps it.
    const gb = await b.request(`acquire ${name}`)
    assert.strictEqual(gb.ev, "acquired", JSON.stringify(gb))
    assert.isTrue(gb.started === true, "a fresh generation")
    assert.notStrictEqual(gb.pid, ga.pid)
    assert.isTrue(await eventually(() => !alive(ga.pid as number), 5000), "the old service was swept, never two at once")
    assert.isTrue(await eventually(() => supervisors(name).some((p) => p !== supervisor), 15000), "a new supervisor")
    a.kill("SIGKILL")
    b.kill("SIGKILL")
    assert.isTrue(await eventually(() => !alive(gb.pid as number), 15000), "stopped after the last client died")
    assert.isTrue(await eventually(() => supervisors(name).length === 0, 15000))
    assert.strictEqual((await inspect(name)).state, "stopped", "nothing left")
  }, 60_000)
})
