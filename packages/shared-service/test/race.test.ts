/**
 * 16 real processes, released together, race to acquire a cold service: exactly one start, in
 * every one of 20 rounds. The processes are reused across rounds (each round is a fresh name).
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, harness, inspect, supervisors, starts } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-race-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const PROCESSES = 16
const ROUNDS = 20
const { cleanup, client, clients, names, newName } = harness(dir)
afterAll(cleanup)

describe("cold-start race across processes", () => {
  it(`${PROCESSES} processes × ${ROUNDS} rounds: exactly one start per round`, async () => {
    for (let i = 0; i < PROCESSES; i++) client({ ttlMs: 0, startDelayMs: 5 })
    await Promise.all(clients.map((c) => c.ready()))
    for (let round = 0; round < ROUNDS; round++) {
      const name = newName(`race${round}`)
      // The barrier: every process is idle, waiting on stdin; the command reaches all of them
      // within the same event-loop turn here.
      const acquired = await Promise.all(clients.map((c) => c.request(`acquire ${name}`, 60000)))
      for (const e of acquired) assert.strictEqual(e.ev, "acquired", JSON.stringify(e))
      assert.strictEqual(acquired.filter((e) => e.started === true).length, 1, `round ${round}: one starter`)
      assert.strictEqual(new Set(acquired.map((e) => e.pid)).size, 1, `round ${round}: one service pid`)
      // The service writes its pid itself once its shell runs.
      await eventually(() => starts(dir, name).length > 0, 10000)
      assert.deepStrictEqual(starts(dir, name), [acquired[0]!.pid], `round ${round}: one start`)
      assert.strictEqual((await inspect(name)).count, PROCESSES)
      await Promise.all(clients.map((c) => c.request(`release ${name}`)))
    }
    // Every round's service is stopped by its supervisor once the last client released.
    for (const name of names) {
      const [pid] = starts(dir, name)
      assert.isTrue(await eventually(() => !alive(pid!), 15000), `service of ${name} stopped`)
    }
    assert.isTrue(await eventually(() => names.every((n) => supervisors(n).length === 0), 15000), "supervisors exited")
  }, 120_000)
})
