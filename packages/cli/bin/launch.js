/**
 * What the package's executables run: the build in `dist/` when there is one (the published
 * package, a checkout after `npm run build`), else the TypeScript sources (a fresh checkout
 * after `npm ci`, nothing built), so that `npx quiesce` works either way.
 *
 * Plain JavaScript on purpose: npm links `bin` entries at install time, from `package.json`, so
 * they must exist before anything is built, and Node refuses to strip types from files under
 * `node_modules` (where the published package lives). The sources resolve the workspace packages
 * through the `@quiesce/source` export condition, which a resolve hook adds here (the same as
 * `node --conditions=@quiesce/source`, in this process).
 *
 * A checkout that has been built runs its build: after changing the sources, `npm run build`
 * again (or remove `dist/`).
 */
import { existsSync, readFileSync } from "node:fs"
import * as Module from "node:module"
import { fileURLToPath } from "node:url"

/**
 * @param {string} reason
 * @returns {never}
 */
const fail = (reason) => {
  process.stderr.write(`quiesce: ${reason}\n`)
  process.exit(125)
}

/**
 * Runs `dist/<built>` if it exists, else `src/<source>`.
 *
 * @param {string} built
 * @param {string} source
 * @returns {Promise<unknown>}
 */
export const launch = (built, source) => {
  // The standard descriptors as this process got them, before anything opens them (loading
  // node:util opens stderr): the command `quiesce run` becomes gets them back so (src/internal/exec.ts).
  /** @type {Record<symbol, unknown>} */ (globalThis)[Symbol.for("@quiesce/cli/stdio")] ??= [0, 1, 2].map((fd) => {
    try {
      return readFileSync(`/proc/self/fdinfo/${fd}`, "latin1")
    } catch {
      return undefined
    }
  })
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number)
  if (major < 22 || (major === 22 && minor < 19)) {
    fail(`needs Node >= 22.19, this is ${process.version} (in a checkout, npx quiesce runs it on the checkout's Node 24)`)
  }
  // Before the modules load: V8 keeps their compiled code between runs (a third of the startup).
  Module.enableCompileCache?.()
  const dist = new URL(`../dist/${built}`, import.meta.url)
  if (existsSync(dist)) return import(dist.href)
  const src = new URL(`../src/${source}`, import.meta.url)
  if (fileURLToPath(src).includes("/node_modules/")) {
    fail(`${fileURLToPath(dist)} is missing: this copy of @quiesce/cli was not built (npm run build)`)
  }
  Module.registerHooks({
    resolve: (specifier, context, next) =>
      next(specifier, { ...context, conditions: [...context.conditions, "@quiesce/source"] })
  })
  return import(src.href)
}
