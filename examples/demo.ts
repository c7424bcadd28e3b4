/**
 * `npm run demo`: the whole project working, narrated for a person, on the embedded demo
 * service (nothing to install). Every claim it prints is checked; it exits 1 if any did not
 * happen.
 *
 * 1. `quiesce run`: several commands share one service; one is SIGKILLed; the service stops
 *    after the last one leaves and its grace period passes.
 * 2. `RundownRef`: an HTTP server drains its in-flight requests before it closes.
 * 3. `Stage`: many fibers share one UDP socket, each getting exactly the replies meant for it.
 */
import { SharedService } from "@quiesce/shared-service"
import { Deferred, Effect, Exit } from "effect"
import * as ChildProcess from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"

const root = join(import.meta.dirname, "..")
const quiesceBin = join(root, "packages", "cli", "src", "bin.ts")
const demoService = join(root, "packages", "cli", "src", "bin", "demo-service.ts")
const client = join(root, "packages", "cli", "examples", "client.ts")
const node = process.execPath
const nodeArgs = ["--conditions=@quiesce/source"]

/**
 * The other packages' examples are loaded by path: they belong to those packages' test projects,
 * which this root tooling project does not list (a static import would fail `tsc -b` with
 * TS6307), so their shapes are declared here.
 */
const importExample = <A>(path: string): Effect.Effect<A> =>
  Effect.promise(() => import(pathToFileURL(join(root, path)).href) as Promise<A>)

interface UdpExample {
  readonly udpExample: (options: {
    readonly peers: number
    readonly fibers: number
    readonly requestsPerFiber: number
  }) => Effect.Effect<{ readonly requests: number; readonly misrouted: number; readonly heads: number }, unknown>
}

/** Only what the demo uses: the example's report and claims stay the example's. */
interface HttpShutdownExample {
  readonly runScenario: Effect.Effect<HttpShutdownReport>
  readonly claims: (report: HttpShutdownReport) => ReadonlyArray<{ readonly claim: string; readonly held: boolean }>
}
interface HttpShutdownReport {
  readonly narration: ReadonlyArray<string>
}

const failures: Array<string> = []
const say = (text: string) => Effect.sync(() => console.log(text))
const check = (ok: boolean, claim: string) =>
  Effect.sync(() => {
    console.log(`   ${ok ? "✓" : "✗"} ${claim}`)
    if (!ok) failures.push(claim)
  })

const started = Date.now()
const clock = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s`

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

interface Run {
  readonly label: string
  readonly pid: number
  readonly firstLine: Effect.Effect<string>
  readonly exit: Effect.Effect<number | null>
  readonly finish: Effect.Effect<void>
  readonly kill: Effect.Effect<void>
}

/** `quiesce ARGS` as a child process, its output prefixed with `label`; SIGKILLed if left running. */
const spawnQuiesce = (label: string, args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = ChildProcess.spawn(node, [...nodeArgs, quiesceBin, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
        env: { ...process.env, ...env }
      })
      const firstLine = Deferred.makeUnsafe<string>()
      const exited = Deferred.makeUnsafe<number | null>()
      let buffered = ""
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString()
        const lines = buffered.split("\n")
        buffered = lines.pop()!
        for (const line of lines) {
          console.log(`   ${clock()}  ${line}`)
          Deferred.doneUnsafe(firstLine, Exit.succeed(line))
        }
      })
      child.stderr.on("data", (chunk: Buffer) => {
        for (const line of chunk.toString().trimEnd().split("\n")) console.log(`   ${clock()}  [${label} stderr] ${line}`)
      })
      child.on("close", (code) => Deferred.doneUnsafe(exited, Exit.succeed(code)))
      const run: Run = {
        label,
        pid: child.pid!,
        firstLine: Deferred.await(firstLine),
        exit: Deferred.await(exited),
        finish: Effect.sync(() => void child.stdin.end()),
        kill: Effect.sync(() => void child.kill("SIGKILL"))
      }
      return { child, run }
    }),
    ({ child }) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  ).pipe(Effect.map(({ run }) => run))

const quiesceJson = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.callback<any>((resume) => {
    const options = { env: { ...process.env, ...env } }
    ChildProcess.execFile(node, [...nodeArgs, quiesceBin, ...args, "--json"], options, (_error, stdout) => {
      try {
        resume(Effect.succeed(JSON.parse(stdout)))
      } catch {
        resume(Effect.succeed(undefined))
      }
    })
  })

const waitUntil = (condition: () => boolean, timeoutMillis: number) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMillis
    while (!condition() && Date.now() < deadline) yield* Effect.sleep(20)
    return condition()
  })

const sharedService = Effect.scoped(Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "quiesce-demo-"))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )
  const log = join(dir, "service.log")
  const logLines = () => readFileSync(log, { encoding: "utf8", flag: "a+" }).split("\n").filter((l) => l !== "")
  const name = `demo-${process.pid}`
  const grace = 1_000
  // Hints and the service's own log live in the demo's temporary directory; the service's
  // semaphore set (kernel objects persist by design) is removed at the end.
  const env = { QUIESCE_RUNTIME_DIR: dir }
  yield* Effect.addFinalizer(() => Effect.ignore(SharedService.remove(name)))

  yield* say(`\n1. One service shared by concurrent commands — \`quiesce run\`\n`)
  yield* say(`   The service is the embedded demo HTTP server; quiesce calls it "${name}" and gives it a`)
  yield* say(`   free port (--port auto). Four commands start at the same moment, each with:`)
  yield* say(`     quiesce run --name ${name} --service "demo-service" --port auto --grace 1s node client.ts visit …`)
  yield* say(`   Each command asks the service who it is, then keeps working until told to finish.\n`)

  const service = `'${node}' '${demoService}' --name ${name} --log '${log}'`
  const runs = yield* Effect.forEach(
    [1, 2, 3, 4],
    (i) =>
      spawnQuiesce(`command ${i}`, [
        "run",
        "--name",
        name,
        "--service",
        service,
        "--port",
        "auto",
        "--grace",
        `${grace}ms`,
        "--",
        node,
        client,
        "visit",
        `command ${i}`
      ], env),
    { concurrency: "unbounded" }
  )
  const lines = yield* Effect.forEach(runs, (run) => run.firstLine, { concurrency: "unbounded" })
  const pids = new Set(lines.map((line) => /service pid (\d+)/.exec(line)?.[1]))
  const servicePid = Number([...pids][0])
  yield* say("")
  yield* check(logLines().filter((l) => l.includes(" started ")).length === 1, "the service was started exactly once")
  yield* check(pids.size === 1 && isAlive(servicePid), `all four commands talk to the same live process (pid ${servicePid})`)

  const status = yield* quiesceJson(["status", name], env)
  yield* say(`\n   \`quiesce status ${name}\` says: ${status?.state}, pid ${status?.pid}, port ${status?.port}, ${status?.clients ?? "some"} clients`)
  yield* check(status?.state === "running" && status?.pid === servicePid, "status matches the process the commands see")
  if (status?.clients !== null && status?.clients !== undefined) {
    yield* check(status.clients === 4, "status counts 4 clients")
  }

  const victim = runs[1]!
  yield* say(`\n   ${clock()}  Killing command 2 (pid ${victim.pid}: \`quiesce run\` became the command) with SIGKILL: no`)
  yield* say(`            cleanup code runs. Its reference was a kernel semaphore adjustment, which the kernel undoes.`)
  yield* victim.kill
  yield* victim.exit
  const afterKill = yield* quiesceJson(["status", name], env)
  yield* say(`   ${clock()}  status now: ${afterKill?.state}, ${afterKill?.clients ?? "some"} clients`)
  yield* check(isAlive(servicePid), "the service keeps running for the other three")
  if (afterKill?.clients !== null && afterKill?.clients !== undefined) {
    yield* check(afterKill.clients === 3, "the killed command no longer counts")
  }

  yield* say(`\n   The other commands finish one after another:`)
  let stillServing = true
  for (const run of [runs[0]!, runs[2]!, runs[3]!]) {
    yield* run.finish
    const code = yield* run.exit
    yield* say(`   ${clock()}  ${run.label} finished (exit ${code})`)
    if (run !== runs[3]) stillServing &&= isAlive(servicePid)
  }
  const lastLeft = Date.now()
  yield* check(stillServing, "the service stayed up while any command still used it")
  yield* say(`\n   ${clock()}  The last command has left. The service stays for its ${grace / 1000}s grace period (a`)
  yield* say(`            command started now would reuse it), then its supervisor stops it.`)
  const stopped = yield* waitUntil(() => !isAlive(servicePid), grace + 10_000)
  const after = (Date.now() - lastLeft) / 1000
  yield* say(`   ${clock()}  service pid ${servicePid} ${stopped ? `exited ${after.toFixed(1)}s after the last command left` : "is still running"}`)
  yield* check(stopped, "the service stopped after the last command, killed one included, was gone")
  yield* check(stopped && after * 1000 >= grace * 0.9, "…and not before its grace period")
  yield* check(logLines().filter((l) => l.includes(" stopped ")).length === 1, "its log shows one clean stop")
}))

const httpShutdown = Effect.gen(function*() {
  yield* say(`\n2. An HTTP server that drains before it closes — \`RundownRef\`\n`)
  yield* say(`   Every request runs under RundownRef.protect. Shutting down runs the ref down: new requests`)
  yield* say(`   get 503 at once, requests already in flight finish, and only then does the server close.\n`)
  const { claims, runScenario } = yield* importExample<HttpShutdownExample>("packages/rundown/examples/http-shutdown.ts")
  const report = yield* runScenario
  for (const line of report.narration) yield* say(`   · ${line}`)
  yield* say("")
  for (const { claim, held } of claims(report)) yield* check(held, claim)
})

const udp = Effect.gen(function*() {
  yield* say(`\n3. Many fibers, one UDP socket — \`Stage\`\n`)
  yield* say(`   32 fibers each send 4 requests to 4 UDP peers (in a worker thread) through ONE client socket.`)
  yield* say(`   Only one fiber at a time reads the socket (the head); it files each reply for the fiber it`)
  yield* say(`   belongs to and wakes that fiber; when its own reply arrives it hands the socket on.\n`)
  const { udpExample } = yield* importExample<UdpExample>("packages/stage/examples/udp.ts")
  const report = yield* udpExample({ peers: 4, fibers: 32, requestsPerFiber: 4 })
  yield* say(`   ${report.requests} requests answered; ${report.heads} fibers headed the stage in turn.`)
  yield* check(report.requests === 128 && report.misrouted === 0, "every fiber got exactly its own replies")
  yield* check(report.heads > 1, "headship passed between fibers as their replies arrived")
})

const program = Effect.gen(function*() {
  yield* say("Quiesce demo: the lifecycle of shared resources, in about ten seconds.")
  yield* sharedService
  yield* httpShutdown
  yield* udp
  const seconds = ((Date.now() - started) / 1000).toFixed(1)
  if (failures.length === 0) {
    yield* say(`\nEverything shown happened (${seconds}s).`)
  } else {
    yield* say(`\n${failures.length} claim(s) did not hold:\n${failures.map((f) => `  - ${f}`).join("\n")}`)
  }
})

Effect.runPromise(program).then(
  () => process.exit(failures.length === 0 ? 0 : 1),
  (error) => {
    console.error("demo failed:", error)
    process.exit(1)
  }
)
