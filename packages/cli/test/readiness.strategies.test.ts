/**
 * The readiness strategies beyond a TCP connection, against real components: Python's
 * http.server for the statuses, a TLS server for the certificate policy, a process writing a
 * log, real shells (and their process groups) for `cmd:`, and a throw-away PostgreSQL cluster
 * for `cmd:pg_isready`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Result, Schema } from "effect"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync
} from "node:fs"
import * as Net from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Readiness } from "@quiesce/cli"

/**
 * The shared-service tests' throw-away PostgreSQL cluster (test/pg/cluster.ts there), imported
 * when it is used: it is outside this package's TypeScript project, so typed here.
 */
const startCluster = async (options: { readonly listen: ReadonlyArray<string>; readonly port: number }) => {
  const path = fileURLToPath(new URL("../../shared-service/test/pg/cluster.ts", import.meta.url))
  const cluster = (await import(path)) as {
    readonly startCluster: (options: { readonly listen: ReadonlyArray<string>; readonly port: number }) => Promise<{
      readonly port: number
      readonly stop: () => Promise<void>
    }>
  }
  return cluster.startCluster(options)
}

const fixtures = new URL("fixtures/", import.meta.url)

/** A temporary directory, removed with the test's scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "quiesce-readiness-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Polls `condition` (real time) until it holds, failing the test with `what` after `millis`. */
const eventually = (what: string, condition: () => boolean, millis = 20_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + millis
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })

/** A child process, SIGKILLed and awaited with the test's scope. */
const child = (command: string, args: ReadonlyArray<string>, options: Parameters<typeof spawn>[2] = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => spawn(command, [...args], options)),
    (process) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          if (process.exitCode !== null || process.signalCode !== null) return resolve()
          process.once("exit", () => resolve())
          process.kill("SIGKILL")
        })
      )
  )

const python = (): string => {
  for (const candidate of ["/usr/bin/python3", "python3"]) {
    try {
      execFileSync(candidate, ["--version"], { stdio: "pipe" })
      return candidate
    } catch {
      // try the next
    }
  }
  throw new Error("python3 was not found (/usr/bin/python3 nor on PATH): the HTTP readiness tests run Python's http.server")
}

/** `python3 -m http.server` on 127.0.0.1 serving `dir`, on the port it picked (it prints it). */
const httpServer = (dir: string) =>
  Effect.gen(function*() {
    const server: ChildProcess = yield* child(
      python(),
      ["-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    return yield* Effect.promise(() =>
      new Promise<number>((resolve, reject) => {
        let output = ""
        const read = (chunk: Buffer) => {
          output += chunk.toString()
          const port = /port (\d+)/.exec(output)
          if (port !== null) resolve(Number(port[1]))
        }
        server.stdout!.on("data", read)
        server.stderr!.on("data", read)
        server.once("exit", (code) => reject(new Error(`python3 -m http.server exited with ${code}: ${output}`)))
      })
    )
  })

/** Every living process whose command line has `marker` as an argument (zombies are dead). */
const living = (marker: string): Array<number> =>
  readdirSync("/proc").filter((name) => /^\d+$/.test(name)).flatMap((pid) => {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      if (!args.includes(marker)) return []
      const state = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0]
      return state === "Z" || state === "X" ? [] : [Number(pid)]
    } catch {
      return []
    }
  })

/**
 * A `sleep` duration no other test uses, to find its processes in /proc; any still alive when
 * the test ends (it failed) are killed then.
 */
const uniqueSleep = Effect.acquireRelease(
  Effect.sync(() => `1000.${process.pid}${Math.floor(Math.random() * 1e6)}`),
  (marker) =>
    Effect.sync(() => {
      for (const pid of living(marker)) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone meanwhile
        }
      }
    })
)

/** A port nothing listens on (the one a closed listener had). */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
)

describe("HTTP statuses, against Python's http.server", () => {
  it.live("an existing file answers 200; a missing one 404, refused by default, accepted when expected", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(join(dir, "health"), "ok\n")
      const port = yield* httpServer(dir)
      const url = (path: string) => `http://127.0.0.1:${port}/${path}`
      const expect = (text: string) => Result.getOrThrow(Readiness.parseExpect(text))

      yield* Readiness.probe(Readiness.http(url("health")))
      yield* Readiness.probe(Readiness.http(`http://localhost:${port}/health`))
      const missing = yield* Effect.flip(Readiness.probe(Readiness.http(url("missing"))))
      assert.include(missing, `127.0.0.1:${port} answered 404, expected 200-399`)
      yield* Readiness.probe(Readiness.http(url("missing"), { expect: expect("404") }))
      yield* Readiness.probe(Readiness.http(url("missing"), { expect: expect("200-299,404") }))

      yield* Readiness.probe(Readiness.http(url("health"), { expect: expect("200-399") }))
      const notAnError = yield* Effect.flip(Readiness.probe(Readiness.http(url("health"), { expect: expect("500-599") })))
      assert.include(notAnError, "answered 200, expected 500-599")
      const notFound = yield* Effect.flip(Readiness.probe(Readiness.http(url("missing"), { expect: expect("200,204") })))
      assert.include(notFound, "answered 404, expected 200,204")
    }))

  it.live("an answer that does not come within the attempt's time-out fails the attempt", () =>
    Effect.gen(function*() {
      // Accepts and never answers.
      const sockets: Array<Net.Socket> = []
      const server = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<Net.Server>((resolve) => {
            const server = Net.createServer((socket) => void sockets.push(socket))
            server.listen(0, "127.0.0.1", () => resolve(server))
          })
        ),
        (server) =>
          Effect.promise(() =>
            new Promise<void>((resolve) => {
              for (const socket of sockets) socket.destroy()
              server.close(() => resolve())
            })
          )
      )
      const { port } = server.address() as AddressInfo
      const failure = yield* Effect.flip(
        Readiness.probe(Readiness.http(`http://127.0.0.1:${port}/`), { attemptTimeoutMillis: 300 })
      )
      assert.strictEqual(failure, `127.0.0.1:${port} timed out`)
    }))
})

describe("parseExpect", () => {
  it("reads statuses and ranges, in the order given", () => {
    assert.deepStrictEqual(Readiness.parseExpect("200"), Result.succeed([{ min: 200, max: 200 }]))
    assert.deepStrictEqual(Readiness.parseExpect("200,204"), Result.succeed([{ min: 200, max: 200 }, { min: 204, max: 204 }]))
    assert.deepStrictEqual(Readiness.parseExpect("200-399"), Result.succeed([{ min: 200, max: 399 }]))
    assert.deepStrictEqual(
      Readiness.parseExpect("200-299, 404"),
      Result.succeed([{ min: 200, max: 299 }, { min: 404, max: 404 }])
    )
    assert.deepStrictEqual(Readiness.parseExpect("100-599"), Result.succeed([{ min: 100, max: 599 }]))
  })

  it("refuses what is not a status set, saying what is wrong", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["", "nothing was given"],
      ["600", "600 is not an HTTP status"],
      ["99", "99 is not an HTTP status"],
      ["200-600", "600 is not an HTTP status"],
      ["399-200", "399-200 ends before it starts"],
      ["2xx", "2xx is not a status or a range"],
      ["200,,204", "an empty item"],
      ["200-", "200- is not a status or a range"],
      ["-200", "-200 is not a status or a range"],
      ["1e2", "1e2 is not a status or a range"],
      ["0200", "0200 is not a status or a range"]
    ]
    for (const [text, why] of cases) {
      const result = Readiness.parseExpect(text)
      assert.isTrue(Result.isFailure(result), text)
      if (Result.isFailure(result)) {
        assert.isTrue(result.failure.startsWith("HTTP statuses from 100 to 599"), result.failure)
        assert.isTrue(result.failure.endsWith(`(${why})`), `${text}: ${result.failure}`)
      }
    }
  })

  const status = Schema.Int.check(Schema.isBetween({ minimum: 100, maximum: 599 }))
  it.prop(
    "parseExpect and formatExpect round-trip",
    { ranges: Schema.Array(Schema.Tuple([status, status])).check(Schema.isMinLength(1)) },
    ({ ranges }) => {
      const expect = ranges.map(([a, b]) => ({ min: Math.min(a, b), max: Math.max(a, b) }))
      assert.deepStrictEqual(Readiness.parseExpect(Readiness.formatExpect(expect)), Result.succeed(expect))
    }
  )
})

describe("HTTPS certificate verification", () => {
  it.live("a certificate that the trust store has verifies for its names and addresses, and only for them", () =>
    Effect.gen(function*() {
      // A child Node that trusts the fixture's self-signed certificate (NODE_EXTRA_CA_CERTS is
      // read at startup), probing a server that presents it.
      const script = `
        import * as Https from "node:https"
        import { readFileSync } from "node:fs"
        import { Effect } from "effect"
        import { Readiness } from "@quiesce/cli"
        const tls = { key: readFileSync(new URL("tls-key.pem", ${JSON.stringify(fixtures.href)})), cert: readFileSync(new URL("tls-cert.pem", ${JSON.stringify(fixtures.href)})) }
        const server = Https.createServer(tls, (_req, res) => void res.writeHead(200).end())
        await new Promise((listening) => server.listen({ host: "::", port: 0 }, listening))
        const { port } = server.address()
        const results = {}
        for (const host of ["localhost", "127.0.0.1", "[::1]", "127.0.0.2"]) {
          const exit = await Effect.runPromiseExit(Readiness.probe(Readiness.http("https://" + host + ":" + port + "/")))
          results[host] = exit._tag === "Success" ? "ok" : String(exit.cause).includes("ERR_TLS_CERT_ALTNAME_INVALID") ? "altname" : String(exit.cause)
        }
        server.close()
        console.log(JSON.stringify(results))
      `
      const output = yield* Effect.promise(() =>
        new Promise<string>((resolve, reject) => {
          const node = spawn(process.execPath, ["--conditions=@quiesce/source", "--input-type=module", "-e", script], {
            cwd: new URL("..", import.meta.url).pathname,
            env: { ...process.env, NODE_EXTRA_CA_CERTS: new URL("tls-cert.pem", fixtures).pathname },
            stdio: ["ignore", "pipe", "pipe"]
          })
          let out = ""
          node.stdout.on("data", (chunk: Buffer) => void (out += chunk.toString()))
          node.stderr.on("data", (chunk: Buffer) => void (out += chunk.toString()))
          node.once("exit", (code) => code === 0 ? resolve(out) : reject(new Error(`the probing node exited ${code}: ${out}`)))
        })
      )
      assert.deepStrictEqual(JSON.parse(output), {
        "localhost": "ok",
        "127.0.0.1": "ok",
        "[::1]": "ok",
        // Not among the certificate's addresses: refused although its issuer is trusted.
        "127.0.0.2": "altname"
      })
    }))
})

describe("log: targets", () => {
  it("parse checks the regular expression", () => {
    assert.deepStrictEqual(Readiness.parse("log:ready in \\d+ ms"), Result.succeed(Readiness.log("ready in \\d+ ms")))
    assert.deepStrictEqual(Readiness.parse("log:a:b"), Result.succeed(Readiness.log("a:b")))
    for (const [bad, why] of [["log:(", "Unterminated group"], ["log:[a", "Unterminated character class"], ["log:a{2,1}", "out of order"]]) {
      const result = Readiness.parse(bad)
      assert.isTrue(Result.isFailure(result) && result.failure.startsWith("a valid regular expression after log: ("), bad)
      assert.isTrue(Result.isFailure(result) && result.failure.includes(why), bad)
    }
    assert.deepStrictEqual(Readiness.parse("log:"), Result.fail("a regular expression after log:, as in log:listening on port \\d+"))
    // A backreference needs backtracking, which no timeout could interrupt: refused.
    const backreference = Readiness.parse("log:(a)\\1")
    assert.isTrue(Result.isFailure(backreference) && backreference.failure.includes("without backreferences"))
  })

  it.effect("a pattern that backtracks catastrophically elsewhere runs in linear time here: the attempt ends", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "quiesce-redos-"))
      const file = join(dir, "service.log")
      writeFileSync(file, `${"a".repeat(64)}!\n`)
      // Backtracking, 64 characters would take longer than the universe is old: this attempt
      // returning at all (within the test's timeout) is the point.
      const failure = yield* Effect.flip(Readiness.probe(Readiness.log("^(a+)+$"), { logFile: file }))
      assert.include(failure, "no line")
      rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("a log target without a log file, or with an invalid expression, fails saying so", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.log("ready"))),
        "log:ready needs the service's log file, and none was given"
      )
      const dir = yield* tempDir
      const invalid = yield* Effect.flip(Readiness.probe(Readiness.log("("), { logFile: join(dir, "log") }))
      assert.include(invalid, "/(/ is not a valid regular expression")
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.log("ready"), { logFile: join(dir, "log") })),
        `${join(dir, "log")} does not exist yet`
      )
    }))

  it.live("ready once a process writing the log prints a matching line, not before", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const logFile = join(dir, "service.log")
      const go = join(dir, "go")
      const fd = openSync(logFile, "a")
      // Lines that almost match, a matching line written in two pieces, and only once told to.
      const script = `
        echo "starting"
        echo "not ready on port 5432 yet"
        echo "ready on port"
        while [ ! -e "${go}" ]; do sleep 0.02; done
        printf 'ready on port 54'
        while [ ! -e "${go}2" ]; do sleep 0.02; done
        printf '32\\n'
        exec sleep 1000
      `
      yield* child("/bin/sh", ["-c", script], { stdio: ["ignore", fd, fd] })
      closeSync(fd)
      const target = Readiness.log("^ready on port \\d+$")
      const attempt = yield* Readiness.makeProbe(target, { logFile })
      yield* eventually("the first lines", () => readFileSync(logFile, "utf8").includes("ready on port\n"))
      assert.strictEqual(yield* Effect.flip(attempt), `no line of ${logFile} matches /^ready on port \\d+$/ yet`)
      writeFileSync(go, "")
      yield* eventually("the first half of the line", () => readFileSync(logFile, "utf8").endsWith("54"))
      // A line is not a line before its newline: "ready on port 54" is half of "ready on port 5432".
      yield* Effect.flip(attempt)
      yield* Effect.flip(Readiness.probe(target, { logFile }))
      const waiting = yield* Effect.forkChild(
        Readiness.waitUntilReady(target, { service: "svc", timeoutMillis: 20_000, intervalMillis: 10, logFile })
      )
      writeFileSync(`${go}2`, "")
      yield* Fiber.join(waiting)
      yield* attempt
      yield* Readiness.probe(target, { logFile })
    }))

  it.effect("a waiter reads what the log gained; lines across reads, long lines and colours are handled", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const logFile = join(dir, "service.log")
      // A few MB of output, its last line crossing a 64 KiB boundary of the reads.
      const filler = "x".repeat(99) + "\n"
      writeFileSync(logFile, filler.repeat(30_000) + "y".repeat(65_536 * 46 - 3_000_000 + 1_000))
      const matching = Readiness.log("^y+ ready$")
      const attempt = yield* Readiness.makeProbe(matching, { logFile })
      yield* Effect.flip(attempt)
      appendFileSync(logFile, "y ready")
      yield* Effect.flip(attempt)
      appendFileSync(logFile, "\n")
      yield* attempt
      yield* Readiness.probe(matching, { logFile })
      // A line that matched stays matched: what comes after it does not matter.
      appendFileSync(logFile, "stopping\n")
      yield* attempt

      // Terminal colours are not in the way.
      writeFileSync(join(dir, "vite.log"), "  \x1b[32m\x1b[1mVITE\x1b[22m v5.0.0\x1b[39m  \x1b[2mready in \x1b[0m\x1b[1m312\x1b[22m\x1b[2m ms\x1b[22m\r\n")
      yield* Readiness.probe(Readiness.log("VITE v[\\d.]+ +ready in \\d+ ms$"), { logFile: join(dir, "vite.log") })

      // A line longer than 64 KiB is tested by its head; the next line is a line of its own.
      writeFileSync(join(dir, "long.log"), "z".repeat(200_000) + " tail\nnext\n")
      yield* Readiness.probe(Readiness.log("^z+$"), { logFile: join(dir, "long.log") })
      yield* Effect.flip(Readiness.probe(Readiness.log("tail"), { logFile: join(dir, "long.log") }))
      yield* Readiness.probe(Readiness.log("^next$"), { logFile: join(dir, "long.log") })
    }))

  it.effect("a new log in the file's place (a new instance) is read from its start", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const logFile = join(dir, "service.log")
      writeFileSync(logFile, "old instance: ready\n")
      const attempt = yield* Readiness.makeProbe(Readiness.log("ready"), { logFile })
      yield* attempt
      // Rotated as shared-service does: renamed, and a new file created.
      renameSync(logFile, `${logFile}.1`)
      writeFileSync(logFile, "new instance: starting\n")
      yield* Effect.flip(attempt)
      appendFileSync(logFile, "new instance: ready\n")
      yield* attempt
      // Truncated in place to less than what was read: read again from the start.
      writeFileSync(logFile, "ok\n")
      yield* Effect.flip(attempt)
      appendFileSync(logFile, "ready\n")
      yield* attempt
    }))

  it.live("reading the log is bounded by the attempt's time-out", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      // Opening a FIFO blocks until it has a writer.
      const fifo = join(dir, "fifo")
      execFileSync("mkfifo", [fifo])
      const failure = yield* Effect.flip(Readiness.probe(Readiness.log("ready"), { logFile: fifo, attemptTimeoutMillis: 200 }))
      assert.strictEqual(failure, `reading ${fifo} took more than 200ms`)
      // Release the blocked open (it holds one of libuv's threads).
      closeSync(openSync(fifo, "w"))
    }))
})

describe("cmd: targets", () => {
  it("parse takes the rest of the value as the command", () => {
    assert.deepStrictEqual(
      Readiness.parse("cmd:pg_isready -h 127.0.0.1 -p 5432"),
      Result.succeed(Readiness.cmd("pg_isready -h 127.0.0.1 -p 5432"))
    )
    assert.deepStrictEqual(Readiness.parse("cmd:curl -fsS http://x:1/ || exit 1"), Result.succeed(Readiness.cmd("curl -fsS http://x:1/ || exit 1")))
    assert.deepStrictEqual(Readiness.parse("cmd:  "), Result.fail("a shell command after cmd:, as in cmd:pg_isready -h 127.0.0.1"))
    assert.isTrue(Result.isFailure(Readiness.parse("cmd:")))
  })

  it.effect("exit 0 passes; another status fails, naming it and the last line of the output", () =>
    Effect.gen(function*() {
      yield* Readiness.probe(Readiness.cmd("exit 0"))
      yield* Readiness.probe(Readiness.cmd("true"))
      assert.strictEqual(yield* Effect.flip(Readiness.probe(Readiness.cmd("exit 3"))), "exited with status 3")
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.cmd("echo out; echo first >&2; echo '  last  ' >&2; echo >&2; exit 3"))),
        "exited with status 3: last"
      )
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.cmd("echo 127.0.0.1:5432 - no response; exit 2"))),
        "exited with status 2: 127.0.0.1:5432 - no response"
      )
      // Only the tail of a large output is kept.
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.cmd("head -c 3000000 /dev/zero | tr '\\0' a; echo; echo done; exit 1"))),
        "exited with status 1: done"
      )
      assert.strictEqual(yield* Effect.flip(Readiness.probe(Readiness.cmd("kill -TERM $$"))), "was killed by SIGTERM")
    }))

  it.effect("the environment given is the whole environment, and the directory given is the working directory", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const failure = yield* Effect.flip(Readiness.probe(
        Readiness.cmd("echo \"$GREETING ${HOME-no home} $(pwd)\" >&2; exit 1"),
        { cwd: dir, env: { GREETING: "hello", PATH: "/usr/bin:/bin" } }
      ))
      assert.strictEqual(failure, `exited with status 1: hello no home ${dir}`)
      yield* Readiness.probe(Readiness.cmd("test \"$PWD\" = \"$EXPECTED\""), { cwd: dir, env: { ...process.env, EXPECTED: dir } })
      assert.strictEqual(
        yield* Effect.flip(Readiness.probe(Readiness.cmd("true"), { cwd: join(dir, "missing") })),
        `cannot run /bin/sh in ${join(dir, "missing")} (ENOENT)`
      )
    }))

  it.live("a command still running at the attempt's time-out is killed with its whole process group", () =>
    Effect.gen(function*() {
      const sleep = yield* uniqueSleep
      const probing = yield* Effect.forkChild(
        Effect.flip(Readiness.probe(Readiness.cmd(`echo started >&2; sleep ${sleep} & sleep ${sleep}`), { attemptTimeoutMillis: 4_000 }))
      )
      yield* eventually("both sleeps", () => living(sleep).length === 2)
      assert.strictEqual(yield* Fiber.join(probing), `did not finish within 4000ms, killed: started`)
      yield* eventually("no sleep left", () => living(sleep).length === 0, 5_000)
    }))

  it.live("an interrupted attempt kills the group and reaps the shell before it ends", () =>
    Effect.gen(function*() {
      const sleep = yield* uniqueSleep
      const marker = `quiesce-test-${sleep}`
      // The shell keeps its own command line (it runs two commands), which names the marker.
      const probing = yield* Effect.forkChild(
        Readiness.probe(Readiness.cmd(`sleep ${sleep} & sleep ${sleep}; echo ${marker}`), { attemptTimeoutMillis: 600_000 })
      )
      yield* eventually("both sleeps", () => living(sleep).length === 2)
      const shells = readdirSync("/proc").filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker)
        } catch {
          return false
        }
      })
      assert.strictEqual(shells.length, 1, "the shell")
      yield* Fiber.interrupt(probing)
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(probing)))
      // Reaped: its /proc entry is gone, not a zombie.
      assert.isFalse(existsSync(`/proc/${shells[0]}`), "the shell is reaped")
      yield* eventually("no sleep left", () => living(sleep).length === 0, 5_000)
    }))

  it.live("a job the command leaves in the background goes when it exits", () =>
    Effect.gen(function*() {
      const sleep = yield* uniqueSleep
      // The shell exits once its job has become the sleep (a forked shell not yet exec'd is not it).
      yield* Readiness.probe(
        Readiness.cmd(`sleep ${sleep} > /dev/null 2>&1 & until [ "$(tr '\\0' ' ' < /proc/$!/cmdline)" = "sleep ${sleep} " ]; do sleep 0.01; done`),
        { attemptTimeoutMillis: 20_000 }
      )
      yield* eventually("no sleep left", () => living(sleep).length === 0, 5_000)
    }))

  it.live("cmd:pg_isready fails before a real PostgreSQL is up and passes once it is", () =>
    Effect.gen(function*() {
      const pgIsready = findPgIsready()
      const port = yield* freePort
      const target = Result.getOrThrow(Readiness.parse(`cmd:${pgIsready} -h 127.0.0.1 -p ${port}`))
      const before = yield* Effect.flip(Readiness.probe(target, { attemptTimeoutMillis: 10_000 }))
      assert.strictEqual(before, `exited with status 2: 127.0.0.1:${port} - no response`)
      yield* Effect.acquireRelease(
        Effect.promise(() => startCluster({ listen: ["127.0.0.1"], port })),
        (cluster) => Effect.promise(() => cluster.stop())
      )
      yield* Readiness.probe(target, { attemptTimeoutMillis: 10_000 })
    }), 90_000)
})

const findPgIsready = (): string => {
  const dirs = (process.env["PATH"] ?? "").split(":").filter((dir) => dir !== "")
  try {
    for (const version of readdirSync("/usr/lib/postgresql").sort().reverse()) dirs.push(`/usr/lib/postgresql/${version}/bin`)
  } catch {
    // not installed there
  }
  const found = dirs.map((dir) => join(dir, "pg_isready")).find((path) => existsSync(path))
  if (found === undefined) {
    throw new Error(
      "PostgreSQL's pg_isready was not found on PATH nor in /usr/lib/postgresql/*/bin: the cmd: readiness test needs " +
        "a PostgreSQL server and its client tools (Debian: apt-get install postgresql)"
    )
  }
  return found
}

describe("probeAll", () => {
  it.live("passes when every target passes, and names each one that fails with its reason", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      writeFileSync(join(dir, "health"), "ok\n")
      const port = yield* httpServer(dir)
      const logFile = join(dir, "service.log")
      writeFileSync(logFile, "ready\n")
      const passing = [
        Readiness.tcp(port, "127.0.0.1"),
        Readiness.http(`http://127.0.0.1:${port}/health`),
        Readiness.log("^ready$"),
        Readiness.cmd("true"),
        Readiness.none
      ]
      yield* Readiness.probeAll(passing, { logFile })
      yield* Readiness.probeAll([])
      const closed = yield* freePort
      const failure = yield* Effect.flip(Readiness.probeAll(
        [...passing, Readiness.cmd("exit 3"), Readiness.tcp(closed, "127.0.0.1"), Readiness.http(`http://127.0.0.1:${port}/missing`)],
        { logFile }
      ))
      assert.strictEqual(
        failure,
        `cmd:exit 3: exited with status 3; tcp:127.0.0.1:${closed}: 127.0.0.1:${closed} ECONNREFUSED; ` +
          `http://127.0.0.1:${port}/missing: 127.0.0.1:${port} answered 404, expected 200-399`
      )
      const one = yield* Effect.flip(Readiness.probeAll([Readiness.cmd("true"), Readiness.log("^never$")], { logFile }))
      assert.strictEqual(one, `log:^never$: no line of ${logFile} matches /^never$/ yet`)
    }))

  it.live("waitUntilReady with several targets waits for all of them at once", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const logFile = join(dir, "service.log")
      writeFileSync(logFile, "")
      const flag = join(dir, "flag")
      const attempts = join(dir, "attempts")
      writeFileSync(attempts, "")
      const count = () => readFileSync(attempts, "utf8").length
      const waiting = yield* Effect.forkChild(Readiness.waitUntilReady(
        [Readiness.log("^ready$"), Readiness.cmd(`echo >> ${attempts}; test -e ${flag}`)],
        { service: "svc", timeoutMillis: 30_000, intervalMillis: 10, logFile }
      ))
      appendFileSync(logFile, "ready\n")
      // Two attempts later, one has begun after the log's line: the log passed in it, the command not.
      const seen = count()
      yield* eventually("two more attempts", () => count() >= seen + 2)
      assert.isUndefined(waiting.pollUnsafe(), "not ready while the command fails")
      writeFileSync(flag, "")
      yield* Fiber.join(waiting)

      const error = yield* Effect.flip(Readiness.waitUntilReady(
        [Readiness.cmd("true"), Readiness.log("^never$")],
        { service: "svc", timeoutMillis: 300, intervalMillis: 10, logFile }
      ))
      assert.strictEqual(error.target, "cmd:true and log:^never$")
      assert.strictEqual(error.lastFailure, `log:^never$: no line of ${logFile} matches /^never$/ yet`)
    }))
})

describe("parse and format round-trip, every form", () => {
  const host = Schema.Literals(["localhost", "127.0.0.1", "[::1]", "[fe80::1]", "db.example.com"])
  const portNumber = Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 }))
  const segment = Schema.String.check(Schema.isPattern(/^[a-zA-Z0-9._~-]{0,12}$/))

  it.prop(
    "http and https targets: the URL round-trips; expect and insecure are not part of the value",
    {
      https: Schema.Boolean,
      host,
      port: portNumber,
      path: Schema.Array(segment),
      insecure: Schema.Boolean,
      status: Schema.Int.check(Schema.isBetween({ minimum: 100, maximum: 599 }))
    },
    ({ host, https, insecure, path, port, status }) => {
      const url = new URL(`${https ? "https" : "http"}://${host}:${port}/${path.join("/")}`).href
      const target = Readiness.http(url)
      assert.deepStrictEqual(Readiness.parse(Readiness.format(target)), Result.succeed(target))
      const flagged = Readiness.http(url, { insecure, expect: [{ min: status, max: status }] })
      assert.strictEqual(Readiness.format(flagged), url)
      assert.deepStrictEqual(Readiness.parse(Readiness.format(flagged)), Result.succeed(target))
    }
  )

  it.prop(
    "log targets round-trip exactly when their expression is valid; cmd targets when their command is not blank",
    { text: Schema.String },
    ({ text }) => {
      let valid = text !== ""
      try {
        new RegExp(text)
      } catch {
        valid = false
      }
      const log = Readiness.parse(Readiness.format(Readiness.log(text)))
      assert.deepStrictEqual(Result.isSuccess(log), valid)
      if (valid) assert.deepStrictEqual(log, Result.succeed(Readiness.log(text)))
      const cmd = Readiness.parse(Readiness.format(Readiness.cmd(text)))
      assert.deepStrictEqual(cmd, text.trim() === "" ? Result.fail("a shell command after cmd:, as in cmd:pg_isready -h 127.0.0.1") : Result.succeed(Readiness.cmd(text)))
    }
  )

  it("the remaining forms", () => {
    for (const target of [Readiness.none, Readiness.tcp(5432), Readiness.tcp(1, "::1"), Readiness.log("a(b|c)+$"), Readiness.cmd("pg_isready -h 127.0.0.1 -p 5432")]) {
      assert.deepStrictEqual(Readiness.parse(Readiness.format(target)), Result.succeed(target))
    }
    assert.strictEqual(Readiness.port(Readiness.log("x")), undefined)
    assert.strictEqual(Readiness.port(Readiness.cmd("pg_isready -p 5432")), undefined)
  })
})
