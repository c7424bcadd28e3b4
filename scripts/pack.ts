/**
 * What `npm pack` and `npm publish` do to a workspace package, from the `prepack`, `postpack` and
 * `postpublish` scripts of `packages/<name>/package.json` (`node ../../scripts/pack.ts <step>`).
 *
 * prepack:
 * - checks the manifest (`manifestProblems`): workspace dependencies pinned to the exact version
 *   of the sibling being released, `repository` / `homepage` / `bugs` derived from the root
 *   package.json's `repository` (the one place the repository URL is written), public access;
 * - builds `dist/` from nothing: removes `dist/` and the project's tsbuildinfo first (with a stale
 *   tsbuildinfo, `tsc -b` thinks a deleted `dist/` is up to date and emits nothing), then
 *   `tsc -b --force` (the project and the projects it references), then `scripts/bundle.ts` where
 *   the package has one (the CLI's executable);
 * - adds the repository's LICENSE;
 * - writes the published package.json (`publishedManifest`: no `@quiesce/source` condition, which
 *   points at `src/*.ts` and which Node refuses to run from `node_modules`; its scripts stay,
 *   since `npm publish` finds `postpublish` in the manifest it re-read)
 *   and README.md with its relative links made absolute GitHub URLs (they would be dead on the
 *   registry's page), keeping the originals in `build/pack/`.
 *
 * postpack puts the originals back, except under `npm publish`: npm reads package.json again
 * after packing to build the registry's metadata (shown on the package's page), so there
 * `postpublish` puts them back. A pack or publish that died half-way leaves the published files
 * in place (`git status` shows them); the next prepack restores them before anything else.
 */
import { execFileSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { join, posix, relative } from "node:path"
import { pathToFileURL } from "node:url"

export const root = join(import.meta.dirname, "..")

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
export interface Manifest {
  readonly name: string
  readonly version: string
  readonly [key: string]: Json
}

const readJson = (path: string): Manifest => JSON.parse(readFileSync(path, "utf8"))
const writeJson = (path: string, value: unknown) => writeFileSync(path, JSON.stringify(value, null, 2) + "\n")

/** The workspace packages: directory (relative to the root) and manifest. */
export const workspaces = (): ReadonlyArray<{ readonly dir: string; readonly manifest: Manifest }> =>
  (readJson(join(root, "package.json"))["workspaces"] as ReadonlyArray<string>).map((dir) => ({
    dir,
    manifest: readJson(join(root, dir, "package.json"))
  }))

/** `https://github.com/owner/repo`, from the root package.json's `repository`. */
export const repositoryWebUrl = (): string => {
  const repository = readJson(join(root, "package.json"))["repository"] as { readonly url: string }
  return repository.url.replace(/^git\+/, "").replace(/\.git$/, "")
}

/** The `repository`, `homepage` and `bugs` a package in `dir` must declare. */
export const expectedLinks = (dir: string) => {
  const web = repositoryWebUrl()
  return {
    repository: { type: "git", url: `git+${web}.git`, directory: dir },
    homepage: `${web}/tree/main/${dir}#readme`,
    bugs: { url: `${web}/issues` }
  }
}

const dependencyFields = ["dependencies", "peerDependencies", "optionalDependencies"] as const

/** What is wrong with the manifest of the workspace package in `dir`, as sentences (none: fine). */
export const manifestProblems = (
  dir: string,
  manifest: Manifest = readJson(join(root, dir, "package.json"))
): ReadonlyArray<string> => {
  const siblings = new Map(workspaces().map((w) => [w.manifest.name, w.manifest.version]))
  const problems: Array<string> = []
  for (const field of dependencyFields) {
    const deps = (manifest[field] ?? {}) as Record<string, string>
    for (const [name, range] of Object.entries(deps)) {
      const version = siblings.get(name)
      if (version !== undefined && range !== version) {
        problems.push(`${field}.${name} is "${range}": pin it to "${version}", the version being released with it`)
      }
    }
  }
  // What a sibling needs at run time and this package declares too (the CLI's bundle inlines
  // shared-service, so it imports koffi itself) must not drift apart.
  const own = { ...(manifest["peerDependencies"] as object), ...(manifest["dependencies"] as object) } as Record<string, string>
  for (const sibling of workspaces().filter((w) => own[w.manifest.name] !== undefined)) {
    const theirs = { ...(sibling.manifest["peerDependencies"] as object), ...(sibling.manifest["dependencies"] as object) } as Record<string, string>
    for (const [name, range] of Object.entries(theirs)) {
      if (own[name] !== undefined && own[name] !== range) {
        problems.push(`${name} is "${own[name]}" here but "${range}" in ${sibling.manifest.name}: declare the same range`)
      }
    }
  }
  for (const [field, value] of Object.entries(expectedLinks(dir))) {
    if (JSON.stringify(manifest[field]) !== JSON.stringify(value)) {
      problems.push(`${field} must be ${JSON.stringify(value)} (derived from the root package.json's repository)`)
    }
  }
  if (JSON.stringify(manifest["publishConfig"]) !== JSON.stringify({ access: "public" })) {
    problems.push(`publishConfig must be {"access":"public"} (scoped packages are published restricted by default)`)
  }
  if (manifest["license"] !== "MIT") problems.push(`license must be "MIT", as the repository's LICENSE says`)
  if (manifest["private"] === true) problems.push(`a published package cannot be private`)
  return problems
}

const withoutCondition = (value: Json, condition: string): Json => {
  if (value === null || typeof value !== "object") return value
  if (Array.isArray(value)) return value.map((v) => withoutCondition(v, condition))
  return Object.fromEntries(
    Object.entries(value).filter(([key]) => key !== condition).map(([key, v]) => [key, withoutCondition(v, condition)])
  )
}

/** The package.json as published: the workspace-only source condition removed. */
export const publishedManifest = (manifest: Manifest): Manifest => ({
  ...manifest,
  exports: withoutCondition(manifest["exports"] ?? null, "@quiesce/source"),
  // Development scripts that need the workspace's sources (shared-service's `model-check`) do not ship.
  ...(manifest["scripts"] === undefined ? {} : {
    scripts: Object.fromEntries(
      Object.entries(manifest["scripts"] as Record<string, string>).filter(([, command]) => !command.includes("@quiesce/source"))
    )
  })
})

/**
 * README.md as published: every relative link (`](../shared-service)`, `](examples/udp.ts)`)
 * made an absolute URL into the repository, so that it also works on the registry's page.
 */
export const publishedReadme = (readme: string, dir: string): string => {
  const web = repositoryWebUrl()
  return readme.replace(/(\]\()([^)\s]+)(\))/g, (whole, open: string, target: string, close: string) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) return whole
    const [path = "", anchor] = target.split("#", 2)
    const resolved = posix.normalize(posix.join(dir, path))
    const onDisk = join(root, resolved)
    const kind = existsSync(onDisk) && statSync(onDisk).isDirectory() ? "tree" : "blob"
    return `${open}${web}/${kind}/main/${resolved.replace(/\/$/, "")}${anchor === undefined ? "" : `#${anchor}`}${close}`
  })
}

const saved = (pkg: string) => join(pkg, "build", "pack")

const restore = (pkg: string) => {
  const dir = saved(pkg)
  for (const file of ["package.json", "README.md"]) {
    if (existsSync(join(dir, file))) copyFileSync(join(dir, file), join(pkg, file))
  }
  rmSync(dir, { recursive: true, force: true })
  rmSync(join(pkg, "LICENSE"), { force: true })
}

const build = async (pkg: string) => {
  rmSync(join(pkg, "dist"), { recursive: true, force: true })
  for (const entry of existsSync(join(pkg, "build")) ? readdirSync(join(pkg, "build")) : []) {
    if (entry.endsWith(".tsbuildinfo")) rmSync(join(pkg, "build", entry))
  }
  execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-b", "--force", join(pkg, "tsconfig.src.json")], {
    stdio: "inherit"
  })
  const bundle = join(pkg, "scripts", "bundle.ts")
  if (existsSync(bundle)) {
    const module: { readonly bundle: () => Promise<string> } = await import(pathToFileURL(bundle).href)
    await module.bundle()
  }
}

export const prepack = async (pkg: string) => {
  restore(pkg)
  const dir = relative(root, pkg).split("\\").join("/")
  const problems = manifestProblems(dir)
  if (problems.length > 0) {
    throw new Error(`${dir}/package.json is not ready to publish:\n- ${problems.join("\n- ")}`)
  }
  await build(pkg)
  copyFileSync(join(root, "LICENSE"), join(pkg, "LICENSE"))
  mkdirSync(saved(pkg), { recursive: true })
  copyFileSync(join(pkg, "package.json"), join(saved(pkg), "package.json"))
  copyFileSync(join(pkg, "README.md"), join(saved(pkg), "README.md"))
  writeJson(join(pkg, "package.json"), publishedManifest(readJson(join(pkg, "package.json"))))
  writeFileSync(join(pkg, "README.md"), publishedReadme(readFileSync(join(pkg, "README.md"), "utf8"), dir))
}

if (import.meta.main) {
  const pkg = process.cwd()
  const step = process.argv[2]
  if (step === "prepack") {
    await prepack(pkg)
  } else if (step === "postpack") {
    if (process.env["npm_command"] !== "publish") restore(pkg)
  } else if (step === "postpublish") {
    restore(pkg)
  } else {
    throw new Error(`usage: node scripts/pack.ts prepack|postpack|postpublish (from a package's directory), not ${step}`)
  }
}
