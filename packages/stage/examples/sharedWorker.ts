/**
 * The worker side of the `SharedStage` example (`examples/shared.ts`; the
 * `SharedStage.attach` doc quotes it). Each worker attaches with its own
 * buffer and its handle on the shared resource, a queue of requests
 * (`Source`). Its fibers each take a ticket, push their request once the
 * ticket is held, and wait; whichever fiber heads the stage, in any worker,
 * pops requests, answers them and delivers each answer to the worker holding
 * its token, which files it in its buffer before the waiter wakes.
 */
import { parentPort, workerData } from "node:worker_threads"
import { Effect } from "effect"
import { SharedStage } from "@quiesce/stage"
import { Source } from "./source.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Worker `index`'s `fibers` fibers each send request `index * 1000 + fiber` and return its answer. */
export const worker = (memory: SharedStage.Memory, requests: SharedArrayBuffer, index: number, fibers: number) =>
  Effect.scoped(Effect.gen(function*() {
    const source = new Source(requests)
    const stage = yield* SharedStage.attach<Source, number, Map<number, string>, string>(memory, {
      resource: source, // this worker's handle on what the head polls
      buffer: new Map(), // this worker's own buffer
      events: {
        encode: (answer) => encoder.encode(answer),
        decode: (bytes) => decoder.decode(bytes),
        offer: (buffer, token, answer) => void buffer.set(token, answer)
      }
    })
    return yield* Effect.forEach(
      Array.from({ length: fibers }, (_, fiber) => index * 1000 + fiber),
      (token) =>
        SharedStage.receive(stage, {
          token,
          // The answer cannot arrive before the ticket is held: send the request only then.
          onTicket: Effect.sync(() => source.push(token)),
          // The head's work: one request from the shared queue, its answer to whichever worker waits for it.
          poll: (director) => Effect.flatMap(director.resource.pop, (id) => director.deliver(id, `answer to ${id}`)),
          take: (buffer, token) => {
            const answer = buffer.get(token)
            buffer.delete(token)
            return answer
          },
          timeout: "10 seconds"
        }),
      { concurrency: "unbounded" }
    )
  }))

if (parentPort !== null && workerData?.example === "shared") {
  const port = parentPort
  const { fibers, index, memory, requests } = workerData
  Effect.runPromise(worker(memory, requests, index, fibers)).then(
    (answers) => port.postMessage({ answers }),
    (error) => port.postMessage({ failed: String(error) })
  )
}
