/**
 * Cross-worker wake: a worker thread releases the last reference of a shared ref that the main
 * thread is running down; how long until the main thread's `waitForRundown` resumes? Compared,
 * interleaved in one process, with the raw primitive underneath (`Atomics.store` + `notify` in
 * the worker, a pending `Atomics.waitAsync` in the main thread) and with `postMessage`.
 *
 * One-way latencies, stamped with `performance.timeOrigin + performance.now()` in both threads.
 * The RundownRef figure includes resuming the waiting fiber (the raw and postMessage ones
 * resume a plain promise continuation).
 */
import { Effect } from "effect"
import { Worker } from "node:worker_threads"
import { formatNs, percentiles } from "../../../bench/harness.ts"
import { RundownRef } from "@quiesce/rundown"
import { Cmd, Slot } from "./wake-protocol.ts"

const warmup = 300
const samples = 3_000

const ref = RundownRef.makeSharedUnsafe()
const control = new SharedArrayBuffer(Slot.SIZE * 4)
const stamps = new SharedArrayBuffer(8)
const c = new Int32Array(control)
const stamp = new Float64Array(stamps)
const worker = new Worker(new URL("./wake-worker.ts", import.meta.url), {
  workerData: { handle: ref.handle, control, stamps },
  execArgv: ["--conditions=@quiesce/source"]
})
const now = () => performance.timeOrigin + performance.now()

const command = (cmd: number) => {
  Atomics.store(c, Slot.CMD, cmd)
  Atomics.add(c, Slot.SEQ, 1)
  Atomics.notify(c, Slot.SEQ)
}

/** Each returns the one-way latency in nanoseconds. */
const viaRundown = async (): Promise<number> => {
  const acks = Atomics.load(c, Slot.ACK)
  command(Cmd.ACQUIRE)
  Atomics.wait(c, Slot.ACK, acks)
  // Stamped inside the fiber, when waitForRundown returns (not after runPromise's own hop).
  const resumed = Effect.runPromise(RundownRef.waitForRundown(ref).pipe(Effect.map(now)))
  command(Cmd.RELEASE)
  const latency = (await resumed) - stamp[0]!
  Effect.runSync(RundownRef.reInit(ref))
  return latency * 1e6
}

const viaAtomics = async (): Promise<number> => {
  Atomics.store(c, Slot.FLAG, 0)
  const wait = Atomics.waitAsync(c, Slot.FLAG, 0)
  command(Cmd.NOTIFY)
  if (wait.async) await wait.value
  return (now() - stamp[0]!) * 1e6
}

const viaPostMessage = async (): Promise<number> => {
  const received = new Promise((resolve) => worker.once("message", resolve))
  command(Cmd.POST)
  await received
  return (now() - stamp[0]!) * 1e6
}

await new Promise((resolve) => worker.once("online", resolve))
const cases = [
  { name: "RundownRef.waitForRundown wake", run: viaRundown, latencies: [] as Array<number> },
  { name: "raw Atomics.notify → waitAsync", run: viaAtomics, latencies: [] as Array<number> },
  { name: "postMessage", run: viaPostMessage, latencies: [] as Array<number> }
]
for (let i = 0; i < warmup + samples; i++) {
  // Rotate the order so that no case always runs right after the same other one.
  for (let k = 0; k < cases.length; k++) {
    const entry = cases[(i + k) % cases.length]!
    const latency = await entry.run()
    if (i >= warmup) entry.latencies.push(latency)
  }
}
command(Cmd.EXIT)

const [rundown, raw, post] = cases.map((entry) => ({ ...entry, p: percentiles(entry.latencies) }))
console.log("Cross-worker wake latency (worker releases/notifies/posts → main thread resumes)")
for (const entry of [rundown!, raw!, post!]) {
  console.log(`  ${entry.name}: p50 ${formatNs(entry.p.p50)}  p90 ${formatNs(entry.p.p90)}  p99 ${formatNs(entry.p.p99)}`)
}
// Report only: the spec's cross-worker wake goal (≤ 1.2× raw, faster than postMessage) is
// stated for the project's cross-worker wake; this is RundownRef's own figure for it.
console.log(
  `  ratio vs raw Atomics (p50) ${(rundown!.p.p50 / raw!.p.p50).toFixed(3)}×` +
    `   vs postMessage (p50) ${(rundown!.p.p50 / post!.p.p50).toFixed(3)}×   report only`
)
