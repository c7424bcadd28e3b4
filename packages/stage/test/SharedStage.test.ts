import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Schedule, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Worker } from "node:worker_threads"
import { SharedStage, StageError } from "@quiesce/stage"
import { makeSource } from "../examples/source.ts"
import { keyOf, sharedInternals } from "./internals.ts"

/** Yields to the event loop (not the fiber scheduler) until `done()` or the bound runs out. */
const eventually = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 2_000 && !done(); i++) {
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
    return done()
  })

type Buffer = Map<string, string>
const encoder = new TextEncoder()
const decoder = new TextDecoder()
const events: SharedStage.Events<string, Buffer, string> = {
  encode: (e) => encoder.encode(e),
  decode: (b) => decoder.decode(b),
  offer: (buffer, token, event) => void buffer.set(token, event)
}

/** Two attachments of one stage in this thread: two "workers" with their own slots, inboxes and buffers. */
const twoWorkers = (options?: SharedStage.MemoryOptions) =>
  Effect.gen(function*() {
    const memory = SharedStage.makeMemory(options)
    const a = yield* SharedStage.attach<null, string, Buffer, string>(memory, { resource: null, buffer: new Map(), events })
    const b = yield* SharedStage.attach<null, string, Buffer, string>(memory, { resource: null, buffer: new Map(), events })
    return { memory, a, b }
  })

const done = (fiber: Fiber.Fiber<unknown, unknown>) => () => fiber.pollUnsafe() !== undefined

/** A head that reads until it is interrupted, then cleans up (uninterruptibly) until `leaving`. */
const slowToLeave = (reader: { readers: number }, leaving: Deferred.Deferred<void>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => reader.readers++),
    () => Effect.never,
    () => Effect.andThen(Deferred.await(leaving), Effect.sync(() => reader.readers--))
  )

/**
 * A head in `a` (ticket "h", taken in `scope`) that reads until interrupted and then cleans up
 * until `leaving`, and a waiter "w" in `b` that records, when it heads, how many read then.
 */
const slowHeadAndWaiter = <B, E>(
  a: SharedStage.SharedStage<null, string, B, E>,
  b: SharedStage.SharedStage<null, string, B, E>,
  scope: Scope.Scope
) =>
  Effect.gen(function*() {
    const reader = { readers: 0 }
    const seen: Array<number> = []
    const leaving = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(leaving, undefined))
    const h = yield* Effect.provideService(SharedStage.ticket(a, "h"), Scope.Scope, scope)
    const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => slowToLeave(reader, leaving) }))
    yield* Effect.yieldNow
    const w = yield* SharedStage.ticket(b, "w")
    const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.sync(() => seen.push(reader.readers)) }))
    yield* Effect.yieldNow
    return { head, leaving, seen, waiter }
  })

describe("SharedStage (two attachments in one thread)", () => {
  it.effect("a head in one worker delivers an event to a waiter in another; the event is buffered before it wakes", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, {
        head: (d) => Effect.andThen(Deferred.await(gate), d.deliver("w", "for w"))
      }))
      assert.isTrue(yield* eventually(() => true))
      const w = yield* SharedStage.ticket(b, "w")
      const waiter = yield* Effect.forkChild(Effect.map(
        SharedStage.enter(b, w, { head: () => Effect.succeed("w headed") }),
        (exit) => [exit._tag, b.buffer.get("w")] as const
      ))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: true })
      assert.isTrue(yield* eventually(done(waiter)))
      assert.deepStrictEqual(yield* Fiber.join(waiter), ["Token", "for w"])
    }))

  it.effect("tokens: structural across workers, held tokens refused, unsupported tokens rejected", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ maxTokenBytes: 16 })
      const a = yield* SharedStage.attach<null, unknown, null>(memory, { resource: null, buffer: null })
      const b = yield* SharedStage.attach<null, unknown, null>(memory, { resource: null, buffer: null })
      yield* SharedStage.ticket(a, { x: 1, y: [2] })
      const refused = yield* Effect.flip(SharedStage.ticket(b, { y: [2], x: 1 }))
      assert.strictEqual(refused._tag, "TokenInUseError")
      for (const bad of [new Date(0), 1n, undefined, NaN, () => 1, "a very long token indeed"]) {
        const error = yield* Effect.flip(SharedStage.ticket(b, bad))
        assert.strictEqual(error._tag, "TokenEncodingError", String(bad))
      }
      // Non-ASCII tokens encode canonically (UTF-8) and match across workers.
      yield* SharedStage.ticket(a, ["é", "🙂"])
      assert.strictEqual((yield* Effect.flip(SharedStage.ticket(b, ["é", "🙂"])))._tag, "TokenInUseError")
      yield* SharedStage.ticket(b, ["e", "🙂"])
      // 1 and "1" are different tokens; -0 and 0 are the same (as under Equal).
      yield* SharedStage.ticket(b, 1)
      yield* SharedStage.ticket(b, "1")
      const zero = yield* SharedStage.ticket(a, 0)
      const negZero = yield* Effect.flip(SharedStage.ticket(b, -0))
      assert.strictEqual(negZero._tag, "TokenInUseError")
      void zero
    }))

  it.effect("layer: a worker's attachment as a service", () => {
    const memory = SharedStage.makeMemory()
    class Shared extends Context.Service<Shared, SharedStage.SharedStage<null, string, null>>()("test/Shared") {
      static readonly layer = SharedStage.layer(Shared, memory, { resource: null, buffer: null })
    }
    return Effect.gen(function*() {
      const stage = yield* Shared
      const t = yield* SharedStage.ticket(stage, "x")
      assert.deepStrictEqual(yield* SharedStage.enter(stage, t, { head: () => Effect.succeed("headed") }), { _tag: "Finished", value: "headed" })
      assert.isTrue(SharedStage.isSharedStage(stage))
    }).pipe(Effect.provide(Shared.layer))
  })

  it.effect("capacity: tickets and workers are bounded with a typed error", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ capacity: 2, maxWorkers: 1 })
      const a = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      yield* SharedStage.ticket(a, "1")
      yield* SharedStage.ticket(a, "2")
      const full = yield* Effect.flip(SharedStage.ticket(a, "3"))
      assert.strictEqual(full._tag, "StageCapacityError")
      const noWorker = yield* Effect.flip(SharedStage.attach(memory, { resource: null, buffer: null }))
      assert.deepStrictEqual([noWorker._tag, noWorker.resource], ["StageCapacityError", "workers"])
    }))

  it.effect("1. a notify from another worker before enter makes enter return Token at once, with the event", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const w = yield* SharedStage.ticket(b, "w")
      const h = yield* SharedStage.ticket(a, "h")
      assert.deepStrictEqual(yield* SharedStage.enter(a, h, { head: (d) => d.deliver("w", "early") }), { _tag: "Finished", value: true })
      assert.deepStrictEqual(yield* SharedStage.enter(b, w, { head: () => Effect.succeed("headed") }), { _tag: "Token" })
      assert.strictEqual(b.buffer.get("w"), "early")
      assert.deepStrictEqual(yield* SharedStage.enter(b, w, { head: () => Effect.succeed("headed") }), { _tag: "Finished", value: "headed" })
    }))

  it.effect("2. a promoted waiter whose deadline passed hands headship on (shared transitions)", () =>
    Effect.gen(function*() {
      // The race (promotion in flight in the inbox while the timer fires) is
      // driven step by step on the shared state machine.
      const { a, b } = yield* twoWorkers()
      const shared = sharedInternals(a).shared
      const slot = (w: number, t: string) => shared.registerLocked(w, keyOf(t).bytes, keyOf(t).hash)
      const [wa, wb] = [sharedInternals(a).me, sharedInternals(b).me]
      const h = slot(wa, "h"), late = slot(wb, "late"), next = slot(wa, "next")
      assert.strictEqual(shared.enterLocked(h), 2)
      const lateSeq = -shared.enterLocked(late) - 3
      const nextSeq = -shared.enterLocked(next) - 3
      shared.leaveLocked(h, shared.genOf(h))
      assert.strictEqual(shared.head, late)
      // late's timer fires: it is no longer waiting (its promotion is in its inbox), so it keeps waiting for it.
      assert.isFalse(shared.expireLocked(late, shared.genOf(late), lateSeq))
      // It reads the promotion after its deadline: it hands headship on instead of heading.
      assert.isFalse(shared.takePromotionLocked(late, shared.genOf(late), lateSeq, true))
      assert.strictEqual(shared.head, next)
      assert.isTrue(shared.takePromotionLocked(next, shared.genOf(next), nextSeq, false))
      assert.isUndefined(shared.checkLocked())
      shared.rings.length = 0
    }))

  it.effect("2b. timeouts across workers follow the TestClock", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const w = yield* SharedStage.ticket(b, "w")
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Effect.never }))
      yield* Effect.yieldNow
      const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.void, timeout: "5 seconds" }))
      yield* Effect.yieldNow
      yield* TestClock.adjust("4999 millis")
      assert.isFalse(yield* eventually(done(waiter)))
      yield* TestClock.adjust("1 millis")
      assert.isTrue(yield* eventually(done(waiter)))
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Timeout" })
      yield* Fiber.interrupt(head)
    }))

  it.effect("3. a notify racing a timeout is never lost", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const w = yield* SharedStage.ticket(b, "w")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: (d) => Effect.andThen(Deferred.await(gate), d.deliver("w", "raced")) }))
      yield* Effect.yieldNow
      const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.void, timeout: "1 second" }))
      yield* Effect.yieldNow
      // The delivery is written while w is still parked; its timer fires before b reads its inbox.
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      yield* TestClock.adjust("1 second")
      assert.isTrue(yield* eventually(done(waiter)))
      const exit = yield* Fiber.join(waiter)
      // Either it saw the Token, or it timed out and the notification is kept; either way the event is there.
      assert.strictEqual(b.buffer.get("w"), "raced")
      if (exit._tag === "Timeout") {
        assert.deepStrictEqual(yield* SharedStage.enter(b, w, { head: () => Effect.void }), { _tag: "Token" })
      } else {
        assert.strictEqual(exit._tag, "Token")
      }
    }))

  it.effect("4. withdrawing a ticket never removes a later holder of the same token in another worker (ABA)", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const first = yield* Scope.make()
      yield* Effect.provideService(SharedStage.ticket(a, "t"), Scope.Scope, first)
      yield* Scope.close(first, Exit.void)
      const second = yield* SharedStage.ticket(b, "t")
      yield* Scope.close(first, Exit.void)
      assert.strictEqual((yield* Effect.flip(Effect.scoped(SharedStage.ticket(a, "t"))))._tag, "TokenInUseError")
      const h = yield* SharedStage.ticket(a, "h")
      assert.deepStrictEqual(yield* SharedStage.enter(a, h, { head: (d) => d.notify("t") }), { _tag: "Finished", value: true })
      assert.deepStrictEqual(yield* SharedStage.enter(b, second, { head: () => Effect.void }), { _tag: "Token" })
    }))

  it.effect("5. a head notifying its own token is harmless", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const w = yield* SharedStage.ticket(b, "w")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: (d) => Effect.andThen(Deferred.await(gate), d.deliver("h", "mine")) }))
      yield* Effect.yieldNow
      const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.succeed("w headed") }))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: true })
      assert.strictEqual(a.buffer.get("h"), "mine")
      assert.isTrue(yield* eventually(done(waiter)))
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "w headed" })
      assert.deepStrictEqual(yield* SharedStage.enter(a, h, { head: () => Effect.void }), { _tag: "Token" })
    }))

  it.effect("6. promotion is FIFO across workers, also after waiters leave from the middle", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const order: Array<number> = []
      const h = yield* SharedStage.ticket(a, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Deferred.await(gate) }))
      yield* Effect.yieldNow
      const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
      for (let i = 0; i < 8; i++) {
        const stage = i % 2 === 0 ? a : b
        const t = yield* SharedStage.ticket(stage, `w${i}`)
        fibers.push(yield* Effect.forkChild(SharedStage.enter(stage, t, { head: () => Effect.sync(() => order.push(i)) })))
        yield* Effect.yieldNow
      }
      yield* Fiber.interrupt(fibers[2]!)
      yield* Fiber.interrupt(fibers[5]!)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      assert.isTrue(yield* eventually(() => fibers.every((f) => done(f)())))
      assert.deepStrictEqual(order, [0, 1, 3, 4, 6, 7])
    }))

  for (const [name, fail] of [
    ["fails", Effect.fail("boom")],
    ["dies", Effect.die("defect")],
    ["is interrupted", Effect.interrupt]
  ] as const) {
    it.effect(`7. a head that ${name} gives headship to a waiter in the other worker`, () =>
      Effect.gen(function*() {
        const { a, b } = yield* twoWorkers()
        const h = yield* SharedStage.ticket(a, "h")
        const w = yield* SharedStage.ticket(b, "w")
        const gate = yield* Deferred.make<void>()
        const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Effect.andThen(Deferred.await(gate), fail) }))
        yield* Effect.yieldNow
        const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.succeed("w headed") }))
        yield* Effect.yieldNow
        yield* Deferred.succeed(gate, undefined)
        const exit = yield* Fiber.await(head)
        assert.isTrue(Exit.isFailure(exit))
        assert.isTrue(yield* eventually(done(waiter)))
        assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "w headed" })
      }))
  }

  it.effect("8. spurious doorbells and events for other tokens of the same worker wake nobody", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const w1 = yield* SharedStage.ticket(b, "w1")
      const w2 = yield* SharedStage.ticket(b, "w2")
      const gate = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, {
        head: (d) => Effect.andThen(Deferred.await(gate), Effect.andThen(d.deliver("w2", "for w2"), Deferred.await(release)))
      }))
      yield* Effect.yieldNow
      const f1 = yield* Effect.forkChild(SharedStage.enter(b, w1, { head: () => Effect.succeed("w1 headed") }))
      const f2 = yield* Effect.forkChild(SharedStage.enter(b, w2, { head: () => Effect.succeed("w2 headed") }))
      yield* Effect.yieldNow
      // Ring b's doorbell for nothing, then deliver to w2 only.
      const memory = (b as unknown as { shared: { ring(w: number): void }; me: number })
      memory.shared.ring(memory.me)
      yield* Deferred.succeed(gate, undefined)
      assert.isTrue(yield* eventually(done(f2)))
      assert.deepStrictEqual(yield* Fiber.join(f2), { _tag: "Token" })
      // w1 is still parked (and was not promoted while the head is still heading).
      assert.isUndefined(f1.pollUnsafe())
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(head)
      assert.isTrue(yield* eventually(done(f1)))
      assert.deepStrictEqual(yield* Fiber.join(f1), { _tag: "Finished", value: "w1 headed" })
    }))

  it.live("a lock held by a worker that died is broken once its lease runs out", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ leaseMillis: 100 })
      const a = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const b = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      // b "dies" inside a critical section: its heartbeat stops with the lock word naming it.
      const bi = b as unknown as { heartbeat: ReturnType<typeof setInterval>; me: number; shared: { m: Int32Array } }
      clearInterval(bi.heartbeat)
      Atomics.store(bi.shared.m, 0, bi.me + 1)
      const started = Date.now()
      // a's next operation waits out the lease, breaks the lock, and proceeds.
      yield* SharedStage.ticket(a, "after")
      assert.isAtLeast(Date.now() - started, 50)
      assert.strictEqual(Atomics.load(bi.shared.m, 0), 0)
    }))

  it.effect("detaching a worker that heads passes headship on", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory()
      const scopeA = yield* Scope.make()
      const a = yield* Effect.provideService(SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null }), Scope.Scope, scopeA)
      const b = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const h = yield* Effect.provideService(SharedStage.ticket(a, "h"), Scope.Scope, scopeA)
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Effect.never }))
      yield* Effect.yieldNow
      const w = yield* SharedStage.ticket(b, "w")
      const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.succeed("b headed") }))
      yield* Effect.yieldNow
      yield* Scope.close(scopeA, Exit.void)
      assert.isTrue(yield* eventually(done(waiter)))
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "b headed" })
      yield* Fiber.interrupt(head)
    }))
})

describe("SharedStage: scale and withdrawal (issue 10)", () => {
  it.effect("2. withdrawing the ticket of a running head interrupts it; a head in another worker starts only once it has left", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const ticketScope = yield* Scope.make()
      const { head, leaving, seen, waiter } = yield* slowHeadAndWaiter(a, b, ticketScope)
      yield* Scope.close(ticketScope, Exit.void)
      // Give b every chance to be (wrongly) promoted while a's head cleans up.
      yield* eventually(() => seen.length > 0 || waiter.pollUnsafe() !== undefined)
      assert.deepStrictEqual(seen, [])
      assert.isUndefined(head.pollUnsafe())
      // The token is free at once, though its head has not left yet.
      yield* Effect.scoped(SharedStage.ticket(b, "h"))
      yield* Deferred.succeed(leaving, undefined)
      assert.isTrue(yield* eventually(done(waiter)))
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(head)))
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: 1 })
      assert.deepStrictEqual(seen, [0])
    }))

  it.effect("2b. detaching a worker whose head cleans up slowly: its head is interrupted, the next head waits for it", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory()
      const scopeA = yield* Scope.make()
      const a = yield* Effect.provideService(SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null }), Scope.Scope, scopeA)
      const b = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const { head, leaving, seen, waiter } = yield* slowHeadAndWaiter(a, b, scopeA)
      yield* Scope.close(scopeA, Exit.void)
      yield* eventually(() => seen.length > 0 || waiter.pollUnsafe() !== undefined)
      assert.deepStrictEqual(seen, [])
      yield* Deferred.succeed(leaving, undefined)
      assert.isTrue(yield* eventually(done(waiter)))
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(head)))
      assert.deepStrictEqual(seen, [0])
    }))

  it.effect("4. a fiber woken during its worker's inbox read, heading and delivering to its own worker, never makes an event filed twice", () =>
    Effect.gen(function*() {
      const offered: Array<string> = []
      const counting: SharedStage.Events<string, Buffer, string> = {
        ...events,
        offer: (buffer, token, event) => {
          offered.push(`${token}=${event}`)
          buffer.set(token, event)
        }
      }
      const memory = SharedStage.makeMemory()
      const a = yield* SharedStage.attach<null, string, Buffer, string>(memory, { resource: null, buffer: new Map(), events: counting })
      const b = yield* SharedStage.attach<null, string, Buffer, string>(memory, { resource: null, buffer: new Map(), events: counting })
      const h = yield* SharedStage.ticket(a, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, {
        head: (d) => Effect.andThen(Deferred.await(gate), Effect.andThen(d.deliver("y", "for y"), d.deliver("w", "for w")))
      }))
      yield* Effect.yieldNow
      const y = yield* SharedStage.ticket(b, "y")
      const w = yield* SharedStage.ticket(b, "w")
      yield* SharedStage.ticket(b, "z")
      // y, woken first, finds no head and heads at once: it delivers to z, in its own worker, while b is still reading the records for y and w.
      const fy = yield* Effect.forkChild(Effect.flatMap(
        SharedStage.enter(b, y, { head: () => Effect.succeed("y headed") }),
        (first) => Effect.map(SharedStage.enter(b, y, { head: (d) => d.deliver("z", "for z") }), (second) => [first._tag, second._tag])
      ))
      const fw = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.succeed("w headed") }))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      assert.isTrue(yield* eventually(() => done(fy)() && done(fw)()))
      assert.deepStrictEqual(yield* Fiber.join(fy), ["Token", "Finished"])
      assert.deepStrictEqual(yield* Fiber.join(fw), { _tag: "Token" })
      // Later drains must not replay them either.
      yield* eventually(() => false)
      assert.deepStrictEqual(offered, ["y=for y", "w=for w", "z=for z"])
    }))

  it.effect("5. withdrawing a heading ticket is atomic: the waiter it promotes in the same worker sees the token free", () =>
    Effect.gen(function*() {
      const { a } = yield* twoWorkers()
      const ticketScope = yield* Scope.make()
      const h = yield* Effect.provideService(SharedStage.ticket(a, "h"), Scope.Scope, ticketScope)
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Effect.never }))
      yield* Effect.yieldNow
      const w = yield* SharedStage.ticket(a, "w")
      const waiter = yield* Effect.forkChild(SharedStage.enter(a, w, {
        head: (d) =>
          Effect.flatMap(Effect.exit(Effect.scoped(SharedStage.ticket(a, "h"))), (taken) =>
            Effect.map(d.notify("h"), (notified) => ({ notified, taken: Exit.isSuccess(taken) })))
      }))
      yield* Effect.yieldNow
      yield* Scope.close(ticketScope, Exit.void)
      assert.isTrue(yield* eventually(() => done(waiter)() && done(head)()))
      assert.isTrue(Exit.hasInterrupts(head.pollUnsafe()!))
      assert.deepStrictEqual(waiter.pollUnsafe(), Exit.succeed({ _tag: "Finished", value: { notified: false, taken: true } }))
    }))

  it.effect("a promoted waiter whose head is then interrupted leaves no notification behind", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoWorkers()
      const h = yield* SharedStage.ticket(a, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* Effect.forkChild(SharedStage.enter(a, h, { head: () => Deferred.await(gate) }))
      yield* Effect.yieldNow
      const w = yield* SharedStage.ticket(b, "w")
      const heading = yield* Deferred.make<void>()
      const waiter = yield* Effect.forkChild(SharedStage.enter(b, w, { head: () => Effect.andThen(Deferred.succeed(heading, undefined), Effect.never) }))
      yield* Effect.yieldNow
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      yield* Deferred.await(heading)
      yield* Fiber.interrupt(waiter)
      // Nobody notified w: its next enter heads (the stage is free), it does not return Token.
      assert.deepStrictEqual(yield* SharedStage.enter(b, w, { head: () => Effect.succeed("headed") }), { _tag: "Finished", value: "headed" })
    }))

  it.effect("7. a sparse-array token is refused exactly as [undefined, 1] is", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory()
      const a = yield* SharedStage.attach<null, unknown, null>(memory, { resource: null, buffer: null })
      // eslint-disable-next-line no-sparse-arrays
      const accepted: Array<string> = []
      for (const bad of [[undefined, 1], [, 1], [1, , 2], new Array(2)]) {
        const exit = yield* Effect.exit(Effect.scoped(SharedStage.ticket(a, bad)))
        if (!(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof StageError.TokenEncodingError)) accepted.push(String(bad.length))
      }
      assert.deepStrictEqual(accepted, [])
    }))
})

/** The lease-keeping internals of an attachment. */
const leaseInternals = (stage: { readonly [SharedStage.TypeId]: SharedStage.TypeId }) =>
  stage as unknown as {
    readonly me: number
    readonly gen: number
    readonly heartbeat: ReturnType<typeof setInterval> | undefined
    locked(f: (state: { reapLocked(w: number): void }) => void, ifEvicted: undefined): void
    readonly shared: {
      readonly m: Int32Array
      readonly l: { readonly inboxesAt: number }
      isCurrent(w: number, gen: number): boolean
      reapDead(me: number): number
      unlock(me: number): void
      checkLocked(): string | undefined
    }
  }

/** Two attachments in this thread with the given lease, and their lease-keeping internals. */
const twoWatched = (leaseMillis: number) =>
  Effect.map(twoWorkers({ leaseMillis }), ({ a, b }) => ({ a, ai: leaseInternals(a), b, bi: leaseInternals(b) }))

/** Blocks this thread (its event loop, its timers, every fiber) for `millis` of its monotonic clock. */
const blockThread = (millis: number) => {
  const until = performance.now() + millis
  while (performance.now() < until) {
    // blocked
  }
}

describe("SharedStage leases: a monotonic watch, stall-safe on the watching side", () => {
  it.effect("a wall-clock jump reaps nobody", () =>
    Effect.gen(function*() {
      const { ai, bi } = yield* twoWatched(1_000)
      const realNow = Date.now
      try {
        // The wall clock jumps an hour ahead between two looks (NTP, a VM resumed, a manual change).
        assert.strictEqual(ai.shared.reapDead(ai.me), 0)
        Date.now = () => realNow() + 3_600_000
        assert.strictEqual(ai.shared.reapDead(ai.me), 0)
        assert.strictEqual(ai.shared.reapDead(ai.me), 0)
      } finally {
        Date.now = realNow
      }
      assert.isTrue(bi.shared.isCurrent(bi.me, bi.gen))
    }))

  it.effect("a stall of the watching thread is not counted as the other worker's silence", () =>
    Effect.gen(function*() {
      // Both attachments live in this thread: blocking it stalls the watcher and the watched
      // alike, as a stopped process (SIGSTOP), a GC pause or a blocked loop does.
      const { ai, bi } = yield* twoWatched(200)
      assert.strictEqual(ai.shared.reapDead(ai.me), 0)
      blockThread(600)
      // The first look after the stall, before b's heartbeat could run: the watch starts over.
      assert.strictEqual(ai.shared.reapDead(ai.me), 0)
      assert.isTrue(bi.shared.isCurrent(bi.me, bi.gen))
    }))

  it.effect("a holder whose lock was broken does not release the lock of whoever took it since", () =>
    Effect.gen(function*() {
      const { ai, bi } = yield* twoWatched(60_000)
      const m = ai.shared.m
      // b's lock was broken (it looked dead) and a holds the lock now; b then finishes its section.
      Atomics.store(m, 0, ai.me + 1)
      bi.shared.unlock(bi.me)
      assert.strictEqual(Atomics.load(m, 0), ai.me + 1)
      ai.shared.unlock(ai.me)
      assert.strictEqual(Atomics.load(m, 0), 0)
    }))

  it.live("a worker whose heartbeat stops is reaped once watched silent for the lease, not before", () =>
    Effect.gen(function*() {
      const { ai, bi } = yield* twoWatched(200)
      clearInterval(bi.heartbeat)
      const started = performance.now()
      let reaped = 0
      // Watched continuously (as deliver's retries and the lock's spin watch), with a bound.
      for (let i = 0; i < 2_000 && reaped === 0; i++) {
        reaped = ai.shared.reapDead(ai.me)
        if (reaped === 0) yield* Effect.sleep("5 millis")
      }
      assert.strictEqual(reaped, 1)
      assert.isAtLeast(performance.now() - started, 200)
      assert.isFalse(bi.shared.isCurrent(bi.me, bi.gen))
    }))

  it.effect("an evicted worker fails its operations with WorkerEvictedError and never writes the shared state again", () =>
    Effect.gen(function*() {
      const { a, ai, b, bi } = yield* twoWatched(60_000)
      // b heads (and keeps its director) and has a waiter parked.
      let director: SharedStage.Director<null, string, Buffer, string> | undefined
      const h = yield* SharedStage.ticket(b, "h")
      const head = yield* Effect.forkChild(SharedStage.enter(b, h, {
        head: (d) => Effect.andThen(Effect.sync(() => (director = d)), Effect.never)
      }))
      const p = yield* SharedStage.ticket(b, "p")
      const parked = yield* Effect.forkChild(SharedStage.enter(b, p, { head: () => Effect.succeed("p headed") }))
      const w = yield* SharedStage.ticket(a, "w")
      const waiter = yield* Effect.forkChild(SharedStage.enter(a, w, { head: () => Effect.succeed("a headed") }))
      yield* Effect.yieldNow
      assert.isDefined(director)
      // a reaps b, as it does once it has watched b's heartbeat stand still for the lease; b has not noticed.
      ai.locked((s) => s.reapLocked(bi.me), undefined)
      // a's waiter is promoted in b's place.
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "a headed" })
      const w2 = yield* SharedStage.ticket(a, "w2")
      const before = ai.shared.m.slice(0, ai.shared.l.inboxesAt)
      // b's operations fail, typed, and change nothing.
      assert.deepStrictEqual(yield* Effect.flip(director!.notify("w2")), new StageError.WorkerEvictedError({ leaseMillis: 60_000 }))
      assert.deepStrictEqual(yield* Effect.flip(director!.deliver("w2", "late")), new StageError.WorkerEvictedError({ leaseMillis: 60_000 }))
      assert.deepStrictEqual(yield* Effect.flip(Effect.scoped(SharedStage.ticket(b, "x"))), new StageError.WorkerEvictedError({ leaseMillis: 60_000 }))
      // Its head and its parked enter are interrupted; an enter after the eviction is too.
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(head)))
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(parked)))
      assert.isTrue(Exit.hasInterrupts(yield* Effect.exit(SharedStage.enter(b, p, { head: () => Effect.succeed("late") }))))
      assert.deepStrictEqual(ai.shared.m.slice(0, ai.shared.l.inboxesAt), before)
      assert.isUndefined(ai.shared.checkLocked())
      // b's tokens are free; its notifies reached nobody: w2 enters and heads, with nothing pending.
      yield* Effect.scoped(SharedStage.ticket(a, "h"))
      yield* Effect.scoped(SharedStage.ticket(a, "p"))
      assert.deepStrictEqual(yield* SharedStage.enter(a, w2, { head: () => Effect.succeed("w2 headed") }), { _tag: "Finished", value: "w2 headed" })
      assert.strictEqual(a.buffer.size, 0)
    }))
})

const spawn = (data: Record<string, unknown>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const worker = new Worker(new URL("./fixtures/sharedWorker.ts", import.meta.url), {
        workerData: data,
        execArgv: ["--conditions=@quiesce/source"]
      })
      const messages: Array<any> = []
      const listeners = new Set<() => void>()
      const push = (m: unknown) => {
        messages.push(m)
        for (const l of listeners) l()
      }
      worker.on("message", push)
      worker.on("error", (e) => push({ failed: String(e) }))
      /** The first message satisfying `p`, waiting (bounded) for it to arrive. */
      const message = (p: (m: any) => boolean) =>
        Effect.callback<any>((resume) => {
          const check = () => {
            const found = messages.find(p)
            if (found !== undefined) {
              listeners.delete(check)
              resume(Effect.succeed(found))
            }
          }
          listeners.add(check)
          check()
          return Effect.sync(() => listeners.delete(check))
        }).pipe(Effect.timeout("40 seconds"))
      return { worker, messages, message }
    }),
    ({ worker }) => Effect.promise(() => worker.terminate())
  )

describe("SharedStage across worker_threads", () => {
  it.live("1. a promotion chain of 10,000 waiters in one worker, heads finishing synchronously, runs in constant stack", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ capacity: 10_016, leaseMillis: 30_000 })
      const { message } = yield* spawn({ mode: "chain", memory, source: makeSource(1), index: 0, fibers: 10_000, rounds: 0 })
      const result = yield* message((m) => "done" in m || "failed" in m)
      assert.isUndefined(result.failed, result.failed)
      assert.deepStrictEqual(result.done, { parked: 10_000, headed: 10_000, inOrder: true, waiting: 0, head: -1 })
    }), { timeout: 60_000 })

  it.live("a worker blocked past its lease is evicted: once it runs again its head is interrupted and its operations fail with WorkerEvictedError, the shared state intact", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ leaseMillis: 300 })
      const stage = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const { message } = yield* spawn({ mode: "blocked-head", memory, source: makeSource(1), index: 0, fibers: 0, rounds: 30_000 })
      yield* message((m) => m.heading === true)
      const w = yield* SharedStage.ticket(stage, "w")
      // The blocked worker's lease runs out: this worker reaps it and its waiter heads.
      const exit = yield* SharedStage.enter(stage, w, { head: () => Effect.succeed("promoted") }).pipe(Effect.timeout("20 seconds"))
      assert.deepStrictEqual(exit, { _tag: "Finished", value: "promoted" })
      // When the blocked worker runs again, it finds itself evicted and stops its head.
      const result = yield* message((m) => "done" in m || "failed" in m)
      assert.isUndefined(result.failed, result.failed)
      assert.strictEqual(result.done.headEnded, "interrupted")
      assert.strictEqual(result.done.ticketAfter, "WorkerEvictedError")
      assert.strictEqual(result.done.notifyAfter, "WorkerEvictedError")
      // Its token is free, its late operations reached nobody, and the structure is consistent.
      yield* Effect.scoped(SharedStage.ticket(stage, "blocked"))
      yield* Effect.scoped(SharedStage.ticket(stage, "after"))
      assert.isUndefined(leaseInternals(stage).shared.checkLocked())
      assert.deepStrictEqual(yield* SharedStage.enter(stage, w, { head: () => Effect.succeed("again") }), { _tag: "Finished", value: "again" })
    }), { timeout: 60_000 })

  it.live("6. deliver to a full inbox of a terminated worker reaps it and fails with WorkerDeadError; it never spins", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ inboxBytes: 4096, leaseMillis: 300 })
      const stage = yield* SharedStage.attach<null, string, Buffer, string>(memory, { resource: null, buffer: new Map(), events })
      const { worker, message } = yield* spawn({ mode: "hold-ticket", memory, source: makeSource(1), index: 0, fibers: 0, rounds: 0 })
      yield* message((m) => m.holding === true)
      yield* Effect.promise(() => worker.terminate())
      // The only fiber of this worker is the head: nobody parked here reaps the dead worker for it.
      const h = yield* SharedStage.ticket(stage, "h")
      const event = "x".repeat(200)
      const exit = yield* SharedStage.enter(stage, h, {
        head: (d) => Effect.flip(Effect.forever(d.deliver("idle-held", event)))
      }).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(exit._tag, "Finished")
      if (exit._tag === "Finished") assert.deepStrictEqual(exit.value, new StageError.WorkerDeadError({ token: "\"idle-held\"", leaseMillis: 300 }))
      // The dead worker was reaped: its token is free.
      yield* Effect.scoped(SharedStage.ticket(stage, "idle-held"))
    }), { timeout: 60_000 })

  it.live("a token held by a worker that was terminated is free again once its lease runs out", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ leaseMillis: 1_000 })
      const stage = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const { worker, message } = yield* spawn({ mode: "hold-ticket", memory, source: makeSource(1), index: 0, fibers: 0, rounds: 0 })
      yield* message((m) => m.holding === true)
      assert.strictEqual((yield* Effect.flip(Effect.scoped(SharedStage.ticket(stage, "idle-held"))))._tag, "TokenInUseError")
      yield* Effect.promise(() => worker.terminate())
      // Refused until the dead worker's lease runs out, then granted (bounded wait).
      const granted = yield* Effect.scoped(SharedStage.ticket(stage, "idle-held")).pipe(
        Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 200 })
      )
      assert.strictEqual(granted.token, "idle-held")
    }), { timeout: 60_000 })

  it.live("3 workers × 16 fibers × 20 receives: every fiber gets exactly its replies, whoever heads", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ leaseMillis: 10_000 })
      const source = makeSource(4096)
      const workers: Array<{ readonly message: (p: (m: any) => boolean) => Effect.Effect<any, unknown> }> = []
      for (let index = 0; index < 3; index++) {
        workers.push(yield* spawn({ mode: "route", memory, source, index, fibers: 16, rounds: 20 }))
      }
      const results = yield* Effect.forEach(workers, (w) => w.message((m) => "done" in m || "failed" in m))
      for (const r of results) assert.isUndefined(r.failed, r.failed)
      assert.deepStrictEqual(results.map((r) => [r.done.received, r.done.wrong]), [[320, 0], [320, 0], [320, 0]])
      // Every request was popped by some head, and more than one worker headed.
      assert.strictEqual(results.reduce((n, r) => n + r.done.headed, 0), 960)
      assert.isAbove(results.filter((r) => r.done.headed > 0).length, 1)
    }), { timeout: 60_000 })

  it.live("a head whose worker is terminated does not wedge the stage: its lease runs out and a waiter is promoted", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ leaseMillis: 1_000 })
      const stage = yield* SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null })
      const { worker, message } = yield* spawn({ mode: "hold-head", memory, source: makeSource(1), index: 0, fibers: 0, rounds: 0 })
      yield* message((m) => m.heading === true)
      // The token is held by the head in the other worker.
      assert.strictEqual((yield* Effect.flip(Effect.scoped(SharedStage.ticket(stage, "held"))))._tag, "TokenInUseError")
      const w = yield* SharedStage.ticket(stage, "w")
      const waiter = yield* Effect.forkChild(SharedStage.enter(stage, w, { head: () => Effect.succeed("promoted") }))
      yield* Effect.yieldNow
      // While the head's worker lives, the waiter stays parked.
      assert.isUndefined(waiter.pollUnsafe())
      yield* Effect.promise(() => worker.terminate())
      const exit = yield* Fiber.join(waiter).pipe(Effect.timeout("20 seconds"))
      assert.deepStrictEqual(exit, { _tag: "Finished", value: "promoted" })
      // The dead worker's tickets were withdrawn.
      yield* Effect.scoped(SharedStage.ticket(stage, "held"))
    }), { timeout: 60_000 })
})
