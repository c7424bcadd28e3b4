import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { client, demoService, eventually, isAlive, node, root, testService } from "./util.ts"

// What `npm install` users run is dist/quiesce.js, one bundled file: check that it runs a
// command with a service and that the shared-service reaper, which the bundle locates through
// the package's exports, still stops the service after the last client.
describe("the bundled executable (dist/quiesce.js)", () => {
  it.live("runs a command with a shared service, whose reaper then stops it", () =>
    Effect.gen(function*() {
      assert.isTrue(existsSync(join(root, "dist", "main.js")), "dist/main.js is missing: run `tsc -b` first (npm test does)")
      // `npm run bundle`, as prepack runs it.
      yield* Effect.callback<void>((resume) => {
        ChildProcess.execFile(node, [join(root, "scripts", "bundle.ts")], (error, _stdout, stderr) =>
          resume(error === null ? Effect.void : Effect.die(new Error(`bundle failed: ${stderr}`))))
      })
      const executable = join(root, "dist", "quiesce.js")
      const { env, name } = yield* testService("bundle")
      const result = yield* Effect.callback<{ code: number | null; stdout: string; stderr: string }>((resume) => {
        ChildProcess.execFile(
          node,
          [executable, "run", "--name", name, "--service", `'${node}' '${demoService}'`, "--grace", "0", "--", node, client, "get"],
          { env: { ...process.env, ...env } },
          (error, stdout, stderr) =>
            resume(Effect.succeed({ code: error === null ? 0 : (error.code as number), stdout, stderr }))
        )
      })
      assert.strictEqual(result.code, 0, result.stderr)
      const { service } = JSON.parse(result.stdout.trim().replace(/^served /, ""))
      yield* eventually("the reaper to stop the service", () => !isAlive(service.pid))
    }), { timeout: 60_000 })
})
