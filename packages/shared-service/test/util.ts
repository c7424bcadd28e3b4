import { SharedService } from "@quiesce/shared-service"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"

export const fixture = (file: string) => fileURLToPath(new URL(`./fixtures/${file}`, import.meta.url))

export const uniqueName = (prefix: string) => `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

export interface Event {
  readonly ev: string
  readonly name?: string
  readonly [k: string]: unknown
}

/** A fixture client process speaking the line protocol of `fixtures/client.ts`. */
export class Client {
  readonly child: ChildProcess
  readonly events: Array<Event> = []
  private waiters: Array<{ pred: (e: Event) => boolean; resolve: (e: Event) => void; from: number }> = []
  readonly exited: Promise<number | null>
  stderr = ""

  constructor(
    config: Record<string, unknown>,
    options?: {
      readonly uid?: number
      readonly env?: NodeJS.ProcessEnv
      /** Another fixture than `client.ts`. */
      readonly fixture?: string
      /** A command line that runs node (e.g. `ip netns exec NS`). */
      readonly prefix?: ReadonlyArray<string>
    }
  ) {
    const args = ["--conditions=@quiesce/source", "--no-warnings", fixture(options?.fixture ?? "client.ts"), JSON.stringify(config)]
    const prefix = options?.prefix ?? []
    this.child = prefix.length > 0
      ? spawn(prefix[0]!, [...prefix.slice(1), process.execPath, ...args], { stdio: ["pipe", "pipe", "pipe"], env: options?.env ?? process.env })
      : options?.uid === undefined
      ? spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"], env: options?.env ?? process.env })
      : spawn("setpriv", [`--reuid=${options.uid}`, `--regid=${options.uid}`, "--clear-groups", process.execPath, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
        env: options?.env ?? process.env
      })
    let buf = ""
    this.child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString()
      let i
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        try {
          this.push(JSON.parse(line) as Event)
        } catch {
          // not ours
        }
      }
    })
    this.child.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString()
    })
    this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)))
  }

  private push(e: Event) {
    this.events.push(e)
    const idx = this.events.length - 1
    this.waiters = this.waiters.filter((w) => {
      if (idx >= w.from && w.pred(e)) {
        w.resolve(e)
        return false
      }
      return true
    })
  }

  get pid(): number {
    return this.child.pid!
  }

  send(line: string) {
    this.child.stdin!.write(line + "\n")
  }

  /** The next event (from now, or from index `from`) satisfying `pred`. */
  next(pred: (e: Event) => boolean, timeoutMs = 20000, from = this.events.length): Promise<Event> {
    for (let i = from; i < this.events.length; i++) if (pred(this.events[i]!)) return Promise.resolve(this.events[i]!)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for an event from client ${this.pid}; stderr: ${this.stderr}`)),
        timeoutMs
      )
      this.waiters.push({
        pred,
        from,
        resolve: (e) => {
          clearTimeout(timer)
          resolve(e)
        }
      })
    })
  }

  ready() {
    return this.next((e) => e.ev === "ready", 60000, 0)
  }

  async request(line: string, timeoutMs = 20000): Promise<Event> {
    const from = this.events.length
    const [, name] = line.split(" ")
    this.send(line)
    return this.next((e) => e.ev !== "starting" && e.name === name, timeoutMs, from)
  }

  kill(signal: NodeJS.Signals = "SIGKILL") {
    try {
      this.child.kill(signal)
    } catch {
      // gone
    }
  }
}

/** Pids of the services started for `name` (one line per start). */
export const starts = (dir: string, name: string): Array<number> => {
  const f = `${dir}/${name}.starts`
  return existsSync(f) ? readFileSync(f, "utf8").split("\n").filter((l) => l !== "").map(Number) : []
}

/** Pids of live supervisor processes for `name`. */
export const supervisors = (name: string): Array<number> => {
  const out: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0")
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue
      const i = cmd.findIndex((a) => a.endsWith("supervisor.ts") || a.endsWith("supervisor.js"))
      if (i >= 0 && (JSON.parse(cmd[i + 1] ?? "{}") as { name?: string }).name === name) out.push(Number(entry))
    } catch {
      // raced with exit
    }
  }
  return out
}

export const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")
  } catch {
    return false
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `cond` every 20 ms until it holds or `timeoutMs` passes; returns whether it held. */
export const eventually = async (cond: () => boolean, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (cond()) return true
    await sleep(20)
  }
  return cond()
}

export const eventuallyAsync = async (cond: () => Promise<boolean>, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await cond()) return true
    await sleep(20)
  }
  return cond()
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

export const inspect = (name: string): Promise<SharedService.ServiceStatus> => Effect.runPromise(SharedService.inspect(name))

/**
 * What a test file starts against the runtime directory `dir`: the names it uses and the client
 * processes it spawns (each told to record its service's pid under `dir`), so that `cleanup`
 * can kill every client, service and reaper left behind and remove every name's set.
 */
export const harness = (dir: string) => {
  const names: Array<string> = []
  const clients: Array<Client> = []
  const newName = (prefix: string): string => {
    const n = uniqueName(prefix)
    names.push(n)
    return n
  }
  const client = (config: Record<string, unknown>, options?: ConstructorParameters<typeof Client>[1]): Client => {
    const c = new Client({ startsDir: dir, ...config }, options)
    clients.push(c)
    return c
  }
  const cleanup = async (): Promise<void> => {
    for (const c of clients) c.kill()
    for (const name of names) {
      for (const pid of [...starts(dir, name), ...supervisors(name)]) {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone
        }
      }
      await Effect.runPromise(Effect.ignore(SharedService.remove(name)))
    }
  }
  return { names, clients, newName, client, cleanup }
}
