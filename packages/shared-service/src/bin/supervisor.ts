/**
 * The detached supervisor of one generation: `supervisor <config JSON> [service pid]`, exec'd
 * by the shell that spawned the service (so it is the service's parent) with the owner lock on
 * fd 3 and the log on stdout/stderr. It holds no reference; it runs `Protocol.supervisor` until
 * the service is stopped and the set removed (or the set handed back to a new generation).
 *
 * - SIGUSR2: retire (a client holding the startup lock replaces this generation);
 * - SIGTERM: stop now (a failed start, `forceStop`, a shutdown), cleaning up under the lock;
 * - SIGINT/SIGHUP: ignored (it is in its own session; a terminal's signals are not for it).
 *
 * It is the service's parent and, once booted, a child subreaper: whatever the service forks
 * and abandons is reparented here, and reaped here.
 *
 * @internal
 */
import { Duration, Effect, Schedule } from "effect"
import { fstatSync, futimesSync, lutimesSync } from "node:fs"
import { constants } from "node:os"
import { createInterface } from "node:readline"
import * as Generation from "../internal/generation.ts"
import * as Hint from "../internal/hint.ts"
import * as L from "../internal/linux.ts"
import * as Owner from "../internal/owner.ts"
import { filePath, retireLog, unlinkIf } from "../internal/paths.ts"
import * as Proc from "../internal/proc.ts"
import * as Supervisor from "../internal/supervisor.ts"
import * as Process from "../Process.ts"
import { flock, sysV } from "../RefCounter.ts"
import { ServiceInfo } from "../ServiceInfo.ts"

const config = JSON.parse(process.argv[2] ?? "{}") as Generation.SupervisorConfig
const commandPid = process.argv[3] === undefined ? undefined : Number(process.argv[3])
const OWNER_FD = 3

// Its stdout and stderr are the service's log: a full disk must cost lines, never the supervisor.
process.stdout.on("error", () => {})
process.stderr.on("error", () => {})
const log = (message: string) => {
  try {
    process.stderr.write(`[quiesce supervisor ${process.pid}] ${message}\n`)
  } catch {
    // a full or removed log
  }
}

// Files and the set are found from the runtime directory the starter checked.
process.env["QUIESCE_RUNTIME_DIR"] = config.dir

const lib = L.libc()
if (lib instanceof Error) {
  log(`cannot load libc: ${lib.message}`)
  process.exit(1)
}
// Nothing this process might spawn may inherit the owner lock.
lib.fcntl(OWNER_FD, L.F_SETFD, L.FD_CLOEXEC)
lib.prctl(L.PR_SET_CHILD_SUBREAPER, 1)

const signals = { retire: false, term: false }
process.on("SIGUSR2", () => {
  signals.retire = true
})
process.on("SIGTERM", () => {
  signals.term = true
})
process.on("SIGINT", () => {})
process.on("SIGHUP", () => {})
process.on("SIGPIPE", () => {})

const markerText = Generation.marker(config.dir, config.name)

// Age-based cleaners of temporary directories (systemd-tmpfiles, tmpreaper) remove files nobody
// touched for days: a service can run that long, so its files are touched every ten minutes.
setInterval(() => {
  const now = new Date()
  try {
    futimesSync(OWNER_FD, now, now)
  } catch {
    // closed: exiting
  }
  for (const suffix of ["json", "log"]) {
    try {
      lutimesSync(filePath(config.dir, config.name, suffix), now, now)
    } catch {
      // not there
    }
  }
}, 10 * 60 * 1000).unref()

/** The service: our child (`command`), or the process a `make` start reported (`adopt`). */
const service = {
  info: undefined as ServiceInfo | undefined,
  exited: false,
  /** `adopt`: still waiting for the starter to send the info. */
  pending: config.mode === "adopt"
}

if (config.mode === "adopt") {
  const rl = createInterface({ input: process.stdin })
  let got = false
  rl.once("line", (line) => {
    got = true
    try {
      service.info = ServiceInfo.make(JSON.parse(line))
      log(`supervising ${config.name}: pid ${service.info.pid}`)
    } catch {
      log(`unreadable service info: ${line}`)
    }
    service.pending = false
    rl.close()
  })
  rl.once("close", () => {
    if (!got) {
      // The starter died or its start failed: the hint may still name what it started.
      const hint = Hint.read(config.dir, config.name)
      if (hint instanceof Hint.Hint && hint.generation === config.generation && hint.info !== undefined) {
        service.info = hint.info
      }
    }
    service.pending = false
  })
} else if (commandPid !== undefined) {
  log(`supervising ${config.name}: pid ${commandPid}`)
}

/** Reaps every dead child (ours: it spawns nothing through libuv, so none is libuv's). */
const reap = () => {
  for (;;) {
    const [pid, status] = lib.waitpid(-1, L.WNOHANG)
    if (pid <= 0) return
    if (pid === commandPid) {
      service.exited = true
      log(`the service ${Proc.describeStatus(status)}`)
    }
  }
}

const serviceGone = (): boolean => {
  if (config.mode === "command") return service.exited
  if (service.pending) return false
  const info = service.info
  if (info === undefined) return true
  if (Process.isAliveUnsafe(info.pid, info.startTime)) return false
  // `recover` may have replaced it within this generation: adopt what the hint now names.
  const hint = Hint.read(config.dir, config.name)
  if (hint instanceof Hint.Hint && hint.generation === config.generation && hint.info !== undefined && hint.info.pid !== info.pid) {
    service.info = hint.info
    return !Process.isAliveUnsafe(hint.info.pid, hint.info.startTime)
  }
  return true
}

/**
 * The hint, when it describes this generation: a client holding the lock marks it `abandoned`
 * (its start failed) or `retire` (replace it) — requests no boot window can lose.
 */
const hintOfOurs = (): Hint.Hint | undefined => {
  const hint = Hint.read(config.dir, config.name)
  return hint instanceof Hint.Hint && hint.generation === config.generation ? hint : undefined
}

const stopTimeout = Duration.millis(config.stopTimeoutMillis)
/** What every stop begins with (idle, retire, SIGTERM, an exited service's leftovers); SIGKILL follows after `stopTimeout`. */
const stopSignal: NodeJS.Signals = config.stopSignal !== undefined && config.stopSignal in constants.signals
  ? config.stopSignal as NodeJS.Signals
  : "SIGTERM"
const adopted: Effect.Effect<void> = Effect.suspend(() =>
  service.pending ? Effect.andThen(Effect.sleep("10 millis"), adopted) : Effect.void
)
/** How long a stop waits for a `make` start to report its service (then it stops what it knows). */
const adoptBound = Duration.millis(config.startTimeoutMillis + 1000)

const program = Effect.gen(function*() {
  const rc = config.kind === "flock" ? flock() : sysV()
  // The set may be gone and impossible to re-create at boot (an ipcrm, a full kernel table): as
  // in `Reopen`, nothing can be counted until it exists, so nothing is stopped; it keeps trying.
  const counter = yield* rc.open(config.name).pipe(
    Effect.tapError((e) => Effect.sync(() => log(`cannot open the set (${e.message}); trying again`))),
    Effect.retry({ while: (e) => e._tag !== "InvalidName", schedule: Schedule.spaced(Duration.seconds(1)) })
  )
  const ownerIno = fstatSync(OWNER_FD).ino
  // A set removed (ipcrm) between the start and this boot: holders need their window to
  // re-register before the count means anything.
  const removedMeanwhile = counter.instance() !== config.instance
  if (removedMeanwhile) log("the set was removed before this supervisor booted: giving holders time to re-register")
  yield* Supervisor.run({
    counter,
    alive: () => true,
    idleTimeToLive: Duration.millis(config.idleTimeToLiveMillis),
    lockTimeout: Duration.millis(config.lockTimeoutMillis),
    pending: Effect.sync(() => {
      const ours = hintOfOurs()
      return [
        ...(signals.retire || ours?.retire === true || Owner.requested(OWNER_FD, "retire") ||
            Owner.displaced(config.dir, config.name, OWNER_FD)
          ? ["Retire" as const]
          : []),
        ...(signals.term || ours?.state === "abandoned" ? ["Term" as const] : []),
        ...(serviceGone() ? ["Exited" as const] : [])
      ]
    }),
    stop: (reason) =>
      Effect.suspend(() => {
        signals.term = false
        if (reason === "Retire") signals.retire = false
        log(`stopping (${reason}): ${stopSignal}, SIGKILL after ${config.stopTimeoutMillis} ms`)
        if (config.mode === "command") {
          return Effect.tap(Generation.stopTree(markerText, commandPid, stopTimeout, stopSignal), () => Effect.sync(reap))
        }
        // A request can come before the starter's `start` has returned: its service is stopped
        // once known (the starter sends it, or closes the channel having failed or died).
        return Effect.andThen(
          Effect.timeout(adopted, adoptBound),
          Effect.suspend(() => {
            const info = service.info
            return info === undefined ? Effect.void : Effect.asVoid(
              Process.stop(info.pid, { timeout: stopTimeout, startTime: info.startTime, group: info.processGroup, signal: stopSignal })
            )
          })
        ).pipe(Effect.ignore)
      }),
    cleanup: Effect.sync(() => {
      Hint.remove(config.dir, config.name, config.generation)
      retireLog(filePath(config.dir, config.name, "log"))
    }),
    removeOwnerFile: Effect.sync(() => unlinkIf(Owner.ownerPath(config.dir, config.name), ownerIno)),
    tick: Effect.sync(reap),
    log
  }, removedMeanwhile ? { _tag: "Reopen", gone: false } : undefined)
  log("done")
})

Effect.runPromiseExit(program).then((exit) => {
  if (exit._tag === "Failure") log(`failed: ${String(exit.cause)}`)
  process.exit(exit._tag === "Success" ? 0 : 1)
})
