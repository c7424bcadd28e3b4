/**
 * SharedService benchmarks (real kernel, real processes):
 *
 * 1. acquire + release of a running service (no health check), each iteration taking and
 *    dropping this process's kernel reference (lock, count, +1/unlock, -1), against the raw
 *    koffi semop pair (+1 SEM_UNDO, -1 SEM_UNDO) on a set of our own; p50/p90/p99 per op.
 * 2. cold start: first acquire until ready, minus the service's own start time (spawn until it
 *    prints "listening"), for the same TCP echo server; medians of interleaved rounds.
 */
import { NodeServices } from "@effect/platform-node"
import { Duration, Effect, Exit, Scope } from "effect"
import koffi from "koffi"
import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { compare, formatNs, percentiles } from "../../../bench/harness.ts"
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
// Start it once (and let its reaper boot) before measuring.
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
await Effect.runPromise(SharedService.forceStop(name, { removeSet: true }))

// ---- 2. cold start overhead ------------------------------------------------------------------

const server = fileURLToPath(new URL("../examples/echo-server.mjs", import.meta.url))
const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

/** The service's own start time: spawn until it prints "listening". */
const rawStart = async (): Promise<number> => {
  const port = await freePort()
  const t0 = performance.now()
  const child = spawn(process.execPath, [server, String(port)], { stdio: ["ignore", "pipe", "ignore"] })
  await new Promise<void>((resolve) => child.stdout.on("data", (d: Buffer) => d.toString().includes("listening") && resolve()))
  const t = performance.now() - t0
  child.kill("SIGKILL")
  return t
}

const sharedStart = async (round: number): Promise<number> => {
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
  const t0 = performance.now()
  await Effect.runPromise(SharedService.acquire(svc).pipe(Scope.provide(scope), Effect.provide(NodeServices.layer)))
  const t = performance.now() - t0
  await Effect.runPromise(Scope.close(scope, Exit.void))
  await Effect.runPromise(SharedService.forceStop(n, { removeSet: true }))
  return t
}

const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
const raws: Array<number> = []
const shareds: Array<number> = []
await rawStart()
for (let i = 0; i < 7; i++) {
  if (i % 2 === 0) {
    raws.push(await rawStart())
    shareds.push(await sharedStart(i))
  } else {
    shareds.push(await sharedStart(i))
    raws.push(await rawStart())
  }
}
const overhead = median(shareds) - median(raws)
console.log("Cold start: first acquire until ready, minus the service's own start time (median of 7, interleaved):")
console.log(`  service alone (spawn → "listening"): ${median(raws).toFixed(1)} ms`)
console.log(`  SharedService.acquire (lock, spawn detached, tcp ready, hint, reaper): ${median(shareds).toFixed(1)} ms`)
console.log(`  overhead ${overhead.toFixed(1)} ms; goal ≤ 20 ms ${overhead <= 20 ? "✓" : "✗ MISSED"}`)
