/**
 * Cross-worker behaviour with real worker_threads and a real child process.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
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

/** A worker driven one operation at a time (see fixtures/scripted-worker.ts). */
const scripted = (handle: RundownRef.SharedHandle) =>
  Effect.gen(function*() {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() => new Worker(fixture("scripted-worker.ts"), { workerData: handle, execArgv })),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const replies: Array<(result: unknown) => void> = []
    const drained = yield* Deferred.make<void>()
    const ready = yield* Deferred.make<void>()
    worker.on("message", ({ op, result }: { op: string; result: unknown }) => {
      if (op === "ready") Deferred.doneUnsafe(ready, Exit.void)
      else if (op === "drained") Deferred.doneUnsafe(drained, Exit.void)
      else replies.shift()!(result)
    })
    yield* Deferred.await(ready)
    return {
      send: (op: string) =>
        Effect.callback<unknown>((resume) => {
          replies.push((result) => resume(Effect.succeed(result)))
          worker.postMessage(op)
        }),
      drained: () => Deferred.isDoneUnsafe(drained),
      awaitDrained: Deferred.await(drained)
    }
  })

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
          startWorker({ handle: ref.handle, control, maxCycles: 20_000_000, refusalsToStop: 200 }).pipe(
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

  it.live("a rundown begun in a worker refuses the main thread and waits for its release; reInit anywhere", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe()
      const a = yield* scripted(ref.handle)
      const b = yield* scripted(ref.handle)
      const mine = yield* RundownRef.tryAcquire(ref)
      assert.strictEqual(yield* b.send("tryAcquire"), "ok")
      assert.deepStrictEqual(yield* a.send("state"), { _tag: "Active", count: 2 })

      // Worker A runs the ref down.
      assert.strictEqual(yield* a.send("wait"), "started")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunningDown", count: 2 })
      assert.strictEqual((yield* Effect.flip(RundownRef.tryAcquire(ref)))._tag, "RundownInProgressError")
      assert.strictEqual(yield* b.send("tryAcquire"), "RundownInProgressError")
      assert.strictEqual(yield* a.send("tryAcquire"), "RundownInProgressError")
      // A second waiter, in this thread.
      const here = yield* Effect.forkChild(RundownRef.waitForRundown(ref))

      yield* mine.release
      assert.deepStrictEqual(yield* b.send("state"), { _tag: "RunningDown", count: 1 })
      assert.isFalse(a.drained(), "A still waits for B's reference")
      assert.isUndefined(here.pollUnsafe())
      assert.strictEqual(yield* b.send("reInit"), "RundownNotCompleteError: RunningDown, 1")

      assert.strictEqual(yield* b.send("release"), "ok")
      yield* a.awaitDrained
      yield* Fiber.join(here)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })

      // Re-initialised by worker B: everyone can acquire again.
      assert.strictEqual(yield* b.send("reInit"), "ok")
      assert.strictEqual(yield* a.send("tryAcquire"), "ok")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 })
      assert.strictEqual(yield* a.send("release"), "ok")
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
