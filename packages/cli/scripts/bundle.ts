/**
 * Builds `dist/quiesce.js`, the `quiesce` executable as shipped: `dist/main.js` (from `tsc -b`)
 * and everything it imports, Effect included, in one ES module (koffi, a native addon, stays
 * external). `quiesce run` is on the critical path of every command it wraps, and Node spends
 * most of a CLI's startup resolving and evaluating hundreds of ES modules; one tree-shaken file
 * starts about 2.5× faster (0.13 s of CPU instead of 0.36 s on the benchmark machine).
 *
 * `npm run bundle -w packages/cli` (also run by `prepack`, by `test/bundle.test.ts` and by the
 * benchmark). A build script, not a benchmark: the root `tsconfig.tooling.json` type-checks it.
 *
 * The shared-service package finds its supervisor entry through its own exports
 * (`import.meta.resolve("@quiesce/shared-service/bin/supervisor")`), which Node resolves from the
 * bundle's location too (through `node_modules`), so the bundle needs no special handling.
 */
import { chmodSync, existsSync } from "node:fs"
import { join } from "node:path"
import { build } from "rolldown"

const root = join(import.meta.dirname, "..")

export const bundle = async (): Promise<string> => {
  const input = join(root, "dist", "main.js")
  if (!existsSync(input)) throw new Error(`${input} is missing: run tsc -b first`)
  const file = join(root, "dist", "quiesce.js")
  await build({
    input,
    platform: "node",
    external: ["koffi"],
    logLevel: "warn",
    // One file: the PostgreSQL backend (a dynamic import, loaded only by --backend) inlined too.
    output: { file, format: "esm", banner: "#!/usr/bin/env node", codeSplitting: false }
  })
  chmodSync(file, 0o755)
  return file
}

if (import.meta.main) {
  console.log(`wrote ${await bundle()}`)
}
