import { Effect, Queue } from "effect"
import { Stage } from "@quiesce/stage"

// A resource only one reader may poll at a time, carrying events for different waiters.
type Event = { readonly to: string; readonly body: string }

export const quickstart = Effect.gen(function*() {
  const wire = yield* Queue.unbounded<Event>()
  const stage = yield* Stage.make<Queue.Queue<Event>, string, Map<string, string>>({ resource: wire, buffer: new Map() })

  // The head's work: read one event, file it under its token, wake that token.
  const poll = (director: Stage.Director<Queue.Queue<Event>, string, Map<string, string>>) =>
    Effect.map(Queue.take(director.resource), (event) => {
      director.buffer.set(event.to, event.body)
      director.notifyUnsafe(event.to)
    })
  const take = (buffer: Map<string, string>, token: string) => {
    const body = buffer.get(token)
    buffer.delete(token)
    return body
  }

  // Events arrive in any order; each fiber gets exactly its own.
  yield* Queue.offerAll(wire, [{ to: "carol", body: "hi carol" }, { to: "alice", body: "hi alice" }, { to: "bob", body: "hi bob" }])
  return yield* Effect.all(
    ["alice", "bob", "carol"].map((token) => Stage.receive(stage, { token, take, poll, timeout: "1 second" })),
    { concurrency: "unbounded" }
  )
})
