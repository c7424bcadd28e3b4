/**
 * `GlobalSetup` in this process, as a test runner's main process calls it: what it holds and
 * for how long, what it does to `process.env`, and how it fails. The service is the demo server
 * (PostgreSQL, with real runners, is `globalsetup.test.ts`).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { GlobalSetup, type QuiesceError } from "@quiesce/cli"
import { SharedService } from "@quiesce/shared-service"
import { demoService, eventually, isAlive, logLines, node, tempDir } from "./util.ts"

/**
 * A project defining `services` (name: command) in its `quiesce.config.json`, this process's
 * runtime directory the test's own for its duration (the services' records and semaphores are
 * found through it), every service stopped and its set removed afterwards.
 */
const project = (services: (dir: string) => Record<string, Record<string, unknown>>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const defined = services(dir)
    writeFileSync(join(dir, "quiesce.config.json"), JSON.stringify({ services: defined }))
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const before = process.env["QUIESCE_RUNTIME_DIR"]
        process.env["QUIESCE_RUNTIME_DIR"] = dir
        return before
      }),
      (before) =>
        Effect.gen(function*() {
          for (const name of Object.keys(defined)) {
            yield* Effect.ignore(SharedService.forceStop(name, { timeout: 5_000 }))
            yield* Effect.ignore(SharedService.remove(name))
          }
          if (before === undefined) delete process.env["QUIESCE_RUNTIME_DIR"]
          else process.env["QUIESCE_RUNTIME_DIR"] = before
        })
    )
    return dir
  })

const rejection = (promise: Promise<unknown>) =>
  Effect.promise(() => promise.then(() => assert.fail("expected a rejection"), (error: unknown) => error as QuiesceError.QuiesceError))

const clients = (name: string) => Effect.map(SharedService.inspect(name), (s) => (s.running ? s.count : 0))

describe("GlobalSetup.services in-process", () => {
  it.live("holds the service until its teardown, with QUIESCE_<NAME>_* in process.env meanwhile; the teardown restores process.env", () =>
    Effect.gen(function*() {
      const name = "my-api"
      const envName = "MY_API"
      const dir = yield* project((dir) => ({
        [name]: { command: `'${node}' '${demoService}' --log '${join(dir, "service.log")}'`, port: "auto", grace: "0s" }
      }))
      const log = join(dir, "service.log")
      // As under an outer `quiesce run`: its single-service variables name another service.
      const outer = { QUIESCE_SERVICE_NAME: "outer", QUIESCE_SERVICE_PID: "1", QUIESCE_SERVICE_PORT: "1" }
      Object.assign(process.env, outer)
      yield* Effect.addFinalizer(() => Effect.sync(() => Object.keys(outer).forEach((key) => delete process.env[key])))

      const teardown = yield* Effect.promise(() => GlobalSetup.services([name], { cwd: dir, quiet: true })())
      const port = process.env[`QUIESCE_${envName}_PORT`]
      const pid = Number(process.env[`QUIESCE_${envName}_PID`])
      assert.match(port ?? "", /^\d+$/)
      assert.strictEqual(process.env["QUIESCE_SERVICE_NAME"], name)
      assert.strictEqual(process.env["QUIESCE_SERVICE_PORT"], port)
      const health = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/health`).then((r) => r.text()))
      assert.strictEqual(health, "ok\n")
      // Held by this process, past the acquisition.
      assert.strictEqual(yield* clients(name), 1)
      assert.isTrue(isAlive(pid))

      yield* Effect.promise(() => teardown())
      assert.strictEqual(yield* clients(name), 0)
      assert.isUndefined(process.env[`QUIESCE_${envName}_PORT`])
      assert.isUndefined(process.env[`QUIESCE_${envName}_PID`])
      assert.deepStrictEqual(
        Object.fromEntries(Object.keys(outer).map((key) => [key, process.env[key]])),
        outer,
        "the outer run's variables are back"
      )
      // Grace 0s: no one holds it, it stops.
      yield* eventually("the service to stop after the teardown", () => !isAlive(pid), 20_000)
      assert.strictEqual(logLines(log).filter((line) => line.includes(" started ")).length, 1)
      // A second call of the teardown does nothing more.
      yield* Effect.promise(() => teardown())
    }), 60_000)

  it.live("an unknown name, no names, a name twice: a typed error of one line, nothing started", () =>
    Effect.gen(function*() {
      const dir = yield* project(() => ({ api: { command: "sleep 30" } }))
      const unknown = yield* rejection(GlobalSetup.services(["db"], { cwd: dir })())
      assert.strictEqual(unknown._tag, "ConfigError")
      assert.strictEqual(unknown.message, `${join(dir, "quiesce.config.json")}: services: no service "db" (defined: api)`)
      const none = yield* rejection(GlobalSetup.services([], { cwd: dir })())
      assert.strictEqual(none._tag, "UsageError")
      const twice = yield* rejection(GlobalSetup.services(["api", "api"], { cwd: dir })())
      assert.strictEqual(twice.message, `service "api" is named twice`)
      assert.isFalse((yield* SharedService.inspect("api")).running)
      const missing = yield* rejection(GlobalSetup.services(["api"], { cwd: dir, config: "nope.json" })())
      assert.strictEqual(missing._tag, "ConfigError")
      assert.strictEqual(missing.message, `${join(dir, "nope.json")}: no such file`)
    }), 30_000)

  it.live("a service that fails to start: the ServiceStartError, its last output in its stack; those acquired before it released", () =>
    Effect.gen(function*() {
      const first = "first"
      const dir = yield* project(() => ({
        [first]: { command: "sleep 30", grace: "0s" },
        broken: { command: "echo 'config: unknown option --bogus' >&2; exit 2" }
      }))
      const env = { ...process.env }
      const error = yield* rejection(GlobalSetup.services([first, "broken"], { cwd: dir, quiet: true })())
      assert.strictEqual(error._tag, "ServiceStartError")
      assert.match(error.message, /^service "broken" failed to start: the service process \d+ exited with status 2 before it was ready$/)
      const stack = (error as unknown as Error).stack ?? ""
      assert.strictEqual(
        stack.replace(/process \d+/, "process N"),
        [
          `ServiceStartError: service "broken" failed to start: the service process N exited with status 2 before it was ready`,
          "its last output (all of it: quiesce logs broken):",
          "  | config: unknown option --bogus"
        ].join("\n")
      )
      assert.deepStrictEqual({ ...process.env }, env, "process.env untouched")
      // The first was acquired, then released with the failure.
      assert.strictEqual(yield* clients(first), 0)
    }), 30_000)
})
