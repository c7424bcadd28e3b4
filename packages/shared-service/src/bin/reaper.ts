/**
 * The detached reaper:
 * `reaper <name> <idleTimeToLiveMs> <stopTimeoutMs> <lockTimeoutMs> [sysv|flock] [pid startTime group]`.
 * Spawned (detached, stdio ignored) by the client that finds no reaper alive. It takes the
 * reaper slot (exiting at once if another process holds it), holds no reference, and runs the
 * reap loop: wait for zero, wait the grace period, re-check under the lock, stop the hinted
 * service by its verified pid (its process group when recorded), remove the hint, exit.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { stopProcess, reap } from "../internal/sharedService.ts"
import { flock, RefCounter } from "../RefCounter.ts"
import * as ServiceInfo from "../ServiceInfo.ts"

const [name, ttl, stopTimeout, lockTimeout, kind, pid, startTime, group] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const rc = kind === "flock" ? flock() : yield* RefCounter
  const counter = yield* rc.open(name ?? "")
  if (!(yield* counter.claimReaper)) return
  const stopAfter = Duration.millis(Number(stopTimeout ?? 5000))
  // The service it was launched for, identified by pid *and* start time; without a start time
  // (it could not be read) the pid alone is not trusted: only the hint then names the service.
  const serviceStart = startTime === undefined || startTime === "" ? undefined : Number(startTime)
  const service = pid === undefined || pid === "" || serviceStart === undefined || !Number.isFinite(serviceStart)
    ? undefined
    : ServiceInfo.make({ pid: Number(pid), startTime: serviceStart, processGroup: group === "group" })
  yield* reap(counter, {
    service,
    idleTimeToLive: Duration.millis(Number(ttl ?? 0)),
    lockTimeout: Duration.millis(Number(lockTimeout ?? 30000)),
    stop: (info) => Effect.asVoid(stopProcess(info, stopAfter))
  })
})

// The reaper must not die of its parent's terminal hang-up or of a stray SIGPIPE.
process.on("SIGHUP", () => {})
process.on("SIGPIPE", () => {})

Effect.runPromiseExit(program).then((exit) => {
  process.exitCode = exit._tag === "Success" ? 0 : 1
})
