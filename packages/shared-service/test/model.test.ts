/**
 * A property test of the implementation against a model, with the in-memory kernel, simulated
 * processes that crash, and TestClock: random sequences of acquire / release / crash / wait.
 * After every step: never two services at once; the kernel count is the number of live
 * processes holding a handle; count > 0 ⇒ the service runs; once nobody holds it for the grace
 * period, it is stopped — unless the process that supervises it in-process crashed (that mode
 * is not crash-safe), in which case the next acquisition ends it before starting another, and a
 * last client coming and going leaves nothing running.
 */
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

process.env["QUIESCE_RUNTIME_DIR"] = mkdtempSync(join(tmpdir(), "quiesce-model-"))

const TTL = 1000
const Step = Schema.Struct({
  p: Schema.Literals([0, 1, 2]),
  op: Schema.Literals(["acquire", "acquire", "release", "crash", "wait"]),
  ms: Schema.Literals([0, 300, 999, 1000, 2500])
})

let run = 0

describe("SharedService model", () => {
  it.effect.prop("random acquire/release/crash/wait keeps the invariants", [Schema.Array(Step).check(Schema.isMinLength(20))], ([steps]) =>
    Effect.gen(function*() {
      const name = `model-${process.pid}-${run++}`
      const hint = join(SharedService.runtimeDirectory(), `${name}.json`)
      const kernel = RefCounter.memoryKernel()
      const stats = { starts: 0, stops: 0 }
      const service = SharedService.makeUnsafe({
        name,
        start: Effect.sync(() => {
          stats.starts++
          return ServiceInfo.make({ pid: process.pid })
        }),
        stop: () =>
          Effect.sync(() => {
            stats.stops++
            rmSync(hint, { force: true })
          }),
        idleTimeToLive: Duration.millis(TTL),
        reaper: "in-process"
      })
      const procs = [0, 1, 2].map(() => ({ rc: kernel.process(), scopes: [] as Array<Scope.Closeable> }))
      let idleSince: number | undefined = 0
      let now = 0
      /** The process supervising the running service (the one whose acquisition started it). */
      let owner: number | undefined
      let orphaned = false
      const settle = Effect.repeat(Effect.yieldNow, { times: 20 })

      const check = (label: string) => {
        const holders = procs.filter((p) => p.scopes.length > 0).length
        const count = kernel.countOf(name)
        const running = existsSync(hint)
        assert.isAtMost(stats.starts - stats.stops, 1, `${label}: two services at once`)
        assert.isAtLeast(stats.starts - stats.stops, 0, label)
        assert.strictEqual(count, holders, `${label}: kernel count vs holding processes`)
        assert.strictEqual(running, stats.starts - stats.stops === 1, `${label}: hint vs model`)
        if (count > 0) assert.isTrue(running, `${label}: count ${count} but not running`)
        if (count > 0) idleSince = undefined
        else idleSince ??= now
        if (idleSince !== undefined && now - idleSince > TTL && !orphaned) {
          assert.isFalse(running, `${label}: idle for ${now - idleSince} ms but still running`)
        }
      }

      for (const [i, step] of steps.entries()) {
        const proc = procs[step.p]!
        const label = `step ${i} ${step.op} p${step.p}`
        switch (step.op) {
          case "acquire": {
            const scope = yield* Scope.make()
            const handle = yield* SharedService.acquire(service).pipe(
              Scope.provide(scope),
              Effect.provideService(RefCounter.RefCounter, proc.rc)
            )
            if (handle.started) {
              owner = proc.rc.pid
              orphaned = false
            }
            proc.scopes.push(scope)
            break
          }
          case "release": {
            const scope = proc.scopes.pop()
            if (scope !== undefined) yield* Scope.close(scope, Exit.void)
            break
          }
          case "crash": {
            // The kernel undoes what the process held; its scopes are never closed.
            yield* proc.rc.crash
            if (proc.rc.pid === owner) orphaned = true
            procs[step.p] = { rc: kernel.process(), scopes: [] }
            break
          }
          case "wait": {
            yield* TestClock.adjust(Duration.millis(step.ms))
            now += step.ms
            break
          }
        }
        yield* settle
        check(label)
      }
      // Everyone leaves, and one last client comes and goes; after the grace period nothing runs.
      for (const p of procs) for (const scope of p.scopes.splice(0)) yield* Scope.close(scope, Exit.void)
      yield* settle
      yield* Effect.scoped(Effect.provideService(SharedService.acquire(service), RefCounter.RefCounter, kernel.process()))
      orphaned = false
      idleSince = now
      yield* settle
      yield* TestClock.adjust(Duration.millis(TTL))
      now += TTL
      yield* settle
      check("end")
      assert.isFalse(existsSync(hint), "stopped at the end")
      assert.strictEqual(stats.starts, stats.stops)
    }))
})
