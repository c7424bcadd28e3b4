/**
 * Bad input and hostile environments, for real: invalid names, the set removed mid-run with
 * `ipcrm`, another user's set (EACCES), IPC limits exhausted (`unshare --ipc`, SEMMNI = 1),
 * corrupt hints and a recycled pid in the hint. Each gives a typed error or a recovery.
 */
import { RefCounter, ServiceInfo, SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { execFileSync } from "node:child_process"
import { chmodSync, chownSync, mkdtempSync, realpathSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import koffi from "koffi"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, eventually, eventuallyAsync, fixture, harness, inspect, supervisors, starts, uniqueName } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-hostile-"))
chmodSync(dir, 0o700)
process.env["QUIESCE_RUNTIME_DIR"] = dir

const NOBODY = 65534
const libc = koffi.load("libc.so.6")
const semget = libc.func("int semget(int key, int nsems, int semflg)")
const semctl = libc.func("int semctl(int semid, int semnum, int cmd)")
const IPC_CREAT = 0o1000
const IPC_RMID = 0

/**
 * The IPC key of (uid, runtime directory, name) as the README documents it (FNV-1a of
 * `quiesce:<uid>:<canonical runtime dir>:<name>`). A copy on purpose, not an import: the key is
 * what two versions of the package must agree on to share a service, so the tests pin the
 * documented derivation rather than the code's own.
 */
const realDir = realpathSync(dir)
const ipcKey = (uid: number, name: string, runtime = realDir) => {
  const s = `quiesce:${uid}:${runtime}:${name}`
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h | 0) === 0 ? 1 : h | 0
}
const semidOf = (uid: number, name: string) => semget(ipcKey(uid, name), 0, 0)

/** A hint file as the package writes it (version 2), naming this process as the supervisor. */
const hintText = (name: string, info: ServiceInfo.ServiceInfo) =>
  JSON.stringify({
    version: 2,
    name,
    generation: info.instanceId,
    state: "ready",
    supervisor: { pid: info.pid, startTime: info.startTime ?? 0 },
    info: Schema.encodeSync(ServiceInfo.ServiceInfo)(info),
    startedAt: Date.now(),
    startTimeoutMillis: 30000
  })

const { cleanup, client, newName } = harness(dir)
const extraSets: Array<number> = []
afterAll(async () => {
  await cleanup()
  for (const id of extraSets) semctl(id, 0, IPC_RMID)
})

/** These tests need to act as another user and to limit IPC: without that they fail, saying so. */
const requireTool = (what: string, args: ReadonlyArray<string>) => {
  try {
    execFileSync(args[0]!, args.slice(1))
  } catch (e) {
    throw new Error(`this test needs ${what} (${args.join(" ")} failed: ${String(e)}); run it as root on Linux`)
  }
}
const needSetpriv = () => requireTool("setpriv to switch to uid 65534", ["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "true"])
const needUnshare = () => requireTool("unshare --ipc", ["unshare", "--ipc", "sh", "-c", "echo 32000 1024000000 500 1 > /proc/sys/kernel/sem"])

describe("bad input", () => {
  it.effect("invalid names are InvalidName everywhere, before any system call", () =>
    Effect.gen(function*() {
      for (const bad of ["", "../etc/passwd", "a b", ".x", "x".repeat(65)]) {
        const e1 = yield* Effect.flip(SharedService.inspect(bad))
        assert.strictEqual(e1._tag, "InvalidName")
        const e2 = yield* Effect.flip(RefCounter.sysV().open(bad))
        assert.strictEqual(e2._tag, "InvalidName")
        const e3 = yield* Effect.flip(SharedService.forceStop(bad))
        assert.strictEqual(e3._tag, "InvalidName")
      }
    }))

  it("a corrupt hint is ignored and replaced; inspect reports it", async () => {
    const name = newName("corrupt")
    writeFileSync(join(dir, `${name}.json`), "{ not json", { mode: 0o600 })
    const status = await inspect(name)
    assert.strictEqual(status.hintError?._tag, "CorruptHint")
    const err = await Effect.runPromise(Effect.flip(SharedService.readHint(name)))
    assert.strictEqual(err._tag, "CorruptHint")
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    assert.strictEqual(got.ev, "acquired", JSON.stringify(got))
    assert.isTrue(got.started === true)
    const after = await inspect(name)
    assert.isUndefined(after.hintError)
    assert.strictEqual(after.info?.pid, got.pid)
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(got.pid as number), 15000))
  }, 60_000)

  it("a hint with a group/other-readable mode is refused", async () => {
    const name = newName("mode")
    const path = join(dir, `${name}.json`)
    writeFileSync(path, hintText(name, ServiceInfo.make({ pid: process.pid })), { mode: 0o644 })
    chmodSync(path, 0o644)
    const status = await inspect(name)
    assert.strictEqual(status.hintError?._tag, "CorruptHint")
    assert.match(status.hintError!.reason, /mode 644/)
  })

  it("a recycled pid in the hint (live pid, other start time) is not the service", async () => {
    const name = newName("pidreuse")
    // This very process is alive, but was not started at tick 1.
    const info = ServiceInfo.make({ pid: process.pid, startTime: 1 })
    writeFileSync(join(dir, `${name}.json`), hintText(name, info), { mode: 0o600 })
    assert.isFalse((await inspect(name)).running)
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    assert.isTrue(got.started === true)
    assert.notStrictEqual(got.pid, process.pid)
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(got.pid as number), 15000))
    assert.isTrue(alive(process.pid), "the sweep did not touch the recycled pid")
  }, 60_000)
})

describe("hostile environments", () => {
  it("the set removed mid-run (ipcrm): holders re-register, the service is kept, then stopped", async () => {
    const name = newName("ipcrm")
    const a = client({ ttlMs: 300 })
    const b = client({ ttlMs: 300 })
    await Promise.all([a.ready(), b.ready()])
    const ga = await a.request(`acquire ${name}`)
    assert.isTrue(await eventuallyAsync(() => inspect(name).then((s) => s.hasSupervisor), 15000))
    const id = semidOf(0, name)
    assert.isAtLeast(id, 0)
    execFileSync("ipcrm", ["-s", String(id)])
    // a's watchdog re-creates the set and re-registers its reference.
    assert.isTrue(await eventuallyAsync(() => inspect(name).then((s) => s.count === 1), 5000), "a re-registered")
    assert.notStrictEqual(semidOf(0, name), id)
    const gb = await b.request(`acquire ${name}`)
    assert.strictEqual(gb.ev, "acquired", JSON.stringify(gb))
    assert.strictEqual(gb.pid, ga.pid, "the running service was kept, not restarted")
    assert.strictEqual((await inspect(name)).count, 2)
    await new Promise((r) => setTimeout(r, 1000))
    assert.isTrue(alive(ga.pid as number))
    await a.request(`release ${name}`)
    await b.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(ga.pid as number), 15000), "stopped after the last release")
    assert.isTrue(await eventually(() => supervisors(name).length === 0, 15000), "the supervisors exited")
    assert.strictEqual(starts(dir, name).length, 1)
  }, 60_000)

  it("another user's set at our key: PermissionDenied (root bypasses the mode, so ownership is checked)", async () => {
    needSetpriv()
    const name = newName("planted")
    const key = ipcKey(0, name)
    execFileSync("setpriv", [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      process.execPath,
      "-e",
      `const k = require(${JSON.stringify(require_resolve_koffi())}); const l = k.load("libc.so.6");` +
      `if (l.func("int semget(int, int, int)")(${key}, 3, ${IPC_CREAT | 0o600}) < 0) process.exit(1)`
    ])
    const id = semidOf(0, name)
    extraSets.push(id)
    const err = await Effect.runPromise(Effect.flip(SharedService.inspect(name)))
    assert.strictEqual(err._tag, "PermissionDenied")
    assert.strictEqual((err as { errno: number }).errno, 13)
    assert.match((err as { syscall: string }).syscall, /semget.*uid 65534/)
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    assert.strictEqual(got.ev, "error")
    assert.strictEqual(got.tag, "PermissionDenied")
    assert.deepStrictEqual(starts(dir, name), [], "nothing started")
  }, 60_000)

  it("a non-root client meets a set it may not open: the kernel's EACCES is PermissionDenied", async () => {
    needSetpriv()
    const name = newName("eacces")
    const nobodyDir = mkdtempSync(join(tmpdir(), "quiesce-nobody-"))
    chownSync(nobodyDir, NOBODY, NOBODY)
    const id = semget(ipcKey(NOBODY, name, realpathSync(nobodyDir)), 3, IPC_CREAT | 0o600)
    assert.isAtLeast(id, 0)
    extraSets.push(id)
    const c = client({}, { uid: NOBODY, env: { ...process.env, QUIESCE_RUNTIME_DIR: nobodyDir } })
    await c.ready()
    const got = await c.request(`inspect ${name}`)
    assert.strictEqual(got.ev, "error", JSON.stringify(got))
    assert.strictEqual(got.tag, "PermissionDenied")
    assert.strictEqual(got.errno, 13)
  }, 60_000)

  it("IPC limits exhausted (unshare --ipc, SEMMNI = 1): LimitExceeded with ENOSPC", async () => {
    needUnshare()
    const [n1, n2] = [uniqueName("limit1"), uniqueName("limit2")]
    const out = execFileSync("unshare", [
      "--ipc",
      "sh",
      "-c",
      `echo 32000 1024000000 500 1 > /proc/sys/kernel/sem && printf 'count ${n1}\\ncount ${n2}\\n' | ` +
      `exec ${JSON.stringify(process.execPath)} --conditions=@quiesce/source --no-warnings ${JSON.stringify(fixture("client.ts"))} '{}'`
    ], { encoding: "utf8", env: process.env, timeout: 30000 })
    const events = out.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
    const first = events.find((e) => e["name"] === n1)
    const second = events.find((e) => e["name"] === n2)
    assert.strictEqual(first?.["ev"], "count", out)
    assert.strictEqual(second?.["ev"], "error", out)
    assert.strictEqual(second?.["tag"], "LimitExceeded")
    assert.match(String(second?.["message"]), /semget: ENOSPC \(errno 28\)/)
    // The namespace (and its sets) went away with the process.
  }, 60_000)
})

function require_resolve_koffi(): string {
  return createRequire(import.meta.url).resolve("koffi")
}
