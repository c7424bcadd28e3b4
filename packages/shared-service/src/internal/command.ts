/**
 * Readiness probes of a `command` service: a TCP connect, an HTTP GET, or any Effect. Each
 * attempt is bounded by its caller (the health timeout).
 *
 * @internal
 */
import { Effect } from "effect"
import { connect } from "node:net"
import type * as ServiceInfo from "../ServiceInfo.ts"
import { Unhealthy } from "../SharedServiceError.ts"

export type Readiness =
  | { readonly _tag: "Tcp"; readonly port: number; readonly host?: string | undefined }
  | { readonly _tag: "Http"; readonly url: string }
  | { readonly _tag: "Check"; readonly check: (info: ServiceInfo.ServiceInfo) => Effect.Effect<void, unknown> }

export const tcpProbe = (name: string, port: number, host = "127.0.0.1"): Effect.Effect<void, Unhealthy> =>
  Effect.callback<void, Unhealthy>((resume) => {
    const socket = connect({ port, host })
    const done = (e?: Error) => {
      socket.removeAllListeners()
      socket.destroy()
      resume(e === undefined ? Effect.void : Effect.fail(new Unhealthy({ service: name, reason: `tcp ${host}:${port}: ${e.message}` })))
    }
    socket.once("connect", () => done())
    socket.once("error", (e) => done(e))
    return Effect.sync(() => socket.destroy())
  })

export const httpProbe = (name: string, url: string): Effect.Effect<void, Unhealthy> =>
  Effect.tryPromise({
    try: (signal) => fetch(url, { signal, redirect: "manual" }),
    catch: (e) => new Unhealthy({ service: name, reason: `GET ${url}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(
    Effect.flatMap((res) => {
      void res.body?.cancel()
      return res.status < 500
        ? Effect.void
        : Effect.fail(new Unhealthy({ service: name, reason: `GET ${url}: HTTP ${res.status}` }))
    })
  )

export const probe = (name: string, ready: Readiness, info: ServiceInfo.ServiceInfo): Effect.Effect<void, unknown> => {
  switch (ready._tag) {
    case "Tcp":
      return tcpProbe(name, ready.port, ready.host)
    case "Http":
      return httpProbe(name, ready.url)
    case "Check":
      return ready.check(info)
  }
}

