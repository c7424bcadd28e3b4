/**
 * Readiness probes: how `quiesce run` knows that a service answers before it runs the command.
 *
 * A target is `tcp:PORT`, `tcp:HOST:PORT`, `tcp:[IPV6]:PORT`, an `http://` or `https://` URL, or
 * `none`. The probe avoids the traps of `wait-on`: a host name is resolved to *every* address
 * (`localhost` is `::1` before `127.0.0.1` on current Node and glibc), and each address is tried
 * at once, so a service listening only on IPv4 or only on IPv6 is found either way; IPv6
 * literals in brackets (`http://[::1]:8080/health`, `tcp:[::1]:5432`) are understood.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Http from "node:http"
import type * as Https from "node:https"
import * as Net from "node:net"
import { NotReadyError } from "./QuiesceError.ts"

/**
 * What `quiesce run --ready` waits for: a TCP port, an HTTP `GET`, or nothing.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const describe = (target: Readiness.Target): string => {
 *   switch (target._tag) {
 *     case "Tcp":
 *       return `a connection to port ${target.port}`
 *     case "HttpGet":
 *       return `a 2xx or 3xx answer from ${target.url}`
 *     case "None":
 *       return "nothing"
 *   }
 * }
 *
 * console.log(describe(Readiness.tcp(5432))) // a connection to port 5432
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Target = Tcp | HttpGet | None

/**
 * Ready when a TCP connection to `host:port` succeeds on any of the host's addresses.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.Tcp = Readiness.tcp(5432, "db.local")
 * console.log(target.host, target.port) // db.local 5432
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Tcp {
  readonly _tag: "Tcp"
  readonly host: string
  readonly port: number
}

/**
 * Ready when a `GET` of `url` answers with a 2xx or 3xx status on any of the host's addresses.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.HttpGet = Readiness.http("http://localhost:3000/health")
 * console.log(target.url) // http://localhost:3000/health
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpGet {
  readonly _tag: "HttpGet"
  readonly url: string
}

/**
 * Ready as soon as the service is started.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.None = Readiness.none
 * console.log(Readiness.format(target)) // none
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface None {
  readonly _tag: "None"
}

/**
 * A `Tcp` target: ready when `host:port` accepts a connection. `host` defaults to `localhost`,
 * which is tried on both `::1` and `127.0.0.1`.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.format(Readiness.tcp(5432))) // tcp:localhost:5432
 * console.log(Readiness.format(Readiness.tcp(5432, "::1"))) // tcp:[::1]:5432
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const tcp = (port: number, host = "localhost"): Tcp => ({ _tag: "Tcp", host, port })

/**
 * An `HttpGet` target: ready when a `GET` of `url` answers with a 2xx or 3xx status. `url` is
 * taken as it is; `parse` is the one that validates it.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const health = Readiness.http("http://localhost:3000/health")
 * console.log(Readiness.port(health)) // 3000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const http = (url: string): HttpGet => ({ _tag: "HttpGet", url })

/**
 * The `None` target: no probe, the service counts as ready once it is started.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * await Effect.runPromise(Readiness.probe(Readiness.none)) // succeeds at once
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const none: None = { _tag: "None" }

const isPort = (n: number): boolean => Number.isInteger(n) && n > 0 && n <= 65535

const parsePort = (text: string): number | undefined => {
  if (!/^\d{1,5}$/.test(text)) return undefined
  const n = Number(text)
  return isPort(n) ? n : undefined
}

/**
 * Parses a `--ready` value. The error says what was expected.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Result } from "effect"
 *
 * const ready = Readiness.parse("tcp:[::1]:5432")
 * if (Result.isSuccess(ready)) console.log(ready.success) // { _tag: "Tcp", host: "::1", port: 5432 }
 *
 * const bad = Readiness.parse("tcp:::1:5432")
 * if (Result.isFailure(bad)) console.log(`expected ${bad.failure}`) // expected an IPv6 address in brackets, as in tcp:[::1]:5432
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (spec: string): Result.Result<Target, string> => {
  const expected = "tcp:PORT, tcp:HOST:PORT, an http:// or https:// URL, or none"
  if (spec === "none") return Result.succeed(none)
  if (spec.startsWith("tcp:")) {
    const rest = spec.slice(4)
    const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(rest)
    const [host, portText] = bracketed !== null
      ? [bracketed[1]!, bracketed[2]!]
      : rest.includes(":")
      ? [rest.slice(0, rest.lastIndexOf(":")), rest.slice(rest.lastIndexOf(":") + 1)]
      : ["localhost", rest]
    if (bracketed === null && host.includes(":")) {
      return Result.fail(`an IPv6 address in brackets, as in tcp:[${host}]:${portText}`)
    }
    const port = parsePort(portText)
    if (port === undefined || host === "") return Result.fail(expected)
    return Result.succeed(tcp(port, host))
  }
  if (spec.startsWith("http://") || spec.startsWith("https://")) {
    try {
      const url = new URL(spec)
      return Result.succeed(http(url.href))
    } catch {
      return Result.fail("a valid URL")
    }
  }
  return Result.fail(expected)
}

/**
 * The port a target probes, if any (used as the service's port when `--port` is not given).
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.port(Readiness.tcp(5432))) // 5432
 * console.log(Readiness.port(Readiness.http("https://localhost/health"))) // 443
 * console.log(Readiness.port(Readiness.none)) // undefined
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const port = (target: Target): number | undefined => {
  switch (target._tag) {
    case "Tcp":
      return target.port
    case "HttpGet": {
      const url = new URL(target.url)
      return url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port)
    }
    case "None":
      return undefined
  }
}

/**
 * A target as `--ready` accepts it (an IPv6 host in brackets): `parse(format(t))` gives `t` back.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.format(Readiness.tcp(5432, "::1"))) // tcp:[::1]:5432
 * console.log(Readiness.format(Readiness.http("http://localhost:3000/health"))) // http://localhost:3000/health
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (target: Target): string => {
  switch (target._tag) {
    case "Tcp":
      return `tcp:${Net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`
    case "HttpGet":
      return target.url
    case "None":
      return "none"
  }
}

/**
 * An address a host name resolved to.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * const addresses: ReadonlyArray<Readiness.Address> = await Effect.runPromise(Readiness.resolve("::1"))
 * console.log(addresses) // [ { address: "::1", family: 6 } ]
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Address {
  readonly address: string
  readonly family: 4 | 6
}

/**
 * Every address of `host`, in the resolver's order, IP literals (with or without brackets) as
 * they are. `localhost` always includes both loopback addresses, whatever `/etc/hosts` says
 * (as curl and browsers do, after RFC 6761): a service bound to `::1` alone is still local.
 * Fails with a sentence when the name does not resolve.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * const addresses = await Effect.runPromise(Readiness.resolve("localhost"))
 * console.log(addresses.map((a) => a.address)) // includes "::1" and "127.0.0.1", in the resolver's order
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const resolve = (host: string): Effect.Effect<ReadonlyArray<Address>, string> => {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  const family = Net.isIP(bare)
  if (family === 4 || family === 6) return Effect.succeed([{ address: bare, family }])
  const isLocalhost = bare.toLowerCase() === "localhost"
  return Effect.callback<ReadonlyArray<Address>, string>((resume) => {
    process.getBuiltinModule("node:dns").lookup(bare, { all: true, verbatim: true }, (error, found) => {
      const addresses: Array<Address> = error === null
        ? found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }))
        : []
      if (isLocalhost) {
        for (const loopback of loopbacks) {
          if (!addresses.some((a) => a.address === loopback.address)) addresses.push(loopback)
        }
      }
      if (addresses.length > 0) resume(Effect.succeed(addresses))
      else resume(Effect.fail(`cannot resolve ${bare} (${error?.code ?? "no address"})`))
    })
  })
}

const loopbacks: ReadonlyArray<Address> = [{ address: "::1", family: 6 }, { address: "127.0.0.1", family: 4 }]

const showAddress = (a: Address, port: number): string =>
  a.family === 6 ? `[${a.address}]:${port}` : `${a.address}:${port}`

/**
 * Tries every address at once; succeeds with the first that answers and fails, once all have,
 * with every address's reason. Whatever is still open is closed when one succeeds or the
 * attempt is interrupted.
 */
const tryAll = (
  addresses: ReadonlyArray<Address>,
  attempt: (address: Address, done: (failure: string | undefined) => void) => () => void
): Effect.Effect<void, string> =>
  Effect.callback<void, string>((resume) => {
    const failures: Array<string> = []
    const cancels: Array<() => void> = []
    let settled = false
    const cancelAll = () => {
      for (const cancel of cancels) cancel()
    }
    for (const address of addresses) {
      cancels.push(attempt(address, (failure) => {
        if (settled) return
        if (failure === undefined) {
          settled = true
          cancelAll()
          resume(Effect.void)
        } else {
          failures.push(failure)
          if (failures.length === addresses.length) {
            settled = true
            resume(Effect.fail(failures.join(", ")))
          }
        }
      }))
    }
    return Effect.sync(() => {
      settled = true
      cancelAll()
    })
  })

const errorReason = (error: NodeJS.ErrnoException): string => error.code ?? error.message

const tcpAttempt = (port: number, attemptMillis: number) => (address: Address, done: (failure: string | undefined) => void) => {
  const socket = Net.connect({ host: address.address, port, family: address.family })
  socket.setTimeout(attemptMillis)
  socket.once("connect", () => {
    socket.destroy()
    done(undefined)
  })
  socket.once("timeout", () => {
    socket.destroy()
    done(`${showAddress(address, port)} timed out`)
  })
  socket.once("error", (error) => done(`${showAddress(address, port)} ${errorReason(error)}`))
  return () => socket.destroy()
}

const httpAttempt = (url: URL, attemptMillis: number) => (address: Address, done: (failure: string | undefined) => void) => {
  // Loaded on first use: node:http alone loads some 100 modules of Node's own (undici, http2),
  // a third of a `quiesce run`'s startup on a path that probes TCP or nothing.
  const client: typeof Http | typeof Https = process.getBuiltinModule(url.protocol === "https:" ? "node:https" : "node:http")
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port)
  const request = client.request({
    host: address.address,
    family: address.family,
    port,
    path: `${url.pathname}${url.search}`,
    method: "GET",
    headers: { host: url.host, connection: "close" },
    agent: false,
    timeout: attemptMillis,
    // A local service's certificate is rarely one this machine trusts; readiness is not identity.
    rejectUnauthorized: false,
    servername: Net.isIP(url.hostname) === 0 ? url.hostname : undefined
  } as Https.RequestOptions, (response) => {
    const status = response.statusCode ?? 0
    response.resume()
    request.destroy()
    done(status >= 200 && status < 400 ? undefined : `${showAddress(address, port)} answered ${status}`)
  })
  request.once("timeout", () => {
    request.destroy()
    done(`${showAddress(address, port)} timed out`)
  })
  request.once("error", (error) => done(`${showAddress(address, port)} ${errorReason(error)}`))
  request.end()
  return () => request.destroy()
}

/**
 * One probe of `target` on every address its host resolves to. Fails with a sentence naming
 * each address and why it did not answer.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 * import * as Net from "node:net"
 *
 * const server = Net.createServer().listen(0, "127.0.0.1")
 * await new Promise((listening) => server.once("listening", listening))
 * const { port } = server.address() as Net.AddressInfo
 *
 * await Effect.runPromise(Readiness.probe(Readiness.tcp(port, "127.0.0.1"))) // succeeds: the port accepts
 * server.close()
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const probe = (target: Target, options?: { readonly attemptTimeoutMillis?: number }): Effect.Effect<void, string> => {
  const attemptMillis = options?.attemptTimeoutMillis ?? 1_000
  switch (target._tag) {
    case "None":
      return Effect.void
    case "Tcp":
      return Effect.flatMap(resolve(target.host), (addresses) => tryAll(addresses, tcpAttempt(target.port, attemptMillis)))
    case "HttpGet": {
      const url = new URL(target.url)
      return Effect.flatMap(resolve(url.hostname), (addresses) => tryAll(addresses, httpAttempt(url, attemptMillis)))
    }
  }
}

/**
 * Probes `target` every `intervalMillis` (default 50 ms) until it answers, failing with
 * `NotReadyError` once `timeoutMillis` has passed. Time is the Effect `Clock`'s, so `TestClock`
 * drives it in tests.
 *
 * @example
 * ```ts
 * import { QuiesceError, Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 * import * as Net from "node:net"
 *
 * // A port that nothing listens on: the one a closed server had.
 * const server = Net.createServer().listen(0, "127.0.0.1")
 * await new Promise((listening) => server.once("listening", listening))
 * const { port } = server.address() as Net.AddressInfo
 * await new Promise((closed) => server.close(closed))
 *
 * const wait = Readiness.waitUntilReady(Readiness.tcp(port, "127.0.0.1"), { service: "db", timeoutMillis: 200 })
 * const error = await Effect.runPromise(Effect.flip(wait))
 * console.log(QuiesceError.render(error))
 * // quiesce: service "db" was not ready at tcp:127.0.0.1:PORT after 200ms (last probe: 127.0.0.1:PORT ECONNREFUSED)
 * // quiesce: the service printed nothing (quiesce logs db)
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const waitUntilReady = (target: Target, options: {
  readonly service: string
  readonly timeoutMillis: number
  readonly intervalMillis?: number
}): Effect.Effect<void, NotReadyError> => {
  if (target._tag === "None") return Effect.void
  const interval = options.intervalMillis ?? 50
  let lastFailure = "no probe finished"
  const loop: Effect.Effect<void> = Effect.catch(probe(target), (failure) => {
    lastFailure = failure
    return Effect.flatMap(Effect.sleep(interval), () => loop)
  })
  return Effect.timeoutOrElse(loop, {
    duration: options.timeoutMillis,
    orElse: () =>
      Effect.fail(
        new NotReadyError({
          service: options.service,
          target: format(target),
          timeoutMillis: options.timeoutMillis,
          lastFailure
        })
      )
  })
}

/**
 * Parses a duration flag: `500ms`, `5s`, `1.5s`, `2m`, `1h`, or `0`.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Result } from "effect"
 *
 * console.log(Result.getOrUndefined(Readiness.parseDuration("1.5s"))) // 1500
 * console.log(Result.isFailure(Readiness.parseDuration("5"))) // true: a unit is needed
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseDuration = (text: string): Result.Result<number, string> => {
  if (text.trim().startsWith("-")) return Result.fail("a duration of 0 or more, such as 500ms, 5s or 2m")
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (match === null || (match[2] === undefined && Number(match[1]) !== 0)) {
    return Result.fail("a duration such as 500ms, 5s or 2m")
  }
  const unit = match[2] === "ms" ? 1 : match[2] === "m" ? 60_000 : match[2] === "h" ? 3_600_000 : 1_000
  return Result.succeed(Math.round(Number(match[1]) * unit))
}
