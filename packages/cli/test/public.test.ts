/**
 * `Cli.main` used through the package's public exports only, as a program embedding quiesce
 * would (issue 11: it used to need `Manager` from the unexported internals). In-process, so only
 * subcommands that do not replace the process (`run` would `execve` this test's process).
 */
import { assert, describe, it } from "@effect/vitest"
import { NodeServices } from "@effect/platform-node"
import { Cli } from "@quiesce/cli"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const main = (argv: ReadonlyArray<string>) => Cli.main(argv).pipe(Effect.provide(NodeServices.layer))

describe("Cli.main from the public exports", () => {
  it.effect("runs with NodeServices.layer alone: exit codes of --version, list, status, a bad invocation", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "quiesce-public-"))
      const before = process.env["QUIESCE_RUNTIME_DIR"]
      process.env["QUIESCE_RUNTIME_DIR"] = dir
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (before === undefined) delete process.env["QUIESCE_RUNTIME_DIR"]
          else process.env["QUIESCE_RUNTIME_DIR"] = before
          rmSync(dir, { recursive: true, force: true })
        })
      )
      assert.strictEqual(yield* main(["--version"]), 0)
      assert.strictEqual(yield* main(["list", "--json"]), 0)
      // Not running: status says so with exit code 1.
      assert.strictEqual(yield* main(["status", "public-api-test"]), 1)
      assert.strictEqual(yield* main(["logs", "public-api-test"]), 125)
      assert.strictEqual(yield* main(["frobnicate"]), 2)
    }))

  it("Cli.version is the package's version", () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8"))
    assert.strictEqual(Cli.version, version)
  })
})
