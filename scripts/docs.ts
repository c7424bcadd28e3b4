/**
 * `npm run docs`: the API reference of every package, generated from the JSDoc of its public
 * modules (`src/*.ts`; `src/internal/` and the executables are not API) by `@effect/docgen`, the
 * Effect ecosystem's generator, and the checks that Effect's own docgen runs:
 *
 * 1. documentation: every export has a description, `@since` and an `@example` (the namespace
 *    re-exports of `index.ts` excepted: each module's own exports carry its examples);
 * 2. examples: every `@example` type-checks and runs. docgen writes each example to a file,
 *    type-checks them all with `tsc` (the repository's TypeScript 7: docgen's peer dependency on
 *    TypeScript 5 is only for that command, hence the `overrides` entry in package.json; docgen
 *    parses the sources with its own bundled TypeScript 5.5) and runs them with `tsx`;
 * 3. the reference: Markdown per module into `docs/<package>/`, with `docs/README.md` listing
 *    them. It is written whatever 1 and 2 found, so that it exists while they still fail.
 *
 * `npm run docs -- rundown stage` checks and regenerates only the packages named (by directory),
 * leaving the rest of `docs/` as it is.
 *
 * Exits non-zero if 1 or 2 found anything, after printing all of it. Examples import the
 * packages by name (`import { RundownRef } from "@quiesce/rundown"`), resolved to the sources.
 *
 * docgen reads its settings from `docgen.json` in the package's directory; this script writes
 * one there for each run (from one definition, below) and removes it afterwards, with docgen's
 * own `docs/` output in the package, which it moves to the root `docs/`.
 */
import { execFile } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { repositoryWebUrl, root, workspaces } from "./pack.ts"

const bin = join(root, "node_modules", ".bin")
const out = join(root, "docs")

const paths = Object.fromEntries(workspaces().flatMap(({ dir, manifest }) => [
  [manifest.name, [join(root, dir, "src", "index.ts")]],
  [`${manifest.name}/*`, [join(root, dir, "src", "*.ts")]]
]))

const compilerOptions = {
  noEmit: true,
  strict: true,
  exactOptionalPropertyTypes: true,
  skipLibCheck: true,
  target: "ES2024",
  // docgen rewrites an example's import of its own package to the directory `../../src`,
  // which only bundler resolution accepts.
  module: "ESNext",
  moduleResolution: "Bundler",
  lib: ["ES2024", "ESNext.Disposable"],
  types: ["node"],
  allowImportingTsExtensions: true,
  paths
}

const exclude = ["src/internal/**/*.ts", "src/bin/**/*.ts", "src/bin.ts", "src/main.ts"]

interface Run {
  readonly ok: boolean
  readonly output: string
}

const examplesRuntimeDir = mkdtempSync(join(tmpdir(), "quiesce-docs-"))

// Sequential within a package (docgen.json and docs/ are per package), parallel across them.
const docgen = (dir: string, config: Record<string, unknown>, runExamples: boolean): Promise<Run> => {
  const pkg = join(root, dir)
  writeFileSync(join(pkg, "docgen.json"), JSON.stringify({ exclude, parseCompilerOptions: compilerOptions, examplesCompilerOptions: compilerOptions, ...config }, null, 2))
  return new Promise<Run>((resolve) => {
    // docgen 0.5.2 ignores its --no-run-examples flag; the setting is honoured from the environment.
    // The examples start real services: their runtime files go to a directory of this run, not
    // the user's.
    const env = {
      ...process.env,
      PATH: [bin, process.env["PATH"] ?? ""].join(delimiter),
      DOCGEN_RUN_EXAMPLES: String(runExamples),
      QUIESCE_RUNTIME_DIR: examplesRuntimeDir
    }
    execFile(join(bin, "docgen"), [], { cwd: pkg, env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      rmSync(join(pkg, "docgen.json"), { force: true })
      resolve({ ok: error === null, output: `${stdout}${stderr}` })
    })
  })
}

/** docgen's error message without its log lines and stack trace. */
const errors = (output: string): string =>
  output.split("\n")
    .filter((line) => !/^\s*at /.test(line) && !/(INFO|ERROR) \(#\d+\)/.test(line) && line.trim() !== "")
    .map((line) => `  ${line.replace(/^ {2}/, "").replace(/^DocgenError: /, "")}`)
    .join("\n")

// One docgen run reports, per export, only the first tag it misses (and nothing more in a file
// whose module comment fails), so each requirement has its own run.
const checks = [
  { label: "every export has @since", config: { enforceVersion: true } },
  { label: "every export has a description", config: { enforceVersion: false, enforceDescriptions: true } },
  // index.ts only re-exports each module as a namespace; the module's own exports carry the examples.
  { label: "every export has an @example", config: { enforceVersion: false, enforceExamples: true, exclude: [...exclude, "src/index.ts"] } }
] as const

const run = (file: string, args: ReadonlyArray<string>, cwd: string) =>
  new Promise<Run>((resolve) =>
    execFile(file, args, { cwd, env: { ...process.env, PATH: [bin, process.env["PATH"] ?? ""].join(delimiter) } }, (error, stdout, stderr) =>
      resolve({ ok: error === null, output: `${stdout}${stderr}` })))

// docgen runs all the examples in one process, which stops at the first that throws; a failed
// run leaves them in docs/examples/, where each is run alone to name every one that fails.
const eachExample = async (dir: string): Promise<ReadonlyArray<string>> => {
  const examples = join(root, dir, "docs", "examples")
  if (!existsSync(examples)) return []
  const failures: Array<string> = []
  for (const file of readdirSync(examples).filter((f) => f.endsWith(".ts") && f !== "index.ts").sort()) {
    const result = await run(join(bin, "tsx"), ["--tsconfig", join(examples, "tsconfig.json"), join(examples, file)], examples)
    if (!result.ok) {
      const thrown = result.output.split("\n").find((line) => /^\w*(Error|Exception)\b|^\s*throw /.test(line)) ?? "failed"
      failures.push(`  ${file}: ${thrown.trim()}`)
    }
  }
  return failures
}

const reference = async ({ dir, manifest }: { readonly dir: string; readonly manifest: { readonly name: string } }) => {
  const report: Array<string> = [`── ${manifest.name}`]
  let failed = 0
  const docsDir = join(root, dir, "docs")
  const keep = () => {
    // docgen's own output in the package: the reference it wrote, kept for docs/
    const modules = join(docsDir, "modules")
    if (!existsSync(modules)) return false
    rmSync(join(staging, dir), { recursive: true, force: true })
    cpSync(modules, join(staging, dir), { recursive: true })
    return true
  }
  let generated = false
  for (const check of checks) {
    const result = await docgen(dir, check.config, false)
    report.push(`${result.ok ? "ok  " : "FAIL"} ${check.label}${result.ok ? "" : `\n${errors(result.output)}`}`)
    if (!result.ok) failed++
    // A passing run without examples has written the reference too.
    if (result.ok && !generated) generated = keep()
    rmSync(docsDir, { recursive: true, force: true })
  }
  const examples = await docgen(dir, { enforceVersion: false }, true)
  if (examples.ok) {
    report.push("ok   every @example type-checks and runs")
  } else {
    failed++
    const thrown = examples.output.includes("running tsx on examples") ? await eachExample(dir) : []
    report.push(`FAIL every @example type-checks and runs\n${errors(examples.output)}`)
    if (thrown.length > 0) report.push(`  each example run alone, those that fail:\n${thrown.join("\n")}`)
  }
  rmSync(docsDir, { recursive: true, force: true })
  if (!generated) {
    const lenient = await docgen(dir, { enforceVersion: false }, false)
    generated = lenient.ok && keep()
    if (!generated) report.push(`FAIL reference not generated\n${errors(lenient.output)}`)
    rmSync(docsDir, { recursive: true, force: true })
  }
  const name = dir.split("/").at(-1)!
  const files: Array<string> = []
  if (generated) {
    cpSync(join(staging, dir), join(out, name), { recursive: true })
    rmSync(join(out, name, "index.md"), { force: true })
    files.push(...readdirSync(join(out, name)).filter((f) => f.endsWith(".md")).sort())
    // docgen writes a Jekyll front matter (mangled into `***` by its formatter); docs/ is read on
    // GitHub, where it would show as text.
    for (const file of files) {
      const path = join(out, name, file)
      writeFileSync(path, readFileSync(path, "utf8").replace(/^(\*\*\*|---)\n[\s\S]*?\n---\n+/, ""))
    }
    report.push(`ok   reference in docs/${name}/`)
  } else {
    failed++
  }
  return { name: manifest.name, dir: name, files, failed, report: report.join("\n") }
}

const dirName = (dir: string) => dir.split("/").at(-1)!
const only = process.argv.slice(2)
const unknown = only.filter((name) => !workspaces().some(({ dir }) => dirName(dir) === name))
if (unknown.length > 0) {
  console.error(`docs: no package directory named ${unknown.join(", ")}`)
  process.exit(2)
}
const selected = workspaces().filter(({ dir }) => only.length === 0 || only.includes(dirName(dir)))
if (only.length === 0) rmSync(out, { recursive: true, force: true })
for (const { dir } of selected) rmSync(join(out, dirName(dir)), { recursive: true, force: true })
mkdirSync(out, { recursive: true })
const staging = mkdtempSync(join(tmpdir(), "quiesce-docs-"))
const results = await Promise.all(selected.map(reference)).finally(() => rmSync(staging, { recursive: true, force: true }))
// The index lists every package whose reference is in docs/, including those not regenerated now.
const listed = workspaces().flatMap(({ dir, manifest }) => {
  const name = dirName(dir)
  const files = existsSync(join(out, name)) ? readdirSync(join(out, name)).filter((f) => f.endsWith(".md")).sort() : []
  return files.length === 0 ? [] : [{ name: manifest.name, dir: name, files }]
})
const index = [
  "# Quiesce API reference",
  "",
  `Generated by \`npm run docs\` from the JSDoc of each package's public modules (${repositoryWebUrl()}).`,
  "",
  ...listed.flatMap((r) => [`## ${r.name}`, "", ...r.files.map((f) => `- [${f.replace(/\.ts\.md$/, "")}](${r.dir}/${f})`), ""])
]
writeFileSync(join(out, "README.md"), index.join("\n"))
for (const r of results) console.log(`\n${r.report}`)
const failed = results.reduce((n, r) => n + r.failed, 0)
console.log(failed === 0 ? "\ndocs: every check passed; the reference is in docs/" : `\ndocs: ${failed} check(s) failed (above); what could be generated is in docs/`)
process.exit(failed === 0 ? 0 : 1)
