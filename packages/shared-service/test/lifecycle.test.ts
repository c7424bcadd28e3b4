/**
 * The lifecycle guarantees against the adversary of issue 8, with real processes: a client that
 * arrives while the previous instance is being stopped, starts that fail at once, leaked sets,
 * a hostile runtime directory (another user's, links, read-only, full), a SIGSTOPped service, a
 * grace period that must run from the last release, a service that daemonizes, a port already
 * held by someone else, and the small ones (relative directories, names on every entry point).
 */
import { RefCounter, SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import { execFileSync, spawn } from "node:child_process"
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, Client, eventually, eventuallyAsync, fixture, freePort, harness, inspect, sleep, starts, supervisors } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-lifecycle-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { cleanup, client, newName, names } = harness(dir)
const mounts: Array<string> = []
afterAll(async () => {
  for (const name of names) await Effect.runPromise(Effect.ignore(SharedService.forceStop(name, { timeout: "1 second" })))
  await cleanup()
  for (const m of mounts) {
    try {
      execFileSync("umount", [m])
    } catch {
      // not mounted
    }
  }
})

const NOBODY = 65534
const node = JSON.stringify(process.execPath)
const server = (port: number, startsFile: string, termDelayMs = 0) =>
  `exec ${node} ${JSON.stringify(fixture("server.mjs"))} ${port} ${JSON.stringify(startsFile)} ${termDelayMs}`

/** A `command` service running the fixture server. */
const serverService = (name: string, port: number, options?: { readonly ttl?: number; readonly termDelayMs?: number; readonly healthTimeout?: number }) =>
  SharedService.command({
    name,
    command: server(port, join(dir, `${name}.starts`), options?.termDelayMs),
    port,
    ready: SharedService.tcp(port),
    idleTimeToLive: Duration.millis(options?.ttl ?? 0),
    stopTimeout: "5 seconds",
    ...(options?.healthTimeout === undefined ? {} : { healthTimeout: Duration.millis(options.healthTimeout) })
  })

/** Acquires in a scope of its own: the handle, and how to release it. */
const hold = <E>(service: SharedService.SharedService<E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const handle = yield* SharedService.acquire(service).pipe(Scope.provide(scope))
    return { handle, release: Scope.close(scope, Exit.void) }
  })

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

/** Eventually nothing of `name` is left: no set, no hint, no owner file, no supervisor. */
const nothingLeft = (name: string, timeoutMs = 20_000) =>
  eventuallyAsync(async () => (await inspect(name)).state === "stopped" && supervisors(name).length === 0, timeoutMs)

/** SIGSTOPs `pid` and waits until the kernel has stopped it (the target stops itself when it next runs). */
const stop = async (pid: number) => {
  process.kill(pid, "SIGSTOP")
  const state = () => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0]
  assert.isTrue(await eventually(() => state() === "T", 5000), `pid ${pid} stopped`)
}

/** Processes of this user whose environment carries `name`'s marker. */
const marked = (name: string): Array<number> => {
  const needle = `QUIESCE_SERVICE_ID=${realpathSync(dir)}/${name}`
  const out: Array<number> = []
  for (const e of execFileSync("ls", ["/proc"], { encoding: "utf8" }).split("\n")) {
    if (!/^\d+$/.test(e) || !alive(Number(e))) continue
    try {
      if (readFileSync(`/proc/${e}/environ`, "utf8").split("\0").includes(needle)) out.push(Number(e))
    } catch {
      // gone, or not ours
    }
  }
  return out
}

/** Writes to `path` until the file system is full. */
const fill = (path: string) => {
  try {
    for (let i = 0; i < 1024; i++) appendFileSync(path, Buffer.alloc(4096))
  } catch {
    // full
  }
}

describe("issue 8: a lifecycle that cannot orphan, leak or be hijacked", () => {
  it("1. a client arriving while the previous instance is being stopped waits, then starts a fresh generation with its own supervisor", async () => {
    const name = newName("arrive-stopping")
    const port = await freePort()
    // The service closes its port at once on SIGTERM but takes 3 s to exit.
    const service = await run(serverService(name, port, { ttl: 500, termDelayMs: 3000 }))
    const a = await run(hold(service))
    const [firstSupervisor] = supervisors(name)
    await run(a.release)
    const termFile = join(dir, `${name}.starts.term`)
    assert.isTrue(await eventually(() => existsSync(termFile), 15_000), "the supervisor began the stop")
    const t0 = Date.now()
    const b = await run(hold(service))
    assert.isTrue(b.handle.started, "a fresh generation")
    assert.notStrictEqual(b.handle.info.pid, a.handle.info.pid)
    assert.isAtLeast(Date.now() - t0, 1000, "it waited for the stop to finish under the lock")
    assert.isFalse(alive(a.handle.info.pid), "never two instances")
    const second = supervisors(name)
    assert.strictEqual(second.length, 1)
    assert.notStrictEqual(second[0], firstSupervisor, "the new generation has its own supervisor")
    await run(b.release)
    assert.isTrue(await eventually(() => !alive(b.handle.info.pid), 20_000), "the new instance stops after the last release")
    assert.isTrue(await nothingLeft(name), "nothing left")
  }, 60_000)

  it("2+3. starts that fail at once leave nothing behind (no set, no files, no process), and the next start works", async () => {
    const failing = Array.from({ length: 6 }, (_, i) => newName(`fail${i}`))
    for (const name of failing) {
      const service = await run(SharedService.command({ name, command: "echo 'cannot start: bad config' >&2; exit 7", ready: SharedService.tcp(1) }))
      const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(service))))
      assert.strictEqual(err._tag, "StartFailed")
      if (err._tag !== "StartFailed") continue
      assert.strictEqual(err.status, "exited with status 7")
      assert.include(err.output ?? "", "cannot start: bad config", "the service's own output is in the error")
    }
    for (const name of failing) assert.isTrue(await nothingLeft(name), `${name}: nothing left`)
    assert.deepStrictEqual((await run(SharedService.list)).map((s) => s.name).filter((n) => failing.includes(n)), [])
    // The same name then starts normally.
    const port = await freePort()
    const ok = await run(hold(await run(serverService(failing[0]!, port))))
    assert.isTrue(ok.handle.started)
    await run(ok.release)
    assert.isTrue(await nothingLeft(failing[0]!))
  }, 90_000)

  it("4. another user's runtime directory, or links planted in ours: a typed error naming the path and owner; nothing is written through them", async () => {
    const name = newName("hijack")
    const tmp = mkdtempSync(join(tmpdir(), "quiesce-fallback-"))
    const victim = join(tmp, "victim")
    writeFileSync(victim, "precious\n", { mode: 0o600 })
    // The fallback directory (<tmpdir>/quiesce-<uid>) squatted by uid 65534, with links to the victim.
    const squatted = join(tmp, `quiesce-${process.getuid!()}`)
    mkdirSync(squatted, { mode: 0o777 })
    for (const f of ["owner", "json", "log", "starts"]) symlinkSync(victim, join(squatted, `${name}.${f}`))
    chownSync(squatted, NOBODY, NOBODY)
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp }
    delete env["QUIESCE_RUNTIME_DIR"]
    delete env["XDG_RUNTIME_DIR"]
    const c = new Client({ startsDir: squatted }, { env })
    try {
      await c.ready()
      const got = await c.request(`acquire ${name}`)
      assert.strictEqual(got.ev, "error", JSON.stringify(got))
      assert.strictEqual(got.tag, "RuntimeDirectoryUnusable")
      assert.include(String(got.message), squatted)
      assert.include(String(got.message), `owned by uid ${NOBODY}`)
    } finally {
      c.kill()
    }
    assert.strictEqual(readFileSync(victim, "utf8"), "precious\n", "the victim's file is untouched")
    // Our own directory, with links planted in it: refused file by file (O_NOFOLLOW).
    const ours = mkdtempSync(join(tmpdir(), "quiesce-planted-"))
    for (const f of ["owner", "json", "log"]) symlinkSync(victim, join(ours, `${name}.${f}`))
    const d = new Client({ startsDir: ours }, { env: { ...process.env, QUIESCE_RUNTIME_DIR: ours } })
    try {
      await d.ready()
      const got = await d.request(`acquire ${name}`)
      assert.strictEqual(got.ev, "error", JSON.stringify(got))
      assert.strictEqual(got.tag, "RuntimeDirectoryUnusable")
      assert.include(String(got.message), "symbolic link")
    } finally {
      d.kill()
    }
    assert.strictEqual(readFileSync(victim, "utf8"), "precious\n", "the victim's file is untouched")
    assert.deepStrictEqual(starts(ours, name), [], "nothing was started")
  }, 60_000)

  it("5. a SIGSTOPped service fails its health check within healthTimeout (HTTP and TCP alike) and is replaced", async () => {
    const name = newName("stopped")
    const port = await freePort()
    const service = await run(SharedService.command({
      name,
      command: `exec ${node} -e "require('http').createServer((q, s) => s.end('ok')).listen(${port}, '127.0.0.1')"`,
      port,
      ready: SharedService.http(`http://127.0.0.1:${port}/`),
      healthTimeout: "1 second",
      idleTimeToLive: "10 seconds"
    }))
    const a = await run(hold(service))
    await run(a.release)
    await stop(a.handle.info.pid)
    const t0 = Date.now()
    const b = await run(hold(service))
    const took = Date.now() - t0
    assert.isTrue(b.handle.started, "replaced")
    assert.isBelow(took, 15_000, "bounded: no 300 s wait on a stopped server")
    assert.isTrue(await eventually(() => !alive(a.handle.info.pid), 10_000), "the stopped instance was stopped for good")
    // A TCP check would pass on a stopped process (the kernel accepts for it): its state is checked.
    const tcpName = newName("stopped-tcp")
    const tcpPort = await freePort()
    const tcp = await run(serverService(tcpName, tcpPort, { ttl: 10_000, healthTimeout: 1000 }))
    const c = await run(hold(tcp))
    await run(c.release)
    await stop(c.handle.info.pid)
    const d = await run(hold(tcp))
    assert.isTrue(d.handle.started)
    assert.notStrictEqual(d.handle.info.pid, c.handle.info.pid)
    await run(b.release)
    await run(d.release)
    await run(SharedService.forceStop(name))
    await run(SharedService.forceStop(tcpName))
    assert.isTrue(await nothingLeft(name))
    assert.isTrue(await nothingLeft(tcpName))
  }, 90_000)

  it("6. a read-only or full runtime directory is found before anything starts: a typed error with the real errno", async () => {
    const name = newName("rofs")
    for (const [options, errno, code] of [["ro", 30, "EROFS"], ["size=16k", 28, "ENOSPC"]] as const) {
      const mnt = mkdtempSync(join(tmpdir(), "quiesce-mnt-"))
      execFileSync("mount", ["-t", "tmpfs", "-o", `${options === "ro" ? "size=64k" : options},mode=0700`, "tmpfs", mnt])
      mounts.push(mnt)
      const runtime = join(mnt, "rt")
      mkdirSync(runtime, { mode: 0o700 })
      if (options === "ro") execFileSync("mount", ["-o", "remount,ro", mnt])
      else fill(join(mnt, "filler"))
      const startsDir = mkdtempSync(join(tmpdir(), "quiesce-starts-"))
      const c = new Client({ startsDir, commandNeverReadyPort: 1 }, { env: { ...process.env, QUIESCE_RUNTIME_DIR: runtime } })
      try {
        await c.ready()
        const got = await c.request(`acquire ${name}`)
        assert.strictEqual(got.ev, "error", JSON.stringify(got))
        assert.strictEqual(got.tag, "RuntimeDirectoryUnusable", JSON.stringify(got))
        assert.strictEqual(got.errno, errno, JSON.stringify(got))
        assert.include(String(got.message), code)
      } finally {
        c.kill()
      }
      assert.deepStrictEqual(starts(startsDir, name), [], `${code}: the service was never started`)
      assert.deepStrictEqual(supervisors(name), [], `${code}: no supervisor`)
    }
  }, 60_000)

  it("7. acquisitions around grace expiry never fail with SemaphoreSetRemoved (they retry on the fresh set)", async () => {
    const name = newName("storm-expiry")
    const clients = Array.from({ length: 4 }, () => client({ ttlMs: 50 }))
    await Promise.all(clients.map((c) => c.ready()))
    const errors: Array<string> = []
    let acquisitions = 0
    const end = Date.now() + 6000
    await Promise.all(clients.map(async (c, i) => {
      while (Date.now() < end) {
        const got = await c.request(`acquire ${name}`, 60_000)
        if (got.ev !== "acquired") errors.push(JSON.stringify(got))
        else acquisitions++
        await c.request(`release ${name}`)
        // Some come back just as the grace period of 50 ms runs out.
        await sleep(30 + ((i * 17) % 40))
      }
    }))
    assert.deepStrictEqual(errors, [])
    assert.isAbove(acquisitions, 20)
    for (const c of clients) c.kill()
    assert.isTrue(await nothingLeft(name))
  }, 90_000)

  it("8. the grace period runs from the last release, not from the first", async () => {
    const name = newName("grace")
    const port = await freePort()
    const service = await run(serverService(name, port, { ttl: 3000 }))
    const a = await run(hold(service))
    await run(a.release)
    await sleep(1000)
    const b = await run(hold(service))
    assert.isFalse(b.handle.started, "kept during the grace period")
    await sleep(500)
    await run(b.release)
    const releasedAt = Date.now()
    // a's grace would have ended 3 s after its release (1.5 s ago + 1.5 s): it must not count.
    await sleep(2500)
    assert.isTrue(alive(b.handle.info.pid), "still running 2.5 s after the last release (grace 3 s)")
    assert.isTrue(await eventually(() => !alive(b.handle.info.pid), 20_000), "stopped after it")
    assert.isAtLeast(Date.now() - releasedAt, 2900)
    assert.isTrue(await nothingLeft(name))
  }, 60_000)

  it("9. a command that daemonizes (server & exit 0): StartFailed, and its whole tree is killed", async () => {
    const name = newName("daemon")
    const port = await freePort()
    const service = await run(SharedService.command({
      name,
      // The shell exits at once; what it forked lives on (and would listen in 2 s): the start
      // fails whatever the machine's speed, and the forked tree must be killed with it.
      command: `(sleep 2; ${server(port, join(dir, `${name}.starts`))}) & exit 0`,
      ready: SharedService.tcp(port),
      port
    }))
    const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(service))))
    assert.strictEqual(err._tag, "StartFailed", String(err))
    assert.isTrue(await eventually(() => marked(name).length === 0, 15_000), "no process of its tree is left")
    // The port is free again: a listener bound to it would make this fail.
    await new Promise<void>((resolve, reject) => {
      const s = createServer().once("error", reject).listen(port, "127.0.0.1", () => s.close(() => resolve()))
    })
    assert.isTrue(await nothingLeft(name))
  }, 60_000)

  it("10. a port already held by another process (another user's too) is PortInUse at once, naming the holder", async () => {
    for (const uid of [process.getuid!(), NOBODY]) {
      const name = newName(`port-${uid}`)
      const port = await freePort()
      const holder = spawn("setpriv", [
        `--reuid=${uid}`,
        `--regid=${uid}`,
        "--clear-groups",
        process.execPath,
        "-e",
        `require("net").createServer().listen(${port}, "127.0.0.1", () => console.log("up"))`
      ], { stdio: ["ignore", "pipe", "inherit"] })
      try {
        await new Promise((r) => holder.stdout!.once("data", r))
        const service = await run(serverService(name, port))
        const t0 = Date.now()
        const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(service))))
        assert.strictEqual(err._tag, "PortInUse", String(err))
        if (err._tag !== "PortInUse") continue
        assert.isBelow(Date.now() - t0, 5000, "at once, not after a start timeout")
        assert.strictEqual(err.port, port)
        assert.strictEqual(err.uid, uid)
        assert.strictEqual(err.pid, holder.pid)
        assert.deepStrictEqual(starts(dir, name), [], "nothing was started")
        assert.isTrue(await nothingLeft(name))
      } finally {
        holder.kill("SIGKILL")
      }
    }
  }, 60_000)

  it("11. relative runtime directories and bad names are refused on every entry point", async () => {
    const name = newName("relative")
    const saved = { ...process.env }
    try {
      process.env["QUIESCE_RUNTIME_DIR"] = "relative/dir"
      const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(await run(serverService(name, 1))))))
      assert.strictEqual(err._tag, "RuntimeDirectoryUnusable")
      assert.include(err.message, "relative")
      assert.isFalse(existsSync(join(process.cwd(), "relative")), "nothing was created relative to the working directory")
      // A relative XDG_RUNTIME_DIR is ignored, as the XDG spec says.
      delete process.env["QUIESCE_RUNTIME_DIR"]
      process.env["XDG_RUNTIME_DIR"] = "run/user"
      assert.strictEqual(SharedService.runtimeDirectory(), join(tmpdir(), `quiesce-${process.getuid!()}`))
    } finally {
      process.env["QUIESCE_RUNTIME_DIR"] = saved["QUIESCE_RUNTIME_DIR"]!
      if (saved["XDG_RUNTIME_DIR"] === undefined) delete process.env["XDG_RUNTIME_DIR"]
      else process.env["XDG_RUNTIME_DIR"] = saved["XDG_RUNTIME_DIR"]
    }
    // Looking creates nothing: no set, no file.
    const unseen = newName("unseen")
    assert.strictEqual((await inspect(unseen)).state, "stopped")
    assert.isUndefined(await run(RefCounter.sysV().openExisting(unseen)), "inspect created no set")
    assert.isFalse(existsSync(join(dir, `${unseen}.owner`)) || existsSync(join(dir, `${unseen}.json`)), "nor a file")
    for (const bad of ["../x", "x/../../y", ".hidden", ""]) {
      for (const effect of [
        SharedService.readHint(bad),
        SharedService.inspect(bad),
        SharedService.forceStop(bad),
        SharedService.remove(bad),
        SharedService.prepareExec(bad)
      ]) {
        const err = await run(Effect.flip(effect as Effect.Effect<unknown, { readonly _tag: string }>))
        assert.strictEqual(err._tag, "InvalidName", bad)
      }
    }
  }, 30_000)
})
