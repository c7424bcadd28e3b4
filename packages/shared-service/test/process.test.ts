/**
 * Process: liveness by pid and start time (PID-reuse proof), signals, and stop's escalation
 * from SIGTERM to SIGKILL, for a single process and a whole process group.
 */
import { Process } from "@quiesce/shared-service"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { alive, eventually } from "./util.ts"

const spawnDetached = (command: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(command, args, { detached: true, stdio: ["ignore", "pipe", "ignore"] })
      child.unref()
      return child
    }),
    (child) =>
      Effect.sync(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {
          // gone
        }
      })
  )

const groupMembers = (pgid: number): Array<number> =>
  readdirSync("/proc").filter((e) => /^\d+$/.test(e)).flatMap((e) => {
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8")
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return rest[0] !== "Z" && Number(rest[2]) === pgid ? [Number(e)] : []
    } catch {
      return []
    }
  })

const firstLine = (child: ReturnType<typeof spawn>) =>
  Effect.callback<void>((resume) => {
    child.stdout!.once("data", () => resume(Effect.void))
  })

describe("Process", () => {
  it.live("stop with group: members that ignore SIGTERM are SIGKILLed after the timeout, even once the leader is gone", () =>
    Effect.gen(function*() {
      const child = yield* spawnDetached("/bin/sh", [
        "-c",
        `${JSON.stringify(process.execPath)} -e "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)" & wait`
      ])
      // "up" comes from the member, once its SIGTERM handler is installed.
      yield* firstLine(child)
      const members = groupMembers(child.pid!)
      const started = Date.now()
      assert.isTrue(yield* Process.stop(child.pid!, { group: true, timeout: Duration.millis(500) }))
      assert.isAtLeast(Date.now() - started, 450, "SIGTERM first, for the whole timeout")
      assert.isTrue(members.every((p) => !alive(p)))
    }).pipe(Effect.scoped), 20_000)

  it.effect("isAlive checks the start time: a recycled pid is not the process", () =>
    Effect.gen(function*() {
      const st = yield* Process.startTime(process.pid)
      assert.isNumber(st)
      assert.isTrue(yield* Process.isAlive(process.pid))
      assert.isTrue(yield* Process.isAlive(process.pid, st))
      assert.isFalse(yield* Process.isAlive(process.pid, st! + 1))
      assert.isFalse(yield* Process.isAlive(0))
      assert.isFalse(yield* Process.isAlive(-1))
      assert.isFalse(yield* Process.isAlive(2 ** 22 + 1))
      // Signals refuse a pid whose start time does not match.
      assert.isFalse(yield* Process.terminate(process.pid, { startTime: st! + 1 }))
      assert.isFalse(yield* Process.kill(process.pid, { startTime: st! + 1 }))
    }))

  it.live("stop: SIGTERM is enough for a well-behaved process", () =>
    Effect.gen(function*() {
      const child = yield* spawnDetached("sleep", ["30"])
      const st = yield* Process.startTime(child.pid!)
      const started = Date.now()
      assert.isTrue(yield* Process.stop(child.pid!, { timeout: Duration.seconds(5), startTime: st }))
      assert.isBelow(Date.now() - started, 3000)
      assert.isFalse(alive(child.pid!))
    }).pipe(Effect.scoped), 20_000)

  it.live("stop: escalates to SIGKILL after the timeout when SIGTERM is ignored", () =>
    Effect.gen(function*() {
      const child = yield* spawnDetached(process.execPath, [
        "-e",
        "process.on('SIGTERM', () => {}); console.log('up'); setInterval(() => {}, 1000)"
      ])
      yield* firstLine(child)
      const started = Date.now()
      assert.isTrue(yield* Process.stop(child.pid!, { timeout: Duration.millis(400) }))
      const took = Date.now() - started
      assert.isAtLeast(took, 390, "waited for SIGTERM first")
      assert.isFalse(alive(child.pid!))
    }).pipe(Effect.scoped), 20_000)

  it.live("stop with group: the whole process group goes", () =>
    Effect.gen(function*() {
      const child = yield* spawnDetached("/bin/sh", ["-c", "sleep 30 & sleep 30 & echo up; wait"])
      yield* firstLine(child)
      const members = groupMembers(child.pid!)
      assert.isAtLeast(members.length, 3)
      assert.isTrue(yield* Process.stop(child.pid!, { group: true, timeout: Duration.seconds(5) }))
      assert.isTrue(yield* Effect.promise(() => eventually(() => members.every((p) => !alive(p)), 5000)))
    }).pipe(Effect.scoped), 20_000)
})
