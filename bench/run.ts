/**
 * `npm run bench`: runs every package's benchmarks, each in its own Node process with a pinned
 * young generation so that GC pauses do not dominate the comparisons.
 */
import { spawnSync } from "node:child_process"
import { readdirSync, existsSync } from "node:fs"
import { join } from "node:path"

const root = join(import.meta.dirname, "..")
const only = process.argv.slice(2)
let failed = 0
for (const pkg of readdirSync(join(root, "packages")).sort()) {
  const dir = join(root, "packages", pkg, "bench")
  if (!existsSync(dir)) continue
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".bench.ts")).sort()) {
    if (only.length > 0 && !only.some((o) => `${pkg}/${file}`.includes(o))) continue
    console.log(`\n── ${pkg}/${file}`)
    const r = spawnSync(process.execPath, ["--conditions=@quiesce/source", "--min-semi-space-size=16", join(dir, file)], {
      stdio: "inherit",
      cwd: join(root, "packages", pkg)
    })
    if (r.status !== 0) failed++
  }
}
process.exit(failed === 0 ? 0 : 1)
