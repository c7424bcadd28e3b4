/**
 * The kernel counters on their own: bounded, interruptible lock waits that never block the
 * event loop nor hold the libuv pool; crash-safe locks across processes (SysV and flock); one
 * reference per process.
 */
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber } from "effect"
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import { stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, Client, eventually, fixture, harness, supervisors, sleep, starts } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-counters-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { names, newName } = harness(dir)
afterAll(async () => {
  for (const name of names) await Effect.runPromise(Effect.ignore(SharedService.remove(name)))
})

/** A child process holding the startup lock of `name` until killed. */
const holder = (name: string, kind: "sysv" | "flock") =>
  Effect.callback<{ readonly kill: () => Promise<void> }>((resume) => {
    const child = spawn(process.execPath, ["--conditions=@quiesce/source", "--no-warnings", fixture("holder.ts"), name, kind], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    const exited = new Promise<void>((r) => child.on("exit", () => r()))
    child.stdout!.once("data", () =>
      resume(Effect.succeed({
        kill: () => {
          child.kill("SIGKILL")
          return exited
        }
      })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe.each(["sysv", "flock"] as const)("%s counter", (kind) => {
  const rc = kind === "sysv" ? RefCounter.sysV() : RefCounter.flock()

  it.live("a lock held by another process: bounded wait, event loop free, LockTimeout; its SIGKILL frees it", () =>
    Effect.gen(function*() {
      const name = newName(`${kind}-lock`)
      const counter = yield* rc.open(name)
      const other = yield* holder(name, kind)
      let ticks = 0
      const timer = setInterval(() => ticks++, 10)
      const started = Date.now()
      const err = yield* Effect.flip(Effect.uninterruptible(counter.lock(Duration.millis(600))))
      const waited = Date.now() - started
      clearInterval(timer)
      assert.strictEqual(err._tag, "LockTimeout")
      assert.isAtLeast(waited, 590)
      assert.isBelow(waited, 5000)
      // A blocked event loop would see none or one (a 10 ms timer over 600 ms); leave room for load.
      assert.isAtLeast(ticks, 5, "the event loop kept running while we waited")
      // The holder dies while we wait: we get the lock long before the timeout.
      const fiber = yield* Effect.forkChild(Effect.uninterruptible(counter.lock(Duration.seconds(20))))
      yield* Effect.sleep(Duration.millis(100))
      const killedAt = Date.now()
      yield* Effect.promise(other.kill)
      yield* Fiber.join(fiber)
      assert.isBelow(Date.now() - killedAt, 5000)
      yield* counter.unlock
    }), 30_000)

  it.live("lock waits leave the libuv pool to others: one waiter per pool thread, and a stat still completes", () =>
    Effect.gen(function*() {
      const name = newName(`${kind}-pool`)
      const counter = yield* rc.open(name)
      const other = yield* holder(name, kind)
      // A wait that held its pool thread for the whole timeout would leave no thread free here.
      const threads = Number(process.env["UV_THREADPOOL_SIZE"] ?? 4)
      const waiters = yield* Effect.forkChild(Effect.forEach(
        Array.from({ length: threads }),
        () => Effect.exit(Effect.uninterruptible(counter.lock(Duration.seconds(3)))),
        { concurrency: "unbounded" }
      ))
      yield* Effect.sleep(Duration.millis(300))
      const started = performance.now()
      yield* Effect.promise(() => stat(fixture("holder.ts")))
      const took = performance.now() - started
      const exits = yield* Fiber.join(waiters)
      yield* Effect.promise(other.kill)
      for (const exit of exits) assert.isTrue(Exit.isFailure(exit), "nobody got the held lock")
      assert.isBelow(took, 1500, `a stat behind ${threads} lock waits took ${Math.round(took)} ms`)
    }), 30_000)

  it.live("an interrupted lock wait returns promptly and leaves nothing held", () =>
    Effect.gen(function*() {
      const name = newName(`${kind}-interrupt`)
      const counter = yield* rc.open(name)
      const other = yield* holder(name, kind)
      const fiber = yield* Effect.forkChild(Effect.uninterruptible(counter.lock(Duration.seconds(30))))
      yield* Effect.sleep(Duration.millis(150))
      const t = Date.now()
      yield* Fiber.interrupt(fiber)
      assert.isBelow(Date.now() - t, 1000, "interrupted within a slice")
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(fiber)))
      yield* Effect.promise(other.kill)
      // Nothing of the interrupted attempt is held: the lock is free at once.
      yield* Effect.uninterruptible(counter.lock(Duration.millis(2000)))
      yield* counter.unlock
    }), 30_000)

  it.effect("register adds one reference and rings, decrement drops it; the owner lock is exclusive", () =>
    Effect.gen(function*() {
      const name = newName(`${kind}-count`)
      const counter = yield* rc.open(name)
      assert.strictEqual(counter.exact, kind === "sysv")
      assert.strictEqual(yield* counter.count, 0)
      assert.strictEqual(yield* counter.rings, 0)
      yield* Effect.uninterruptible(counter.lock(Duration.seconds(1)))
      // A flock belongs to the open file description: re-taking our own lock succeeds.
      assert.strictEqual(yield* counter.tryLock, kind === "flock", "the lock is held (by us)")
      yield* counter.register
      assert.strictEqual(yield* counter.count, 1)
      assert.isAtLeast(yield* counter.rings, 1)
      assert.isTrue(yield* counter.awaitRing(100), "a registration rings")
      assert.strictEqual(yield* counter.rings, 0, "and the ring is consumed")
      assert.isTrue(yield* counter.tryLock, "register gave the lock back")
      yield* counter.unlock
      yield* counter.decrement
      assert.strictEqual(yield* counter.count, 0)
      assert.isTrue(yield* counter.awaitZero(100))
      const owned = yield* counter.owner.take
      assert.isDefined(owned)
      assert.isUndefined(yield* counter.owner.take, "a second take fails while one is held")
      assert.isTrue(yield* counter.owner.held)
      yield* owned!.remove
      assert.isFalse(yield* counter.owner.held)
    }))
})

describe("flock counter, file system failures", () => {
  it.live("a lock file that cannot be opened is a typed error naming the file, not a defect", () =>
    Effect.gen(function*() {
      const name = newName("flock-fs")
      // A directory where the ring file should be: open(2) gives EISDIR.
      mkdirSync(join(dir, `${name}.ring`))
      writeFileSync(join(dir, `${name}.ring`, "x"), "")
      const err = yield* Effect.flip(RefCounter.flock().open(name))
      assert.strictEqual(err._tag, "RuntimeDirectoryUnusable")
      if (err._tag !== "RuntimeDirectoryUnusable") return
      assert.strictEqual(err.service, name)
      assert.strictEqual(err.path, join(realpathSync(dir), `${name}.ring`))
      assert.strictEqual(err.code, "EISDIR")
      rmSync(join(dir, `${name}.ring`), { recursive: true })
    }))
})

describe("SharedService over the flock counter, real processes", () => {
  it("a SIGKILLed last client: the supervisor stops the service; a holder keeps it up", async () => {
    const name = newName("flock-e2e")
    const [a, b] = [
      new Client({ ttlMs: 200, startsDir: dir, counter: "flock" }),
      new Client({ ttlMs: 200, startsDir: dir, counter: "flock" })
    ]
    try {
      await Promise.all([a.ready(), b.ready()])
      const ga = await a.request(`acquire ${name}`)
      const gb = await b.request(`acquire ${name}`)
      assert.strictEqual(ga.ev, "acquired", JSON.stringify(ga))
      assert.strictEqual(gb.pid, ga.pid)
      assert.isFalse(gb.started === true)
      assert.isTrue(await eventually(() => supervisors(name).length === 1, 15000))
      a.kill("SIGKILL")
      await a.exited
      await sleep(800)
      assert.isTrue(alive(ga.pid as number), "b still holds it")
      b.kill("SIGKILL")
      assert.isTrue(await eventually(() => !alive(ga.pid as number), 15000), "stopped after the last client died")
      assert.isTrue(await eventually(() => supervisors(name).length === 0, 15000))
    } finally {
      a.kill()
      b.kill()
      for (const pid of starts(dir, name)) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone
        }
      }
      await Effect.runPromise(Effect.ignore(Effect.flatMap(RefCounter.flock().open(name), (c) => c.remove)))
    }
  }, 60_000)
})

describe("SharedService over the SysV counter, in one process", () => {
  it.effect("many handles in one process hold one kernel reference", () =>
    Effect.gen(function*() {
      const name = newName("handles")
      const service = yield* SharedService.make({
        name,
        // A service that is this process, supervised by a fiber that does nothing to stop it.
        start: Effect.sync(() => ServiceInfo.make({ pid: process.pid })),
        stop: () => Effect.void,
        reaper: "in-process"
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const handles = yield* Effect.forEach(Array.from({ length: 10 }), () => SharedService.acquire(service), {
          concurrency: "unbounded"
        })
        assert.strictEqual(handles.filter((h) => h.started).length, 1)
        assert.strictEqual(yield* SharedService.count(service), 1)
      }))
      assert.strictEqual(yield* SharedService.count(service), 0)
    }))
})
