/**
 * Graceful shutdown of an Effect HTTP server (`NodeHttpServer` from `@effect/platform-node`)
 * with a `RundownRef`.
 *
 * Every request runs under `RundownRef.protect`. The ref's rundown is the last finalizer added
 * to the server's scope, so closing that one scope is the whole graceful shutdown (finalizers
 * run in reverse order):
 *
 *   1. the ref is run down: new requests are refused at once with 503, in-flight ones go on;
 *   2. when the last in-flight request has released its protection, the rundown completes;
 *   3. only then does the server stop listening and close.
 *
 * `runScenario` plays this out on real sockets (127.0.0.1, an ephemeral port) and returns what
 * happened, and `claims` what that shows; `examples/demo.ts` and this package's tests call them. Run it alone with
 * `node --conditions=@quiesce/source packages/rundown/examples/http-shutdown.ts`.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import * as Http from "node:http"
import { RundownRef } from "@quiesce/rundown"

/** What a client saw: an HTTP status and body, or the connection error code. */
export type Outcome =
  | { readonly _tag: "Response"; readonly status: number; readonly body: string }
  | { readonly _tag: "ConnectionError"; readonly code: string }

export interface ScenarioReport {
  /** `GET /fast` before the shutdown. */
  readonly before: Outcome
  /** `GET /slow`, started before the shutdown and let finish during it. */
  readonly inFlight: Outcome
  /** `GET /fast` sent while the shutdown was draining. */
  readonly duringShutdown: Outcome
  /** Whether the shutdown was still waiting (server still open) when the slow request was let go. */
  readonly shutdownWaitedForInFlight: boolean
  /** `GET /fast` after the shutdown completed. */
  readonly afterShutdown: Outcome
  /** The story, one line per event, in order. */
  readonly narration: ReadonlyArray<string>
}

/**
 * Serves on 127.0.0.1 (ephemeral port) until `scope` closes: `/slow` waits for `gate`, anything
 * else answers at once. Closing the scope runs the graceful shutdown described above.
 */
export const serve = Effect.fnUntraced(function*(options: {
  readonly scope: Scope.Scope
  readonly gate: Effect.Effect<void>
  readonly onSlowRequest: Effect.Effect<void>
}) {
  const server = yield* NodeHttpServer.make(() => Http.createServer(), { port: 0, host: "127.0.0.1" }).pipe(
    Scope.provide(options.scope)
  )
  const ref = RundownRef.makeUnsafe()

  const handler = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.url === "/slow") {
      yield* options.onSlowRequest
      yield* options.gate
      return HttpServerResponse.text("slow request finished")
    }
    return HttpServerResponse.text("ok")
  })

  const app = RundownRef.protect(ref, handler).pipe(
    Effect.catchTag("RundownInProgressError", () =>
      Effect.succeed(HttpServerResponse.text("shutting down", { status: 503, headers: { connection: "close" } })))
  )

  yield* HttpServer.serveEffect()(app).pipe(
    Effect.provideService(HttpServer.HttpServer, server),
    Scope.provide(options.scope)
  )
  // Registered last, so it runs first when the scope closes: serving registers a finalizer
  // that stops the listener at once, and the rundown must come before it so that requests
  // arriving during the drain are answered with 503 rather than refused by the socket.
  yield* Scope.addFinalizer(options.scope, RundownRef.waitForRundown(ref))
  const address = server.address
  if (address._tag === "UnixPathAddress") return yield* Effect.die("expected a TCP address")
  return { ref, port: address.port }
})

/** One GET on a fresh connection (no keep-alive agent, so nothing is reused across the shutdown). */
export const get = (port: number, path: string): Effect.Effect<Outcome> =>
  Effect.callback<Outcome>((resume) => {
    const request = Http.get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => body += chunk)
      response.on("end", () => resume(Effect.succeed({ _tag: "Response", status: response.statusCode ?? 0, body })))
    })
    request.on("error", (error: NodeJS.ErrnoException) =>
      resume(Effect.succeed({ _tag: "ConnectionError", code: error.code ?? error.message })))
    return Effect.sync(() => request.destroy())
  })

const show = (outcome: Outcome): string =>
  outcome._tag === "Response" ? `${outcome.status} "${outcome.body}"` : `connection error ${outcome.code}`

/**
 * Plays the graceful shutdown out on real sockets and reports what each client saw; `narrate`
 * (e.g. `console.log`) also receives each line of the story as it happens.
 */
export const runScenarioWith = (options: { readonly narrate?: (line: string) => void }): Effect.Effect<ScenarioReport> =>
  Effect.flatMap(Scope.make(), (scope) =>
    // If anything goes wrong half-way, the server still closes (closing twice is a no-op).
    Effect.ensuring(scenario(scope, options), Scope.close(scope, Exit.void)))

const scenario = (scope: Scope.Closeable, options: { readonly narrate?: (line: string) => void }) =>
  Effect.gen(function*() {
    const narration: Array<string> = []
    const say = (line: string) =>
      Effect.sync(() => {
        narration.push(line)
        options.narrate?.(line)
      })

    const gate = yield* Deferred.make<void>()
    const slowEntered = yield* Deferred.make<void>()
    const { port, ref } = yield* serve({
      scope,
      gate: Deferred.await(gate),
      onSlowRequest: Deferred.succeed(slowEntered, undefined)
    }).pipe(Effect.orDie)
    yield* say(`server listening on 127.0.0.1:${port}`)

    const before = yield* get(port, "/fast")
    yield* say(`GET /fast → ${show(before)}`)

    const slow = yield* Effect.forkChild(get(port, "/slow"))
    yield* Deferred.await(slowEntered)
    yield* say(`GET /slow is in flight (${RundownRef.stateUnsafe(ref)._tag}, count ${countOf(ref)})`)

    const shutdown = yield* Effect.forkChild(Scope.close(scope, Exit.void), { startImmediately: true })
    // The rundown begins as the scope starts closing; this only waits for that fiber to get there.
    for (let i = 0; i < 1000 && RundownRef.stateUnsafe(ref)._tag === "Active"; i++) yield* Effect.yieldNow
    yield* say(`shutdown started: the ref is ${RundownRef.stateUnsafe(ref)._tag}, ${countOf(ref)} request in flight`)

    const duringShutdown = yield* get(port, "/fast")
    yield* say(`GET /fast during shutdown → ${show(duringShutdown)}`)

    const shutdownWaitedForInFlight = shutdown.pollUnsafe() === undefined
    yield* say(`shutdown is ${shutdownWaitedForInFlight ? "still waiting for" : "NOT waiting for"} the in-flight request`)
    yield* Deferred.succeed(gate, undefined)
    const inFlight = yield* Fiber.join(slow)
    yield* say(`GET /slow → ${show(inFlight)}`)

    yield* Fiber.join(shutdown)
    yield* say(`shutdown complete: the ref is ${RundownRef.stateUnsafe(ref)._tag}, the server is closed`)

    const afterShutdown = yield* get(port, "/fast")
    yield* say(`GET /fast after shutdown → ${show(afterShutdown)}`)

    return { before, inFlight, duringShutdown, shutdownWaitedForInFlight, afterShutdown, narration }
  })

/** {@link runScenarioWith} without live narration (the story is in the report). */
export const runScenario: Effect.Effect<ScenarioReport> = runScenarioWith({})

/** What the scenario demonstrates, as claims a reader can check, each with whether it held. */
export const claims = (report: ScenarioReport): ReadonlyArray<{ readonly claim: string; readonly held: boolean }> => {
  const is = (outcome: Outcome, status: number) => outcome._tag === "Response" && outcome.status === status
  return [
    { claim: "before shutdown, requests are served", held: is(report.before, 200) },
    { claim: "the request in flight when shutdown began finished normally", held: is(report.inFlight, 200) },
    { claim: "a request arriving during the drain was turned away with 503", held: is(report.duringShutdown, 503) },
    { claim: "the server did not close while a request was in flight", held: report.shutdownWaitedForInFlight },
    { claim: "afterwards the server is closed", held: report.afterShutdown._tag === "ConnectionError" }
  ]
}

const countOf = (ref: RundownRef.RundownRef): number => {
  const state = RundownRef.stateUnsafe(ref)
  return state._tag === "RunDown" ? 0 : state.count
}

if (import.meta.main) {
  Effect.runPromise(runScenarioWith({ narrate: (line) => console.log(line) }))
}
