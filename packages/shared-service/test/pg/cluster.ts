/**
 * A throw-away PostgreSQL cluster for the tests: `initdb` in a temporary directory, the server
 * run as an unprivileged user (PostgreSQL refuses root), listening on a unix socket in that
 * directory (reachable from every network namespace: they share the filesystem) and on the TCP
 * addresses given, optionally inside a network namespace. A missing server is a failed setup
 * with a message saying what to install — never a skipped or passing test.
 */
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const binDirs = (): Array<string> => {
  const dirs = (process.env["PATH"] ?? "").split(":")
  try {
    for (const v of readdirSync("/usr/lib/postgresql").sort().reverse()) dirs.push(`/usr/lib/postgresql/${v}/bin`)
  } catch {
    // not installed there
  }
  return dirs
}

const find = (bin: string): string => {
  for (const d of binDirs()) if (d !== "" && existsSync(join(d, bin))) return join(d, bin)
  throw new Error(
    `PostgreSQL's ${bin} was not found on PATH nor in /usr/lib/postgresql/*/bin: the PostgreSQL backend's tests need a ` +
      `PostgreSQL server (Debian: apt-get install postgresql; .ci/run installs it)`
  )
}

/** The unprivileged user the server runs as when the tests run as root. */
const serverUser = (): { readonly name: string; readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  for (const name of ["postgres", "nobody"]) {
    try {
      const uid = Number(execFileSync("id", ["-u", name]).toString().trim())
      const gid = Number(execFileSync("id", ["-g", name]).toString().trim())
      return { name, uid, gid }
    } catch {
      // no such user
    }
  }
  throw new Error("running as root, and neither a postgres nor a nobody user exists to run the PostgreSQL server as")
}

export interface Cluster {
  /** The directory of the unix socket (and of the data). */
  readonly dir: string
  readonly port: number
  /** A URL over the unix socket, usable from any network namespace. */
  readonly socketUrl: string
  /** A URL over TCP to `host`. */
  readonly tcpUrl: (host: string) => string
  readonly stop: () => Promise<void>
}

export interface ClusterOptions {
  /** TCP addresses to listen on (besides the unix socket). Default none. */
  readonly listen?: ReadonlyArray<string> | undefined
  /** Run the server inside this network namespace. */
  readonly netns?: string | undefined
  readonly port?: number | undefined
}

let nextPort = 40000 + (process.pid % 10000)

export const startCluster = async (options: ClusterOptions = {}): Promise<Cluster> => {
  const initdb = find("initdb")
  const postgres = find("postgres")
  const user = serverUser()
  const dir = mkdtempSync(join(tmpdir(), "quiesce-pg-"))
  const data = join(dir, "data")
  if (user !== undefined) chownSync(dir, user.uid, user.gid)
  const asUser = (cmd: string, args: ReadonlyArray<string>): [string, Array<string>] =>
    user === undefined
      ? [cmd, [...args]]
      // The server dies with the test process (a test run that is killed leaves no cluster behind).
      : ["setpriv", [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--pdeathsig=KILL", cmd, ...args]]
  const [c0, a0] = asUser(initdb, ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
  execFileSync(c0, a0, { stdio: "pipe", cwd: dir })
  // Machines connect from their loopback addresses (127.77.<i>.2): trust the whole loopback range.
  appendFileSync(join(data, "pg_hba.conf"), "host all all 127.0.0.0/8 trust\n")
  const port = options.port ?? nextPort++
  const serverArgs = [
    "-D", data, "-k", dir, "-p", String(port),
    "-c", `listen_addresses=${(options.listen ?? []).join(",")}`,
    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
    "-c", "max_connections=300", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"
  ]
  const [c1, a1] = asUser(postgres, serverArgs)
  const [cmd, args] = options.netns === undefined ? [c1, a1] : ["ip", ["netns", "exec", options.netns, c1, ...a1]]
  const server: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"], cwd: dir })
  let log = ""
  server.stderr!.on("data", (d: Buffer) => {
    log += d.toString()
  })
  const exited = new Promise<void>((resolve) => server.on("exit", () => resolve()))
  const socket = join(dir, `.s.PGSQL.${port}`)
  const deadline = Date.now() + 60_000
  while (!existsSync(`${socket}.lock`) || !readyIn(data)) {
    if (server.exitCode !== null) throw new Error(`the PostgreSQL server exited at startup: ${log}`)
    if (Date.now() > deadline) throw new Error(`the PostgreSQL server did not start within 60 s: ${log}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  const stop = async () => {
    if (server.exitCode === null) {
      server.kill("SIGQUIT")
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
      if (server.exitCode === null) server.kill("SIGKILL")
    }
    rmSync(dir, { recursive: true, force: true })
  }
  return {
    dir,
    port,
    socketUrl: `postgres://postgres@localhost:${port}/postgres?host=${encodeURIComponent(dir)}`,
    tcpUrl: (host) => `postgres://postgres@${host}:${port}/postgres`,
    stop
  }
}

/** postmaster.pid's status line says "ready" once the server accepts connections. */
const readyIn = (data: string): boolean => {
  try {
    return readFileSync(join(data, "postmaster.pid"), "utf8").includes("ready")
  } catch {
    return false
  }
}

// Run directly (`node test/pg/cluster.ts`), for the benchmark: start a cluster on 127.0.0.1, print
// its URL as one JSON line, and stop it when stdin closes.
if (import.meta.main) {
  const cluster = await startCluster({ listen: ["127.0.0.1"] })
  process.stdout.write(JSON.stringify({ url: cluster.tcpUrl("127.0.0.1"), socketUrl: cluster.socketUrl }) + "\n")
  process.stdin.resume()
  process.stdin.on("end", () => void cluster.stop().then(() => process.exit(0)))
}
