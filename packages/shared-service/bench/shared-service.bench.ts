/**
 * SharedService benchmarks (real kernel, real processes):
 *
 * 1. acquire + release of a running service (no health check), each iteration taking and
 *    dropping this process's kernel reference (lock, count, +1/unlock, -1), against the raw
 *    koffi semop pair (+1 SEM_UNDO, -1 SEM_UNDO) on a set of our own; p50/p90/p99 per op.
 * 2. cold start: first acquire until ready, minus the service's own start time (spawn until it
 *    prints "listening"), for the same TCP echo server, interleaved. The service reports when its
 *    process began and when it was listening, so each side's time outside the service's own
 *    start is measured within its run, without the (noisy) boot time of the service itself.
 */
import { Duration, Effect, Exit, Scope } from "effect"
import koffi from "koffi"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { compare, formatNs, freePort, percentiles } from "../../../bench/harness.ts"
import { ServiceInfo, SharedService } from "@quiesce/shared-service"

process.env["QUIESCE_RUNTIME_DIR"] = mkdtempSync(join(tmpdir(), "quiesce-bench-"))
const tag = Math.random().toString(36).slice(2, 8)

// ---- 1. acquire + release of a running service -----------------------------------------------

const name = `bench-hot-${tag}`
const service = SharedService.makeUnsafe({
  name,
  start: Effect.sync(() => {
    const child = spawn("sleep", ["300"], { detached: true, stdio: "ignore" })
    child.unref()
    return ServiceInfo.make({ pid: child.pid! })
  }),
  idleTimeToLive: Duration.minutes(5)
})
// Start it once, and measure the steady state.
await Effect.runPromise(Effect.scoped(SharedService.acquire(service)))

const acquireRelease = Effect.scoped(SharedService.acquire(service))
const hotLoop = (n: number) => {
  let i = 0
  Effect.runSync(Effect.whileLoop({ while: () => i++ < n, body: () => acquireRelease, step: () => {} }))
}

const libc = koffi.load("libc.so.6")
const semget = libc.func("int semget(int key, int nsems, int semflg)")
const semop = libc.func("int semop(int semid, void *sops, size_t nsops)")
const semctl = libc.func("int semctl(int semid, int semnum, int cmd)")
const rawId = semget(0, 1, 0o1000 | 0o600) // IPC_PRIVATE
const sembuf = (op: number) => {
  const b = new Uint8Array(6)
  const v = new DataView(b.buffer)
  v.setUint16(0, 0, true)
  v.setInt16(2, op, true)
  v.setInt16(4, 0x1000 | 0o4000, true) // SEM_UNDO | IPC_NOWAIT
  return b
}
const plus = sembuf(1)
const minus = sembuf(-1)
const rawLoop = (n: number) => {
  for (let i = 0; i < n; i++) {
    if (semop(rawId, plus, 1) !== 0 || semop(rawId, minus, 1) !== 0) throw new Error("semop failed")
  }
}

hotLoop(2000)
rawLoop(2000)
const perOp = (run: (n: number) => void, n: number) => {
  const samples: Array<number> = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    run(1)
    samples.push(Number(process.hrtime.bigint() - t))
  }
  return percentiles(samples)
}
const hotP = perOp(hotLoop, 20_000)
const rawP = perOp(rawLoop, 20_000)
console.log("SharedService acquire+release, service up (no health check), per op:")
console.log(`  SharedService: p50 ${formatNs(hotP.p50)}  p90 ${formatNs(hotP.p90)}  p99 ${formatNs(hotP.p99)}`)
console.log(`  raw koffi semop pair: p50 ${formatNs(rawP.p50)}  p90 ${formatNs(rawP.p90)}  p99 ${formatNs(rawP.p99)}`)
console.log(`  p50 ratio ${(hotP.p50 / rawP.p50).toFixed(2)}×; goal p50 ≤ 50 µs ${hotP.p50 <= 50_000 ? "✓" : "✗ MISSED"}`)

await compare({
  title: "SharedService acquire+release (service up) vs raw koffi semop pair",
  subject: { name: "SharedService", run: hotLoop },
  baseline: { name: "raw semop +1/-1", run: rawLoop },
  iterations: 2000
})

semctl(rawId, 0, 0)
// The benchmark's service has a 5-minute grace period: stop it (and its supervisor) now.
await Effect.runPromise(SharedService.forceStop(name))

// ---- 2. cold start overhead ------------------------------------------------------------------

const server = fileURLToPath(new URL("../examples/echo-server.mjs", import.meta.url))
const readiness = (text: string): { readonly origin: number; readonly ready: number } => {
  const m = /origin ([\d.]+) ready ([\d.]+)/.exec(text)
  if (m === null) throw new Error(`no readiness report in ${JSON.stringify(text)}`)
  return { origin: Number(m[1]), ready: Number(m[2]) }
}
const wallNow = () => performance.timeOrigin + performance.now()

interface Start {
  /** From the call to the moment the caller knows the service is ready. */
  readonly total: number
  /**
   * The part of `total` outside the service's own start (which the service reports: when its
   * process began, when it was listening): (call → service process began) + (listening →
   * caller knows). Unlike `total`, it does not carry the service's boot time, the noisiest part
   * on a shared machine.
   */
  readonly outside: number
}

/** The service alone: spawn it and wait until it prints "listening". */
const rawStart = async (): Promise<Start> => {
  const port = await freePort()
  const t0 = wallNow()
  const child = spawn(process.execPath, [server, String(port)], { stdio: ["ignore", "pipe", "ignore"] })
  const line = await new Promise<string>((resolve) =>
    child.stdout.on("data", (d: Buffer) => d.toString().includes("listening") && resolve(d.toString()))
  )
  const t1 = wallNow()
  child.kill("SIGKILL")
  const r = readiness(line)
  return { total: t1 - t0, outside: (r.origin - t0) + (t1 - r.ready) }
}

/** The same service through `SharedService.command` + `acquire` (lock, owner, spawn of supervisor and service, tcp readiness, hint). */
const sharedStart = async (round: number): Promise<Start> => {
  const port = await freePort()
  const n = `bench-cold-${tag}-${round}`
  const svc = await Effect.runPromise(SharedService.command({
    name: n,
    command: `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(server)} ${port}`,
    port,
    ready: SharedService.tcp(port),
    idleTimeToLive: Duration.seconds(60)
  }))
  const scope = Effect.runSync(Scope.make())
  const t0 = wallNow()
  await Effect.runPromise(SharedService.acquire(svc).pipe(Scope.provide(scope)))
  const t1 = wallNow()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const log = readFileSync(join(process.env["QUIESCE_RUNTIME_DIR"]!, `${n}.log`), "utf8")
  await Effect.runPromise(SharedService.forceStop(n))
  const r = readiness(log)
  return { total: t1 - t0, outside: (r.origin - t0) + (t1 - r.ready) }
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const ROUNDS = 21
const raws: Array<Start> = []
const shareds: Array<Start> = []
await rawStart()
for (let i = 0; i < ROUNDS; i++) {
  if (i % 2 === 0) {
    raws.push(await rawStart())
    shareds.push(await sharedStart(i))
  } else {
    shareds.push(await sharedStart(i))
    raws.push(await rawStart())
  }
}
const paired = median(shareds.map((s, i) => s.total - raws[i]!.total))
const overhead = median(shareds.map((s) => s.outside)) - median(raws.map((s) => s.outside))
console.log(`Cold start: first acquire until ready, minus the service's own start time (${ROUNDS} interleaved rounds):`)
console.log(
  `  service alone (spawn → "listening"): median ${median(raws.map((s) => s.total)).toFixed(1)} ms ` +
    `(outside its own start: ${median(raws.map((s) => s.outside)).toFixed(1)} ms)`
)
console.log(
  `  SharedService.acquire (lock, owner, spawn, tcp ready, hint): median ${median(shareds.map((s) => s.total)).toFixed(1)} ms ` +
    `(outside the service's own start: ${median(shareds.map((s) => s.outside)).toFixed(1)} ms)`
)
console.log(`  end-to-end difference, median of interleaved pairs (noisy: carries two boots): ${paired.toFixed(1)} ms`)
console.log(
  `  overhead = difference of the parts outside the service's own start: ${overhead.toFixed(1)} ms; ` +
    `goal ≤ 20 ms ${overhead <= 20 ? "✓" : "✗ MISSED"}`
)
