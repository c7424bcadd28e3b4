import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { client, demoService, eventually, isAlive, node, root, testService } from "./util.ts"

// Runs `executable run` (a built `quiesce`, no source conditions) with a service and checks that
// the shared-service reaper, which shared-service resolves through its own package exports,
// stops the service after the last client.
const runsAndReaps = (executable: string, label: string) =>
  Effect.gen(function*() {
    const { env, name } = yield* testService(label)
    const result = yield* Effect.callback<{ code: number | null; stdout: string; stderr: string }>((resume) => {
      ChildProcess.execFile(
        node,
        [executable, "run", "--name", name, "--service", `'${node}' '${demoService}'`, "--port", "auto", "--grace", "0", "--", node, client, "get"],
        { env: { ...process.env, ...env } },
        (error, stdout, stderr) =>
          resume(Effect.succeed({ code: error === null ? 0 : (error.code as number), stdout, stderr }))
      )
    })
    assert.strictEqual(result.code, 0, result.stderr)
    const { service } = JSON.parse(result.stdout.trim().replace(/^served /, ""))
    yield* eventually("the reaper to stop the service", () => !isAlive(service.pid))
  })

const built = () =>
  assert.isTrue(existsSync(join(root, "dist", "main.js")), "dist/main.js is missing: run `tsc -b` first (npm test does)")

// What `npm install` users run is bin/quiesce.js, which runs dist/quiesce.js (one bundled file) once
// it is built; the tsc output (dist/bin.js, importing shared-service's dist/) is what a workspace build runs.
describe("the built executables", () => {
  it.live("bin/quiesce.js, bundled (dist/quiesce.js): runs a command with a shared service, whose reaper then stops it", () =>
    Effect.gen(function*() {
      built()
      // `npm run bundle`, as prepack runs it.
      yield* Effect.callback<void>((resume) => {
        ChildProcess.execFile(node, [join(root, "scripts", "bundle.ts")], (error, _stdout, stderr) =>
          resume(error === null ? Effect.void : Effect.die(new Error(`bundle failed: ${stderr}`))))
      })
      yield* runsAndReaps(join(root, "bin", "quiesce.js"), "bundle")
    }), { timeout: 60_000 })

  it.live("tsc output (dist/bin.js): runs a command with a shared service, whose reaper then stops it", () =>
    Effect.gen(function*() {
      built()
      yield* runsAndReaps(join(root, "dist", "bin.js"), "dist")
    }), { timeout: 60_000 })
})
