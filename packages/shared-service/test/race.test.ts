/**
 * 16 real processes, released together, race to acquire a cold service: exactly one start, in
 * every one of 20 rounds. The processes are reused across rounds (each round is a fresh name).
 */
import { SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, Client, eventually, reapers, starts, uniqueName } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-race-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const PROCESSES = 16
const ROUNDS = 20
const names: Array<string> = []
const clients: Array<Client> = []

afterAll(async () => {
  for (const c of clients) c.kill()
  for (const name of names) {
    for (const pid of [...starts(dir, name), ...reapers(name)]) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // gone
      }
    }
    await Effect.runPromise(Effect.ignore(SharedService.remove(name)))
  }
})

describe("cold-start race across processes", () => {
  it(`${PROCESSES} processes × ${ROUNDS} rounds: exactly one start per round`, async () => {
    for (let i = 0; i < PROCESSES; i++) clients.push(new Client({ ttlMs: 0, startsDir: dir, startDelayMs: 5 }))
    await Promise.all(clients.map((c) => c.ready()))
    for (let round = 0; round < ROUNDS; round++) {
      const name = uniqueName(`race${round}`)
      names.push(name)
      // The barrier: every process is idle, waiting on stdin; the command reaches all of them
      // within the same event-loop turn here.
      const acquired = await Promise.all(clients.map((c) => c.request(`acquire ${name}`, 60000)))
      for (const e of acquired) assert.strictEqual(e.ev, "acquired", JSON.stringify(e))
      assert.strictEqual(acquired.filter((e) => e.started === true).length, 1, `round ${round}: one starter`)
      assert.strictEqual(new Set(acquired.map((e) => e.pid)).size, 1, `round ${round}: one service pid`)
      // The service writes its pid itself once its shell runs.
      await eventually(() => starts(dir, name).length > 0, 10000)
      assert.deepStrictEqual(starts(dir, name), [acquired[0]!.pid], `round ${round}: one start`)
      assert.strictEqual(await Effect.runPromise(SharedService.inspect(name)).then((s) => s.count), PROCESSES)
      await Promise.all(clients.map((c) => c.request(`release ${name}`)))
    }
    // Every round's service is stopped by its reaper once the last client released.
    for (const name of names) {
      const [pid] = starts(dir, name)
      assert.isTrue(await eventually(() => !alive(pid!), 15000), `service of ${name} stopped`)
    }
    assert.isTrue(await eventually(() => names.every((n) => reapers(n).length === 0), 15000), "reapers exited")
  }, 120_000)
})
