#!/usr/bin/env node
/**
 * The `quiesce` executable.
 *
 * `quiesce run` is on the critical path of every command it wraps, so startup matters: the
 * compile cache (Node >= 22.1) keeps V8's bytecode for Effect's modules between runs, which
 * cuts startup by about a third. It must be on before those modules load, hence the dynamic
 * import.
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import * as Module from "node:module"

// The standard descriptors as this process got them, before anything opens them: the command
// `quiesce run` becomes gets them back so (see `internal/exec.ts`; `bin/launch.js` does the same).
;(globalThis as Record<symbol, unknown>)[Symbol.for("@quiesce/cli/stdio")] ??= [0, 1, 2].map((fd) => {
  try {
    return readFileSync(`/proc/self/fdinfo/${fd}`, "latin1")
  } catch {
    return undefined
  }
})

Module.enableCompileCache?.()
await import("./main.ts")
