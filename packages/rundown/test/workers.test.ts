/**
 * Cross-worker behaviour with real worker_threads and a real child process.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { RundownRef } from "@quiesce/rundown"
import { Control } from "./fixtures/control.ts"

const execArgv = ["--conditions=@quiesce/source"]
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url)

interface WorkerResult {
  readonly cycles: number
  readonly entered: number
  readonly refusals: number
}

const startWorker = (workerData: unknown) =>
  Effect.acquireRelease(
    Effect.sync(() => new Worker(fixture("cycling-worker.ts"), { workerData, execArgv })),
    (worker) => Effect.promise(() => worker.terminate())
  ).pipe(Effect.map((worker) =>
    Effect.callback<WorkerResult, Error>((resume) => {
      worker.once("message", (result: WorkerResult) => resume(Effect.succeed(result)))
      worker.once("error", (error) => resume(Effect.fail(error)))
    })
  ))

describe("RundownRef across worker threads", () => {
  it.live("4 workers cycling while the main thread runs the ref down at a random moment", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe()
      const control = new SharedArrayBuffer(Control.SIZE * 4)
      const c = new Int32Array(control)
      const workers = 4
      const threshold = 500 + Math.floor(Math.random() * 20_000)
      const context = `rundown ${threshold} acquisitions after all workers started`
      const results = yield* Effect.forEach(
        Array.from({ length: workers }),
        () =>
          startWorker({ handle: ref.handle, control, maxCycles: 2_000_000, refusalsToStop: 200 }).pipe(
            Effect.flatMap(Effect.forkScoped)
          )
      )
      // The random moment: once every worker is cycling and together they have entered
      // `threshold` more sections.
      while (Atomics.load(c, Control.READY) < workers) yield* Effect.sleep(Duration.millis(1))
      const start = Atomics.load(c, Control.ACQUIRED)
      while (Atomics.load(c, Control.ACQUIRED) - start < threshold) yield* Effect.sleep(Duration.millis(1))

      let insideAtReturn = -1
      let balanceAtReturn = Number.NaN
      const waiter = yield* Effect.forkChild(
        RundownRef.waitForRundown(ref).pipe(Effect.andThen(Effect.sync(() => {
          insideAtReturn = Atomics.load(c, Control.INSIDE)
          balanceAtReturn = Atomics.load(c, Control.ACQUIRED) - Atomics.load(c, Control.RELEASED)
        }))),
        { startImmediately: true }
      )
      assert.notStrictEqual(RundownRef.stateUnsafe(ref)._tag, "Active", "the rundown began synchronously")
      Atomics.store(c, Control.BEGUN, 1)
      yield* Fiber.join(waiter)

      assert.strictEqual(insideAtReturn, 0, `${context}: no section was running when the wait returned`)
      assert.strictEqual(balanceAtReturn, 0, `${context}: every entered section had released`)
      const finished = yield* Effect.forEach(results, Fiber.join)
      assert.strictEqual(Atomics.load(c, Control.VIOLATIONS), 0, `${context}: no section started after the rundown`)
      for (const [i, r] of finished.entries()) {
        assert.isAtLeast(r.refusals, 200, `${context}: worker ${i} was refused until it stopped`)
        assert.isAtLeast(r.entered, 1, `${context}: worker ${i} entered before the rundown`)
      }
      const entered = finished.reduce((n, r) => n + r.entered, 0)
      assert.strictEqual(entered, Atomics.load(c, Control.ACQUIRED))
      assert.isAtLeast(entered, threshold)
      assert.strictEqual(Atomics.load(c, Control.ACQUIRED), Atomics.load(c, Control.RELEASED))
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }), { timeout: 60_000 })

  it.live("a program waiting only on another thread's release does not exit early", () =>
    Effect.gen(function*() {
      const { code, stdout, stderr } = yield* Effect.callback<{ code: number | null; stdout: string; stderr: string }>(
        (resume) => {
          const child = spawn(process.execPath, [...execArgv, fileURLToPath(fixture("keepalive-main.ts"))], {
            stdio: ["ignore", "pipe", "pipe"]
          })
          let stdout = ""
          let stderr = ""
          child.stdout.on("data", (chunk) => stdout += chunk)
          child.stderr.on("data", (chunk) => stderr += chunk)
          child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
          return Effect.sync(() => child.kill())
        }
      )
      assert.strictEqual(stdout, "waiting\ndrained\n", stderr)
      assert.strictEqual(code, 0)
    }), { timeout: 60_000 })
})
