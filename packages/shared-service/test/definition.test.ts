/**
 * What a definition says about stopping and identity, with real processes: the stop signal
 * (`stopSignal`, SIGKILL after `stopTimeout`) of every stop the supervisor makes — after the last
 * client, `forceStop`, its own SIGTERM, a replacement — and fingerprints: a client of another
 * definition fails with `DefinitionMismatch` while the running instance has clients, leaving it
 * alone, and replaces it once nobody holds it.
 */
import { NodeServices } from "@effect/platform-node"
import { SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { existsSync, mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, eventuallyAsync, harness, supervisors } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-definition-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const h = harness(dir)
afterAll(async () => {
  await h.cleanup()
})

const read = (file: string): string => existsSync(file) ? readFileSync(file, "utf8") : ""

/** Files of a test service: what its traps record, and its "up" marker (written once its traps are set). */
const filesOf = (name: string) => ({ got: join(dir, `${name}.got`), up: join(dir, `${name}.up`) })

/** A shell that records which of SIGINT and SIGTERM it got and exits on either; its `sleep`s die of it. */
const trapped = (f: { readonly got: string; readonly up: string }) =>
  `trap 'echo got INT >> "${f.got}"; exit 0' INT; trap 'echo got TERM >> "${f.got}"; exit 0' TERM; ` +
  `echo up > "${f.up}"; while :; do sleep 0.1; done`

/** Ready once the shell has set its traps. */
const upCheck = (f: { readonly up: string }) =>
  SharedService.check(() => existsSync(f.up) ? Effect.void : Effect.fail("traps not set yet"))

const waitFor = (cond: () => boolean, ms = 20_000) => Effect.promise(() => eventually(cond, ms))

/** Eventually no set, hint or owner file is left for `name`. */
const nothingLeft = (name: string) =>
  Effect.promise(() =>
    eventuallyAsync(() => Effect.runPromise(SharedService.inspect(name)).then((s) => s.state === "stopped"), 15_000)
  )

describe("stopSignal", () => {
  it.live("the idle stop after the last client sends the stop signal (SIGINT), not SIGTERM", () =>
    Effect.gen(function*() {
      const name = h.newName("sigint-idle")
      const f = filesOf(name)
      const service = yield* SharedService.command({
        name,
        command: trapped(f),
        ready: upCheck(f),
        stopSignal: "SIGINT",
        idleTimeToLive: Duration.millis(200)
      })
      const handle = yield* Effect.scoped(SharedService.acquire(service))
      assert.isTrue(handle.started)
      assert.isTrue(yield* waitFor(() => !alive(handle.info.pid)), "stopped after the grace period")
      assert.strictEqual(read(f.got), "got INT\n")
      assert.isTrue(yield* nothingLeft(name))
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("without stopSignal the stop is SIGTERM, as before", () =>
    Effect.gen(function*() {
      const name = h.newName("sigterm-default")
      const f = filesOf(name)
      const service = yield* SharedService.command({ name, command: trapped(f), ready: upCheck(f) })
      const handle = yield* Effect.scoped(SharedService.acquire(service))
      assert.isTrue(yield* waitFor(() => !alive(handle.info.pid)))
      assert.strictEqual(read(f.got), "got TERM\n")
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("forceStop, from a process that has no definition, stops with the supervisor's stop signal", () =>
    Effect.gen(function*() {
      const name = h.newName("sigint-force")
      const f = filesOf(name)
      // The holder is another process: forceStop here knows nothing but the name.
      const holder = h.client({ command: trapped(f), stopSignal: "SIGINT" })
      yield* Effect.promise(() => holder.ready())
      const acquired = yield* Effect.promise(() => holder.request(`acquire ${name}`))
      assert.strictEqual(acquired.ev, "acquired", JSON.stringify(acquired))
      assert.isTrue(yield* waitFor(() => existsSync(f.up)), "its traps are set")
      assert.isTrue(yield* SharedService.forceStop(name))
      assert.isTrue(yield* waitFor(() => !alive(acquired["pid"] as number)))
      assert.strictEqual(read(f.got), "got INT\n")
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("the supervisor's own SIGTERM-triggered stop sends the stop signal to the service", () =>
    Effect.gen(function*() {
      const name = h.newName("sigint-term")
      const f = filesOf(name)
      const service = yield* SharedService.command({ name, command: trapped(f), ready: upCheck(f), stopSignal: "SIGINT" })
      yield* Effect.scoped(Effect.gen(function*() {
        const handle = yield* SharedService.acquire(service)
        const supervisor = (yield* SharedService.inspect(name)).supervisor
        assert.isDefined(supervisor)
        // Until its handler is installed a SIGTERM would simply kill it (the service dying with it):
        // it says so in the log once it is (Node's own SIGTERM handler shows in SigCgt from the start).
        assert.isTrue(yield* waitFor(() => read(SharedService.logFile(name)).includes(`supervising ${name}`)), "the supervisor has booted")
        process.kill(supervisor!, "SIGTERM")
        assert.isTrue(yield* waitFor(() => !alive(handle.info.pid)), "stopped while still held")
        assert.strictEqual(read(f.got), "got INT\n")
      }))
      assert.isTrue(yield* nothingLeft(name), "its supervisor cleaned up once the last holder left")
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.live("a service that ignores its stop signal is SIGKILLed after stopTimeout", () =>
    Effect.gen(function*() {
      const name = h.newName("sigint-ignored")
      const f = filesOf(name)
      const service = yield* SharedService.command({
        name,
        // The ignored dispositions are inherited by its sleeps: nothing of the tree ends on SIGINT.
        command: `trap '' INT; echo up > "${f.up}"; while :; do sleep 0.1; done`,
        ready: upCheck(f),
        stopSignal: "SIGINT",
        stopTimeout: Duration.millis(500)
      })
      const handle = yield* Effect.scoped(SharedService.acquire(service))
      const released = Date.now()
      assert.isTrue(yield* waitFor(() => !alive(handle.info.pid)), "killed within the bound")
      assert.isAtLeast(Date.now() - released, 450, "not before its stop timeout")
      // The supervisor's log of that instance (kept as .log.1) says how it stopped it.
      const log = `${SharedService.logFile(name)}.1`
      assert.isTrue(yield* waitFor(() => read(log).includes("stopping (Idle): SIGINT, SIGKILL after 500 ms")), read(log))
      assert.isTrue(yield* nothingLeft(name))
    }).pipe(Effect.provide(NodeServices.layer)), 60_000)

  it.effect("an unknown signal name, or one that cannot stop a process, is InvalidOption", () =>
    Effect.gen(function*() {
      for (const bad of ["SIGFOO", "INT", "sigint", "", "SIGSTOP", "SIGTSTP", "SIGCONT"]) {
        const err = yield* Effect.flip(SharedService.command({ name: "definition-bad-signal", command: "exec sleep 5", stopSignal: bad }))
        assert.strictEqual(err._tag, "InvalidOption", bad)
        if (err._tag !== "InvalidOption") continue
        assert.strictEqual(err.option, "stopSignal")
        assert.strictEqual(err.value, bad)
      }
      for (const good of ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGKILL"]) {
        const service = yield* SharedService.command({ name: "definition-good-signal", command: "exec sleep 5", stopSignal: good })
        assert.strictEqual(service.name, "definition-good-signal")
      }
      // The name is still checked first.
      assert.strictEqual((yield* Effect.flip(SharedService.command({ name: "-x", command: "true", stopSignal: "SIGFOO" })))._tag, "InvalidName")
    }))
})

describe("fingerprint", () => {
  it.live("another definition: DefinitionMismatch while held (nothing touched); replaced in the grace period; the same joins", () =>
    Effect.gen(function*() {
      const name = h.newName("fingerprint")
      const f = filesOf(name)
      // X: held by two other processes, stopped with SIGINT, kept 20 s after its last client.
      const x = { command: trapped(f), fingerprint: "X", stopSignal: "SIGINT", ttlMs: 20_000, metadata: { definition: "X" } }
      const [a, a2] = [h.client(x), h.client(x)]
      yield* Effect.promise(() => Promise.all([a.ready(), a2.ready()]))
      const first = yield* Effect.promise(() => a.request(`acquire ${name}`))
      assert.strictEqual(first.ev, "acquired", JSON.stringify(first))
      assert.isTrue(first["started"])
      const joined = yield* Effect.promise(() => a2.request(`acquire ${name}`))
      assert.strictEqual(joined.ev, "acquired", JSON.stringify(joined))
      assert.isFalse(joined["started"], "the same fingerprint joins")
      assert.strictEqual(joined["pid"], first["pid"])
      const pidX = first["pid"] as number
      assert.isTrue(yield* waitFor(() => existsSync(f.up)), "its traps are set")
      const before = yield* SharedService.inspect(name)
      assert.strictEqual(before.fingerprint, "X")

      // Y: refused while X has clients.
      const yCommand = "exec sleep 300"
      const y = yield* SharedService.command({
        name,
        command: yCommand,
        fingerprint: "Y",
        metadata: { definition: "Y" },
        idleTimeToLive: Duration.millis(200)
      })
      const err = yield* Effect.flip(Effect.scoped(SharedService.acquire(y)))
      assert.strictEqual(err._tag, "DefinitionMismatch", String(err))
      if (err._tag !== "DefinitionMismatch") return
      assert.strictEqual(err.service, name)
      assert.strictEqual(err.running, "X")
      assert.strictEqual(err.requested, "Y")
      assert.strictEqual(err.clients, 2)
      assert.deepStrictEqual(err.metadata, { definition: "X" })
      const after = yield* SharedService.inspect(name)
      assert.strictEqual(after.count, 2, "nothing registered")
      assert.strictEqual(after.info?.pid, pidX, "the same instance")
      assert.strictEqual(after.supervisor, before.supervisor, "the same supervisor")
      assert.strictEqual(after.fingerprint, "X")
      assert.isTrue(alive(pidX))
      assert.strictEqual(read(f.got), "", "the running service got no signal")

      // Nobody holds X any more (its grace period): Y replaces it, stopped as X's definition says.
      for (const c of [a, a2]) assert.strictEqual((yield* Effect.promise(() => c.request(`release ${name}`))).ev, "released")
      assert.strictEqual((yield* SharedService.inspect(name)).count, 0)
      assert.isTrue(alive(pidX), "kept in its grace period")
      yield* Effect.scoped(Effect.gen(function*() {
        const handle = yield* SharedService.acquire(y)
        assert.isTrue(handle.started)
        assert.notStrictEqual(handle.info.pid, pidX)
        assert.isFalse(alive(pidX), "X was stopped before Y started")
        assert.strictEqual(read(f.got), "got INT\n", "with X's stop signal (Y's is SIGTERM)")
        const status = yield* SharedService.inspect(name)
        assert.strictEqual(status.fingerprint, "Y")
        assert.strictEqual(status.info?.pid, handle.info.pid)
        assert.deepStrictEqual(status.info?.metadata, { definition: "Y" })
        // Another process with Y joins it.
        const b = h.client({ command: yCommand, fingerprint: "Y", metadata: { definition: "Y" }, ttlMs: 200 })
        yield* Effect.promise(() => b.ready())
        const other = yield* Effect.promise(() => b.request(`acquire ${name}`))
        assert.strictEqual(other.ev, "acquired", JSON.stringify(other))
        assert.isFalse(other["started"])
        assert.strictEqual(other["pid"], handle.info.pid)
        // And X is now the other definition: refused, with Y's fingerprint and its two clients.
        const back = yield* Effect.promise(() => a.request(`acquire ${name}`))
        assert.strictEqual(back.ev, "error")
        assert.strictEqual(back["tag"], "DefinitionMismatch")
        assert.strictEqual((yield* Effect.promise(() => b.request(`release ${name}`))).ev, "released")
      }))
      assert.isTrue(yield* nothingLeft(name))
      assert.strictEqual(supervisors(name).length, 0)
    }).pipe(Effect.provide(NodeServices.layer)), 90_000)
})
