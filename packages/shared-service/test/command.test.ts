/**
 * `SharedService.command`, for real: readiness (tcp, http), a service that dies before it is
 * ready, a start timeout (the group is killed, nothing is registered), and `parseReadiness`.
 */
import { NodeServices } from "@effect/platform-node"
import { SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import { mkdtempSync, readdirSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, eventuallyAsync, freePort, harness, supervisors } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-command-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { names, newName } = harness(dir)
afterAll(async () => {
  for (const name of names) await Effect.runPromise(Effect.ignore(SharedService.forceStop(name)))
})

const node = JSON.stringify(process.execPath)

/** Live processes started for service `name` (their environment carries QUIESCE_SERVICE_NAME). */
const servicesNamed = (name: string): Array<number> =>
  readdirSync("/proc").filter((e) => /^\d+$/.test(e) && alive(Number(e))).flatMap((e) => {
    try {
      return readFileSync(`/proc/${e}/environ`, "utf8").split("\0").includes(`QUIESCE_SERVICE_NAME=${name}`)
        ? [Number(e)]
        : []
    } catch {
      return []
    }
  })

/** Eventually (within a stop's time) no set, hint or owner file is left for `name`. */
const nothingLeft = (name: string) =>
  Effect.promise(() =>
    eventuallyAsync(() => Effect.runPromise(SharedService.inspect(name)).then((s) => s.state === "stopped"), 10_000)
  )

describe("SharedService.command", () => {
  it("parseReadiness", () => {
    assert.deepStrictEqual(SharedService.parseReadiness("tcp:5432"), SharedService.tcp(5432))
    assert.deepStrictEqual(SharedService.parseReadiness("tcp:db.local:5432"), SharedService.tcp(5432, "db.local"))
    assert.deepStrictEqual(SharedService.parseReadiness("http://127.0.0.1:8080/health"), SharedService.http("http://127.0.0.1:8080/health"))
    for (const bad of ["tcp:", "tcp:0", "tcp:70000", "udp:53", "localhost:80", ""]) {
      assert.isUndefined(SharedService.parseReadiness(bad), bad)
    }
  })

  it.live("http readiness: ready once the server answers; stopped after the grace period", () =>
    Effect.gen(function*() {
      const name = newName("http")
      const port = yield* Effect.promise(freePort)
      const service = yield* SharedService.command({
        name,
        command: `exec ${node} -e "require('http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')"`,
        port,
        ready: SharedService.http(`http://127.0.0.1:${port}/`),
        idleTimeToLive: Duration.millis(200)
      })
      const first = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* SharedService.acquire(service)
        const res = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/`).then((r) => r.text()))
        assert.strictEqual(res, "ok")
        return a
      }))
      assert.isTrue(first.started)
      assert.strictEqual(first.info.port, port)
      assert.isTrue(yield* Effect.promise(() => eventually(() => !alive(first.info.pid), 15000)), "stopped after the grace")
      assert.isTrue(yield* Effect.promise(() => eventually(() => supervisors(name).length === 0, 15000)))
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("a service that exits before it is ready: StartFailed, nothing registered", () =>
    Effect.gen(function*() {
      const name = newName("dies")
      const port = yield* Effect.promise(freePort)
      const service = yield* SharedService.command({ name, command: "exit 3", ready: SharedService.tcp(port) })
      const err = yield* Effect.flip(Effect.scoped(SharedService.acquire(service)))
      assert.strictEqual(err._tag, "StartFailed")
      assert.match((err as { reason: string }).reason, /exited with status 3 before it was ready/)
      assert.strictEqual((err as { status?: string }).status, "exited with status 3")
      assert.strictEqual((yield* SharedService.inspect(name)).count, 0)
      assert.isTrue(yield* nothingLeft(name), "its supervisor removed the hint, the owner file and the set")
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("a start timeout kills the service's process group and registers nothing", () =>
    Effect.gen(function*() {
      const name = newName("timeout")
      const port = yield* Effect.promise(freePort)
      const service = yield* SharedService.command({
        name,
        // A compound command: the shell and its child form the group.
        command: "sleep 30 & wait",
        ready: SharedService.tcp(port),
        startTimeout: Duration.millis(700)
      })
      const started = Date.now()
      const fiber = yield* Effect.forkChild(Effect.flip(Effect.scoped(SharedService.acquire(service))))
      assert.isTrue(
        yield* Effect.promise(() => eventually(() => servicesNamed(name).length >= 2, 10_000)),
        "the shell and its sleep were running"
      )
      const err = yield* Fiber.join(fiber)
      assert.strictEqual(err._tag, "StartFailed")
      assert.strictEqual((err as { timeoutMillis?: number }).timeoutMillis, 700)
      assert.isBelow(Date.now() - started, 10_000)
      assert.strictEqual((yield* SharedService.inspect(name)).count, 0)
      assert.isTrue(yield* nothingLeft(name), "its supervisor removed the hint, the owner file and the set")
      assert.isTrue(
        yield* Effect.promise(() => eventually(() => servicesNamed(name).length === 0, 10_000)),
        "no process of the service's tree is left"
      )
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)
})
