/**
 * Two figures, whole processes, each against its baseline in the same run:
 *
 * 1. Warm: `quiesce run -- true` with the service already up (held by another `quiesce run`),
 *    against a bare `node -e 0`: what quiesce adds to every command it wraps once the service
 *    runs (a Node start, the join under the lock with a TCP health check, the exec).
 * 2. Cold: sixteen commands that each need the same service, with the service not running:
 *    - subject: 16 concurrent `quiesce run`, one name, one port: exactly one of them starts the
 *      service, the others join it (checked every round).
 *    - baseline: `start-server-and-test`, which starts one service per command, run the fastest
 *      correct way it allows: 16 at once on 16 ports (one after another is timed once, below,
 *      and is far slower), with its readiness poll at 50 ms instead of its default 2 s.
 *    Same service (the embedded demo service, `dist/bin/demo-service.js`), same readiness URL
 *    form (`http://127.0.0.1:PORT/health`), same command (a `node -e` that GETs the service and
 *    exits 0 on 200). A round is timed until all 16 commands have exited; quiesce's service then
 *    stops on its own (grace 0) while the baseline runs.
 *
 * quiesce is run as users run it: `bin/quiesce.js`, the package's executable, which runs
 * `dist/quiesce.js` (the bundle, built here from `tsc -b`'s output). Both sides get Node's
 * compile cache.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { compare, freePort } from "../../../bench/harness.ts"
import { bundle } from "../scripts/bundle.ts"

const root = join(import.meta.dirname, "..")
const repo = join(root, "..", "..")
const node = process.execPath
const built = existsSync(join(root, "dist", "main.js"))
// `npm run bench` builds first; without a build, bin/quiesce.js runs the sources (slower).
if (built) await bundle()
const quiesceBin = [join(root, "bin", "quiesce.js")]
const demoService = built ? join(root, "dist", "bin", "demo-service.js") : join(root, "src", "bin", "demo-service.ts")
const sst = join(repo, "node_modules", "start-server-and-test", "src", "bin", "start.js")

const work = mkdtempSync(join(tmpdir(), "quiesce-cli-bench-"))
process.env["QUIESCE_RUNTIME_DIR"] = work
const env = {
  ...process.env,
  NODE_COMPILE_CACHE: join(tmpdir(), "quiesce-bench-compile-cache"),
  QUIESCE_RUNTIME_DIR: work,
  WAIT_ON_INTERVAL: "50"
}
const commands = 16

const run = (args: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn(node, args, { env, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("close", (code) => code === 0 ? resolve() : reject(new Error(`${args.join(" ")} exited ${code}: ${stderr}`)))
  })

// start-server-and-test re-joins its arguments on quote characters, so these commands carry no
// quoted paths (checked: none of them has a space).
if ([node, demoService, work].some((path) => /\s/.test(path))) throw new Error("paths with spaces are not supported here")
const command = (port: number) => `${node} -e "fetch('http://127.0.0.1:${port}/').then((r) => process.exit(r.ok ? 0 : 1))"`
const service = (port: number, log?: string) =>
  `${node} ${demoService} --port ${port}${log === undefined ? "" : ` --log ${log}`}`

const names: Array<string> = []
let round = 0

const withQuiesce = async (): Promise<void> => {
  const name = `bench-${process.pid}-${round++}`
  names.push(name)
  const port = await freePort()
  const log = join(work, `${name}.service.log`)
  await Promise.all(Array.from({ length: commands }, () =>
    run([
      ...quiesceBin,
      "run",
      "--name",
      name,
      "--service",
      service(port, log),
      "--ready",
      `http://127.0.0.1:${port}/health`,
      "--grace",
      "0",
      "--",
      "sh",
      "-c",
      command(port)
    ])))
  const started = readFileSync(log, "utf8").split("\n").filter((line) => line.includes(" started ")).length
  if (started !== 1) throw new Error(`${name}: the service started ${started} times, expected exactly once`)
}

const startServerAndTest = (port: number) =>
  run([sst, service(port), `http://127.0.0.1:${port}/health`, command(port)])

const withStartServerAndTest = async (): Promise<void> => {
  const ports = await Promise.all(Array.from({ length: commands }, freePort))
  await Promise.all(ports.map(startServerAndTest))
}

const load = () => loadavg().map((l) => l.toFixed(2)).join(" ")

/** A service kept up by a `quiesce run` that holds it (its command waits on stdin) until `stop`. */
const holdWarm = async (name: string, port: number) => {
  const holder = spawn(node, [...quiesceBin, "run", "-n", name, "-s", service(port), "--port", String(port), "--", "sh", "-c", "echo held; read line"], {
    env,
    stdio: ["pipe", "pipe", "inherit"]
  })
  await new Promise<void>((resolve, reject) => {
    holder.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("held") && resolve())
    holder.on("exit", (code) => reject(new Error(`the holder exited ${code}`)))
  })
  return () => holder.stdin.end()
}

try {
  console.log(`(${built ? "bin/quiesce.js → bundled dist/quiesce.js" : "bin/quiesce.js → sources"}; load average ${load()} at the start)`)
  const warmName = `bench-warm-${process.pid}`
  names.push(warmName)
  const warmPort = await freePort()
  const release = await holdWarm(warmName, warmPort)
  const warmArgs = [...quiesceBin, "run", "-n", warmName, "-s", service(warmPort), "--port", String(warmPort), "--", "true"]
  await compare({
    title: "quiesce run -- true, service up (a TCP health check) vs node -e 0",
    subject: {
      name: "quiesce run -- true",
      run: async (n) => {
        for (let i = 0; i < n; i++) await run(warmArgs)
      }
    },
    baseline: {
      name: "node -e 0",
      run: async (n) => {
        for (let i = 0; i < n; i++) await run(["-e", "0"])
      }
    },
    iterations: 10,
    rounds: 8,
    warmupRounds: 1,
    goal: { maxRatio: 1.5 }
  })
  release()

  console.log(`(${commands} commands per round; times are per command)`)
  await compare({
    title: `${commands} commands needing one service, cold: quiesce run (one shared service) vs start-server-and-test (16 ports at once)`,
    subject: { name: "quiesce run", run: withQuiesce },
    baseline: { name: "start-server-and-test ×16 parallel", run: withStartServerAndTest },
    iterations: commands,
    rounds: 6,
    warmupRounds: 1,
    goal: { minSpeedup: 3 }
  })
  // The other way start-server-and-test can serve 16 commands; once, to show it is slower.
  const t0 = performance.now()
  for (let i = 0; i < commands; i++) await startServerAndTest(await freePort())
  const sequential = performance.now() - t0
  console.log(`  start-server-and-test one after another: ${(sequential / 1000).toFixed(2)} s for ${commands} (one round)`)
  console.log(`(load average ${load()} at the end)`)
} finally {
  // Services stop on their own (grace 0); then their semaphore sets go, so no kernel object is left.
  const { SharedService } = await import("@quiesce/shared-service")
  const { Effect } = await import("effect")
  await new Promise((resolve) => setTimeout(resolve, 500))
  for (const name of names) {
    await Effect.runPromise(Effect.ignore(Effect.andThen(SharedService.forceStop(name), SharedService.remove(name))))
  }
  rmSync(work, { recursive: true, force: true })
}
