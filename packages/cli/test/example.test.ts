import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { chmodSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { SharedService } from "@quiesce/shared-service"
import { bin, demoService, node, nodeArgs, quiesceExit, root, tempDir } from "./util.ts"

// The README's example is examples/share.sh, run here as a user would: `quiesce` and
// `quiesce-demo-service` on the PATH (as `npm install -g @quiesce/cli` puts them).
describe("README example (examples/share.sh)", () => {
  it.live("three commands, one service", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const shim = (name: string, target: string) => {
        const path = join(dir, name)
        writeFileSync(path, `#!/bin/sh\nexec '${node}' ${nodeArgs.join(" ")} '${target}' "$@"\n`)
        chmodSync(path, 0o755)
      }
      shim("quiesce", bin)
      shim("quiesce-demo-service", demoService)
      const env = {
        ...process.env,
        PATH: `${dir}:${dirname(node)}:${process.env["PATH"]}`,
        QUIESCE_RUNTIME_DIR: dir
      }
      yield* Effect.addFinalizer(() =>
        Effect.andThen(
          quiesceExit(["stop", "readme-demo"], { env: { QUIESCE_RUNTIME_DIR: dir } }),
          Effect.ignore(SharedService.remove("readme-demo"))
        )
      )
      const result = yield* Effect.callback<{ code: number | null; stdout: string; stderr: string }>((resume) => {
        ChildProcess.execFile("sh", [join(root, "examples", "share.sh")], { env }, (error, stdout, stderr) =>
          resume(Effect.succeed({ code: error === null ? 0 : (error.code as number), stdout, stderr })))
      })
      assert.strictEqual(result.code, 0, `stdout: ${result.stdout}; stderr: ${result.stderr}`)
      const answers = result.stdout.split("\n").filter((line) => line.startsWith("service pid"))
      assert.strictEqual(answers.length, 3, result.stdout)
      assert.strictEqual(new Set(answers).size, 1, "all three saw the same service")
      assert.include(result.stdout, "readme-demo: running")
    }), { timeout: 60_000 })
})
