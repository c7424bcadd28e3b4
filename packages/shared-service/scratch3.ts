import { Duration, Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { spawn } from "node:child_process"
process.env["QUIESCE_RUNTIME_DIR"] = mkdtempSync(join(tmpdir(), "qb-"))
const { ServiceInfo, SharedService, RefCounter, Process } = await import("./src/index.ts")
const Hint = await import("./src/internal/hint.ts")
const name = "scr-" + Math.random().toString(36).slice(2, 7)
const service = SharedService.makeUnsafe({ name, start: Effect.sync(() => { const c = spawn("sleep", ["300"], { detached: true, stdio: "ignore" }); c.unref(); return ServiceInfo.make({ pid: c.pid! }) }), idleTimeToLive: Duration.minutes(5) })
await Effect.runPromise(Effect.scoped(SharedService.acquire(service)))
const time = (label: string, f: () => void, n = 20000) => {
  for (let i = 0; i < 2000; i++) f()
  const t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) f()
  console.log(label, (Number(process.hrtime.bigint() - t) / n / 1000).toFixed(2), "µs")
}
const counter = Effect.runSync(RefCounter.sysV().open(name))
const info = Hint.readUnsafe(name) as any
time("hint read", () => Hint.readUnsafe(name))
time("isAlive", () => Process.isAliveUnsafe(info.pid, info.startTime))
time("lock+count+hasReaper+unlock(0)", () => Effect.runSync(Effect.andThen(counter.lock(Duration.seconds(1)), Effect.andThen(counter.count, Effect.andThen(counter.hasReaper, counter.unlock(0))))))
time("acquire+release", () => Effect.runSync(Effect.scoped(SharedService.acquire(service))))
await Effect.runPromise(SharedService.forceStop(name, { removeSet: true }))
