/**
 * Readiness probes: how `quiesce run` knows that a service answers before it runs the command.
 *
 * A target (`--ready`) is one of:
 *
 * - `tcp:PORT`, `tcp:HOST:PORT`, `tcp:[IPV6]:PORT`: a TCP connection succeeds;
 * - an `http://` or `https://` URL: a `GET` answers with an expected status (200-399 unless told
 *   otherwise), over a verified certificate unless the target is `insecure`;
 * - `log:REGEX`: a line of the service's output matches the JavaScript regular expression;
 * - `cmd:COMMAND`: `/bin/sh -c COMMAND` exits with status 0 (as a Docker `HEALTHCHECK`);
 * - `none`: at once.
 *
 * Several targets may be given: the service is ready when one attempt of each passes
 * (`probeAll`).
 *
 * The network probes avoid the traps of `wait-on`: a host name is resolved to *every* address
 * (`localhost` is `::1` before `127.0.0.1` on current Node and glibc), and each address is tried
 * at once, so a service listening only on IPv4 or only on IPv6 is found either way; IPv6
 * literals in brackets (`http://[::1]:8080/health`, `tcp:[::1]:5432`) are understood.
 *
 * Every attempt, of every kind, is bounded by `attemptTimeoutMillis` (real time, as the
 * sockets' own time-outs); the wait between attempts and its deadline are the Effect `Clock`'s.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as ChildProcess from "node:child_process"
import type * as FsPromises from "node:fs/promises"
import type * as Http from "node:http"
import type * as Https from "node:https"
import * as Net from "node:net"
import { NotReadyError } from "./QuiesceError.ts"

/**
 * What `quiesce run --ready` waits for: a TCP port, an HTTP `GET`, a line of the service's
 * output, a command's success, or nothing.
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
 *       return `a ${Readiness.formatExpect(target.expect)} answer from ${target.url}`
 *     case "Log":
 *       return `a line matching /${target.regex}/`
 *     case "Cmd":
 *       return `the success of ${target.command}`
 *     case "None":
 *       return "nothing"
 *   }
 * }
 *
 * console.log(describe(Readiness.tcp(5432))) // a connection to port 5432
 * console.log(describe(Readiness.http("http://localhost:3000/health"))) // a 200-399 answer from http://localhost:3000/health
 * console.log(describe(Readiness.cmd("pg_isready"))) // the success of pg_isready
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Target = Tcp | HttpGet | Log | Cmd | None

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
 * An inclusive range of HTTP status codes: `{ min: 200, max: 299 }` is every 2xx, and
 * `{ min: 404, max: 404 }` is 404 alone.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const success: Readiness.StatusRange = { min: 200, max: 299 }
 * console.log(Readiness.formatExpect([success, { min: 404, max: 404 }])) // 200-299,404
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface StatusRange {
  readonly min: number
  readonly max: number
}

/**
 * Ready when a `GET` of `url` answers, on any of the host's addresses, with a status in one of
 * the `expect` ranges. Over `https`, the certificate must verify (against Node's trust store,
 * which `NODE_EXTRA_CA_CERTS` extends, and for the URL's host name) unless `insecure` is set,
 * as with Playwright's `ignoreHTTPSErrors`.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.HttpGet = Readiness.http("https://localhost:8443/health", { insecure: true })
 * console.log(target.url, Readiness.formatExpect(target.expect), target.insecure) // https://localhost:8443/health 200-399 true
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpGet {
  readonly _tag: "HttpGet"
  readonly url: string
  readonly expect: ReadonlyArray<StatusRange>
  readonly insecure: boolean
}

/**
 * Ready when a line of the service's output (its log file) matches `regex`, the source of a
 * JavaScript regular expression without flags, run by V8's linear-time engine (so no
 * backreferences: `parse` refuses them). Lines are tested as they are and without
 * their terminal colour codes; a line counts once it ends (with a newline).
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.Log = Readiness.log("listening on port \\d+")
 * console.log(Readiness.format(target)) // log:listening on port \d+
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Log {
  readonly _tag: "Log"
  readonly regex: string
}

/**
 * Ready when `/bin/sh -c command` exits with status 0, as a Docker `HEALTHCHECK`.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * const target: Readiness.Cmd = Readiness.cmd("pg_isready -h 127.0.0.1 -p 5432")
 * console.log(target.command) // pg_isready -h 127.0.0.1 -p 5432
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Cmd {
  readonly _tag: "Cmd"
  readonly command: string
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
 * The statuses an `HttpGet` target expects unless told otherwise: 200 to 399, a success or a
 * redirection (which is not followed).
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.formatExpect(Readiness.defaultExpect)) // 200-399
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultExpect: ReadonlyArray<StatusRange> = [{ min: 200, max: 399 }]

/**
 * An `HttpGet` target: ready when a `GET` of `url` answers with a status in `expect` (default
 * 200-399), over a verified certificate unless `insecure` (default `false`). `url` and `expect`
 * are taken as they are; `parse` and `parseExpect` are the ones that validate them.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Result } from "effect"
 *
 * const health = Readiness.http("http://localhost:3000/health")
 * console.log(Readiness.port(health), health.insecure) // 3000 false
 *
 * const missing = Readiness.http("http://localhost:3000/gone", { expect: Result.getOrThrow(Readiness.parseExpect("404,410")) })
 * console.log(Readiness.formatExpect(missing.expect)) // 404,410
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const http = (url: string, options?: {
  readonly expect?: ReadonlyArray<StatusRange> | undefined
  readonly insecure?: boolean | undefined
}): HttpGet => ({
  _tag: "HttpGet",
  url,
  expect: options?.expect ?? defaultExpect,
  insecure: options?.insecure ?? false
})

/**
 * A `Log` target: ready when a line of the service's output matches the regular expression
 * whose source is `regex`. `regex` is taken as it is; `parse` is the one that validates it.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.format(Readiness.log("ready to accept connections"))) // log:ready to accept connections
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const log = (regex: string): Log => ({ _tag: "Log", regex })

/**
 * A `Cmd` target: ready when `/bin/sh -c command` exits with status 0.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.format(Readiness.cmd("redis-cli ping"))) // cmd:redis-cli ping
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const cmd = (command: string): Cmd => ({ _tag: "Cmd", command })

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

let linear = false

/**
 * A regular expression's source compiled for V8's linear-time engine (the `l` flag), or the
 * engine's complaint about it. A backtracking match cannot be interrupted: a pattern such as
 * `^(a+)+$` on an unlucky line would stall this process past every timeout and signal, so a
 * pattern the linear engine cannot run (a backreference) is refused instead.
 */
const compile = (regex: string): Result.Result<RegExp, string> => {
  if (!linear) {
    process.getBuiltinModule("node:v8").setFlagsFromString("--enable-experimental-regexp-engine")
    linear = true
  }
  try {
    return Result.succeed(new RegExp(regex, "l"))
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    return Result.fail(
      message.endsWith("Cannot be executed in linear time")
        ? "a pattern without backreferences (it must run in linear time: a match cannot be interrupted)"
        : message
    )
  }
}

/**
 * Parses a `--ready` value. The error says what was expected (it follows "Expected:").
 *
 * An `http` or `https` URL gives an `HttpGet` target with the default `expect` and `insecure`:
 * they are separate flags, not part of the value. `cmd:` takes the rest of the value as the
 * command, spaces included (`--ready cmd:"pg_isready -h 127.0.0.1"` reaches it as
 * `cmd:pg_isready -h 127.0.0.1`).
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
 *
 * const check = Readiness.parse("cmd:pg_isready -h 127.0.0.1 -p 5432")
 * if (Result.isSuccess(check)) console.log(check.success) // { _tag: "Cmd", command: "pg_isready -h 127.0.0.1 -p 5432" }
 *
 * const unclosed = Readiness.parse("log:(ready")
 * if (Result.isFailure(unclosed)) console.log(unclosed.failure)
 * // a valid regular expression after log: (Invalid regular expression: /(ready/: Unterminated group)
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (spec: string): Result.Result<Target, string> => {
  const expected = "tcp:PORT, tcp:HOST:PORT, an http:// or https:// URL, log:REGEX, cmd:COMMAND, or none"
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
  if (spec.startsWith("log:")) {
    const regex = spec.slice(4)
    if (regex === "") return Result.fail("a regular expression after log:, as in log:listening on port \\d+")
    const compiled = compile(regex)
    return Result.isSuccess(compiled)
      ? Result.succeed(log(regex))
      : Result.fail(`a valid regular expression after log: (${compiled.failure})`)
  }
  if (spec.startsWith("cmd:")) {
    const command = spec.slice(4)
    if (command.trim() === "") return Result.fail("a shell command after cmd:, as in cmd:pg_isready -h 127.0.0.1")
    return Result.succeed(cmd(command))
  }
  return Result.fail(expected)
}

const expectSyntax = "HTTP statuses from 100 to 599 and inclusive ranges of them, separated by commas, as in 200, 200,204, 200-399 or 200-299,404"

/**
 * Parses an expected-status flag: statuses and inclusive ranges of them from 100 to 599,
 * separated by commas (`200`, `200,204`, `200-399`, `200-299,404`), in the order given. The
 * error says what was expected and what was wrong (it follows "Expected:").
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Result } from "effect"
 *
 * console.log(Result.getOrUndefined(Readiness.parseExpect("200-299,404"))) // [ { min: 200, max: 299 }, { min: 404, max: 404 } ]
 *
 * const reversed = Readiness.parseExpect("399-200")
 * if (Result.isFailure(reversed)) console.log(reversed.failure)
 * // HTTP statuses from 100 to 599 and inclusive ranges of them, separated by commas, as in 200, 200,204, 200-399 or 200-299,404 (399-200 ends before it starts)
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseExpect = (text: string): Result.Result<ReadonlyArray<StatusRange>, string> => {
  const ranges: Array<StatusRange> = []
  const refuse = (why: string) => Result.fail(`${expectSyntax} (${why})`)
  if (text.trim() === "") return refuse("nothing was given")
  for (const raw of text.split(",")) {
    const part = raw.trim()
    const match = /^(\d{1,3})(?:\s*-\s*(\d{1,3}))?$/.exec(part)
    if (match === null) return refuse(part === "" ? "an empty item" : `${part} is not a status or a range`)
    const min = Number(match[1])
    const max = match[2] === undefined ? min : Number(match[2])
    for (const status of [min, max]) {
      if (status < 100 || status > 599) return refuse(`${status} is not an HTTP status`)
    }
    if (max < min) return refuse(`${part} ends before it starts`)
    ranges.push({ min, max })
  }
  return Result.succeed(ranges)
}

/**
 * Expected statuses as `parseExpect` reads them: `parseExpect(formatExpect(r))` gives `r` back.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.formatExpect([{ min: 200, max: 204 }, { min: 304, max: 304 }])) // 200-204,304
 * ```
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatExpect = (ranges: ReadonlyArray<StatusRange>): string =>
  ranges.map((r) => r.min === r.max ? `${r.min}` : `${r.min}-${r.max}`).join(",")

const expects = (ranges: ReadonlyArray<StatusRange>, status: number): boolean =>
  ranges.some((r) => status >= r.min && status <= r.max)

/**
 * The port a target probes, if any (used as the service's port when `--port` is not given).
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.port(Readiness.tcp(5432))) // 5432
 * console.log(Readiness.port(Readiness.http("https://localhost/health"))) // 443
 * console.log(Readiness.port(Readiness.cmd("pg_isready -p 5432"))) // undefined: a command is opaque
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
    case "HttpGet":
      return urlPort(new URL(target.url))
    case "Log":
    case "Cmd":
    case "None":
      return undefined
  }
}

const urlPort = (url: URL): number => url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port)

/**
 * A target as `--ready` accepts it (an IPv6 host in brackets): `parse(format(t))` gives `t`
 * back, but for an `HttpGet` target's `expect` and `insecure`, which are not part of the value
 * (they are flags of their own): its format is its URL.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 *
 * console.log(Readiness.format(Readiness.tcp(5432, "::1"))) // tcp:[::1]:5432
 * console.log(Readiness.format(Readiness.http("https://localhost:8443/", { insecure: true }))) // https://localhost:8443/
 * console.log(Readiness.format(Readiness.log("ready in \\d+ ms"))) // log:ready in \d+ ms
 * console.log(Readiness.format(Readiness.cmd("pg_isready -h 127.0.0.1"))) // cmd:pg_isready -h 127.0.0.1
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
    case "Log":
      return `log:${target.regex}`
    case "Cmd":
      return `cmd:${target.command}`
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
  const bare = unbracket(host)
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

const unbracket = (host: string): string => host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host

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
      // An address's first word is its answer (a destroyed request may report again).
      let answered = false
      cancels.push(attempt(address, (failure) => {
        if (settled || answered) return
        answered = true
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

/**
 * `self`, failed with `failure` if it has not finished within `millis` of real time (and
 * interrupted then).
 */
const within = <A>(self: Effect.Effect<A, string>, millis: number, failure: string): Effect.Effect<A, string> =>
  Effect.raceFirst(
    self,
    Effect.callback<never, string>((resume) => {
      const timer = setTimeout(() => resume(Effect.fail(failure)), millis)
      return Effect.sync(() => clearTimeout(timer))
    })
  )

/** Real time, for the attempts' bounds (the sockets' timers are real time too). */
const now = (): number => performance.now()

/**
 * Resolves `host` and tries every address, all within `millis` of the start: the lookup has
 * the whole bound, the connections what it left.
 */
const resolveAndTry = (
  host: string,
  millis: number,
  attempt: (remaining: number) => (address: Address, done: (failure: string | undefined) => void) => () => void
): Effect.Effect<void, string> =>
  Effect.suspend(() => {
    const deadline = now() + millis
    return Effect.flatMap(
      within(resolve(host), millis, `resolving ${unbracket(host)} took more than ${millis}ms`),
      (addresses) => tryAll(addresses, attempt(Math.max(1, deadline - now())))
    )
  })

const errorReason = (error: NodeJS.ErrnoException): string => error.code ?? error.message

const tcpAttempt = (port: number) => (attemptMillis: number) => (address: Address, done: (failure: string | undefined) => void) => {
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

/** The codes of Node's and OpenSSL's certificate verification errors. */
const isCertificateError = (error: NodeJS.ErrnoException): boolean =>
  error.code !== undefined && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|HOSTNAME_MISMATCH/.test(error.code)

const httpAttempt = (target: HttpGet, url: URL) => (attemptMillis: number) => (address: Address, done: (failure: string | undefined) => void) => {
  // Loaded on first use: node:http alone loads some 100 modules of Node's own (undici, http2),
  // a third of a `quiesce run`'s startup on a path that probes TCP or nothing.
  const client: typeof Http | typeof Https = process.getBuiltinModule(url.protocol === "https:" ? "node:https" : "node:http")
  const port = urlPort(url)
  const where = showAddress(address, port)
  const hostname = unbracket(url.hostname)
  const request = client.request({
    host: address.address,
    family: address.family,
    port,
    path: `${url.pathname}${url.search}`,
    method: "GET",
    headers: { host: url.host, connection: "close" },
    agent: false,
    rejectUnauthorized: !target.insecure,
    // The certificate is checked for the URL's host: its name (sent as SNI), or for an IP
    // literal the address connected to, which is that literal.
    servername: Net.isIP(hostname) === 0 ? hostname : undefined
  } as Https.RequestOptions, (response) => {
    const status = response.statusCode ?? 0
    response.resume()
    request.destroy()
    clearTimeout(timer)
    done(expects(target.expect, status) ? undefined : `${where} answered ${status}, expected ${formatExpect(target.expect)}`)
  })
  // A whole-request bound: the socket's idle time-out would let a slow answer trickle forever.
  const timer = setTimeout(() => {
    request.destroy()
    done(`${where} timed out`)
  }, attemptMillis)
  request.once("error", (error: NodeJS.ErrnoException) => {
    clearTimeout(timer)
    done(
      isCertificateError(error)
        ? `${where} certificate not trusted: ${error.message.split(";")[0]} (${error.code})`
        : `${where} ${errorReason(error)}`
    )
  })
  request.end()
  return () => {
    clearTimeout(timer)
    request.destroy()
  }
}

/**
 * What a waiter remembers of a log file between its attempts: the file (a new instance's log is
 * a new file), how far it has read, the line it has begun, and whether a line has matched.
 */
interface LogCursor {
  dev: number
  ino: number
  offset: number
  pending: Array<Buffer>
  pendingBytes: number
  /** The line being read is longer than `maxLineBytes`: its head was tested, the rest is skipped. */
  overlong: boolean
  matched: boolean
}

const freshCursor = (): LogCursor => ({
  dev: -1,
  ino: -1,
  offset: 0,
  pending: [],
  pendingBytes: 0,
  overlong: false,
  matched: false
})

/** A line's first 64 KiB are tested; a service that prints more on one line is not a log to wait on. */
const maxLineBytes = 64 * 1024

const takeLine = (cursor: LogCursor): string => {
  const line = Buffer.concat(cursor.pending, cursor.pendingBytes).toString("utf8")
  cursor.pending = []
  cursor.pendingBytes = 0
  return line.endsWith("\r") ? line.slice(0, -1) : line
}

// CSI sequences (colours, cursor moves), OSC sequences (titles, links) and two-byte escapes.
const ansi = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g

const stripAnsi = (line: string): string => line.includes("\x1b") ? line.replace(ansi, "") : line

/** Reads `chunk` (the bytes after the previous one) into the cursor's lines; true once a line matches. */
const feed = (cursor: LogCursor, chunk: Buffer, matches: (line: string) => boolean): boolean => {
  for (let start = 0; start < chunk.length;) {
    const newline = chunk.indexOf(0x0a, start)
    const end = newline === -1 ? chunk.length : newline
    if (!cursor.overlong) {
      const room = maxLineBytes - cursor.pendingBytes
      const piece = chunk.subarray(start, Math.min(end, start + room))
      if (piece.length > 0) {
        // Copied: the read buffer is reused.
        cursor.pending.push(Buffer.from(piece))
        cursor.pendingBytes += piece.length
      }
      if (end - start > room) {
        cursor.overlong = true
        if (matches(takeLine(cursor))) return true
      }
    }
    if (newline === -1) return false
    if (cursor.overlong) cursor.overlong = false
    else if (matches(takeLine(cursor))) return true
    start = newline + 1
  }
  return false
}

/**
 * Reads what `path` gained since the cursor's last read, testing each line; true once a line
 * has matched. An interrupted scan stops touching the cursor at once (the next attempt has it).
 */
const scanLog = async (path: string, regex: RegExp, cursor: LogCursor, signal: AbortSignal): Promise<boolean> => {
  const fs: typeof FsPromises = process.getBuiltinModule("node:fs/promises")
  const matches = (line: string): boolean => regex.test(line) || regex.test(stripAnsi(line))
  const file = await fs.open(path, "r")
  try {
    const stat = await file.stat()
    if (signal.aborted) return false
    if (stat.dev !== cursor.dev || stat.ino !== cursor.ino || stat.size < cursor.offset) {
      Object.assign(cursor, freshCursor(), { dev: stat.dev, ino: stat.ino })
    }
    if (cursor.matched) return true
    const buffer = Buffer.allocUnsafe(64 * 1024)
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, cursor.offset)
      if (signal.aborted || bytesRead === 0) return false
      cursor.offset += bytesRead
      if (feed(cursor, buffer.subarray(0, bytesRead), matches)) {
        cursor.matched = true
        return true
      }
    }
  } finally {
    await file.close()
  }
}

const logAttempt = (path: string, source: string, regex: RegExp, cursor: LogCursor): Effect.Effect<void, string> =>
  Effect.flatMap(
    Effect.tryPromise({
      try: (signal) => scanLog(path, regex, cursor, signal),
      catch: (error) => {
        const code = (error as NodeJS.ErrnoException).code
        return code === "ENOENT" ? `${path} does not exist yet` : `cannot read ${path} (${code ?? String(error)})`
      }
    }),
    (matched) => matched ? Effect.void : Effect.fail(`no line of ${path} matches /${source}/ yet`)
  )

/** The last bytes a stream wrote (a check's output is for its last line only). */
class Tail {
  private bytes = Buffer.alloc(0)
  push(chunk: Buffer): void {
    const joined = Buffer.concat([this.bytes, chunk])
    this.bytes = joined.length > 4096 ? joined.subarray(joined.length - 4096) : joined
  }
  lastLine(): string | undefined {
    const lines = stripAnsi(this.bytes.toString("utf8")).split(/\r\n|\r|\n/).map((line) => line.trim())
    const last = lines.findLast((line) => line !== "")
    return last === undefined || last.length <= 200 ? last : `${last.slice(0, 199)}…`
  }
}

/**
 * `/bin/sh -c command` in a process group of its own, which is SIGKILLed, whole, when the shell
 * exits (a job it left in the background goes with it), when `millis` have passed, or when the
 * attempt is interrupted; an interrupted attempt ends once the shell is reaped.
 */
const cmdAttempt = (command: string, options: ProbeOptions, millis: number): Effect.Effect<void, string> =>
  Effect.callback<void, string>((resume) => {
    const { spawn }: typeof ChildProcess = process.getBuiltinModule("node:child_process")
    const where = options.cwd === undefined ? "" : ` in ${options.cwd}`
    let child: ChildProcess.ChildProcess
    try {
      child = spawn("/bin/sh", ["-c", command], {
        cwd: options.cwd,
        env: options.env ?? process.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
    } catch (error) {
      resume(Effect.fail(`cannot run /bin/sh${where} (${errorReason(error as NodeJS.ErrnoException)})`))
      return
    }
    const stdout = new Tail()
    const stderr = new Tail()
    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk))
    let gone = false
    let settled = false
    let timedOut = false
    const onGone: Array<() => void> = []
    const killGroup = () => {
      if (child.pid === undefined) return
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // The group is empty already.
      }
    }
    const timer = setTimeout(() => {
      timedOut = true
      killGroup()
    }, millis)
    const release = () => {
      clearTimeout(timer)
      child.stdout?.destroy()
      child.stderr?.destroy()
    }
    const settle = (failure: string | undefined) => {
      if (settled) return
      settled = true
      release()
      resume(failure === undefined ? Effect.void : Effect.fail(failure))
    }
    const withLastLine = (status: string) => {
      const line = stderr.lastLine() ?? stdout.lastLine()
      return line === undefined ? status : `${status}: ${line}`
    }
    const becomeGone = () => {
      gone = true
      for (const done of onGone.splice(0)) done()
    }
    child.once("error", (error: NodeJS.ErrnoException) => {
      // The shell did not start (no such cwd, no /bin/sh).
      becomeGone()
      settle(`cannot run /bin/sh${where} (${errorReason(error)})`)
    })
    child.once("exit", (code, signal) => {
      becomeGone()
      killGroup()
      const failure = code === 0
        ? undefined
        : withLastLine(
          timedOut
            ? `did not finish within ${millis}ms, killed`
            : code !== null
            ? `exited with status ${code}`
            : `was killed by ${signal}`
        )
      // The pipes close once the group is gone; one who left the group may hold them open, so
      // its last words are not waited for long.
      const grace = setTimeout(() => settle(failure), 100)
      child.once("close", () => {
        clearTimeout(grace)
        settle(failure)
      })
    })
    return Effect.callback<void>((reaped) => {
      settled = true
      killGroup()
      const finish = () => {
        release()
        reaped(Effect.void)
      }
      if (gone) finish()
      else onGone.push(finish)
    })
  })

/**
 * How a probe runs: the bound of each attempt, and what the `log:` and `cmd:` targets need.
 *
 * - `attemptTimeoutMillis`: how long one attempt of a target may take, of every kind (default
 *   1000 ms); a command still running then is killed, with its whole process group.
 * - `logFile`: the service's output, which `log:` targets read (they fail without it). It is
 *   read as append-only; a new file in its place (a new instance's) is read from its start.
 * - `cwd`, `env`: the working directory and the whole environment of `cmd:` targets' shells
 *   (default: this process's).
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * const options: Readiness.ProbeOptions = { attemptTimeoutMillis: 200, cwd: "/", env: { PATH: "/usr/bin:/bin" } }
 * const failure = await Effect.runPromise(Effect.flip(Readiness.probe(Readiness.cmd("pwd; sleep 10"), options)))
 * console.log(failure) // did not finish within 200ms, killed: /
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ProbeOptions {
  readonly attemptTimeoutMillis?: number | undefined
  readonly logFile?: string | undefined
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

/** One attempt of `target`, as an effect to run again for each attempt (a log target's cursor lives in it). */
const attemptOf = (target: Target, options: ProbeOptions): Effect.Effect<void, string> => {
  const millis = options.attemptTimeoutMillis ?? 1_000
  switch (target._tag) {
    case "None":
      return Effect.void
    case "Tcp":
      return resolveAndTry(target.host, millis, tcpAttempt(target.port))
    case "HttpGet": {
      let url: URL
      try {
        url = new URL(target.url)
      } catch {
        return Effect.fail(`${target.url} is not a valid URL`)
      }
      return resolveAndTry(url.hostname, millis, httpAttempt(target, url))
    }
    case "Log": {
      const regex = compile(target.regex)
      if (Result.isFailure(regex)) return Effect.fail(`/${target.regex}/ is not a valid regular expression (${regex.failure})`)
      const path = options.logFile
      if (path === undefined) return Effect.fail(`${format(target)} needs the service's log file, and none was given`)
      const cursor = freshCursor()
      return within(
        logAttempt(path, target.regex, regex.success, cursor),
        millis,
        `reading ${path} took more than ${millis}ms`
      )
    }
    case "Cmd":
      return cmdAttempt(target.command, options, millis)
  }
}

const isList = (targets: Target | ReadonlyArray<Target>): targets is ReadonlyArray<Target> => Array.isArray(targets)

const attemptAll = (targets: ReadonlyArray<Target>, options: ProbeOptions): Effect.Effect<void, string> => {
  const attempts = targets.map((target) => ({ name: format(target), attempt: attemptOf(target, options) }))
  return Effect.flatMap(
    Effect.forEach(attempts, ({ attempt }) => Effect.result(attempt), { concurrency: "unbounded" }),
    (results) => {
      const failures = results.flatMap((result, i) => Result.isFailure(result) ? [`${attempts[i]!.name}: ${result.failure}`] : [])
      return failures.length === 0 ? Effect.void : Effect.fail(failures.join("; "))
    }
  )
}

const makeProbeUnsafe = (targets: Target | ReadonlyArray<Target>, options: ProbeOptions): Effect.Effect<void, string> =>
  isList(targets) ? attemptAll(targets, options) : attemptOf(targets, options)

/**
 * One attempt of `target`: on every address its host resolves to for `tcp:` and `http(s):`,
 * one read of the whole log file for `log:`, one run of the command for `cmd:`. Fails with a
 * sentence saying why it did not pass (for the network probes, each address and its reason).
 * To attempt again and again, `makeProbe` remembers how far a log was read.
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
 *
 * const failure = await Effect.runPromise(Effect.flip(Readiness.probe(Readiness.cmd("echo 'no server on 5432' >&2; exit 2"))))
 * console.log(failure) // exited with status 2: no server on 5432
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const probe = (target: Target, options: ProbeOptions = {}): Effect.Effect<void, string> =>
  Effect.suspend(() => attemptOf(target, options))

/**
 * One attempt of every target, all at once: succeeds when every one passes, and fails with each
 * failing target (as `format` writes it) and its reason, separated by `; `. No target is a
 * success.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * await Effect.runPromise(Readiness.probeAll([Readiness.cmd("true"), Readiness.none])) // succeeds: both pass
 *
 * const failure = await Effect.runPromise(Effect.flip(Readiness.probeAll([Readiness.cmd("true"), Readiness.cmd("exit 1")])))
 * console.log(failure) // cmd:exit 1: exited with status 1
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const probeAll = (targets: ReadonlyArray<Target>, options: ProbeOptions = {}): Effect.Effect<void, string> =>
  Effect.suspend(() => attemptAll(targets, options))

/**
 * A probe to attempt again and again: the effect it gives is one attempt of `target` (as
 * `probe`), or of every target of a list (as `probeAll`), and a `log:` target's attempts read
 * only what the log gained since the previous one (the file is append-only; a new file in its
 * place is read from its start, as is one shorter than what was read). A line that matched
 * stays matched. Its attempts are for one waiter: run them one after another, not at once.
 *
 * @example
 * ```ts
 * import { Readiness } from "@quiesce/cli"
 * import { Effect } from "effect"
 * import { appendFileSync, mkdtempSync } from "node:fs"
 * import { tmpdir } from "node:os"
 * import { join } from "node:path"
 *
 * const logFile = join(mkdtempSync(join(tmpdir(), "readiness-")), "service.log")
 * appendFileSync(logFile, "starting\n")
 * const attempt = await Effect.runPromise(Readiness.makeProbe(Readiness.log("^listening on \\d+$"), { logFile }))
 *
 * const failure = await Effect.runPromise(Effect.flip(attempt))
 * console.log(failure.replace(logFile, "LOG")) // no line of LOG matches /^listening on \d+$/ yet
 * appendFileSync(logFile, "listening on 8080\n")
 * await Effect.runPromise(attempt) // succeeds: it read the new line only
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const makeProbe = (
  target: Target | ReadonlyArray<Target>,
  options: ProbeOptions = {}
): Effect.Effect<Effect.Effect<void, string>> => Effect.sync(() => makeProbeUnsafe(target, options))

/**
 * Probes `target` (or every target of a list, all passing in one attempt) every
 * `intervalMillis` (default 50 ms) until it passes, failing with `NotReadyError` once
 * `timeoutMillis` has passed, with the last attempt's failure. Each attempt is bounded by
 * `attemptTimeoutMillis` of real time; the interval and the deadline are the Effect `Clock`'s,
 * so `TestClock` drives them in tests. A log is read on from where the previous attempt left it.
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
 *
 * const both = Readiness.waitUntilReady([Readiness.cmd("true"), Readiness.cmd("exit 4")], { service: "db", timeoutMillis: 200 })
 * console.log((await Effect.runPromise(Effect.flip(both))).message)
 * // service "db" was not ready at cmd:true and cmd:exit 4 after 200ms (last probe: cmd:exit 4: exited with status 4)
 * ```
 *
 * @since 0.1.0
 * @category probing
 */
export const waitUntilReady = (target: Target | ReadonlyArray<Target>, options: ProbeOptions & {
  readonly service: string
  readonly timeoutMillis: number
  readonly intervalMillis?: number | undefined
}): Effect.Effect<void, NotReadyError> => {
  const targets = isList(target) ? target : [target]
  if (targets.every((t) => t._tag === "None")) return Effect.void
  const interval = options.intervalMillis ?? 50
  return Effect.suspend(() => {
    const attempt = makeProbeUnsafe(target, options)
    let lastFailure = "no probe finished"
    const loop: Effect.Effect<void> = Effect.catch(attempt, (failure) => {
      lastFailure = failure
      return Effect.flatMap(Effect.sleep(interval), () => loop)
    })
    return Effect.timeoutOrElse(loop, {
      duration: options.timeoutMillis,
      orElse: () =>
        Effect.fail(
          new NotReadyError({
            service: options.service,
            target: targets.map(format).join(" and "),
            timeoutMillis: options.timeoutMillis,
            lastFailure
          })
        )
    })
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
