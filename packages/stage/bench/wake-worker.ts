/**
 * The worker side of the cross-worker wake benchmark. Three servers run at
 * once, each answering on the shared `pong` word (or by message):
 * - raw: waits on the `ping` word with Atomics.waitAsync;
 * - stage: a fiber waits on the token "worker" of the shared stage;
 * - message: answers each postMessage with a postMessage.
 */
import { parentPort, workerData } from "node:worker_threads"
import { Effect, Scope } from "effect"
import { SharedStage } from "@quiesce/stage"

const { memory, words: wordsBuffer } = workerData as { memory: SharedStage.Memory; words: SharedArrayBuffer }
const words = new Int32Array(wordsBuffer)

const pong = () => {
  Atomics.add(words, 1, 1)
  Atomics.notify(words, 1)
}

// raw
let seenPing = 0
const rawLoop = (): void => {
  const waited = Atomics.waitAsync(words, 0, seenPing)
  const next = () => {
    seenPing = Atomics.load(words, 0)
    pong()
    rawLoop()
  }
  if (waited.async) waited.value.then(next)
  else next()
}
rawLoop()

// message
parentPort!.on("message", (m) => parentPort!.postMessage(m))

// stage
const stage = await Effect.runPromise(Scope.provide(
  SharedStage.attach<null, string, null>(memory, { resource: null, buffer: null }),
  Scope.makeUnsafe()
))
const ticket = await Effect.runPromise(Scope.provide(SharedStage.ticket(stage, "worker"), Scope.makeUnsafe()))
const server: Effect.Effect<never> = Effect.flatMap(
  SharedStage.enter(stage, ticket, { head: () => Effect.die("the worker must not head") }),
  () => {
    pong()
    return server
  }
)
Effect.runFork(server)
parentPort!.postMessage("ready")
