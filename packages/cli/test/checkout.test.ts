/**
 * `quiesce` on the PATH of a fresh checkout, the way the README says to run it: after `npm ci`,
 * with nothing built and only the system's Node and npm on the PATH, `npx quiesce` runs (npm
 * links a package's executables at install time, so they must exist before any build; they run on
 * the Node 24 of the `node` devDependency).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import { cpSync, existsSync, mkdirSync } from "node:fs"
import { dirname, join } from "node:path"
import { SharedService } from "@quiesce/shared-service"
import { root, tempDir, uniqueName } from "./util.ts"

const repo = join(root, "..", "..")

interface Result {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (command: string, args: ReadonlyArray<string>, options: { cwd: string; env: NodeJS.ProcessEnv }) =>
  Effect.callback<Result>((resume) => {
    const child = ChildProcess.spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

describe("a fresh checkout", () => {
  it.live("after npm ci, with nothing built, npx quiesce (and quiesce-demo-service) run from the sources", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const checkout = join(dir, "checkout")
      // What a clone has: the tracked files, and new ones that are not ignored (no node_modules, no dist).
      const listed = ChildProcess.execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
        cwd: repo,
        encoding: "utf8"
      })
      for (const file of listed.split("\0").filter((f) => f !== "" && existsSync(join(repo, f)))) {
        mkdirSync(dirname(join(checkout, file)), { recursive: true })
        cpSync(join(repo, file), join(checkout, file))
      }
      assert.isFalse(existsSync(join(checkout, "packages", "cli", "dist")), "nothing built")
      // A fresh machine's PATH: no node_modules/.bin (hence the system Node 20 for npm itself),
      // and none of the npm_* settings of the `npm test` this runs under.
      const env: NodeJS.ProcessEnv = Object.fromEntries(
        Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith("npm_") && key !== "INIT_CWD")
      )
      env["PATH"] = (process.env["PATH"] ?? "").split(":").filter((entry) => !entry.includes("node_modules")).join(":")
      env["QUIESCE_RUNTIME_DIR"] = join(dir, "runtime")
      // The packages come from npm's cache, filled by the `npm ci` that installed this checkout.
      const installed = yield* run("npm", ["ci", "--offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: checkout, env })
      assert.strictEqual(installed.code, 0, `npm ci --offline failed (is npm's cache filled?): ${installed.stderr}`)

      const version = yield* run("npx", ["quiesce", "--version"], { cwd: checkout, env })
      assert.strictEqual(version.code, 0, version.stderr)
      assert.strictEqual(version.stdout.trim(), "quiesce v0.1.0")
      const help = yield* run("npx", ["quiesce", "run", "--help"], { cwd: checkout, env })
      assert.strictEqual(help.code, 0, help.stderr)
      assert.include(help.stdout, "quiesce run [flags] [NAME... --] <command> [args...]")

      const name = uniqueName("checkout")
      yield* Effect.addFinalizer(() =>
        Effect.andThen(
          Effect.ignore(run("npx", ["quiesce", "stop", name], { cwd: checkout, env })),
          Effect.ignore(SharedService.remove(name))
        )
      )
      const ask = "fetch(`http://127.0.0.1:${process.env.QUIESCE_SERVICE_PORT}/`).then((r) => r.json())" +
        ".then((s) => console.log(`served by ${s.name}`))"
      const served = yield* run(
        "npx",
        ["quiesce", "run", "-n", name, "-s", "quiesce-demo-service", "--port", "auto", "--grace", "0", "node", "-e", ask],
        { cwd: checkout, env }
      )
      assert.strictEqual(served.code, 0, served.stderr)
      assert.strictEqual(served.stdout.trim(), `served by ${name}`)
    }), { timeout: 600_000 })
})
