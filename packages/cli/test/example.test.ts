import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { chmodSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { QuiesceConfig } from "@quiesce/cli"
import { SharedService } from "@quiesce/shared-service"
import { bin, demoService, node, nodeArgs, quiesceExit, root, tempDir } from "./util.ts"

/**
 * Runs `examples/<script>` as a user would: `quiesce` and `quiesce-demo-service` on the PATH (as
 * `npm install -g @quiesce/cli` puts them), in a runtime directory of its own.
 */
const runExample = (script: string, services: ReadonlyArray<string>) =>
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
    for (const service of services) {
      yield* Effect.addFinalizer(() =>
        Effect.andThen(
          quiesceExit(["stop", service], { env: { QUIESCE_RUNTIME_DIR: dir } }),
          Effect.ignore(SharedService.remove(service))
        )
      )
    }
    const result = yield* Effect.callback<{ code: number | null; stdout: string; stderr: string }>((resume) => {
      ChildProcess.execFile("sh", [join(root, "examples", script)], { env }, (error, stdout, stderr) =>
        resume(Effect.succeed({ code: error === null ? 0 : (error.code as number), stdout, stderr })))
    })
    return { ...result, dir }
  })

const readme = readFileSync(join(root, "README.md"), "utf8")
/** The README's fenced code blocks, in order: their language (`""` for none) and text. */
const fenced: ReadonlyArray<{ readonly language: string; readonly text: string }> = [
  ...readme.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)
].map((m) => ({ language: m[1]!, text: m[2]! }))
const blocks = (language: string) => fenced.filter((b) => b.language === language).map((b) => b.text)

describe("README examples", () => {
  it("every sh block of the README is an example file run below, verbatim", () => {
    const files = ["share.sh", "failing.sh", "project/run.sh"].map((f) => readFileSync(join(root, "examples", f), "utf8"))
    assert.deepStrictEqual(blocks("sh"), files)
  })

  it("the README's config files: the project's verbatim, and each one a valid config", () => {
    const configs = blocks("json").filter((text) => text.includes(`"services"`))
    assert.strictEqual(configs[0], readFileSync(join(root, "examples", "project", "quiesce.config.json"), "utf8"))
    process.env["QUIESCE_DATABASE_URL"] ??= "postgres://ci@db.internal/quiesce"
    for (const text of configs) assert.isAbove(QuiesceConfig.decode(text, "/srv/app/quiesce.config.json").services.size, 0)
  })

  it.live("examples/project/run.sh: two services from the config in one command, then one held by up", () =>
    Effect.gen(function*() {
      const result = yield* runExample("project/run.sh", ["api", "cache"])
      assert.strictEqual(result.code, 0, `stdout: ${result.stdout}; stderr: ${result.stderr}`)
      const lines = result.stdout.trim().split("\n")
      assert.match(lines[0]!, /^api on port \d+$/)
      assert.match(lines[1]!, /^cache on port \d+$/)
      assert.match(lines[2]!, /^cache is (up|already up), held by pid \d+/)
      assert.strictEqual(lines[3], lines[1], "the held cache is the one the first command used (within its grace)")
      assert.match(lines[4]!, /^cache released/)
    }), { timeout: 60_000 })

  it.live("examples/share.sh: three commands, one service", () =>
    Effect.gen(function*() {
      const result = yield* runExample("share.sh", ["readme-demo"])
      assert.strictEqual(result.code, 0, `stdout: ${result.stdout}; stderr: ${result.stderr}`)
      const answers = result.stdout.split("\n").filter((line) => line.startsWith("service pid"))
      assert.strictEqual(answers.length, 3, result.stdout)
      assert.strictEqual(new Set(answers).size, 1, "all three saw the same service")
      assert.include(result.stdout, "readme-demo: running")
    }), { timeout: 60_000 })

  it.live("examples/failing.sh: prints what the README shows (pids and paths aside)", () =>
    Effect.gen(function*() {
      const result = yield* runExample("failing.sh", ["broken-demo"])
      assert.strictEqual(result.code, 0, `stdout: ${result.stdout}; stderr: ${result.stderr}`)
      // The transcript follows the script in the README; what it shows of quiesce's own lines
      // must be what quiesce prints. (Whether `quiesce logs` already finds the log retired and
      // how far the supervisor got depends on timing, so only the service's line is required there.)
      const shown = blocks("").find((b) => b.includes("failed to start"))!.split("\n")
      assert.strictEqual(fenced[fenced.findIndex((b) => b.text.includes("failed to start")) - 1]!.text, readFileSync(join(root, "examples", "failing.sh"), "utf8"))
      const normalize = (line: string) => line.replace(/process \d+/, "process N").replaceAll(result.dir, "DIR")
      const printed = (result.stderr + result.stdout).split("\n")
      // stderr and stdout arrive apart here: compare the first lines of each.
      assert.deepStrictEqual(result.stderr.split("\n").slice(0, 3).map(normalize), shown.slice(0, 3).map(normalize))
      assert.strictEqual(result.stdout.split("\n")[0], shown[3])
      assert.include(printed, "config: unknown option --bogus")
    }), { timeout: 60_000 })
})
