/**
 * The worker side of wake.bench.ts. It blocks (Atomics.wait is fine in a worker) until the
 * main thread posts a command, and stamps the moment it wakes the main thread up.
 */
import { Effect } from "effect"
import { parentPort, workerData } from "node:worker_threads"
import { RundownRef } from "@quiesce/rundown"
import { Cmd, Slot } from "./wake-protocol.ts"

const { handle, control, stamps } = workerData as {
  handle: unknown
  control: SharedArrayBuffer
  stamps: SharedArrayBuffer
}
const c = new Int32Array(control)
const stamp = new Float64Array(stamps)
const ref = RundownRef.fromSharedUnsafe(handle)
const now = () => performance.timeOrigin + performance.now()

let guard: RundownRef.RundownGuard | undefined
let seen = 0
while (true) {
  Atomics.wait(c, Slot.SEQ, seen)
  seen = Atomics.load(c, Slot.SEQ)
  const cmd = Atomics.load(c, Slot.CMD)
  if (cmd === Cmd.EXIT) break
  switch (cmd) {
    case Cmd.ACQUIRE:
      guard = Effect.runSync(RundownRef.tryAcquire(ref))
      Atomics.add(c, Slot.ACK, 1)
      Atomics.notify(c, Slot.ACK)
      break
    case Cmd.RELEASE:
      stamp[0] = now()
      guard!.releaseUnsafe()
      break
    case Cmd.NOTIFY:
      stamp[0] = now()
      Atomics.store(c, Slot.FLAG, 1)
      Atomics.notify(c, Slot.FLAG)
      break
    case Cmd.POST:
      stamp[0] = now()
      parentPort!.postMessage(0)
      break
  }
}
parentPort!.close()
