import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Equal, Exit, Fiber, Hash, Layer, Queue, Scope } from "effect"
import * as Scheduler from "effect/Scheduler"
import { TestClock } from "effect/testing"
import { Stage } from "@quiesce/stage"
import { internals } from "./internals.ts"

type Buffer = Map<string, string>

const makeStage = Effect.suspend(() => Stage.make<Array<[string, string]>, string, Buffer>({ resource: [], buffer: new Map() }))

/** Lets every runnable fiber run until none is left (bounded). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

/** Forks a fiber that enters with `ticket` and, if it heads, runs `body` once `gate` is done; returns when it has settled. */
const headAfter = <R, T, B, A, E>(
  stage: Stage.Stage<R, T, B>,
  ticket: Stage.Ticket<T>,
  gate: Deferred.Deferred<void>,
  body: (director: Stage.Director<R, T, B>) => Effect.Effect<A, E>
) =>
  Effect.tap(
    Effect.forkChild(Stage.enter(stage, ticket, { head: (d) => Effect.flatMap(Deferred.await(gate), () => body(d)) })),
    () => settle
  )


/** Forks a fiber that enters (and, the stage being free, heads) with a ticket in a scope of its own, which the test closes to withdraw it. */
const headInOwnScope = <A>(
  stage: Stage.Stage<Array<[string, string]>, string, Buffer>,
  token: string,
  head: () => Effect.Effect<A>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const ticket = yield* Effect.provideService(Stage.ticket(stage, token), Scope.Scope, scope)
    const fiber = yield* Effect.forkChild(Stage.enter(stage, ticket, { head }))
    yield* settle
    return { scope, fiber }
  })

describe("Stage", () => {
  it.effect("the first to enter heads and returns Finished", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const ticket = yield* Stage.ticket(stage, "a")
      const exit = yield* Stage.enter(stage, ticket, { head: (d) => Effect.succeed(`headed by ${d.token}`) })
      assert.deepStrictEqual(exit, { _tag: "Finished", value: "headed by a" })
      assert.isTrue(Stage.isStage(stage))
      assert.isFalse(Stage.isStage({}))
    }))

  it.effect("tokens compare structurally; a held token is refused, also when held by the head", () =>
    Effect.gen(function*() {
      const stage = yield* Stage.make<null, { peer: string; port: number }, null>({ resource: null, buffer: null })
      yield* Stage.ticket(stage, { peer: "x", port: 1 })
      const refused = yield* Effect.flip(Stage.ticket(stage, { peer: "x", port: 1 }))
      assert.strictEqual(refused._tag, "TokenInUseError")
      assert.include(refused.token, "\"peer\":\"x\"")
      const other = yield* Stage.ticket(stage, { peer: "x", port: 2 })
      const inHead = yield* Stage.enter(stage, other, {
        head: () => Effect.flip(Effect.scoped(Stage.ticket(stage, { peer: "x", port: 2 })))
      })
      assert.strictEqual(inHead._tag, "Finished")
      if (inHead._tag === "Finished") assert.strictEqual(inHead.value._tag, "TokenInUseError")
      // Withdrawn with its scope: the token is free again.
      const again = yield* Effect.scoped(Effect.as(Stage.ticket(stage, { peer: "y", port: 1 }), "ok"))
      assert.strictEqual(again, "ok")
      yield* Effect.scoped(Stage.ticket(stage, { peer: "y", port: 1 }))
    }))

  it.effect("waiters park while someone heads, and the head notifies them (Token)", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const release = yield* Deferred.make<void>()
      const headTicket = yield* Stage.ticket(stage, "h")
      const head = yield* headAfter(stage, headTicket, release, (d) => {
        d.buffer.set("w", "for w")
        return d.notify("w")
      })
      const waiter = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
        const t = yield* Stage.ticket(stage, "w")
        const exit = yield* Stage.enter(stage, t, { head: () => Effect.succeed("headed") })
        return [exit._tag, stage.buffer.get("w")] as const
      })))
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* Deferred.succeed(release, undefined)
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: true })
      assert.deepStrictEqual(yield* Fiber.join(waiter), ["Token", "for w"])
    }))

  it.effect("a notify to a token nobody holds returns false and wakes nobody", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const t = yield* Stage.ticket(stage, "h")
      const exit = yield* Stage.enter(stage, t, { head: (d) => Effect.sync(() => d.notifyUnsafe("nobody")) })
      assert.deepStrictEqual(exit, { _tag: "Finished", value: false })
    }))

  it.effect("layer: a stage declared as a service and provided by a Layer", () => {
    class Inbox extends Context.Service<Inbox, Stage.Stage<Array<string>, string, Map<string, string>>>()("test/Inbox") {
      static readonly layer = Stage.layer(Inbox, Effect.sync(() => ({ resource: ["one"], buffer: new Map<string, string>() })))
    }
    return Effect.gen(function*() {
      const stage = yield* Inbox
      const t = yield* Stage.ticket(stage, "x")
      const exit = yield* Stage.enter(stage, t, { head: (d) => Effect.sync(() => d.resource.shift()) })
      assert.deepStrictEqual(exit, { _tag: "Finished", value: "one" })
    }).pipe(Effect.provide(Layer.fresh(Inbox.layer)))
  })

  it.effect("withdrawing a parked ticket (closing its scope elsewhere) interrupts its enter", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.never }))
      yield* settle
      const ticketScope = yield* Scope.make()
      const w = yield* Effect.provideService(Stage.ticket(stage, "w"), Scope.Scope, ticketScope)
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.void }))
      yield* settle
      yield* Scope.close(ticketScope, Exit.void)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(waiter)))
      assert.strictEqual(internals(stage).waiting, 0)
      yield* Fiber.interrupt(head)
    }))

  it.effect("closing the stage interrupts parked waiters and later enters", () =>
    Effect.gen(function*() {
      const stageScope = yield* Scope.make()
      const stage = yield* Effect.provideService(makeStage, Scope.Scope, stageScope)
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.never }))
      yield* settle
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.void }))
      yield* settle
      yield* Scope.close(stageScope, Exit.void)
      const exit = yield* Fiber.await(waiter)
      assert.isTrue(Exit.hasInterrupts(exit))
      yield* Fiber.interrupt(head)
      const late = yield* Effect.exit(Stage.enter(stage, h, { head: () => Effect.void }))
      assert.isTrue(Exit.hasInterrupts(late))
    }))
})

describe("exit-left defects", () => {
  it.effect("1. a notify between ticket and enter makes enter return Token at once", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const notified = yield* Stage.enter(stage, h, { head: (d) => d.notify("w") })
      assert.deepStrictEqual(notified, { _tag: "Finished", value: true })
      // No head now: without the kept notification, w would head instead.
      const exit = yield* Stage.enter(stage, w, { head: () => Effect.succeed("headed") })
      assert.deepStrictEqual(exit, { _tag: "Token" })
      // Delivered once: the next enter heads.
      const next = yield* Stage.enter(stage, w, { head: () => Effect.succeed("headed") })
      assert.deepStrictEqual(next, { _tag: "Finished", value: "headed" })
    }))

  it.effect("2. a promoted waiter whose deadline passed hands headship on; nobody is left parked", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const late = yield* Stage.ticket(stage, "late")
      const next = yield* Stage.ticket(stage, "next")
      // The head's turn and late's timeout end at the same instant: late is
      // promoted, but by the time it runs its deadline has passed.
      const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.sleep("1 second") }))
      yield* settle
      const lateFiber = yield* Effect.forkChild(Stage.enter(stage, late, { head: () => Effect.succeed("late headed"), timeout: "1 second" }))
      yield* settle
      const nextFiber = yield* Effect.forkChild(Stage.enter(stage, next, { head: () => Effect.succeed("next headed") }))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: undefined })
      assert.deepStrictEqual(yield* Fiber.join(lateFiber), { _tag: "Timeout" })
      assert.deepStrictEqual(yield* Fiber.join(nextFiber), { _tag: "Finished", value: "next headed" })
      assert.isUndefined(internals(stage).head)
      assert.strictEqual(internals(stage).waiting, 0)
    }))

  it.effect("2b. a waiter times out with TestClock, not before", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.never }))
      yield* settle
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.void, timeout: "5 seconds" }))
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Timeout" })
      assert.strictEqual(internals(stage).waiting, 0)
      yield* Fiber.interrupt(head)
    }))

  it.effect("3. a notify racing a timeout is never lost: Token, or kept for the next enter", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const go = yield* Deferred.make<void>()
      // The head's notify is due at the same instant as w's timeout; the timer was registered first and wins.
      const head = yield* headAfter(stage, h, go, (d) =>
        Effect.andThen(Effect.sleep("1 second"), Effect.suspend(() => {
          d.buffer.set("w", "event")
          return d.notify("w")
        })))
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.void, timeout: "1 second" }))
      yield* settle
      yield* Deferred.succeed(go, undefined)
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Timeout" })
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: true })
      // The event is in the buffer and the notification is kept.
      assert.strictEqual(stage.buffer.get("w"), "event")
      assert.deepStrictEqual(yield* Stage.enter(stage, w, { head: () => Effect.void }), { _tag: "Token" })
    }))

  it.effect("3b. receive returns an event that raced its timeout instead of failing", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const head = yield* Effect.forkChild(Stage.enter(stage, h, {
        head: (d) => Effect.andThen(Effect.sleep("1 second"), Effect.sync(() => (d.buffer.set("w", "event"), d.notifyUnsafe("w"))))
      }))
      yield* settle
      const take = (b: Buffer, t: string) => {
        const e = b.get(t)
        b.delete(t)
        return e
      }
      const receiver = yield* Effect.forkChild(Stage.receive(stage, { token: "w", take, poll: () => Effect.never, timeout: "1 second" }))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(receiver), "event")
      yield* Fiber.join(head)
      // And with no event at all it fails with the timeout that elapsed.
      const head2 = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.never }))
      yield* settle
      const failing = yield* Effect.forkChild(Effect.flip(Stage.receive(stage, { token: "w", take, poll: () => Effect.never, timeout: "2 seconds" })))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(failing)
      assert.strictEqual(error._tag, "ReceiveTimeoutError")
      if (error._tag === "ReceiveTimeoutError") assert.strictEqual(error.timeoutMillis, 2000)
      yield* Fiber.interrupt(head2)
    }))

  it.effect("4. withdrawing a ticket after its token was reused never removes the new holder (ABA)", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const first = yield* Scope.make()
      yield* Effect.provideService(Stage.ticket(stage, "t"), Scope.Scope, first)
      yield* Scope.close(first, Exit.void)
      const second = yield* Stage.ticket(stage, "t")
      // Withdrawing the first ticket again (a finalizer running twice, a stale handle) must not touch the second.
      yield* Scope.close(first, Exit.void)
      const refused = yield* Effect.flip(Effect.scoped(Stage.ticket(stage, "t")))
      assert.strictEqual(refused._tag, "TokenInUseError")
      const h = yield* Stage.ticket(stage, "h")
      const exit = yield* Stage.enter(stage, h, { head: (d) => d.notify("t") })
      assert.deepStrictEqual(exit, { _tag: "Finished", value: true })
      assert.deepStrictEqual(yield* Stage.enter(stage, second, { head: () => Effect.void }), { _tag: "Token" })
    }))

  it.effect("5. a head notifying its own token is harmless", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const gate = yield* Deferred.make<void>()
      const head = yield* headAfter(stage, h, gate, (d) => d.notify("h"))
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.succeed("w headed") }))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      assert.deepStrictEqual(yield* Fiber.join(head), { _tag: "Finished", value: true })
      // Headship passed on normally; the self-notification is kept for h's next enter.
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "w headed" })
      assert.deepStrictEqual(yield* Stage.enter(stage, h, { head: () => Effect.void }), { _tag: "Token" })
    }))

  it.effect("6. promotion is FIFO, also after waiters leave from the middle", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const order: Array<number> = []
      const h = yield* Stage.ticket(stage, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* headAfter(stage, h, gate, () => Effect.void)
      const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
      for (let i = 0; i < 10; i++) {
        const t = yield* Stage.ticket(stage, `w${i}`)
        fibers.push(yield* Effect.forkChild(Stage.enter(stage, t, { head: () => Effect.sync(() => order.push(i)) })))
        yield* settle
      }
      // Leave from the middle: one interrupted, one notified.
      yield* Fiber.interrupt(fibers[3]!)
      internals(stage).notify("w6")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      for (const f of fibers) yield* Fiber.await(f)
      assert.deepStrictEqual(order, [0, 1, 2, 4, 5, 7, 8, 9])
    }))

  it.effect("6b. entering, leaving, notifying and promotion are O(1) in the number of waiters", () =>
    Effect.sync(() => {
      // Counts every read and write of the queue's links while one operation
      // runs, with 10 and with 10,000 parked waiters: an O(1) queue touches the
      // same number of links whatever the length; a scan would touch thousands.
      const linksTouched = (n: number) => {
        const stage = Stage.makeUnsafe<null, number, null>({ resource: null, buffer: null })
        const impl = internals(stage)
        const tickets = Array.from({ length: n + 2 }, (_, i) => impl.register(i)!)
        impl.tryEnter(tickets[0]!, Infinity)
        for (let i = 1; i <= n; i++) impl.tryEnter(tickets[i]!, Infinity)
        let touched = 0
        for (let w: any = impl.first; w !== undefined;) {
          const node = w
          w = node.next
          for (const field of ["prev", "next"]) {
            let value = node[field]
            Object.defineProperty(node, field, {
              get: () => (touched++, value),
              set: (v) => {
                touched++
                value = v
              }
            })
          }
        }
        const counts: Record<string, number> = {}
        const measure = (name: string, op: () => void) => {
          touched = 0
          op()
          counts[name] = touched
        }
        measure("notify a waiter in the middle", () => impl.notify(Math.floor(n / 2)))
        measure("join the end of the queue", () => impl.tryEnter(tickets[n + 1]!, Infinity))
        measure("head leaves, oldest promoted", () => impl.leave(tickets[0]!))
        measure("promoted takes headship", () => impl.takePromotion(impl.head!, false))
        return counts
      }
      const small = linksTouched(10)
      const large = linksTouched(10_000)
      assert.deepStrictEqual(large, small)
      for (const touched of Object.values(large)) assert.isAtMost(touched, 16)
    }))

  for (const [name, makeHead] of [
    ["fails", () => Effect.fail("boom" as const)],
    ["dies", () => Effect.die("defect")],
    ["is interrupted", () => Effect.interrupt]
  ] as const) {
    it.effect(`7. a head that ${name} gives headship to the next waiter, and its caller sees why`, () =>
      Effect.gen(function*() {
        const stage = yield* makeStage
        const h = yield* Stage.ticket(stage, "h")
        const w = yield* Stage.ticket(stage, "w")
        const gate = yield* Deferred.make<void>()
        const head = yield* Effect.forkChild(Stage.enter(stage, h, {
          head: () => Effect.andThen(Deferred.await(gate), makeHead())
        }))
        yield* settle
        const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.succeed("w headed") }))
        yield* settle
        yield* Deferred.succeed(gate, undefined)
        const exit = yield* Fiber.await(head)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          if (name === "fails") assert.deepStrictEqual(Cause.squash(exit.cause), "boom")
          if (name === "dies") assert.deepStrictEqual(Cause.squash(exit.cause), "defect")
          if (name === "is interrupted") assert.isTrue(Cause.hasInterrupts(exit.cause))
        }
        assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "w headed" })
      }))
  }

  it.effect("7b. interrupting the head's fiber from outside passes headship on", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const w = yield* Stage.ticket(stage, "w")
      const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Effect.never }))
      yield* settle
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.succeed("w headed") }))
      yield* settle
      yield* Fiber.interrupt(head)
      assert.deepStrictEqual(yield* Fiber.join(waiter), { _tag: "Finished", value: "w headed" })
    }))

  it.effect("8. a notify to a colliding token (same hash bucket) never wakes another waiter", () =>
    Effect.gen(function*() {
      class Key implements Equal.Equal {
        readonly id: string
        constructor(id: string) {
          this.id = id
        }
        [Equal.symbol](that: Equal.Equal): boolean {
          return that instanceof Key && that.id === this.id
        }
        [Hash.symbol](): number {
          return 42
        }
      }
      const stage = yield* Stage.make<null, Key, Set<string>>({ resource: null, buffer: new Set() })
      const h = yield* Stage.ticket(stage, new Key("h"))
      const a = yield* Stage.ticket(stage, new Key("a"))
      const b = yield* Stage.ticket(stage, new Key("b"))
      const gate = yield* Deferred.make<void>()
      const head = yield* headAfter(stage, h, gate, (d) => Effect.sync(() => (d.buffer.add("b"), d.notifyUnsafe(new Key("b")))))
      const fa = yield* Effect.forkChild(Stage.enter(stage, a, { head: () => Effect.succeed("a headed") }))
      const fb = yield* Effect.forkChild(Stage.enter(stage, b, { head: () => Effect.succeed("b headed") }))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      assert.deepStrictEqual(yield* Fiber.join(fb), { _tag: "Token" })
      // a was not woken by b's notify: it was promoted when the head left.
      assert.deepStrictEqual(yield* Fiber.join(fa), { _tag: "Finished", value: "a headed" })
    }))
})

describe("scale and withdrawal (issue 10)", () => {
  it.effect("1. a promotion chain of 100,000 waiters whose heads finish synchronously runs in constant stack", () =>
    Effect.gen(function*() {
      const stage = yield* Stage.make<null, number, null>({ resource: null, buffer: null })
      const n = 100_000
      const gate = yield* Deferred.make<void>()
      const first = yield* Stage.ticket(stage, -1)
      yield* Effect.forkChild(Stage.enter(stage, first, { head: () => Deferred.await(gate) }))
      yield* settle
      const order: Array<number> = []
      // The stack depth of every 1,000th head: a chain that nests grows it by a few frames per promotion.
      const depths: Array<number> = []
      const depth = () => {
        const limit = Error.stackTraceLimit
        Error.stackTraceLimit = Infinity
        const frames = new Error().stack!.split("\n").length
        Error.stackTraceLimit = limit
        return frames
      }
      for (let i = 0; i < n; i++) {
        const ticket = yield* Stage.ticket(stage, i)
        yield* Effect.forkChild(Stage.enter(stage, ticket, {
          head: () =>
            Effect.sync(() => {
              if (i % 1_000 === 0) depths.push(depth())
              order.push(i)
            })
        }))
      }
      yield* settle
      assert.strictEqual(internals(stage).waiting, n)
      // The first head leaves: each promoted head finishes at once and promotes the next.
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      assert.strictEqual(order.length, n)
      assert.isTrue(order.every((v, i) => v === i))
      assert.isUndefined(internals(stage).head)
      assert.strictEqual(internals(stage).waiting, 0)
      assert.strictEqual(depths.length, n / 1_000)
      assert.isAtMost(Math.max(...depths) - Math.min(...depths), 0, `stack depths ${Math.min(...depths)}..${Math.max(...depths)}`)
    }), { timeout: 120_000 })

  it.effect("1b. the quick start with 20,000 receivers whose events arrive in request order", () =>
    Effect.gen(function*() {
      const n = 20_000
      const wire = yield* Queue.unbounded<number>()
      const stage = yield* Stage.make<Queue.Queue<number>, number, Map<number, number>>({ resource: wire, buffer: new Map() })
      const poll = (director: Stage.Director<Queue.Queue<number>, number, Map<number, number>>) =>
        Effect.map(Queue.take(director.resource), (event) => {
          director.buffer.set(event, event)
          director.notifyUnsafe(event)
        })
      const take = (buffer: Map<number, number>, token: number) => {
        const v = buffer.get(token)
        buffer.delete(token)
        return v
      }
      const receivers = yield* Effect.forkChild(Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (token) => Stage.receive(stage, { token, take, poll }),
        { concurrency: "unbounded" }
      ))
      yield* settle
      assert.strictEqual(internals(stage).waiting, n - 1)
      // Each head finds its own event first, leaves, and the next receiver heads.
      yield* Queue.offerAll(wire, Array.from({ length: n }, (_, i) => i))
      yield* settle
      const received = receivers.pollUnsafe()
      assert.isTrue(received !== undefined && Exit.isSuccess(received) && received.value.every((v, i) => v === i))
    }), { timeout: 120_000 })

  it.effect("2. withdrawing the ticket of a running head interrupts it; the next head starts only once it has left", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      let readers = 0
      const seen: Array<number> = []
      const leaving = yield* Deferred.make<void>()
      yield* Effect.addFinalizer(() => Deferred.succeed(leaving, undefined))
      // Reads until interrupted; its clean-up (uninterruptible) lasts until `leaving`.
      const { fiber: head, scope: ticketScope } = yield* headInOwnScope(stage, "a", () =>
        Effect.acquireUseRelease(
          Effect.sync(() => readers++),
          () => Effect.never,
          () => Effect.andThen(Deferred.await(leaving), Effect.sync(() => readers--))
        ))
      const b = yield* Stage.ticket(stage, "b")
      const waiter = yield* Effect.forkChild(Stage.enter(stage, b, { head: () => Effect.sync(() => seen.push(readers)) }))
      yield* settle
      yield* Scope.close(ticketScope, Exit.void)
      yield* settle
      // a's head was interrupted and is cleaning up: b must not read beside it.
      assert.deepStrictEqual(seen, [])
      assert.isUndefined(waiter.pollUnsafe())
      assert.isUndefined(head.pollUnsafe())
      yield* Deferred.succeed(leaving, undefined)
      yield* settle
      assert.isTrue(Exit.hasInterrupts(head.pollUnsafe()!))
      assert.deepStrictEqual(waiter.pollUnsafe(), Exit.succeed({ _tag: "Finished", value: 1 }))
      assert.deepStrictEqual(seen, [0])
    }))

  it.effect("2b. a withdrawn head that never returns is interrupted, and headship passes on", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const { fiber: head, scope: ticketScope } = yield* headInOwnScope(stage, "a", () => Effect.never)
      const b = yield* Stage.ticket(stage, "b")
      const waiter = yield* Effect.forkChild(Stage.enter(stage, b, { head: () => Effect.succeed("b headed") }))
      yield* settle
      yield* Scope.close(ticketScope, Exit.void)
      yield* settle
      const headExit = head.pollUnsafe()
      assert.isTrue(headExit !== undefined && Exit.hasInterrupts(headExit))
      assert.deepStrictEqual(waiter.pollUnsafe(), Exit.succeed({ _tag: "Finished", value: "b headed" }))
    }))

  it.effect("3. a timed enter interrupted during a scheduler yield between joining the queue and parking never stays linked", () =>
    Effect.gen(function*() {
      // Operation budgets from 4 to 64: with some of them (4–11 at the time of writing) the yield falls between joining and parking.
      const stranded: Array<number> = []
      for (let budget = 4; budget <= 64; budget++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const stage = yield* makeStage
          const h = yield* Stage.ticket(stage, "h")
          const gate = yield* Deferred.make<void>()
          const head = yield* Effect.forkChild(Stage.enter(stage, h, { head: () => Deferred.await(gate) }))
          yield* settle
          const w = yield* Stage.ticket(stage, "w")
          const waiter = yield* Effect.forkChild(
            Effect.provideService(Stage.enter(stage, w, { head: () => Effect.void, timeout: "1 minute" }), Scheduler.MaxOpsBeforeYield, budget),
            { startImmediately: true }
          )
          // Interrupted wherever it is: parked, or yielding before it parked.
          waiter.interruptUnsafe()
          yield* settle
          // The next waiter heads when the head leaves.
          const next = yield* Stage.ticket(stage, "next")
          const nextFiber = yield* Effect.forkChild(Stage.enter(stage, next, { head: () => Effect.succeed("next headed") }))
          yield* settle
          if (internals(stage).waiting !== 1) stranded.push(budget)
          yield* Deferred.succeed(gate, undefined)
          yield* settle
          assert.isTrue(Exit.hasInterrupts(waiter.pollUnsafe()!))
          assert.deepStrictEqual(head.pollUnsafe(), Exit.succeed({ _tag: "Finished", value: undefined }))
          if (nextFiber.pollUnsafe() === undefined) stranded.push(budget)
        }))
      }
      assert.deepStrictEqual(stranded, [])
    }))

  it.effect("a promoted waiter whose head is then interrupted leaves no notification behind", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const h = yield* Stage.ticket(stage, "h")
      const gate = yield* Deferred.make<void>()
      const head = yield* headAfter(stage, h, gate, () => Effect.void)
      const w = yield* Stage.ticket(stage, "w")
      const waiter = yield* Effect.forkChild(Stage.enter(stage, w, { head: () => Effect.never }))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(head)
      yield* settle
      assert.strictEqual(internals(stage).head?.token, "w")
      yield* Fiber.interrupt(waiter)
      // Nobody notified w: its next enter heads (the stage is free), it does not return Token.
      assert.deepStrictEqual(yield* Stage.enter(stage, w, { head: () => Effect.succeed("headed") }), { _tag: "Finished", value: "headed" })
    }))

  it.effect("5. withdrawing a heading ticket is atomic: the waiter it promotes sees the token free", () =>
    Effect.gen(function*() {
      const stage = yield* makeStage
      const { fiber: head, scope: ticketScope } = yield* headInOwnScope(stage, "a", () => Effect.never)
      const b = yield* Stage.ticket(stage, "b")
      const waiter = yield* Effect.forkChild(Stage.enter(stage, b, {
        head: (d) =>
          Effect.map(Effect.exit(Effect.scoped(Stage.ticket(stage, "a"))), (taken) => ({
            notified: d.notifyUnsafe("a"),
            taken: Exit.isSuccess(taken)
          }))
      }))
      yield* settle
      yield* Scope.close(ticketScope, Exit.void)
      yield* settle
      const headExit = head.pollUnsafe()
      assert.isTrue(headExit !== undefined && Exit.hasInterrupts(headExit))
      assert.deepStrictEqual(waiter.pollUnsafe(), Exit.succeed({ _tag: "Finished", value: { notified: false, taken: true } }))
    }))
})
