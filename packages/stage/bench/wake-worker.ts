/**
 * The worker side of the cross-worker wake benchmark. Its servers run at once:
 * - Stage: a fiber waits on the token "worker" of stage A and, woken, notifies
 *   the token "main" of stage B, which this worker heads;
 * - raw: waits on the ping word with `Atomics.waitAsync` and answers on the
 *   pong word;
 * - raw → fiber: the same, but waiting in an Effect fiber (`Effect.callback`);
 * - postMessage: answers each message with a message;
 * - bursts: a fiber per burst token waits on stage A, and another awaits a
 *   `Deferred` completed by a message (the baseline); each counts itself on
 *   `words[6]` when it resumes.
 * While `words[3]` is set (the one-way cross-check), every ping is stamped on
 * arrival and answered on the stamp pong word instead.
 */
import { parentPort, workerData } from "node:worker_threads"
import { Deferred, Effect, Exit, Scope } from "effect"
import { SharedStage, type StageError } from "@quiesce/stage"

const { memoryA, memoryB, shared } = workerData as {
  memoryA: SharedStage.Memory
  memoryB: SharedStage.Memory
  shared: SharedArrayBuffer
}
const words = new Int32Array(shared, 0, 8)
const stamps = new BigInt64Array(shared, 32, 2)
const stamping = () => Atomics.load(words, 3) === 1
const stampPong = () => {
  stamps[1] = process.hrtime.bigint()
  Atomics.add(words, 2, 1)
  Atomics.notify(words, 2)
}

// raw
let seenPing = 0
const rawLoop = (): void => {
  const waited = Atomics.waitAsync(words, 0, seenPing)
  const next = () => {
    seenPing = Atomics.load(words, 0)
    if (stamping()) stampPong()
    else {
      Atomics.add(words, 1, 1)
      Atomics.notify(words, 1)
    }
    rawLoop()
  }
  if (waited.async) waited.value.then(next)
  else next()
}
rawLoop()

// raw, each side resuming an Effect fiber
let seenFiberPing = 0
const rawFiberServer: Effect.Effect<never> = Effect.flatMap(
  Effect.callback<void>((resume) => {
    const waited = Atomics.waitAsync(words, 4, seenFiberPing)
    if (waited.async) waited.value.then(() => resume(Effect.void))
    else resume(Effect.void)
  }),
  () => {
    seenFiberPing = Atomics.load(words, 4)
    Atomics.add(words, 5, 1)
    Atomics.notify(words, 5)
    return rawFiberServer
  }
)
Effect.runFork(rawFiberServer)

// Bursts: every resumed fiber counts itself on words[6]; the last of a burst wakes the main thread.
const burstResumed = () => {
  Atomics.add(words, 6, 1)
  Atomics.notify(words, 6)
}
const waiting = new Map<string, Deferred.Deferred<void>>()
const startBursts = async (burstTokens: ReadonlyArray<string>) => {
  for (const token of burstTokens) {
    // Stage: a fiber per token, parked on stage A.
    const ticket = await Effect.runPromise(Scope.provide(SharedStage.ticket(stageA, token), scope))
    const stageWaiter: Effect.Effect<never> = Effect.flatMap(
      SharedStage.enter(stageA, ticket, { head: () => Effect.die("the worker must not head stage A") }),
      (exit) => {
        if (exit._tag !== "Token") return Effect.die(`expected Token, got ${exit._tag}`)
        burstResumed()
        return stageWaiter
      }
    )
    Effect.runFork(stageWaiter)
    // Baseline: a fiber per token, awaiting a Deferred it registers in the map.
    const mapWaiter: Effect.Effect<never> = Effect.suspend(() => {
      const deferred = Deferred.makeUnsafe<void>()
      waiting.set(token, deferred)
      return Effect.flatMap(Deferred.await(deferred), () => {
        burstResumed()
        return mapWaiter
      })
    })
    Effect.runFork(mapWaiter)
  }
  await new Promise((r) => setImmediate(r))
  parentPort!.postMessage("bursts ready")
}

const wakeMapWaiter = (token: string) => {
  const deferred = waiting.get(token)
  if (deferred !== undefined) {
    waiting.delete(token)
    Deferred.doneUnsafe(deferred, Exit.void)
  }
}

// postMessage
parentPort!.on("message", (m) => {
  if (m === "stamp") stampPong()
  else if (typeof m === "object" && m !== null && "burst" in m) wakeMapWaiter(m.burst)
  else if (typeof m === "object" && m !== null && "burstAll" in m) {
    for (const token of m.burstAll) wakeMapWaiter(token)
  } else if (typeof m === "object" && m !== null && "burstTokens" in m) void startBursts(m.burstTokens)
  else parentPort!.postMessage(m)
})

// Stage
const scope = Scope.makeUnsafe()
const stageA = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memoryA, { resource: null, buffer: null }),
  scope
))
const stageB = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memoryB, { resource: null, buffer: null }),
  scope
))
let directorB: SharedStage.Director<null, string, null, never> | undefined
const headTicketB = await Effect.runPromise(Scope.provide(SharedStage.ticket(stageB, "worker"), scope))
Effect.runFork(SharedStage.enter(stageB, headTicketB, {
  head: (d) => {
    directorB = d
    return Effect.never
  }
}))
await new Promise((r) => setImmediate(r))
const notifyMain = directorB!.notify("main")
const ticketA = await Effect.runPromise(Scope.provide(SharedStage.ticket(stageA, "worker"), scope))
const server: Effect.Effect<never, StageError.WorkerDeadError | StageError.WorkerEvictedError> = Effect.flatMap(
  SharedStage.enter(stageA, ticketA, { head: () => Effect.die("the worker must not head stage A") }),
  (exit) => {
    if (exit._tag !== "Token") return Effect.die(`expected Token, got ${exit._tag}`)
    if (stamping()) {
      stampPong()
      return server
    }
    return Effect.andThen(notifyMain, server)
  }
)
Effect.runFork(server)
parentPort!.postMessage("ready")
