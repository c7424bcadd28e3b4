/**
 * A reference handed to another program with `execve` (what `quiesce run` does): the exec'd
 * program holds it until it exits, with no code of this package running in it.
 */
import { RefCounter } from "@quiesce/shared-service"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fixture, harness } from "./util.ts"

const dir = mkdtempSync(join(tmpdir(), "quiesce-exec-"))
process.env["QUIESCE_RUNTIME_DIR"] = dir

const { cleanup, names, newName } = harness(dir)
afterAll(async () => {
  await cleanup()
  for (const name of names) {
    await Effect.runPromise(Effect.ignore(Effect.flatMap(RefCounter.flock().open(name), (c) => c.remove)))
  }
})

/** The fixture, once it has exec'd: its pid, and closing its stdin ends it. */
const execd = (name: string, kind: "sysv" | "flock", prepare: "prepare" | "no-prepare") =>
  Effect.acquireRelease(
    Effect.callback<{ readonly pid: number; readonly finish: Effect.Effect<number | null> }>((resume) => {
      const child = spawn(
        process.execPath,
        ["--conditions=@quiesce/source", "--no-warnings", fixture("exec.ts"), name, kind, prepare],
        { stdio: ["pipe", "pipe", "inherit"] }
      )
      const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)))
      let out = ""
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes("execd")) {
          resume(Effect.succeed({
            pid: child.pid!,
            finish: Effect.promise(() => {
              child.stdin!.end()
              return exited
            })
          }))
        } else if (out.includes("error")) {
          resume(Effect.die(new Error(out)))
        }
      })
      return Effect.sync(() => child.kill("SIGKILL"))
    }),
    ({ pid }) =>
      Effect.sync(() => {
        try {
          process.kill(pid, "SIGKILL")
        } catch {
          // gone
        }
      })
  )

const countOf = (name: string, kind: "sysv" | "flock") =>
  Effect.flatMap((kind === "sysv" ? RefCounter.sysV() : RefCounter.flock()).openExisting(name), (counter) =>
    counter === undefined ? Effect.succeed(0) : counter.count)

describe.each(["sysv", "flock"] as const)("%s: prepareExec, then execve", (kind) => {
  it.live("the exec'd program holds the reference until it exits", () =>
    Effect.gen(function*() {
      const name = newName(`exec-${kind}`)
      const program = yield* execd(name, kind, "prepare")
      // It really is another program now, in the same process (its shell announces itself, then
      // execs `cat`: the command line changes a moment later).
      const cmdline = () => readFileSync(`/proc/${program.pid}/cmdline`, "utf8")
      for (let i = 0; i < 500 && !cmdline().includes("cat"); i++) yield* Effect.sleep("10 millis")
      assert.include(cmdline(), "cat")
      assert.strictEqual(yield* countOf(name, kind), 1)
      assert.strictEqual(yield* program.finish, 0)
      assert.strictEqual(yield* countOf(name, kind), 0)
    }), 30_000)
})

describe("execve without prepareExec", () => {
  it.live("sysv: the SEM_UNDO adjustment survives anyway (a kernel fact prepareExec relies on)", () =>
    Effect.gen(function*() {
      const name = newName("exec-sysv-bare")
      const program = yield* execd(name, "sysv", "no-prepare")
      assert.strictEqual(yield* countOf(name, "sysv"), 1)
      yield* program.finish
      assert.strictEqual(yield* countOf(name, "sysv"), 0)
    }), 30_000)

  it.live("flock: the close-on-exec descriptor takes the reference with it (what prepareExec prevents)", () =>
    Effect.gen(function*() {
      const name = newName("exec-flock-bare")
      const program = yield* execd(name, "flock", "no-prepare")
      assert.strictEqual(yield* countOf(name, "flock"), 0)
      yield* program.finish
    }), 30_000)
})
