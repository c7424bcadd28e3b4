/**
 * Stage benchmarks, each interleaved against its baseline in one process.
 *
 * 1. Routing cost per event with 1,000 waiting tokens: a head routes one event
 *    to each of 1,000 parked waiters (buffer + notify), each waiter takes its
 *    event and parks again. Baseline: a reader fiber with a
 *    `Map<token, Deferred>` that the waiters re-register into.
 * 2. The same stage against PubSub broadcast-and-filter (every subscriber sees
 *    every event and keeps its own).
 * 3. Cross-worker wake-up: a head notifies a token whose fiber waits in
 *    another thread. Measured as ping-pongs whose two legs use the same
 *    mechanism (Stage both ways, raw `Atomics.notify`/`waitAsync` both ways,
 *    `postMessage` both ways), so round-trip ratios are one-way ratios; then
 *    cross-checked by one-way latencies from `process.hrtime` stamps.
 * 4. Cross-worker bursts: 64 tokens of one worker woken at once, against a
 *    `postMessage` per token (and one message for all) + `Map<token, Deferred>`.
 */
import { getHeapSpaceStatistics } from "node:v8"
import { Worker } from "node:worker_threads"
import { Deferred, Effect, Exit, PubSub, Scope } from "effect"
import { compare } from "../../../bench/harness.ts"
import { SharedStage, Stage } from "@quiesce/stage"

const TOKENS = 1_000

// -----------------------------------------------------------------------------
// 1 & 2. Routing in one thread
// -----------------------------------------------------------------------------

/** Routes `events` events, in rounds of TOKENS (one per waiter). */
interface Router {
  readonly run: (events: number) => Promise<void>
}

/** Runs rounds of TOKENS events: `send` starts a round, the waiters call `arrive` once per event. */
const rounds = (send: () => void) => {
  let received = 0
  let roundDone: (() => void) | undefined
  return {
    arrive: () => {
      if (++received === TOKENS) roundDone!()
    },
    run: async (events: number) => {
      for (let done = 0; done < events; done += TOKENS) {
        received = 0
        await new Promise<void>((resolve) => {
          roundDone = resolve
          send()
        })
      }
    }
  }
}

/** A fiber's next command (how many events to route), sent from outside the runtime by `send`. */
const commands = () => {
  let resumeNext: ((n: number) => void) | undefined
  return {
    next: Effect.callback<number>((resume) => {
      resumeNext = (n) => resume(Effect.succeed(n))
    }),
    send: (n: number) => resumeNext!(n)
  }
}

const makeStageRouter = async (): Promise<Router> => {
  const stage = Stage.makeUnsafe<null, number, Map<number, number>>({ resource: null, buffer: new Map() })
  const command = commands()
  const round = rounds(() => command.send(TOKENS))
  const scope = Scope.makeUnsafe()
  const head = (director: Stage.Director<null, number, Map<number, number>>): Effect.Effect<never> => {
    const buffer = director.buffer
    const loop: Effect.Effect<never> = Effect.flatMap(command.next, (n) => {
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
        round.arrive()
        return waiter
      }
    )
    Effect.runFork(waiter)
  }
  await new Promise((r) => setImmediate(r))
  return round
}

const makeMapRouter = async (): Promise<Router> => {
  const waiting = new Map<number, Deferred.Deferred<number>>()
  const command = commands()
  const round = rounds(() => command.send(TOKENS))
  const reader: Effect.Effect<never> = Effect.flatMap(command.next, (n) => {
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
        round.arrive()
        return waiter
      })
    })
    Effect.runFork(waiter)
  }
  await new Promise((r) => setImmediate(r))
  return round
}

const makePubSubRouter = async (): Promise<Router> => {
  const pubsub = Effect.runSync(PubSub.unbounded<number>())
  const scope = Scope.makeUnsafe()
  const round = rounds(() => Effect.runFork(PubSub.publishAll(pubsub, Array.from({ length: TOKENS }, (_, k) => k))))
  for (let i = 0; i < TOKENS; i++) {
    const subscription = await Effect.runPromise(Scope.provide(PubSub.subscribe(pubsub), scope))
    const subscriber: Effect.Effect<never> = Effect.flatMap(PubSub.take(subscription), (event) => {
      if (event === i) round.arrive()
      return subscriber
    })
    Effect.runFork(subscriber)
  }
  await new Promise((r) => setImmediate(r))
  return round
}

// Grow V8's young generation to its largest size before measuring. It grows
// when many objects survive a scavenge; while it does, every allocation runs
// several times slower for a few hundred milliseconds (the first touch of the
// new pages: on this VM ×5 for ~300 ms, after ~0.5 million routed events),
// which is the length of a whole comparison, so whichever side happened to
// run then lost, by up to ×2, at random. Objects kept alive across a few
// scavenges make it grow now, before either side runs.
const youngGeneration = () => getHeapSpaceStatistics().find((space) => space.space_name === "new_space")!.space_size
for (let round = 0, size = youngGeneration(); round < 8; round++) {
  let survivors: Array<{ readonly i: number }> | undefined = []
  for (let i = 0; i < 2_000_000; i++) survivors.push({ i })
  survivors = undefined
  if (round >= 2 && youngGeneration() === size) break
  size = youngGeneration()
}

const stageRouter = await makeStageRouter()
const mapRouter = await makeMapRouter()

await compare({
  title: `Stage routing per event, ${TOKENS} waiting tokens vs reader fiber + Map<token, Deferred>`,
  subject: { name: "Stage (head: buffer + notify)", run: stageRouter.run },
  baseline: { name: "reader + Map<token, Deferred>", run: mapRouter.run },
  iterations: 20 * TOKENS,
  // More rounds than the default 15: a round is ~10 ms, and on a shared machine a stall of another
  // process's making can take several in a row.
  rounds: 31,
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
//
// Like with like: each case is a ping-pong whose two legs use the same
// mechanism, so a round trip is two one-way wake-ups and the ratio of round
// trips is the ratio of one-ways (no return leg of another kind diluting or,
// doubled, amplifying it).
// - Stage: this thread heads stage A and notifies the worker's token there;
//   the worker heads stage B and notifies this thread's token there. Each leg
//   ends with the waiting fiber resumed (`SharedStage.enter` returns `Token`).
// - raw: `Atomics.notify` on a word / `Atomics.waitAsync` on it, a promise
//   continuation on each side (the baseline the spec names).
// - postMessage: `worker.postMessage` / `parentPort.postMessage`.
// - context: raw Atomics each leg resuming an Effect fiber, to split the
//   Stage's figure into Effect's cost of resuming a fiber and the Stage's own.
// A direct cross-check follows: one-way latencies from `process.hrtime`
// stamps (a monotonic clock shared by the threads), medians. The round trips
// include each side's work after its wake-up (re-parking, re-arming), which on
// a saturated machine delays the other side's wake-up; the stamps do not.

const memoryA = SharedStage.makeMemory({ leaseMillis: 30_000 })
const memoryB = SharedStage.makeMemory({ leaseMillis: 30_000 })
// words[0]: raw ping, [1]: raw pong, [2]: stamp-mode pong, [3]: stamp mode on, [4]/[5]: raw → fiber ping/pong;
// stamps[0]: ping sent, stamps[1]: ping received
const shared = new SharedArrayBuffer(64)
const words = new Int32Array(shared, 0, 8)
const stamps = new BigInt64Array(shared, 32, 2)

const stageA = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memoryA, { resource: null, buffer: null }),
  Scope.makeUnsafe()
))
const stageB = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memoryB, { resource: null, buffer: null }),
  Scope.makeUnsafe()
))
let directorA: SharedStage.Director<null, string, null, never> | undefined
const headTicketA = await Effect.runPromise(Scope.provide(SharedStage.ticket(stageA, "main"), Scope.makeUnsafe()))
// This thread heads stage A for the whole benchmark.
Effect.runFork(SharedStage.enter(stageA, headTicketA, {
  head: (d) => {
    directorA = d
    return Effect.never
  }
}))
await new Promise((r) => setImmediate(r))
const notifyWorker = directorA!.notify("worker")
const mainTicketB = await Effect.runPromise(Scope.provide(SharedStage.ticket(stageB, "main"), Scope.makeUnsafe()))
const waitOnB = SharedStage.enter(stageB, mainTicketB, { head: () => Effect.die("this thread must not head stage B") })

const worker = new Worker(new URL("./wake-worker.ts", import.meta.url), {
  workerData: { memoryA, memoryB, shared },
  execArgv: ["--conditions=@quiesce/source"]
})
await new Promise<void>((resolve) => worker.once("message", () => resolve()))

const awaitWord = (index: number, seen: number): Promise<unknown> => {
  const waited = Atomics.waitAsync(words, index, seen)
  return waited.async ? waited.value : Promise.resolve()
}

const stagePingPong = (n: number) => {
  let i = 0
  return Effect.runPromise(Effect.whileLoop({
    while: () => i++ < n,
    body: () =>
      Effect.flatMap(Effect.andThen(notifyWorker, waitOnB), (exit) =>
        exit._tag === "Token" ? Effect.void : Effect.die(`expected Token, got ${exit._tag}`)),
    step: () => {}
  }))
}

const rawPingPong = async (n: number) => {
  for (let i = 0; i < n; i++) {
    const seen = Atomics.load(words, 1)
    Atomics.add(words, 0, 1)
    Atomics.notify(words, 0)
    await awaitWord(1, seen)
  }
}

// Raw Atomics both ways, but each leg resuming an Effect fiber (Effect.callback):
// not the spec's baseline, the decomposition of the Stage's figure (what a
// fiber resume costs on top of a raw wake-up, before any Stage work).
const fiberWaitWord = (index: number, seen: number) =>
  Effect.callback<void>((resume) => {
    const waited = Atomics.waitAsync(words, index, seen)
    if (waited.async) waited.value.then(() => resume(Effect.void))
    else resume(Effect.void)
  })
const rawFiberPingPong = (n: number) => {
  let i = 0
  return Effect.runPromise(Effect.whileLoop({
    while: () => i++ < n,
    body: () =>
      Effect.suspend(() => {
        const seen = Atomics.load(words, 5)
        Atomics.add(words, 4, 1)
        Atomics.notify(words, 4)
        return fiberWaitWord(5, seen)
      }),
    step: () => {}
  }))
}

let onPong: (() => void) | undefined
worker.on("message", () => onPong?.())
const messagePingPong = async (n: number) => {
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => {
      onPong = resolve
      worker.postMessage(i)
    })
  }
}

const wake = await compare({
  title: "cross-worker wake, both legs alike: Stage notify → fiber resumes vs raw Atomics.notify/waitAsync",
  subject: { name: "Stage both ways", run: stagePingPong },
  baseline: { name: "raw Atomics both ways", run: rawPingPong },
  iterations: 2_000,
  goal: { maxRatio: 1.2 }
})

const wakeVsMessage = await compare({
  title: "cross-worker wake, both legs alike: Stage vs postMessage",
  subject: { name: "Stage both ways", run: stagePingPong },
  baseline: { name: "postMessage both ways", run: messagePingPong },
  iterations: 2_000,
  goal: { minSpeedup: 1 }
})

await compare({
  title: "context: raw Atomics resuming an Effect fiber vs raw Atomics resuming a promise, both legs alike",
  subject: { name: "raw Atomics → fiber both ways", run: rawFiberPingPong },
  baseline: { name: "raw Atomics both ways", run: rawPingPong },
  iterations: 2_000
})

await compare({
  title: "context: Stage vs raw Atomics resuming an Effect fiber, both legs alike",
  subject: { name: "Stage both ways", run: stagePingPong },
  baseline: { name: "raw Atomics → fiber both ways", run: rawFiberPingPong },
  iterations: 2_000
})

await compare({
  title: "context: raw Atomics.notify/waitAsync vs postMessage, both legs alike",
  subject: { name: "raw Atomics both ways", run: rawPingPong },
  baseline: { name: "postMessage both ways", run: messagePingPong },
  iterations: 2_000
})

// Direct cross-check: the ping leg's one-way latency by clock stamps. Every
// mode runs the same Effect loop on this side (stamp, send, await a raw Atomics
// pong), so only the ping differs; modes run in blocks, interleaved over rounds.
type Mode = "stage" | "raw" | "postMessage"
const sends: Record<Mode, Effect.Effect<unknown, unknown>> = {
  stage: notifyWorker,
  raw: Effect.sync(() => {
    Atomics.add(words, 0, 1)
    Atomics.notify(words, 0)
  }),
  postMessage: Effect.sync(() => worker.postMessage("stamp"))
}
const oneWay = (mode: Mode, n: number, into: Array<number>) => {
  let i = 0
  let seen = 0
  let sent = 0n
  return Effect.runPromise(Effect.whileLoop({
    while: () => i++ < n,
    body: () =>
      Effect.suspend(() => {
        seen = Atomics.load(words, 2)
        sent = process.hrtime.bigint()
        stamps[0] = sent
        return Effect.andThen(sends[mode], Effect.promise(() => awaitWord(2, seen)))
      }),
    step: () => {
      into.push(Number(stamps[1]! - sent))
    }
  }))
}
const modes: ReadonlyArray<Mode> = ["stage", "raw", "postMessage"]
const samples: Record<Mode, Array<number>> = { stage: [], raw: [], postMessage: [] }
Atomics.store(words, 3, 1) // the worker answers pings on the stamp pong word
for (let round = 0; round < 10; round++) {
  for (let k = 0; k < modes.length; k++) {
    const mode = modes[(k + round) % modes.length]!
    await oneWay(mode, 1_000, round === 0 ? [] : samples[mode])
  }
}
Atomics.store(words, 3, 0)
const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const us = (ns: number) => `${(ns / 1e3).toFixed(1)} µs`
const [stageOneWay, rawOneWay, messageOneWay] = [median(samples.stage), median(samples.raw), median(samples.postMessage)]
console.log("cross-worker wake, one-way latency by hrtime stamps (medians of 9,000 each, interleaved blocks)")
console.log(`  Stage notify → fiber resumes: ${us(stageOneWay)}   raw Atomics: ${us(rawOneWay)}   postMessage: ${us(messageOneWay)}`)
console.log(
  `  Stage/raw ${(stageOneWay / rawOneWay).toFixed(2)}× (goal ≤ 1.2×)   Stage/postMessage ${(stageOneWay / messageOneWay).toFixed(2)}×   raw/postMessage ${(rawOneWay / messageOneWay).toFixed(2)}×`
)
console.log(`  (round-trip ratios above: Stage/raw ${wake.ratio.toFixed(2)}×, Stage/postMessage ${wakeVsMessage.ratio.toFixed(2)}×)`)

// Bursts: one head wakes BURST fibers of the worker at once (one notify each),
// until all of them have resumed. The Stage writes BURST inbox records and
// rings the worker's doorbell each time (only a ring that finds the pump
// waiting wakes it). The baseline is the natural alternative: BURST messages
// to a worker whose handler completes each token's `Deferred` in a
// `Map<token, Deferred>` (and, as context, one message carrying all tokens).
// Each resumed fiber counts itself on a shared word and notifies it; this
// thread waits until the burst's count is reached.
const BURST = 64
const burstTokens = Array.from({ length: BURST }, (_, k) => `b${k}`)
const notifyBurst = Effect.forEach(burstTokens, (token) => directorA!.notify(token), { discard: true })
worker.postMessage({ burstTokens })
await new Promise<void>((resolve) => worker.once("message", () => resolve()))
const burst = (send: () => Promise<void> | void) => async (n: number) => {
  for (let done = 0; done < n; done += BURST) {
    const target = Atomics.load(words, 6) + BURST
    await send()
    for (let seen = Atomics.load(words, 6); seen < target; seen = Atomics.load(words, 6)) {
      await awaitWord(6, seen)
    }
  }
}
await compare({
  title: `cross-worker wake, bursts of ${BURST} tokens: Stage (${BURST} notifies into the worker's inbox) vs one postMessage per token + Map<token, Deferred>`,
  subject: { name: "Stage", run: burst(() => Effect.runPromise(notifyBurst)) },
  baseline: {
    name: "postMessage + Map<token, Deferred>",
    run: burst(() => {
      for (const token of burstTokens) worker.postMessage({ burst: token })
    })
  },
  iterations: 20 * BURST
})
await compare({
  title: `context: the same bursts vs postMessage batched by hand (one message carrying all ${BURST} tokens)`,
  subject: { name: "Stage", run: burst(() => Effect.runPromise(notifyBurst)) },
  baseline: { name: "one postMessage + Map<token, Deferred>", run: burst(() => worker.postMessage({ burstAll: burstTokens })) },
  iterations: 20 * BURST
})

await worker.terminate()
process.exit(0)
