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
import * as Module from "node:module"

Module.enableCompileCache?.()
await import("./main.ts")
