/**
 * What a red-team review (with only the README and the public API) broke, each now a test with
 * real processes: runtime files deleted under a live service, in-process supervision across
 * processes, a FIFO planted as the hint, a full disk under a running supervisor, a listener that
 * stops or changes hands behind a healthy-looking pid, a foreign listener on the readiness port,
 * `ipcrm` with a blocked holder or no free set, refused directories leaking sets, looking that
 * creates sets, and a service whose last words are one endless line.
 */
import { RefCounter, SharedService } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { alive, Client, eventually, fixture, freePort, harness, inspect, sleep, starts, supervisors } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-adversary-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { cleanup, client, newName, names } = harness(dir)
const mounts: Array<string> = []
afterAll(async () => {
  for (const name of names) await Effect.runPromise(Effect.ignore(SharedService.forceStop(name, { timeout: "1 second" })))
  await cleanup()
  for (const m of mounts) {
    try {
      execFileSync("umount", ["-l", m])
    } catch {
      // not mounted
    }
  }
})

const NOBODY = 65534
const node = JSON.stringify(process.execPath)
const serve = (port: number) => `${node} ${JSON.stringify(fixture("server.mjs"))} ${port} /dev/null`
const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

/** Live processes of this user carrying `name`'s marker (a service's tree, and its supervisor). */
const marked = (runtime: string, name: string): Array<number> => {
  const needle = `QUIESCE_SERVICE_ID=${realpathSync(runtime)}/${name}`
  return execFileSync("ls", ["/proc"], { encoding: "utf8" }).split("\n").filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    try {
      return alive(pid) && readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").includes(needle)
    } catch {
      return false
    }
  })
}
const servicesOf = (runtime: string, name: string) => {
  const sups = supervisors(name)
  return marked(runtime, name).filter((pid) => !sups.includes(pid))
}

const stopped = async (pid: number) => {
  process.kill(pid, "SIGSTOP")
  const state = () => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0]
  assert.isTrue(await eventually(() => state() === "T", 5000), `pid ${pid} stopped`)
}

describe("what the red team broke", () => {
  it.each(["owner", "hint", "both", "dir"] as const)(
    "runtime files deleted under a live service (%s): never two live instances",
    async (what) => {
      const name = newName(`rm-${what}`)
      const [a, b] = [client({ ttlMs: 300 }), client({ ttlMs: 300 })]
      await Promise.all([a.ready(), b.ready()])
      const ga = await a.request(`acquire ${name}`)
      assert.strictEqual(ga.ev, "acquired", JSON.stringify(ga))
      if (what === "owner" || what === "both") rmSync(join(dir, `${name}.owner`))
      if (what === "hint" || what === "both") rmSync(join(dir, `${name}.json`))
      if (what === "dir") {
        for (const f of ["owner", "json", "log"]) rmSync(join(dir, `${name}.${f}`), { force: true })
      }
      const gb = await b.request(`acquire ${name}`)
      assert.strictEqual(gb.ev, "acquired", JSON.stringify(gb))
      const live = starts(dir, name).filter(alive)
      assert.isAtMost(live.length, 1, `live instances: ${live.join(", ")}`)
      assert.include(live, gb.pid as number, "b holds the live one")
      await a.request(`release ${name}`)
      await b.request(`release ${name}`)
      assert.isTrue(await eventually(() => starts(dir, name).every((p) => !alive(p)) && supervisors(name).length === 0, 20_000))
    },
    60_000
  )

  it("in-process supervision: a second process joins (the owner stamps itself), and it is stopped after the last", async () => {
    const name = newName("inproc")
    const [a, b] = [client({ ttlMs: 300, inProcess: true }), client({ ttlMs: 300, inProcess: true })]
    await Promise.all([a.ready(), b.ready()])
    const ga = await a.request(`acquire ${name}`)
    const t0 = Date.now()
    const gb = await b.request(`acquire ${name}`, 20_000)
    assert.strictEqual(gb.ev, "acquired", JSON.stringify(gb))
    assert.strictEqual(gb.pid, ga.pid, "joined, not restarted")
    assert.isBelow(Date.now() - t0, 10_000)
    await b.request(`release ${name}`)
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(ga.pid as number), 15_000), "a's fiber stopped it")
    assert.isTrue(alive(a.pid) && alive(b.pid), "no client process was signalled")
  }, 60_000)

  it("a FIFO planted as the hint neither hangs a client nor inspect; it is replaced", async () => {
    const name = newName("fifo")
    execFileSync("mkfifo", ["-m", "600", join(dir, `${name}.json`)])
    const status = await inspect(name)
    assert.strictEqual(status.hintError?._tag, "CorruptHint")
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`, 20_000)
    assert.strictEqual(got.ev, "acquired", JSON.stringify(got))
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(got.pid as number), 15_000))
  }, 60_000)

  it("a runtime directory that fills up while the service runs costs log lines, not the supervisor or the service", async () => {
    const name = newName("full")
    const mnt = mkdtempSync(join(tmpdir(), "quiesce-full-"))
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt])
    mounts.push(mnt)
    const runtime = join(mnt, "rt")
    mkdirSync(runtime, { mode: 0o700 })
    const port = await freePort()
    // Once it is up, the service's output fills the directory (its log is there).
    const c = new Client({ command: `${serve(port)} & sleep 2; head -c 2000000 /dev/zero; wait`, port, ready: "tcp", ttlMs: 0 }, {
      env: { ...process.env, QUIESCE_RUNTIME_DIR: runtime }
    })
    try {
      await c.ready()
      const got = await c.request(`acquire ${name}`, 30_000)
      assert.strictEqual(got.ev, "acquired", JSON.stringify(got))
      await sleep(4000)
      assert.isTrue(alive(got.pid as number), "the service runs on")
      assert.strictEqual(supervisors(name).length, 1, "its supervisor too")
      await c.request(`release ${name}`)
      assert.isTrue(await eventually(() => marked(runtime, name).length === 0, 20_000), "and it is stopped after the last release")
    } finally {
      c.kill()
    }
  }, 60_000)

  it("a healthy-looking pid whose listener is stopped, or was replaced by another user's, is not joined", async () => {
    // A wrapper (no exec): the pid is the shell, the listener its child, as with `npm run dev`.
    const name = newName("wrapper")
    const port = await freePort()
    const [a, b] = [
      client({ command: `${serve(port)}; echo done`, port, ready: "tcp", ttlMs: 10_000, healthTimeoutMs: 1000 }),
      client({ command: `${serve(port)}; echo done`, port, ready: "tcp", ttlMs: 10_000, healthTimeoutMs: 1000 })
    ]
    await Promise.all([a.ready(), b.ready()])
    const ga = await a.request(`acquire ${name}`)
    assert.strictEqual(ga.ev, "acquired", JSON.stringify(ga))
    await a.request(`release ${name}`)
    const listener = servicesOf(dir, name).find((pid) => pid !== ga.pid && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("server.mjs"))
    assert.isDefined(listener)
    await stopped(listener!)
    const gb = await b.request(`acquire ${name}`, 30_000)
    assert.strictEqual(gb.ev, "acquired", JSON.stringify(gb))
    assert.isTrue(gb.started === true, "replaced, not joined")
    await b.request(`release ${name}`)
    await run(SharedService.forceStop(name))

    // The listener dies and another user binds the port: the next client must not join it.
    const other = newName("replaced")
    const port2 = await freePort()
    const cfg = { command: `${serve(port2)}; exec sleep 300`, port: port2, ready: "tcp", ttlMs: 10_000, healthTimeoutMs: 1000 }
    const [c, d] = [client(cfg), client(cfg)]
    await Promise.all([c.ready(), d.ready()])
    const gc = await c.request(`acquire ${other}`)
    assert.strictEqual(gc.ev, "acquired", JSON.stringify(gc))
    const server = servicesOf(dir, other).find((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("server.mjs"))!
    process.kill(server, "SIGKILL")
    assert.isTrue(await eventually(() => !alive(server), 5000))
    const squatter = spawn("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, "-e",
      `require("net").createServer().listen(${port2}, "127.0.0.1", () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] })
    try {
      await new Promise((r) => squatter.stdout!.once("data", r))
      const gd = await d.request(`acquire ${other}`, 30_000)
      assert.strictEqual(gd.ev, "error", JSON.stringify(gd))
      assert.strictEqual(gd.tag, "PortInUse", JSON.stringify(gd))
    } finally {
      squatter.kill("SIGKILL")
    }
  }, 90_000)

  it("a foreign listener on the readiness port (not the service's port) is PortInUse, not readiness", async () => {
    const name = newName("readyport")
    const [port, readyPort] = [await freePort(), await freePort()]
    const squatter = spawn("setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, "-e",
      `require("http").createServer((q, s) => s.end("foreign")).listen(${readyPort}, "127.0.0.1", () => console.log("up"))`], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    try {
      await new Promise((r) => squatter.stdout!.once("data", r))
      const service = await run(SharedService.command({
        name,
        command: `exec ${serve(port)}`,
        port,
        ready: SharedService.http(`http://127.0.0.1:${readyPort}/`)
      }))
      const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(service))))
      assert.strictEqual(err._tag, "PortInUse", String(err))
      if (err._tag === "PortInUse") assert.strictEqual(err.port, readyPort)
    } finally {
      squatter.kill("SIGKILL")
    }
  }, 60_000)

  it("an ipcrm while the only holder's event loop is blocked for 3 s keeps the service (it re-registers)", async () => {
    const name = newName("ipcrm-busy")
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    assert.isTrue(await eventually(() => supervisors(name).length === 1, 10_000))
    await sleep(1500) // the supervisor has booted and waits for zero
    const busy = a.request("busy 3000", 30_000)
    await sleep(200)
    execFileSync("ipcrm", ["-S", String(ipcKeyOf(name))])
    await busy
    await sleep(1500)
    assert.isTrue(alive(got.pid as number), "still running for its holder")
    assert.strictEqual((await inspect(name)).count, 1, "re-registered")
    await a.request(`release ${name}`)
    assert.isTrue(await eventually(() => !alive(got.pid as number), 20_000))
  }, 60_000)

  it("an ipcrm when the kernel has no free set: the supervisor keeps the service and tries again", async () => {
    const out = execFileSync("unshare", ["--ipc", process.execPath, "--conditions=@quiesce/source", "--no-warnings", fixture("no-free-set.ts")], {
      encoding: "utf8",
      env: { ...process.env, QUIESCE_RUNTIME_DIR: mkdtempSync(join(tmpdir(), "quiesce-nofree-")) },
      timeout: 60_000
    })
    assert.include(out, "kept while no set could be made: true", out)
    assert.include(out, "re-created and stopped after the release: true", out)
  }, 90_000)

  it("a refused runtime directory (a planted link) leaves no semaphore set", async () => {
    const name = newName("refused")
    const victim = join(mkdtempSync(join(tmpdir(), "quiesce-victim-")), "victim")
    writeFileSync(victim, "x")
    symlinkSync(victim, join(dir, `${name}.owner`))
    const a = client({ ttlMs: 0 })
    await a.ready()
    const got = await a.request(`acquire ${name}`)
    assert.strictEqual(got.tag, "RuntimeDirectoryUnusable", JSON.stringify(got))
    assert.isUndefined(await run(RefCounter.sysV().openExisting(name)), "no set left")
    rmSync(join(dir, `${name}.owner`))
  }, 30_000)

  it("count, like inspect, creates nothing", async () => {
    const name = newName("count")
    const service = await run(SharedService.command({ name, command: "exec sleep 1" }))
    assert.strictEqual(await run(SharedService.count(service)), 0)
    assert.isUndefined(await run(RefCounter.sysV().openExisting(name)))
  })

  it("a failed start's output is its last lines, bounded, however long the service's last line", async () => {
    const name = newName("hugeline")
    const service = await run(SharedService.command({ name, command: "head -c 30000000 /dev/zero | tr '\\0' x; exit 1", ready: SharedService.tcp(1) }))
    const err = await run(Effect.flip(Effect.scoped(SharedService.acquire(service))))
    assert.strictEqual(err._tag, "StartFailed")
    if (err._tag !== "StartFailed") return
    assert.isBelow(err.output?.length ?? 0, 20 * 402, "at most 20 lines of 400 characters")
  }, 60_000)
})

/** The IPC key of `name` in this file's runtime directory (the README's formula). */
const ipcKeyOf = (name: string): number => {
  const s = `quiesce:${process.getuid!()}:${realpathSync(dir)}:${name}`
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return (h | 0) === 0 ? 1 : h | 0
}
