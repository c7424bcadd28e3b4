/**
 * PostgreSQL from Debian's `postgresql` package as a service that `quiesce run` starts: a
 * throw-away cluster (`initdb` in a temporary directory) and the command line that runs its
 * server as an unprivileged user (PostgreSQL refuses to run as root; the tests run as root on CI).
 * A missing server is a failed setup that says what to install, never a skipped test.
 */
import { execFileSync, spawn } from "node:child_process"
import { chownSync, existsSync, mkdirSync, readdirSync } from "node:fs"
import { join } from "node:path"

const binDirs = (): ReadonlyArray<string> => {
  let versions: Array<string> = []
  try {
    versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))
  } catch {
    // not installed there
  }
  return [...versions.map((v) => `/usr/lib/postgresql/${v}/bin`), ...(process.env["PATH"] ?? "").split(":")]
}

/** The path of a PostgreSQL program, or an error saying how to install it. */
export const postgresBin = (program: string): string => {
  for (const dir of binDirs()) if (dir !== "" && existsSync(join(dir, program))) return join(dir, program)
  throw new Error(
    `PostgreSQL's ${program} was not found in /usr/lib/postgresql/*/bin nor on PATH: these tests run a real PostgreSQL ` +
      `(Debian: apt-get install postgresql; .ci/run installs it)`
  )
}

/** Who the server runs as: `postgres` (the package's user) or `nobody`, when the tests run as root. */
const serverUser = (): { readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  for (const name of ["postgres", "nobody"]) {
    try {
      return {
        uid: Number(execFileSync("id", ["-u", name]).toString().trim()),
        gid: Number(execFileSync("id", ["-g", name]).toString().trim())
      }
    } catch {
      // no such user
    }
  }
  throw new Error("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

const asUser = (user: { readonly uid: number; readonly gid: number } | undefined): ReadonlyArray<string> =>
  user === undefined ? [] : ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"]

const quote = (word: string) => `'${word.replace(/'/g, "'\\''")}'`

/**
 * A fresh cluster in `dir` (its data in `dir/data`, its socket in `dir`), and the shell command
 * that runs its server on `port` (loopback only), as a service: `exec`, so that the service's
 * pid is the postmaster's.
 */
export const postgresCluster = (dir: string, port: number): { readonly command: string; readonly data: string } => {
  const user = serverUser()
  const data = join(dir, "data")
  mkdirSync(data, { mode: 0o700 })
  if (user !== undefined) {
    chownSync(dir, user.uid, user.gid)
    chownSync(data, user.uid, user.gid)
  }
  const initdb = [...asUser(user), postgresBin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
  execFileSync(initdb[0]!, initdb.slice(1), { stdio: ["ignore", "ignore", "pipe"] })
  const server = [
    ...asUser(user),
    postgresBin("postgres"),
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "fsync=off"
  ]
  return { command: `exec ${server.map(quote).join(" ")}`, data }
}

/**
 * A running throw-away server on `port` (loopback), for a test's scope: what the PostgreSQL
 * backend (`--backend`, a config file's `backend`) connects to.
 */
export const startPostgres = async (dir: string, port: number): Promise<{ readonly url: string; readonly stop: () => Promise<void> }> => {
  const { command } = postgresCluster(dir, port)
  const server = spawn("/bin/sh", ["-c", command], { stdio: ["ignore", "ignore", "pipe"] })
  let output = ""
  server.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      execFileSync(postgresBin("pg_isready"), ["-h", "127.0.0.1", "-p", String(port), "-q"])
      break
    } catch {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`PostgreSQL did not start: ${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: () =>
      new Promise((resolve) => {
        if (server.exitCode !== null) return resolve()
        server.once("exit", () => resolve())
        server.kill("SIGINT")
      })
  }
}
