import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Result, Schema } from "effect"
import { TestClock } from "effect/testing"
import { readFileSync } from "node:fs"
import * as Http from "node:http"
import * as Https from "node:https"
import * as Net from "node:net"
import type { AddressInfo } from "node:net"
import { Readiness } from "@quiesce/cli"

/** A listener bound to exactly one address family, closed with the test's scope. */
const listen = (host: string, handler?: Http.RequestListener) =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = handler === undefined ? Net.createServer((socket) => socket.destroy()) : Http.createServer(handler)
      server.once("error", (error) => resume(Effect.die(error)))
      server.listen({ host, port: 0, ipv6Only: true }, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => (server.address() as AddressInfo).port))

const isFailure = <A, E>(result: Result.Result<A, E>) => Result.isFailure(result)

describe("Readiness.parse", () => {
  it("reads every target form", () => {
    assert.deepStrictEqual(Readiness.parse("tcp:5432"), Result.succeed(Readiness.tcp(5432, "localhost")))
    assert.deepStrictEqual(Readiness.parse("tcp:db.local:5432"), Result.succeed(Readiness.tcp(5432, "db.local")))
    assert.deepStrictEqual(Readiness.parse("tcp:127.0.0.1:80"), Result.succeed(Readiness.tcp(80, "127.0.0.1")))
    assert.deepStrictEqual(Readiness.parse("tcp:[::1]:8080"), Result.succeed(Readiness.tcp(8080, "::1")))
    assert.deepStrictEqual(Readiness.parse("none"), Result.succeed(Readiness.none))
    assert.deepStrictEqual(
      Readiness.parse("http://[::1]:3000/health"),
      Result.succeed(Readiness.http("http://[::1]:3000/health"))
    )
    assert.deepStrictEqual(Readiness.parse("https://localhost:8443/"), Result.succeed(Readiness.http("https://localhost:8443/")))
  })

  it("refuses what it cannot probe, saying what it expected", () => {
    for (const bad of ["tcp:", "tcp:0", "tcp:65536", "tcp:x", "tcp:::1:80", "ftp://x", "localhost:80", "", "http://"]) {
      assert.isTrue(isFailure(Readiness.parse(bad)), bad)
    }
    const unbracketed = Readiness.parse("tcp:::1:80")
    assert.isTrue(Result.isFailure(unbracketed) && unbracketed.failure.includes("tcp:[::1]:80"))
  })

  it.prop(
    "format and parse round-trip for TCP targets",
    {
      port: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 })),
      host: Schema.Literals(["localhost", "127.0.0.1", "::1", "fe80::1", "db.example.com", "0.0.0.0", "::"])
    },
    ({ host, port }) => {
      const target = Readiness.tcp(port, host)
      assert.deepStrictEqual(Readiness.parse(Readiness.format(target)), Result.succeed(target))
    }
  )

  it("reads durations", () => {
    assert.deepStrictEqual(Readiness.parseDuration("500ms"), Result.succeed(500))
    assert.deepStrictEqual(Readiness.parseDuration("5s"), Result.succeed(5_000))
    assert.deepStrictEqual(Readiness.parseDuration("1.5s"), Result.succeed(1_500))
    assert.deepStrictEqual(Readiness.parseDuration("2m"), Result.succeed(120_000))
    assert.deepStrictEqual(Readiness.parseDuration("1h"), Result.succeed(3_600_000))
    assert.deepStrictEqual(Readiness.parseDuration("0"), Result.succeed(0))
    for (const bad of ["5", "s", "-1s", "5 days", "1e3ms", ""]) {
      assert.isTrue(isFailure(Readiness.parseDuration(bad)), bad)
    }
    assert.deepStrictEqual(Readiness.parseDuration("-1s"), Result.fail("a duration of 0 or more, such as 500ms, 5s or 2m"))
  })
})

describe("Readiness.probe on real sockets", () => {
  // wait-on's trap: `localhost` resolves to ::1 first, so a probe that tries only the first
  // address misses a service bound to 127.0.0.1, and one that forces IPv4 misses ::1.
  for (const [family, address, other] of [["IPv4", "127.0.0.1", "::1"], ["IPv6", "::1", "127.0.0.1"]] as const) {
    it.effect(`finds an ${family}-only TCP listener through localhost and as a literal`, () =>
      Effect.gen(function*() {
        const port = yield* listen(address)
        yield* Readiness.probe(Readiness.tcp(port, "localhost"))
        yield* Readiness.probe(Readiness.tcp(port, address))
        const elsewhere = yield* Effect.exit(Readiness.probe(Readiness.tcp(port, other)))
        assert.isTrue(Exit.isFailure(elsewhere), `nothing listens on ${other}`)
      }))
  }

  it.effect("HTTP: IPv4-only and IPv6-only servers, localhost and bracketed literals, status checked", () =>
    Effect.gen(function*() {
      const handler: Http.RequestListener = (req, res) => {
        res.writeHead(req.url === "/health" ? 200 : 503).end()
      }
      const v4 = yield* listen("127.0.0.1", handler)
      const v6 = yield* listen("::1", handler)
      yield* Readiness.probe(Readiness.http(`http://localhost:${v4}/health`))
      yield* Readiness.probe(Readiness.http(`http://localhost:${v6}/health`))
      yield* Readiness.probe(Readiness.http(`http://[::1]:${v6}/health`))
      yield* Readiness.probe(Readiness.http(`http://127.0.0.1:${v4}/health`))
      const unhealthy = yield* Effect.flip(Readiness.probe(Readiness.http(`http://localhost:${v4}/other`)))
      assert.include(unhealthy, "answered 503")
    }))

  it.effect("HTTPS: a self-signed certificate is refused by default and accepted when insecure, the status checked either way", () =>
    Effect.gen(function*() {
      // A throw-away self-signed certificate for localhost, 127.0.0.1 and ::1 (test/fixtures).
      const tls = {
        key: readFileSync(new URL("fixtures/tls-key.pem", import.meta.url)),
        cert: readFileSync(new URL("fixtures/tls-cert.pem", import.meta.url))
      }
      const port = yield* Effect.acquireRelease(
        Effect.callback<Https.Server>((resume) => {
          const server = Https.createServer(tls, (req, res) => void res.writeHead(req.url === "/health" ? 200 : 404).end())
          server.once("error", (error) => resume(Effect.die(error)))
          server.listen({ host: "::", port: 0 }, () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
      ).pipe(Effect.map((server) => (server.address() as AddressInfo).port))
      for (const host of ["127.0.0.1", "localhost", "[::1]"]) {
        const url = `https://${host}:${port}/health`
        const refused = yield* Effect.flip(Readiness.probe(Readiness.http(url)))
        assert.include(refused, "certificate not trusted: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT)", url)
        yield* Readiness.probe(Readiness.http(url, { insecure: true }))
      }
      const missing = yield* Effect.flip(Readiness.probe(Readiness.http(`https://127.0.0.1:${port}/other`, { insecure: true })))
      assert.include(missing, "answered 404, expected 200-399")
      // Plain HTTP to a TLS port is not an answer.
      yield* Effect.flip(Readiness.probe(Readiness.http(`http://127.0.0.1:${port}/health`, { insecure: true })))
    }))

  it.effect("localhost means both loopback addresses, whatever /etc/hosts says", () =>
    Effect.gen(function*() {
      const addresses = yield* Readiness.resolve("localhost")
      assert.includeDeepMembers([...addresses], [{ address: "::1", family: 6 }, { address: "127.0.0.1", family: 4 }])
      assert.deepStrictEqual(yield* Readiness.resolve("[::1]"), [{ address: "::1", family: 6 }])
    }))

  it.effect("a refused probe names every address it tried", () =>
    Effect.gen(function*() {
      // Bind and close to get a port nothing listens on.
      const port = yield* Effect.scoped(listen("127.0.0.1"))
      const failure = yield* Effect.flip(Readiness.probe(Readiness.tcp(port, "localhost")))
      assert.include(failure, `127.0.0.1:${port} ECONNREFUSED`)
      assert.include(failure, `[::1]:${port} ECONNREFUSED`)
    }))
})

describe("Readiness.waitUntilReady", () => {
  it.live("keeps probing until the service answers", () =>
    Effect.gen(function*() {
      // Unhealthy (503) until the test has seen a probe, then healthy: the wait must retry.
      const firstProbe = Deferred.makeUnsafe<void>()
      let healthy = false
      const port = yield* listen("127.0.0.1", (_req, res) => {
        Deferred.doneUnsafe(firstProbe, Exit.void)
        res.writeHead(healthy ? 200 : 503).end()
      })
      const waiting = yield* Effect.forkChild(
        Readiness.waitUntilReady(Readiness.http(`http://localhost:${port}/`), {
          service: "late",
          timeoutMillis: 10_000,
          intervalMillis: 10
        })
      )
      yield* Deferred.await(firstProbe)
      assert.isUndefined(waiting.pollUnsafe(), "not ready while the service answers 503")
      healthy = true
      yield* Fiber.join(waiting)
    }))

  it.effect("fails with NotReadyError after the timeout, on the test clock", () =>
    Effect.gen(function*() {
      const port = yield* Effect.scoped(listen("127.0.0.1"))
      const waiting = yield* Effect.forkChild(
        Effect.flip(Readiness.waitUntilReady(Readiness.tcp(port, "127.0.0.1"), { service: "db", timeoutMillis: 30_000 }))
      )
      yield* TestClock.adjust(30_000)
      const error = yield* Fiber.join(waiting)
      assert.strictEqual(error._tag, "NotReadyError")
      assert.strictEqual(error.service, "db")
      assert.strictEqual(error.target, `tcp:127.0.0.1:${port}`)
      assert.include(error.message, "after 30s")
    }))
})
