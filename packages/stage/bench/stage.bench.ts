/**
 * Stage benchmarks, each interleaved against its baseline in one process.
 *
 * 1. Routing cost per event with 1,000 waiting tokens: a head routes one event
 *    to each of 1,000 parked waiters (buffer + notify), each waiter takes its
 *    event and parks again. Baseline: a reader fiber with a
 *    `Map<token, Deferred>` that the waiters re-register into.
 * 2. The same stage against PubSub broadcast-and-filter (every subscriber sees
 *    every event and keeps its own).
 * 3. Cross-worker wake-up: a head in this thread notifies a token whose fiber
 *    waits in a worker. Measured as a ping-pong whose return leg is a raw
 *    `Atomics.notify`/`waitAsync` in all cases, against the same ping-pong with
 *    a raw first leg, and against `postMessage` both ways.
 */
import { Worker } from "node:worker_threads"
import { Deferred, Effect, Exit, PubSub, Scope } from "effect"
import { compare } from "../../../bench/harness.ts"
import { SharedStage, Stage } from "@quiesce/stage"

const TOKENS = 1_000

// -----------------------------------------------------------------------------
// 1 & 2. Routing in one thread
// -----------------------------------------------------------------------------

/** A harness that runs rounds of TOKENS events: `route` sends one round, waiters count arrivals. */
interface Router {
  readonly run: (events: number) => Promise<void>
}

const makeStageRouter = async (): Promise<Router> => {
  const stage = Stage.makeUnsafe<null, number, Map<number, number>>({ resource: null, buffer: new Map() })
  let received = 0
  let roundDone: (() => void) | undefined
  let command: ((n: number) => void) | undefined
  const scope = Scope.makeUnsafe()
  const nextCommand = Effect.callback<number>((resume) => {
    command = (n) => resume(Effect.succeed(n))
  })
  const head = (director: Stage.Director<null, number, Map<number, number>>): Effect.Effect<never> => {
    const buffer = director.buffer
    const loop: Effect.Effect<never> = Effect.flatMap(nextCommand, (n) => {
      for (let k = 0; k < n; k++) {
        buffer.set(k, k)
        director.notifyUnsafe(k)
      }
      return loop
    })
    return loop
  }
  const headTicket = await Effect.runPromise(Scope.provide(Stage.ticket(stage, -1), scope))
  Effect.runFork(Stage.enter(stage, headTicket, { head }))
  for (let i = 0; i < TOKENS; i++) {
    const ticket = await Effect.runPromise(Scope.provide(Stage.ticket(stage, i), scope))
    const buffer = stage.buffer
    const waiter: Effect.Effect<never> = Effect.flatMap(
      Stage.enter(stage, ticket, { head: () => Effect.die("a waiter must not head") }),
      () => {
        buffer.delete(i)
        if (++received === TOKENS) roundDone!()
        return waiter
      }
    )
    Effect.runFork(waiter)
  }
  await new Promise((r) => setImmediate(r))
  return {
    run: async (events) => {
      for (let done = 0; done < events; done += TOKENS) {
        received = 0
        await new Promise<void>((resolve) => {
          roundDone = resolve
          command!(TOKENS)
        })
      }
    }
  }
}

const makeMapRouter = async (): Promise<Router> => {
  const waiting = new Map<number, Deferred.Deferred<number>>()
  let received = 0
  let roundDone: (() => void) | undefined
  let command: ((n: number) => void) | undefined
  const nextCommand = Effect.callback<number>((resume) => {
    command = (n) => resume(Effect.succeed(n))
  })
  const reader: Effect.Effect<never> = Effect.flatMap(nextCommand, (n) => {
    for (let k = 0; k < n; k++) {
      const deferred = waiting.get(k)
      if (deferred !== undefined) {
        waiting.delete(k)
        Deferred.doneUnsafe(deferred, Exit.succeed(k))
      }
    }
    return reader
  })
  Effect.runFork(reader)
  for (let i = 0; i < TOKENS; i++) {
    const waiter: Effect.Effect<never> = Effect.suspend(() => {
      const deferred = Deferred.makeUnsafe<number>()
      waiting.set(i, deferred)
      return Effect.flatMap(Deferred.await(deferred), () => {
        if (++received === TOKENS) roundDone!()
        return waiter
      })
    })
    Effect.runFork(waiter)
  }
  await new Promise((r) => setImmediate(r))
  return {
    run: async (events) => {
      for (let done = 0; done < events; done += TOKENS) {
        received = 0
        await new Promise<void>((resolve) => {
          roundDone = resolve
          command!(TOKENS)
        })
      }
    }
  }
}

const makePubSubRouter = async (): Promise<Router> => {
  const pubsub = Effect.runSync(PubSub.unbounded<number>())
  const scope = Scope.makeUnsafe()
  let received = 0
  let roundDone: (() => void) | undefined
  for (let i = 0; i < TOKENS; i++) {
    const subscription = await Effect.runPromise(Scope.provide(PubSub.subscribe(pubsub), scope))
    const subscriber: Effect.Effect<never> = Effect.flatMap(PubSub.take(subscription), (event) => {
      if (event === i && ++received === TOKENS) roundDone!()
      return subscriber
    })
    Effect.runFork(subscriber)
  }
  await new Promise((r) => setImmediate(r))
  return {
    run: async (events) => {
      for (let done = 0; done < events; done += TOKENS) {
        received = 0
        await new Promise<void>((resolve) => {
          roundDone = resolve
          Effect.runFork(PubSub.publishAll(pubsub, Array.from({ length: TOKENS }, (_, k) => k)))
        })
      }
    }
  }
}

const stageRouter = await makeStageRouter()
const mapRouter = await makeMapRouter()

await compare({
  title: `Stage routing per event, ${TOKENS} waiting tokens vs reader fiber + Map<token, Deferred>`,
  subject: { name: "Stage (head: buffer + notify)", run: stageRouter.run },
  baseline: { name: "reader + Map<token, Deferred>", run: mapRouter.run },
  iterations: 20 * TOKENS,
  goal: { maxRatio: 1.0 }
})

const pubsubRouter = await makePubSubRouter()
await compare({
  title: `Stage vs PubSub broadcast + filter, ${TOKENS} tokens`,
  subject: { name: "Stage", run: stageRouter.run },
  baseline: { name: "PubSub broadcast + filter", run: pubsubRouter.run },
  iterations: TOKENS,
  rounds: 7,
  warmupRounds: 2,
  goal: { minSpeedup: 10 }
})

// -----------------------------------------------------------------------------
// 3. Cross-worker wake-up
// -----------------------------------------------------------------------------

const memory = SharedStage.makeMemory({ leaseMillis: 30_000 })
const words = new Int32Array(new SharedArrayBuffer(16))
const awaitPong = (seen: number): Promise<unknown> => {
  const waited = Atomics.waitAsync(words, 1, seen)
  return waited.async ? waited.value : Promise.resolve()
}

const rawPing = Effect.sync(() => {
  Atomics.add(words, 0, 1)
  Atomics.notify(words, 0)
})

/**
 * Both wake-up cases run the same Effect loop: send the ping leg (`ping`),
 * then wait for the raw pong with `Atomics.waitAsync`.
 */
const pingPong = (ping: Effect.Effect<unknown>) => (n: number) => {
  let i = 0
  return Effect.runPromise(Effect.whileLoop({
    while: () => i++ < n,
    body: () =>
      Effect.suspend(() => {
        const seen = Atomics.load(words, 1)
        return Effect.andThen(ping, Effect.promise(() => awaitPong(seen)))
      }),
    step: () => {}
  }))
}
const rawPingPong = pingPong(rawPing)

// postMessage both ways, in the same Effect loop (the worker echoes each message).
let onPong: (() => void) | undefined
const messagePingPong = (n: number) => {
  const pong = () => onPong?.()
  worker.on("message", pong)
  let i = 0
  return Effect.runPromise(Effect.whileLoop({
    while: () => i++ < n,
    body: () =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          onPong = resolve
          worker.postMessage(i)
        })
      ),
    step: () => {}
  })).finally(() => worker.off("message", pong))
}

const stage = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null }),
  Scope.makeUnsafe()
))
let director: SharedStage.Director<null, string, null, never> | undefined
const headTicket = await Effect.runPromise(Scope.provide(SharedStage.ticket(stage, "main"), Scope.makeUnsafe()))
// This thread heads for the whole benchmark; the worker's fiber waits on its token.
Effect.runFork(SharedStage.enter(stage, headTicket, {
  head: (d) => {
    director = d
    return Effect.never
  }
}))
await new Promise((r) => setImmediate(r))
const notifyWorker = director!.notify("worker")
// words[0]: ping (raw baseline), words[1]: pong (all cases)
const worker = new Worker(new URL("./wake-worker.ts", import.meta.url), {
  workerData: { memory, words: words.buffer },
  execArgv: ["--conditions=@quiesce/source"]
})
await new Promise<void>((resolve) => worker.once("message", () => resolve()))


const stagePingPong = pingPong(notifyWorker)

const wake = await compare({
  title: "cross-worker wake: Stage notify → fiber resumes (+ raw pong) vs raw Atomics.notify/waitAsync (+ raw pong)",
  subject: { name: "Stage notify + raw pong", run: stagePingPong },
  baseline: { name: "raw ping + raw pong", run: rawPingPong },
  iterations: 2_000,
  // Round trips: (stage + raw) / (raw + raw) ≤ 1.1 ⇔ Stage one-way ≤ 1.2 × raw one-way.
  goal: { maxRatio: 1.1 }
})
console.log(`  ⇒ Stage one-way ≈ ${(2 * wake.ratio - 1).toFixed(2)}× a raw Atomics.notify/waitAsync one-way (goal ≤ 1.2×)`)

await compare({
  title: "context: raw Atomics.notify/waitAsync ping-pong vs postMessage ping-pong (same loop)",
  subject: { name: "raw ping + raw pong", run: rawPingPong },
  baseline: { name: "postMessage both ways", run: messagePingPong },
  iterations: 2_000
})

await compare({
  title: "cross-worker wake: Stage notify (+ raw pong) vs postMessage ping-pong",
  subject: { name: "Stage notify + raw pong", run: stagePingPong },
  baseline: { name: "postMessage both ways", run: messagePingPong },
  iterations: 2_000,
  goal: { minSpeedup: 1 }
})

await worker.terminate()
process.exit(0)
