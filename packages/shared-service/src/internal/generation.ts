/**
 * Starting a generation, and what only the kernel can say about it: the supervisor and the
 * service are spawned in one go by a shell that inherits the owner lock (fd 3) and the fresh log
 * (fd 4). The shell stamps its pid into the owner file, forks the service (own session,
 * parent-death signal: it dies if its supervisor dies, however that happens), tells the starter
 * both pids, and then *becomes* the supervisor by exec'ing Node — the same process, so the
 * service's parent is its supervisor and the owner lock never changes hands. (That shell is
 * started by another that exits at once, so the supervisor is not the starter's child.) The service is
 * running a millisecond after the spawn; the supervisor's own boot (a Node process, at a lower
 * priority) is off the start's critical path, since nothing needs it until the count reaches 0.
 *
 * `node:child_process` rather than `effect/process`: the spawn must hand two existing
 * descriptors (the locked owner file and the log) to the child, which `ChildProcess` cannot
 * express (its extra descriptors are pipes).
 *
 * A service's whole tree (whatever it forks, daemons that reparent included) carries the marker
 * `QUIESCE_SERVICE_ID=<runtime dir>/<name>` in its environment: that is how a sweep finds what a
 * dead generation left, and how a stop reaches every process.
 *
 * @internal
 */
import { Duration, Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { closeSync, existsSync, writeSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import type { ServiceInfo } from "../ServiceInfo.ts"
import { PortInUse, StartFailed } from "../SharedServiceError.ts"
import * as L from "./linux.ts"
import * as Proc from "./proc.ts"

export const markerName = "QUIESCE_SERVICE_ID"
export const marker = (dir: string, name: string): string => `${markerName}=${dir}/${name}`

const which = (names: ReadonlyArray<string>): string | undefined => names.find((p) => existsSync(p))
let tools: { readonly setsid?: string; readonly setpriv?: string; readonly nice?: string } | undefined
const toolsOnce = () =>
  tools ??= {
    ...opt("setsid", which(["/usr/bin/setsid", "/bin/setsid"])),
    ...opt("setpriv", which(["/usr/bin/setpriv", "/bin/setpriv"])),
    ...opt("nice", which(["/usr/bin/nice", "/bin/nice"]))
  }
/**
 * `env --default-signal=INT,QUIT` (GNU coreutils ≥ 8.31), when this system's `env` has it: a
 * background command of a non-interactive shell starts with SIGINT and SIGQUIT ignored (POSIX),
 * and a shell cannot trap or reset a signal ignored on entry; the service gets their default
 * dispositions back, so that a `stopSignal` of SIGINT or SIGQUIT reaches it (a trap, Python's
 * KeyboardInterrupt). Checked once per process, by running it.
 */
let resetSignals: string | undefined | null = null
const resetSignalsOnce = (): string | undefined => {
  if (resetSignals !== null) return resetSignals
  const env = which(["/usr/bin/env", "/bin/env"])
  const args = ["--default-signal=INT,QUIT", "true"]
  const ok = env !== undefined && spawnSync(env, args, { stdio: "ignore", timeout: 5000 }).status === 0
  resetSignals = ok ? [env, args[0]!].map(quote).join(" ") : undefined
  return resetSignals
}

const opt = <K extends string, V>(k: K, v: V | undefined): { [P in K]?: V } =>
  (v === undefined ? {} : { [k]: v }) as { [P in K]?: V }

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** What a supervisor is told when it is spawned (its one JSON argument). */
export interface SupervisorConfig {
  readonly name: string
  readonly dir: string
  readonly kind: "sysv" | "flock"
  readonly generation: string
  /** `command`: the service is the supervisor's child; `adopt`: its `ServiceInfo` comes on stdin. */
  readonly mode: "command" | "adopt"
  /** How long the starter's `start` may take (`adopt`: how long a stop waits for its info). */
  readonly startTimeoutMillis: number
  readonly idleTimeToLiveMillis: number
  readonly stopTimeoutMillis: number
  /** The signal a stop begins with (SIGKILL follows after `stopTimeoutMillis`). Default `SIGTERM`. */
  readonly stopSignal?: string | undefined
  readonly lockTimeoutMillis: number
  /** The set its starter used (`Counter.instance`): another one at boot means it was removed meanwhile. */
  readonly instance: number
}

/**
 * The supervisor's entry, through this package's own exports (found from src/, dist/ or a
 * bundle). Under a module runner whose `import.meta.resolve` throws (vite's, running this
 * package's sources through a workspace link), as `require` resolves it: the built entry.
 */
const supervisorEntry = (): string => {
  try {
    return fileURLToPath(import.meta.resolve("@quiesce/shared-service/bin/supervisor"))
  } catch {
    return createRequire(import.meta.url).resolve("@quiesce/shared-service/bin/supervisor")
  }
}

const supervisorArgv = (config: SupervisorConfig): ReadonlyArray<string> => {
  const entry = supervisorEntry()
  // The TypeScript source imports its siblings through the same condition.
  const execArgv = entry.endsWith(".ts") ? ["--conditions=@quiesce/source", "--no-warnings"] : []
  return [process.execPath, ...execArgv, entry, JSON.stringify(config)]
}

export interface Spawned {
  readonly supervisor: number
  readonly supervisorStart: number
  /** The service's pid (`command`); `undefined` for `adopt`. */
  readonly service: number | undefined
  /** Writes the adopted service's info to the supervisor (`adopt`). */
  readonly adopt: (info: ServiceInfo | undefined) => void
}

export interface SpawnOptions {
  readonly config: SupervisorConfig
  readonly ownerFd: number
  readonly logFd: number
  /** The shell command (`command` mode). */
  readonly command?: string | undefined
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string>> | undefined
}

/**
 * Spawns the supervisor (and, in `command` mode, the service) holding the owner lock. Completes
 * once the shell has forked the service and told its pid.
 */
export const spawnGeneration = (options: SpawnOptions): Effect.Effect<Spawned, StartFailed> =>
  Effect.callback<Spawned, StartFailed>((resume) => {
    const { config } = options
    const t = toolsOnce()
    const launcher = [
      ...(t.setsid === undefined ? [] : [t.setsid]),
      ...(t.setpriv === undefined ? [] : [t.setpriv, "--pdeathsig", "KILL", "--"])
    ].map(quote).join(" ")
    const reset = config.mode === "command" ? resetSignalsOnce() : undefined
    const nice = t.nice === undefined ? "" : `${quote(t.nice)} -n 10 `
    // fd 3: the owner file (locked: the lock lives as long as a descriptor does, so the service
    // must not inherit it); fd 4: the log. The stamp goes in first, so that whoever finds the
    // lock held can tell who holds it.
    // The supervisor must not be the starter's child (the starter may exec into a command, which
    // would inherit it): the outer shell starts the inner one in the background and exits, so the
    // supervisor is reparented to init. The inner shell reports its own pid and the service's.
    // Until Node has installed its handlers a SIGUSR2 (retire) would kill the supervisor before it
    // knows its service, so it is only sent to one that catches it (`askToRetire`); meanwhile it
    // loses nothing: retire requests are also written where the supervisor reads them (the hint,
    // the owner file).
    // The service waits (a few microseconds, builtins only) until the inner shell has exec'd into
    // its supervisor: a background child that has already ended when the shell runs its next
    // command is reaped by the shell, and its exit status (and the supervisor's knowledge that it
    // ended) would be lost with it.
    const service = `while read -r c 2>/dev/null </proc/$PPID/comm && [ "$c" = sh ]; do :; done; exec /bin/sh -c "$QUIESCE_SERVICE_COMMAND"`
    const inner = config.mode === "command"
      ? `printf '%s\\n' "$$" >&3\n` +
        `${launcher}${reset === undefined ? "" : ` ${reset}`} /bin/sh -c ${quote(service)} </dev/null >&4 2>&4 3>&- 4>&- &\n` +
        `echo "$$ $!"\n` +
        `exec >&4 2>&4 4>&- ${nice}"$@" "$!"\n`
      : `printf '%s\\n' "$$" >&3\n` +
        `echo "$$ 0"\n` +
        `exec >&4 2>&4 4>&- ${nice}"$@"\n`
    // A background list's stdin is /dev/null unless redirected explicitly (POSIX): the adopt
    // pipe goes through fd 5.
    const script = config.mode === "adopt"
      ? `exec 5<&0\n/bin/sh -c ${quote(inner)} sh "$@" <&5 5<&- &\n`
      : `/bin/sh -c ${quote(inner)} sh "$@" &\n`
    const env: Record<string, string> = {
      ...process.env as Record<string, string>,
      ...options.env,
      QUIESCE_SERVICE_NAME: config.name,
      [markerName]: `${config.dir}/${config.name}`,
      ...(options.command === undefined ? {} : { QUIESCE_SERVICE_COMMAND: options.command })
    }
    // The adopt channel is a pipe of our own, not the child's stdin stream: Node destroys that
    // when the outer shell exits, which it does at once.
    const lib = L.libc()
    const channel = config.mode === "adopt" && !(lib instanceof Error) ? lib.pipe() : undefined
    if (config.mode === "adopt" && channel === undefined) {
      const errno = lib instanceof Error ? 0 : lib.errno()
      return resume(Effect.fail(new StartFailed({ service: config.name, reason: `pipe2 failed (errno ${errno})` })))
    }
    const closeWriter = () => {
      if (channel === undefined) return
      try {
        closeSync(channel[1])
      } catch {
        // closed already
      }
    }
    let child
    try {
      child = spawn("/bin/sh", ["-c", script, "sh", ...supervisorArgv(config)], {
        detached: true,
        stdio: [channel === undefined ? "ignore" : channel[0], "pipe", "ignore", options.ownerFd, options.logFd],
        env,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd })
      })
    } catch (e) {
      closeWriter()
      return resume(Effect.fail(new StartFailed({ service: config.name, reason: `spawn failed: ${String(e)}` })))
    } finally {
      if (channel !== undefined) closeSync(channel[0])
    }
    const pid = child.pid
    child.unref()
    child.once("exit", () => {})
    let line = ""
    let done = false
    const finish = (e: Effect.Effect<Spawned, StartFailed>) => {
      if (done) return
      done = true
      child.stdout!.removeAllListeners()
      child.stdout!.destroy()
      ;(child.stdout as unknown as { unref?: () => void }).unref?.()
      resume(e)
    }
    child.once("error", (e) =>
      finishFailed(Effect.fail(new StartFailed({ service: config.name, reason: `spawn failed: ${e.message}` }))))
    const finishFailed = (e: Effect.Effect<Spawned, StartFailed>) => {
      if (!done) closeWriter()
      finish(e)
    }
    child.stdout!.on("data", (d: Buffer) => {
      line += d.toString()
      const nl = line.indexOf("\n")
      if (nl < 0) return
      const [supervisor, service] = line.slice(0, nl).split(" ").map(Number) as [number, number]
      const st = Proc.stat(supervisor)
      finish(Effect.succeed({
        supervisor,
        supervisorStart: st?.startTime ?? 0,
        service: config.mode === "command" && service > 0 ? service : undefined,
        adopt: (info) => {
          if (channel === undefined) return
          try {
            // One short line: a pipe takes it whole, at once (EPIPE: the supervisor is gone).
            if (info !== undefined) writeSync(channel[1], JSON.stringify(info) + "\n")
          } catch {
            // the supervisor is gone: its successor sweeps
          }
          closeWriter()
        }
      }))
    })
    child.stdout!.once("end", () =>
      finishFailed(Effect.fail(new StartFailed({ service: config.name, reason: "the supervisor's shell exited before it started the service" }))))
    return Effect.sync(() => {
      // Interrupted before the inner shell reported: its session (the outer shell's) goes.
      if (!done) closeWriter()
      if (!done && pid !== undefined) {
        try {
          process.kill(-pid, "SIGKILL")
        } catch {
          // gone
        }
      }
    })
  })

/** Whether `pid` runs (or is the shell about to exec) this package's supervisor of `dir`/`name`. */
export const isSupervisor = (pid: number, dir: string, name: string): boolean => {
  const cmdline = Proc.commandLine(pid)
  return cmdline !== undefined && /[\\/]bin[\\/]supervisor\.[jt]s\b/.test(cmdline) &&
    cmdline.includes(`"name":${JSON.stringify(name)}`) && cmdline.includes(`"dir":${JSON.stringify(dir)}`)
}

const SIGUSR2 = 12

/**
 * Sends SIGUSR2 (retire), and SIGCONT (a stopped supervisor hears it), to a supervisor that has
 * installed its handler: before that, SIGUSR2's default action would kill it (Node resets every
 * disposition at startup), leaving an adopted service nobody else knows of.
 */
export const askToRetire = (pid: number): void => {
  if (!Proc.catches(pid, SIGUSR2)) return
  try {
    process.kill(pid, "SIGUSR2")
    process.kill(pid, "SIGCONT")
  } catch {
    // gone
  }
}

/**
 * Ends whatever carries the marker: its supervisors are first asked to retire (SIGUSR2) and given
 * `grace` to stop what they supervise (an adopted `make` service carries no marker: only its
 * supervisor can stop it), then everything left is SIGKILLed, until none is left (bounded).
 */
export const sweep = (markerText: string, dir: string, name: string, grace: Duration.Duration): Effect.Effect<number> =>
  Effect.suspend(() => {
    let killed = 0
    const supervisors = Proc.tree(markerText).filter((pid) => isSupervisor(pid, dir, name))
    for (const pid of supervisors) askToRetire(pid)
    const retired: Effect.Effect<void> = supervisors.length === 0 ? Effect.void : Effect.suspend(() => {
      const deadline = Date.now() + Duration.toMillis(grace)
      const wait: Effect.Effect<void> = Effect.suspend(() =>
        supervisors.every((pid) => Proc.isDead(Proc.stat(pid))) || Date.now() >= deadline
          ? Effect.void
          : Effect.andThen(Effect.sleep(Duration.millis(10)), wait)
      )
      return wait
    })
    const loop = (round: number): Effect.Effect<number> => {
      const left = Proc.tree(markerText)
      if (left.length === 0 || round >= 50) return Effect.succeed(killed)
      for (const pid of left) {
        try {
          process.kill(pid, "SIGKILL")
          killed++
        } catch {
          // gone
        }
      }
      return Effect.andThen(Effect.sleep(Duration.millis(10)), Effect.suspend(() => loop(round + 1)))
    }
    return Effect.andThen(retired, Effect.suspend(() => loop(0)))
  })

/**
 * Stops a service's tree: `signal` (default SIGTERM; and SIGCONT, so a stopped process can act
 * on it) to every member, SIGKILL to whatever is left after `timeout`. Completes when none is
 * left (bounded).
 */
export const stopTree = (
  markerText: string,
  session: number | undefined,
  timeout: Duration.Duration,
  signal: NodeJS.Signals = "SIGTERM"
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const members = () => Proc.tree(markerText, session)
    const send = (sig: NodeJS.Signals) => {
      for (const pid of members()) {
        try {
          process.kill(pid, sig)
          if (sig !== "SIGKILL") process.kill(pid, "SIGCONT")
        } catch {
          // gone
        }
      }
    }
    const waitGone = (millis: number): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        const deadline = Date.now() + millis
        const loop: Effect.Effect<boolean> = Effect.suspend(() =>
          members().length === 0
            ? Effect.succeed(true)
            : Date.now() >= deadline
            ? Effect.succeed(false)
            : Effect.andThen(Effect.sleep(Duration.millis(15)), loop)
        )
        return loop
      })
    if (members().length === 0) return Effect.void
    send(signal)
    return Effect.flatMap(waitGone(Duration.toMillis(timeout)), (gone) =>
      gone ? Effect.void : Effect.andThen(Effect.sync(() => send("SIGKILL")), Effect.asVoid(waitGone(2000))))
  })

/**
 * The port is free, or `PortInUse` naming its holder (this user's processes can be named; for
 * another user's, the socket's uid).
 */
export const checkPortFree = (service: string, port: number): PortInUse | undefined => {
  const held = Proc.listeners(port)
  if (held.length === 0) return undefined
  return portInUse(service, port, held[0]!)
}

const portInUse = (service: string, port: number, l: Proc.Listener): PortInUse => {
  const pid = Proc.socketOwners(l.inode)[0]
  const command = pid === undefined ? undefined : Proc.commandLine(pid)
  return new PortInUse({
    service,
    port,
    uid: l.uid,
    ...(pid === undefined ? {} : { pid }),
    ...(command === undefined ? {} : { command })
  })
}

/**
 * After a probe succeeded: every socket listening on `port` belongs to the service's tree, or
 * `PortInUse` names the one that does not (readiness would otherwise be someone else's server);
 * `stopped` when a process of the tree that listens is stopped (SIGSTOP: the kernel would still
 * accept connections for it, so a connect proves nothing).
 */
export const checkPortOwned = (
  service: string,
  port: number,
  markerText: string,
  session?: number
): PortInUse | "stopped" | undefined => {
  const held = Proc.listeners(port)
  if (held.length === 0) return undefined
  const members = Proc.tree(markerText, session)
  for (const l of held) {
    const owners = Proc.socketOwners(l.inode, members)
    if (owners.length === 0) return portInUse(service, port, l)
    if (owners.every((pid) => Proc.isStopped(Proc.stat(pid)))) return "stopped"
  }
  return undefined
}
