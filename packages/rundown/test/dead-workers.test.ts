/**
 * Real worker threads that stop running while they hold protection of a shared ref: terminated,
 * crashed (an uncaught exception, `process.exit`), or stuck in a busy loop. Their references must
 * not hold a rundown for longer than the documented bound, and a stuck thread that comes back
 * must be told and must not take anyone else's references.
 *
 * The bound (README): a dead thread's references are dropped at the first lease check of a
 * waiting thread at which its heartbeat has not moved for more than the lease; checks run every
 * quarter lease, so with on-time timers that is at most 1.5 × the lease after the death. The
 * tests record when the waiting thread's checks really ran and hold the rundown to the bound
 * those checks imply (lease + 2 × the longest gap between checks + what gaps beyond half a lease
 * did not count); the figures are printed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber } from "effect"
import { Worker } from "node:worker_threads"
import { RundownRef } from "@quiesce/rundown"
import { Control } from "./fixtures/control.ts"
import { internals } from "./internals.ts"

const LEASE = 200
const execArgv = ["--conditions=@quiesce/source"]
const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url)

type Mode = "hold" | "throw" | "exit" | "release" | "busy"
interface Back {
  readonly op: "back"
  readonly release: string
  readonly acquire: string
}

/** Starts a lease-worker.ts in `mode` and waits until it holds its reference. */
const holder = (ref: RundownRef.SharedRundownRef, mode: Mode, control = new SharedArrayBuffer(4)) =>
  Effect.gen(function*() {
    const worker = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Worker(fixture("lease-worker.ts"), { workerData: { handle: ref.handle, mode, control }, execArgv })
      ),
      (worker) => Effect.promise(() => worker.terminate())
    )
    const held = Deferred.makeUnsafe<void>()
    const released = Deferred.makeUnsafe<void>()
    const back = Deferred.makeUnsafe<Back>()
    const exited = Deferred.makeUnsafe<number>()
    worker.on("message", (message: { readonly op: string }) => {
      if (message.op === "held") Deferred.doneUnsafe(held, Exit.void)
      else if (message.op === "released") Deferred.doneUnsafe(released, Exit.void)
      else if (message.op === "back") Deferred.doneUnsafe(back, Exit.succeed(message as Back))
    })
    // The "throw" worker's uncaught exception arrives here (without a listener it would be
    // rethrown in this thread).
    worker.on("error", () => {})
    worker.on("exit", (code) => Deferred.doneUnsafe(exited, Exit.succeed(code)))
    yield* Deferred.await(held)
    return {
      worker,
      release: Effect.sync(() => worker.postMessage("release")).pipe(Effect.andThen(Deferred.await(released))),
      back: Deferred.await(back),
      exited: Deferred.await(exited)
    }
  })

/**
 * Records the lease checks `ref` (this thread's view) runs: when each looked, and the first look
 * after which the rundown was complete.
 */
const recordLooks = (ref: RundownRef.SharedRundownRef, lease = LEASE) => {
  const view = internals(ref) as { observe(now: number): void }
  const observe = view.observe.bind(view)
  const looks: Array<number> = []
  let completedAt: number | undefined
  view.observe = (now: number) => {
    observe(now)
    looks.push(now)
    if (completedAt === undefined && RundownRef.stateUnsafe(ref)._tag === "RunDown") completedAt = now
  }
  /**
   * Holds the completion to the bound that the checks after `death` imply, and says so. The
   * completion is this thread's lease check that saw it, or else `joined` (when the rundown's
   * waiter here resumed): another thread's check, or the last live holder's release, may
   * complete it first (a worker terminated between two sections held nothing).
   */
  const assertBound = (what: string, death: number, joined?: number) => {
    const done = completedAt ?? joined
    assert.isDefined(done, `${what}: a lease check completed the rundown`)
    const before = looks.filter((t) => t < death)
    const window = [before.length > 0 ? before[before.length - 1]! : death, ...looks.filter((t) => t >= death && t <= done)]
    const gaps = window.slice(1).map((t, i) => t - window[i]!)
    const longest = Math.max(0, ...gaps)
    const uncounted = gaps.reduce((sum, gap) => sum + Math.max(0, gap - lease / 2), 0)
    const bound = lease + 2 * longest + uncounted
    const elapsed = done - death
    console.log(
      `${what}: rundown complete ${elapsed.toFixed(0)} ms after the death (documented: at most ` +
        `${1.5 * lease} ms with on-time checks; this run's checks were at most ${longest.toFixed(0)} ms apart, ` +
        `so at most ${bound.toFixed(0)} ms)`
    )
    assert.isAtMost(elapsed, bound, `${what}: within the bound the checks imply`)
  }
  return { assertBound }
}

describe("dead and stuck workers holding protection of a shared ref", () => {
  it.live("a worker terminated while the rundown waits for it: its references are dropped within the bound", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE })
      const looks = recordLooks(ref)
      const w = yield* holder(ref, "hold")
      const rundown = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* Effect.yieldNow
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunningDown", count: 1 })
      assert.isUndefined(rundown.pollUnsafe(), "the live worker's reference holds the rundown")
      yield* Effect.promise(() => w.worker.terminate())
      const death = performance.now()
      yield* Fiber.join(rundown)
      looks.assertBound("worker.terminate()", death)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }), { timeout: 30_000 })

  it.live("a worker whose event loop is stuck is dropped; when it comes back it is told and takes nothing from the thread now in its slot", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE })
      const looks = recordLooks(ref)
      const control = new SharedArrayBuffer(4)
      const stuck = yield* holder(ref, "busy", control)
      const blocked = performance.now()
      yield* RundownRef.waitForRundown(ref)
      looks.assertBound("busy loop", blocked)
      // Reused at once: this thread's first acquisition claims the stuck worker's old slot.
      yield* RundownRef.reInit(ref)
      const mine = yield* RundownRef.tryAcquire(ref)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 })
      Atomics.store(new Int32Array(control), 0, 1)
      const back = yield* stuck.back
      assert.deepStrictEqual(
        { release: back.release, acquire: back.acquire },
        { release: "RundownLeaseError", acquire: "acquired" },
        "its release is refused; it can acquire again (in a new slot)"
      )
      assert.strictEqual(yield* stuck.exited, 0)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 1 }, "this thread's reference is intact")
      const rundown = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* Effect.yieldNow
      assert.isUndefined(rundown.pollUnsafe(), "the rundown still waits for this thread's reference")
      yield* mine.release
      yield* Fiber.join(rundown)
    }), { timeout: 30_000 })

  it.live("holders terminated, crashed, exited and alive at once; then newcomers get the dead ones' slots", () =>
    Effect.gen(function*() {
      // A longer lease here: the live holder must not look dead if this machine starves it.
      const lease = 600
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: lease, slots: 4 })
      const looks = recordLooks(ref, lease)
      const modes: ReadonlyArray<Mode> = ["hold", "throw", "exit", "release"]
      const workers = yield* Effect.forEach(modes, (mode) => holder(ref, mode), { concurrency: "unbounded" })
      assert.strictEqual(yield* workers[1]!.exited, 1, "the crashed worker died of its exception")
      assert.strictEqual(yield* workers[2]!.exited, 3)
      yield* Effect.promise(() => workers[0]!.worker.terminate())
      const death = performance.now()
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 4 })
      const rundown = yield* Effect.forkChild(RundownRef.waitForRundown(ref))
      yield* workers[3]!.release
      assert.strictEqual(yield* workers[3]!.exited, 0)
      yield* Fiber.join(rundown)
      looks.assertBound("1 terminated, 1 crashed, 1 exited, 1 alive", death)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })

      // All four slots were claimed: three newcomers (views here, standing for new threads)
      // fit only because the dead holders' slots were reclaimed.
      yield* RundownRef.reInit(ref)
      const newcomers = Array.from({ length: 3 }, () => RundownRef.fromSharedUnsafe(ref.handle))
      const guards = yield* Effect.forEach(newcomers, RundownRef.tryAcquire)
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "Active", count: 3 })
      yield* Effect.forEach(guards, (guard) => guard.release, { discard: true })
      yield* RundownRef.waitForRundown(ref)
    }), { timeout: 60_000 })

  it.live("workers terminated at random moments in the middle of protected sections do not hold the rundown", () =>
    Effect.gen(function*() {
      const ref = RundownRef.makeSharedUnsafe({ leaseMillis: LEASE })
      const looks = recordLooks(ref)
      const control = new SharedArrayBuffer(Control.SIZE * 4)
      const c = new Int32Array(control)
      const workers = yield* Effect.forEach(
        Array.from({ length: 3 }),
        () =>
          Effect.acquireRelease(
            Effect.sync(() => {
              const worker = new Worker(fixture("cycling-worker.ts"), {
                workerData: { handle: ref.handle, control, maxCycles: 50_000_000, refusalsToStop: 200 },
                execArgv
              })
              const result = Deferred.makeUnsafe<{ readonly refusals: number }>()
              worker.once("message", (r) => Deferred.doneUnsafe(result, Exit.succeed(r)))
              return { worker, result: Deferred.await(result) }
            }),
            ({ worker }) => Effect.promise(() => worker.terminate())
          ),
        { concurrency: "unbounded" }
      )
      while (Atomics.load(c, Control.READY) < workers.length) yield* Effect.sleep(Duration.millis(1))
      // Two of them die at a random moment of their cycle (most of a cycle is spent inside a section).
      for (const { worker } of workers.slice(0, 2)) {
        const start = Atomics.load(c, Control.ACQUIRED)
        const more = 100 + Math.floor(Math.random() * 5_000)
        while (Atomics.load(c, Control.ACQUIRED) - start < more) yield* Effect.sleep(Duration.millis(1))
        yield* Effect.promise(() => worker.terminate())
      }
      const death = performance.now()
      const rundown = yield* Effect.forkChild(RundownRef.waitForRundown(ref), { startImmediately: true })
      Atomics.store(c, Control.BEGUN, 1)
      yield* Fiber.join(rundown)
      looks.assertBound("2 of 3 cycling workers terminated mid-cycle", death, performance.now())
      const survivor = yield* workers[2]!.result
      assert.isAtLeast(survivor.refusals, 200, "the survivor was refused until it stopped")
      assert.strictEqual(Atomics.load(c, Control.VIOLATIONS), 0, "no section started after the rundown was seen")
      assert.isAtMost(Atomics.load(c, Control.INSIDE), 2, "only the dead workers' sections stayed open")
      assert.deepStrictEqual(RundownRef.stateUnsafe(ref), { _tag: "RunDown" })
    }), { timeout: 60_000 })
})
