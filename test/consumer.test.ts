/**
 * What a user outside the monorepo installs must work. From a fresh copy of the repository
 * (its files as git sees them, the installed node_modules, nothing built), `npm pack` every
 * package; check each tarball; publish them to a registry on 127.0.0.1 (`registry.ts`); install
 * them into a project in the temporary directory with `--install-strategy=nested` (nothing
 * hoisted: an undeclared dependency is not found), globally (`npm install --global`) and with
 * `--install-strategy=linked`; then, on the project's Node: run each package's README example,
 * `quiesce --version` and real `quiesce run`s with the shipped demo service, import every public
 * module (also with the `@quiesce/source` condition on), and type-check a consumer file with
 * TypeScript 5.9 (the project's own) and the repository's TypeScript 7 (`nodenext`, strict).
 * Finally nothing may be left behind: no process, no semaphore set, no temporary directory
 * (`KEEP_CONSUMER=1` keeps the directory, to look at what was installed).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { execFile, execFileSync } from "node:child_process"
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from "node:fs"
import { builtinModules } from "node:module"
import { tmpdir, userInfo } from "node:os"
import { delimiter, dirname, join, relative } from "node:path"
import { root, workspaces, type Manifest } from "../scripts/pack.ts"
import { serve, type Registry } from "./registry.ts"

const node = process.execPath
const fixtures = join(import.meta.dirname, "consumer")
const temp = mkdtempSync(join(tmpdir(), "quiesce-consumer-"))
const fresh = join(temp, "repo")
const tarballs = join(temp, "tarballs")
const app = join(temp, "app")
const linked = join(temp, "linked")
const globalPrefix = join(temp, "global")
const runtime = join(temp, "runtime")
const suffix = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`
// The services this file starts, each under a name of its own run.
const names = Object.fromEntries(
  ["examples", "run", "share", "global", "linked"].map((use) => [use, `consumer-${use}-${suffix}`])
) as Record<"examples" | "run" | "share" | "global" | "linked", string>

// A user's shell: no npm script variables, no vitest, none of the repository's bins on the PATH;
// the repository's Node 24 first (the system's is 20, and the packages need >= 22.19).
const systemPath = (process.env["PATH"] ?? "").split(delimiter)
  .filter((entry) => !entry.includes("node_modules") && !entry.startsWith(root))
const userEnv = (extra: Record<string, string> = {}, bins: ReadonlyArray<string> = []): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|NODE$|NODE_ENV$|NODE_OPTIONS$|INIT_CWD$|TEST$)/i.test(key)) continue
    env[key] = value
  }
  return { ...env, PATH: [...bins, dirname(node), ...systemPath].join(delimiter), QUIESCE_RUNTIME_DIR: runtime, ...extra }
}

interface Result {
  readonly code: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
}

const onSystemPath = (name: string): string => {
  const found = systemPath.map((dir) => join(dir, name)).find((path) => existsSync(path))
  if (found === undefined) throw new Error(`no ${name} on the system's PATH`)
  return found
}
// npm runs on the system's Node, as a user's npm does (and as `npm test` itself runs); the scripts
// it runs find the repository's Node 24 first on the PATH.
const npm = [onSystemPath("node"), realpathSync(onSystemPath("npm"))] as const

// Asynchronous on purpose: the registry answers npm from this process's event loop.
const run = (file: string, args: ReadonlyArray<string>, options: { cwd: string; env?: NodeJS.ProcessEnv }) =>
  new Promise<Result>((resolve) => {
    const [command, argv] = file === "npm" ? [npm[0], [npm[1], ...args]] : [file, args]
    execFile(command, argv, { cwd: options.cwd, env: options.env ?? userEnv(), maxBuffer: 64 * 1024 * 1024, timeout: 480_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
      resolve({ code, signal: error?.signal ?? null, stdout: String(stdout), stderr: String(stderr) })
    })
  })

const ok = async (file: string, args: ReadonlyArray<string>, options: { cwd: string; env?: NodeJS.ProcessEnv }) => {
  const started = performance.now()
  const result = await run(file, args, options)
  if (result.code !== 0) {
    const how = result.code === null ? `was killed (${result.signal}) after ${((performance.now() - started) / 1000).toFixed(0)} s` : `exited ${result.code}`
    throw new Error(`${file} ${args.join(" ")} (in ${options.cwd}) ${how}\n${result.stdout}\n${result.stderr}`)
  }
  return result
}

/** Processes whose command line mentions `text`, with their command lines. */
const processesMentioning = (text: string): ReadonlyArray<{ readonly pid: number; readonly cmdline: string }> =>
  readdirSync("/proc").filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ")
      return Number(entry) !== process.pid && cmdline.includes(text) ? [{ pid: Number(entry), cmdline }] : []
    } catch {
      return []
    }
  })

const eventually = async (what: string, condition: () => boolean, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

// The semaphore set of a service name: key = FNV-1a of `quiesce:<uid>:<canonical runtime dir>:<name>`
// (shared-service's README).
const ipcKey = (name: string): string => {
  const s = `quiesce:${userInfo().uid}:${realpathSync(runtime)}:${name}`
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return `0x${((h | 0) === 0 ? 1 : h >>> 0).toString(16).padStart(8, "0")}`
}
const semaphoreSets = (): ReadonlyArray<string> =>
  Object.values(names).map(ipcKey).filter((key) => execFileSync("ipcs", ["-s"], { encoding: "utf8" }).includes(key))

/** The repository as a fresh clone has it: its files as git sees them, dependencies installed, nothing built. */
const freshCopy = () => {
  const files = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: root })
    .toString().split("\0").filter((file) => file !== "" && existsSync(join(root, file)))
  for (const file of files) {
    mkdirSync(dirname(join(fresh, file)), { recursive: true })
    copyFileSync(join(root, file), join(fresh, file))
  }
  mkdirSync(join(fresh, "node_modules", "@quiesce"), { recursive: true })
  for (const entry of readdirSync(join(root, "node_modules"))) {
    if (entry !== "@quiesce") symlinkSync(join(root, "node_modules", entry), join(fresh, "node_modules", entry))
  }
  for (const { dir, manifest } of workspaces()) {
    symlinkSync(join(fresh, dir), join(fresh, "node_modules", manifest.name))
  }
}

interface Packed {
  readonly dir: string
  readonly tarball: string
  /** The unpacked tarball (its `package/` directory). */
  readonly contents: string
  readonly manifest: Manifest
  readonly files: ReadonlyArray<string>
}

// The files prepack rewrites, as they are before packing and must be after.
const rewritten = (dir: string) =>
  ["package.json", "README.md", "LICENSE"].map((f) => existsSync(join(fresh, dir, f)) ? readFileSync(join(fresh, dir, f), "utf8") : null)

const pack = async (dir: string): Promise<Packed> => {
  const { manifest } = workspaces().find((w) => w.dir === dir)!
  const before = rewritten(dir)
  await ok("npm", ["pack", "--pack-destination", tarballs], { cwd: join(fresh, dir) })
  assert.deepStrictEqual(rewritten(dir), before, `npm pack left ${dir} changed`)
  const tarball = join(tarballs, `${manifest.name.replace(/^@/, "").replace("/", "-")}-${manifest.version}.tgz`)
  const unpacked = join(temp, "unpacked", dir)
  mkdirSync(unpacked, { recursive: true })
  execFileSync("tar", ["xzf", tarball, "-C", unpacked])
  const contents = join(unpacked, "package")
  const list = (d: string): Array<string> =>
    readdirSync(d).flatMap((e) => statSync(join(d, e)).isDirectory() ? list(join(d, e)) : [relative(contents, join(d, e))])
  return { dir, tarball, contents, manifest: JSON.parse(readFileSync(join(contents, "package.json"), "utf8")), files: list(contents) }
}

/** The first fenced block of a language in a package's README (its example). */
const readmeExample = (dir: string, language: "ts" | "sh"): string => {
  const readme = readFileSync(join(root, dir, "README.md"), "utf8")
  const block = new RegExp("```" + language + "\\n([\\s\\S]*?)```").exec(readme)?.[1]
  if (block === undefined) throw new Error(`${dir}/README.md has no \`\`\`${language} example`)
  return block
}

const packed = new Map<string, Packed>()
let registry: Registry | undefined
const consumerFile = join(app, "consumer.ts")

beforeAll(async () => {
  const started = performance.now()
  mkdirSync(tarballs, { recursive: true })
  mkdirSync(runtime, { recursive: true })
  freshCopy()
  // The CLI on the freshest state: nothing built anywhere (its prepack builds shared-service too).
  packed.set("packages/cli", await pack("packages/cli"))
  // The others with the trap of a stale tsbuildinfo: built once, then dist/ deleted, so that a
  // plain `tsc -b` would think them up to date and emit nothing.
  const others = ["packages/rundown", "packages/stage", "packages/shared-service"]
  execFileSync(join(fresh, "node_modules", ".bin", "tsc"), ["-b", ...others.map((d) => join(fresh, d, "tsconfig.src.json"))])
  for (const dir of others) rmSync(join(fresh, dir, "dist"), { recursive: true, force: true })
  for (const dir of others) packed.set(dir, await pack(dir))

  const packedAt = performance.now()
  registry = await serve([...packed.values()].map((p) => ({ manifest: p.manifest, tarball: p.tarball })))
  const scope = `--@quiesce:registry=${registry.url}/`
  const cli = `@quiesce/cli@${packed.get("packages/cli")!.manifest.version}`
  mkdirSync(app)
  mkdirSync(linked)
  const dependencies = Object.fromEntries([...packed.values()].map((p) => [p.manifest.name, p.manifest.version]))
  writeFileSync(join(app, "package.json"), JSON.stringify({
    name: "quiesce-consumer",
    private: true,
    type: "module",
    dependencies: { ...dependencies, effect: "^4.1.0", "@effect/platform-node": "^4.1.0" },
    devDependencies: { typescript: "~5.9.3", "@types/node": "^24.10.0" },
    allowScripts: { koffi: true }
  }, null, 2))
  writeFileSync(join(linked, "package.json"), JSON.stringify({ name: "linked-consumer", private: true }))
  const quiet = ["--no-audit", "--no-fund"]
  // `--prefix` also moves npm's global config file (to <prefix>/etc/npmrc); the machine's own
  // (which may hold its CA file, proxy or registry) must stay the one in force.
  const globalconfig = (await ok("npm", ["config", "get", "globalconfig"], { cwd: temp })).stdout.trim()
  await Promise.all([
    ok("npm", ["install", "--install-strategy=nested", scope, ...quiet], { cwd: app }),
    ok("npm", ["install", "--global", "--prefix", globalPrefix, `--globalconfig=${globalconfig}`, scope, ...quiet, cli], { cwd: temp }),
    ok("npm", ["install", "--install-strategy=linked", scope, ...quiet, cli], { cwd: linked })
  ])
  const seconds = (from: number, to: number) => ((to - from) / 1000).toFixed(1)
  console.log(`consumer: packed the four packages in ${seconds(started, packedAt)} s, installed them in ${seconds(packedAt, performance.now())} s`)

  // The README examples, as a user would copy them, and the files they lean on.
  writeFileSync(join(app, "rundown.ts"), readmeExample("packages/rundown", "ts"))
  writeFileSync(join(app, "stage.ts"), readmeExample("packages/stage", "ts"))
  writeFileSync(join(app, "shared-service.ts"), readmeExample("packages/shared-service", "ts"))
  copyFileSync(join(root, "packages", "shared-service", "examples", "echo-server.mjs"), join(app, "echo-server.mjs"))
  copyFileSync(join(fixtures, "run-examples.ts"), join(app, "run-examples.ts"))
  copyFileSync(join(fixtures, "client.mjs"), join(app, "client.mjs"))
  // Every public module of every package, from its root and from its own subpath.
  const modules = [...packed.values()].flatMap((p) =>
    p.files.filter((f) => /^dist\/[A-Z]\w*\.d\.ts$/.test(f)).map((f) => ({ pkg: p.manifest.name, module: f.slice(5, -5) }))
  )
  writeFileSync(consumerFile, [
    ...[...packed.values()].map((p, i) => `import * as root${i} from "${p.manifest.name}"`),
    ...modules.map((m, i) => `import * as module${i} from "${m.pkg}/${m.module}"`),
    ...modules.map((m, i) => {
      const r = [...packed.values()].findIndex((p) => p.manifest.name === m.pkg)
      return `export const same${i}: typeof root${r}.${m.module} = module${i}`
    }),
    ""
  ].join("\n"))
  writeFileSync(join(app, "imports.mjs"), [...packed.values()].flatMap((p) => [
    `await import("${p.manifest.name}")`,
    ...modules.filter((m) => m.pkg === p.manifest.name).map((m) => `await import("${m.pkg}/${m.module}")`)
  ]).join("\n") + "\nconsole.log('imported')\n")
  writeFileSync(join(app, "tsconfig.json"), JSON.stringify({
    compilerOptions: {
      target: "ES2024",
      module: "nodenext",
      moduleResolution: "nodenext",
      // effect's declarations name DOM types (CryptoKey, Transferable): they are checked too.
      lib: ["ES2024", "DOM", "DOM.Iterable", "ESNext.Disposable"],
      types: ["node"],
      strict: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      skipLibCheck: false
    },
    include: ["*.ts"]
  }, null, 2))
  // TypeScript 5.9 checks what the consumer's code uses of the declarations (the default of
  // `tsc --init`); TypeScript 7 checks every declaration file as well, in a fraction of the time
  // (all of effect's take 5.9 about 25 s of CPU on the reference machine).
  writeFileSync(join(app, "tsconfig.skiplibcheck.json"), JSON.stringify({ extends: "./tsconfig.json", compilerOptions: { skipLibCheck: true } }))
}, 600_000)

afterAll(async () => {
  await registry?.close()
  // Whatever a failed test left running, and the sets of its services.
  for (const { pid } of processesMentioning(temp)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  for (const key of Object.values(names).map(ipcKey)) {
    try {
      execFileSync("ipcrm", ["-S", key], { stdio: "ignore" })
    } catch {
      // no such set: its supervisor removed it
    }
  }
  if (process.env["KEEP_CONSUMER"] === undefined) rmSync(temp, { recursive: true, force: true })
})

const all = () => [...packed.values()]

describe("the packed tarballs", () => {
  it("ship LICENSE, README, package.json and the dist/ every export, bin and types entry names", () => {
    for (const p of all()) {
      for (const file of ["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts"]) {
        assert.include(p.files, file, `${p.manifest.name} lacks ${file}`)
      }
      assert.strictEqual(readFileSync(join(p.contents, "LICENSE"), "utf8"), readFileSync(join(root, "LICENSE"), "utf8"))
      for (const target of Object.values((p.manifest["bin"] ?? {}) as Record<string, string>)) {
        assert.include(p.files, target.replace(/^\.\//, ""), `${p.manifest.name}: bin ${target}`)
      }
      // Each public module (a capitalised src/X.ts) has its JavaScript and declarations.
      for (const source of p.files.filter((f) => /^src\/[A-Z]\w*\.ts$/.test(f))) {
        const module = source.slice(4, -3)
        assert.include(p.files, `dist/${module}.js`, `${p.manifest.name}: ${module}`)
        assert.include(p.files, `dist/${module}.d.ts`, `${p.manifest.name}: ${module}`)
      }
    }
  })

  it("publish a manifest without the workspace-only source condition, with repository, homepage, bugs and public access", () => {
    for (const p of all()) {
      const text = readFileSync(join(p.contents, "package.json"), "utf8")
      assert.notInclude(text, "@quiesce/source", p.manifest.name)
      assert.deepStrictEqual(p.manifest["publishConfig"], { access: "public" })
      assert.match(String((p.manifest["repository"] as { url: string }).url), /^git\+https:\/\/github\.com\//)
      assert.match(String(p.manifest["homepage"]), /^https:\/\/github\.com\//)
      assert.match(String((p.manifest["bugs"] as { url: string }).url), /^https:\/\/github\.com\/.*\/issues$/)
    }
  })

  it("pin every workspace dependency to the exact version packed beside it", () => {
    const versions = new Map(all().map((p) => [p.manifest.name, p.manifest.version]))
    for (const p of all()) {
      for (const field of ["dependencies", "peerDependencies", "optionalDependencies"]) {
        for (const [name, range] of Object.entries((p.manifest[field] ?? {}) as Record<string, string>)) {
          if (versions.has(name)) assert.strictEqual(range, versions.get(name), `${p.manifest.name} ${field}.${name}`)
        }
      }
    }
  })

  it("declare every package their shipped JavaScript imports", () => {
    for (const p of all()) {
      const declared = new Set([
        p.manifest.name,
        ...Object.keys({ ...(p.manifest["dependencies"] as object), ...(p.manifest["peerDependencies"] as object) })
      ])
      for (const file of p.files.filter((f) => f.endsWith(".js"))) {
        const code = readFileSync(join(p.contents, file), "utf8")
        const specifiers = [
          ...code.matchAll(/(?:^|[\s;})])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']/gm),
          ...code.matchAll(/(?:^|[\s;})])import\s*["']([^"']+)["']/gm),
          ...code.matchAll(/\bimport(?:\.meta\.resolve)?\(\s*["']([^"']+)["']\s*\)/g)
        ].map((m) => m[1]!)
        for (const specifier of specifiers) {
          if (specifier.startsWith(".") || specifier.startsWith("node:") || builtinModules.includes(specifier)) continue
          const name = specifier.startsWith("@") ? specifier.split("/").slice(0, 2).join("/") : specifier.split("/")[0]!
          assert.isTrue(declared.has(name), `${p.manifest.name}/${file} imports ${specifier}, which its package.json does not declare`)
        }
      }
    }
  })

  it("list their side-effect files instead of claiming none, where they have some", () => {
    for (const p of all()) {
      const bins = Object.values((p.manifest["bin"] ?? {}) as Record<string, string>)
      const sideEffects = p.manifest["sideEffects"]
      if (bins.length > 0 || p.files.some((f) => f.startsWith("dist/bin/"))) {
        assert.isArray(sideEffects, p.manifest.name)
        const listed = (sideEffects as ReadonlyArray<string>).map((f) => f.replace(/^\.\//, ""))
        for (const file of [...bins.map((f) => f.replace(/^\.\//, "")), ...p.files.filter((f) => /^dist\/bin\/.*\.js$/.test(f))]) {
          assert.include(listed, file, p.manifest.name)
        }
      }
    }
  })

  it("npm publish --dry-run of each tarball is clean (no warning but the missing login)", async () => {
    // A registry that has none of them, as before the first publish.
    const nowhere = `--@quiesce:registry=${registry!.url}/nothing-here/`
    for (const p of all()) {
      const { stdout, stderr } = await ok("npm", ["publish", "--dry-run", nowhere, p.tarball], { cwd: temp })
      assert.include(stdout, `+ ${p.manifest.name}@${p.manifest.version}`)
      assert.include(stderr, "with tag latest and public access (dry-run)")
      const warnings = stderr.split("\n").filter((line) => line.startsWith("npm warn") && !line.includes("requires you to be logged in"))
      assert.deepStrictEqual(warnings, [], p.manifest.name)
    }
  })

  it("npm publish --dry-run from the package's directory builds, publishes and leaves the package as it was", async () => {
    // The CLI: its prepack also bundles. npm reads package.json again after packing, for the
    // registry's metadata, so here postpublish (not postpack) must put the originals back.
    const dir = "packages/cli"
    const { manifest } = workspaces().find((w) => w.dir === dir)!
    const before = rewritten(dir)
    const { stdout, stderr } = await ok("npm", ["publish", "--dry-run", `--@quiesce:registry=${registry!.url}/nothing-here/`], { cwd: join(fresh, dir) })
    assert.include(stdout, `+ ${manifest.name}@${manifest.version}`)
    assert.deepStrictEqual(stderr.split("\n").filter((line) => line.startsWith("npm warn") && !line.includes("requires you to be logged in")), [])
    assert.deepStrictEqual(rewritten(dir), before, `npm publish left ${dir} changed`)
  })

  it("have READMEs whose links work on the registry's page (no relative links)", () => {
    for (const p of all()) {
      const readme = readFileSync(join(p.contents, "README.md"), "utf8")
      const relativeLinks = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!)
        .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith("#"))
      assert.deepStrictEqual(relativeLinks, [], p.manifest.name)
    }
  })
})

const viaQuiesce = async (quiesce: string, name: string, options: { readonly cwd: string; readonly bins: string }) => {
  const result = await ok(quiesce, ["run", "--name", name, "--service", "quiesce-demo-service", "--port", "auto", "--grace", "0", "--", "node", join(app, "client.mjs")], {
    cwd: options.cwd,
    env: userEnv({}, [options.bins])
  })
  return JSON.parse(result.stdout.trim()) as {
    readonly name: string
    readonly pid: number
    readonly service: { readonly name: string; readonly pid: number }
    readonly serviceCmdline: string
    readonly supervisors: ReadonlyArray<string>
  }
}

// The shipped bin a process runs (argv[1] is the node_modules/.bin link it was started through).
const script = (cmdline: string) => realpathSync(cmdline.split(" ")[1]!)

/** The directory of `pkg` as Node resolves it from `dir`: the nearest `node_modules/pkg` upwards. */
const resolveFrom = (dir: string, pkg: string): string => {
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    if (existsSync(join(d, "node_modules", pkg))) return realpathSync(join(d, "node_modules", pkg))
  }
  throw new Error(`${pkg} is not resolvable from ${dir}`)
}

// The supervisor (until it boots, the shell that will exec it) runs the shared-service that the
// CLI resolves, the exact version it inlines; the last check of this file waits for it to have
// stopped the service and removed its semaphore set.
const assertReapedBy = (seen: { readonly supervisors: ReadonlyArray<string> }, sharedService: string) => {
  assert.isAbove(seen.supervisors.length, 0, "its supervisor runs")
  for (const supervisor of seen.supervisors) assert.include(supervisor, join(sharedService, "dist", "bin", "supervisor.js"))
  const { version } = JSON.parse(readFileSync(join(sharedService, "package.json"), "utf8"))
  assert.strictEqual(version, packed.get("packages/shared-service")!.manifest.version)
}

describe.concurrent("installed with --install-strategy=nested", () => {
  const bins = join(app, "node_modules", ".bin")
  const cliDir = join(app, "node_modules", "@quiesce", "cli")

  it("nothing is hoisted: what the CLI needs and the project does not provide sits under the CLI", () => {
    assert.isTrue(existsSync(join(cliDir, "node_modules", "koffi")))
    assert.isFalse(existsSync(join(app, "node_modules", "koffi")), "koffi is no dependency of the project")
  })

  it("every public module imports, also with the @quiesce/source condition on", async () => {
    assert.include((await ok(node, ["imports.mjs"], { cwd: app })).stdout, "imported")
    assert.include((await ok(node, ["--conditions=@quiesce/source", "imports.mjs"], { cwd: app })).stdout, "imported")
  })

  it("the README examples of rundown, stage and shared-service run as documented", async () => {
    const { stdout } = await ok(node, ["run-examples.ts", names.examples], { cwd: app })
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!)
    // rundown's README states the result in the example's last line. Its order also depends on
    // the protected user's 50 ms sleep outlasting the owner's next steps, which a loaded machine
    // does not always give: what it shows (the late user refused, the rundown last) must hold.
    const promised: ReadonlyArray<string> = JSON.parse(/\n\/\/ (\[.*\])\n$/.exec(readmeExample("packages/rundown", "ts"))![1]!)
    assert.sameMembers(result.rundown, [...promised])
    assert.strictEqual(result.rundown.at(-1), promised.at(-1))
    assert.deepStrictEqual(result.stage, ["hi alice", "hi bob", "hi carol"])
    assert.strictEqual(result.sharedService.pids[0], result.sharedService.pids[1], "one server for both programs")
    assert.strictEqual(result.sharedService.ports[0], result.sharedService.ports[1])
  })

  it("quiesce --version prints the packed version", async () => {
    const { stdout } = await ok(join(bins, "quiesce"), ["--version"], { cwd: app })
    assert.include(stdout, packed.get("packages/cli")!.manifest.version)
  })

  it("quiesce run serves the command with the shipped demo service, reaped by the CLI's own shared-service", async () => {
    const seen = await viaQuiesce(join(bins, "quiesce"), names.run, { cwd: app, bins })
    assert.strictEqual(seen.name, names.run)
    assert.strictEqual(seen.service.pid, seen.pid, "the command talks to the service quiesce started")
    assert.strictEqual(script(seen.serviceCmdline), join(cliDir, "bin", "quiesce-demo-service.js"))
    assertReapedBy(seen, resolveFrom(cliDir, "@quiesce/shared-service"))
  })

  it("the CLI README's example (three commands, one demo service) runs", async () => {
    const example = readmeExample("packages/cli", "sh")
    assert.include(example, "readme-demo")
    // Its grace period is long enough for the example's `quiesce status` to find the service
    // still running after the last command, also on a loaded machine.
    assert.include(example, "--grace 10s")
    // Under this run's own name (two runs of the example at once would share one service).
    writeFileSync(join(app, "share.sh"), example.replaceAll("readme-demo", names.share))
    const { stdout } = await ok("sh", ["share.sh"], { cwd: app, env: userEnv({}, [bins]) })
    const answers = stdout.split("\n").filter((line) => line.startsWith("service pid"))
    assert.strictEqual(answers.length, 3, stdout)
    assert.strictEqual(new Set(answers).size, 1, "all three saw the same service")
    assert.include(stdout, `${names.share}: running`)
  })
})

describe.concurrent("installed globally and with --install-strategy=linked", () => {
  const version = () => packed.get("packages/cli")!.manifest.version

  it("npm install --global @quiesce/cli: quiesce --version and quiesce run work", async () => {
    const bins = join(globalPrefix, "bin")
    assert.include((await ok(join(bins, "quiesce"), ["--version"], { cwd: temp })).stdout, version())
    const seen = await viaQuiesce(join(bins, "quiesce"), names.global, { cwd: temp, bins })
    const cliDir = join(globalPrefix, "lib", "node_modules", "@quiesce", "cli")
    assert.strictEqual(script(seen.serviceCmdline), join(cliDir, "bin", "quiesce-demo-service.js"))
    // Installed alone, the CLI has its own shared-service.
    assertReapedBy(seen, join(cliDir, "node_modules", "@quiesce", "shared-service"))
  })

  it("npm install --install-strategy=linked @quiesce/cli: quiesce --version and quiesce run work", async () => {
    const bins = join(linked, "node_modules", ".bin")
    assert.include((await ok(join(bins, "quiesce"), ["--version"], { cwd: linked })).stdout, version())
    const seen = await viaQuiesce(join(bins, "quiesce"), names.linked, { cwd: linked, bins })
    const cliDir = realpathSync(join(linked, "node_modules", "@quiesce", "cli"))
    assert.include(cliDir, join(linked, "node_modules", ".store"))
    assert.strictEqual(script(seen.serviceCmdline), join(cliDir, "bin", "quiesce-demo-service.js"))
    assertReapedBy(seen, resolveFrom(cliDir, "@quiesce/shared-service"))
  })
})

describe.concurrent("type-checked as a consumer", () => {
  it("a consumer file type-checks with TypeScript 5.9 (nodenext, strict)", async () => {
    const tsc = join(app, "node_modules", "typescript", "bin", "tsc")
    assert.match((await ok(node, [tsc, "--version"], { cwd: app })).stdout, /^Version 5\.9\./)
    const result = await run(node, [tsc, "-p", "tsconfig.skiplibcheck.json"], { cwd: app })
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
  })

  it("a consumer file type-checks with the repository's TypeScript 7 (nodenext, strict, declarations checked)", async () => {
    const tsc = join(root, "node_modules", ".bin", "tsc")
    assert.match((await ok(tsc, ["--version"], { cwd: app })).stdout, /^Version 7\./)
    const result = await run(tsc, ["-p", "tsconfig.json"], { cwd: app })
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
  })
})

describe("afterwards", () => {
  it("no process of the test is left, nor a semaphore set of its services", async () => {
    await eventually("every service and supervisor to exit", () => processesMentioning(temp).length === 0)
    await eventually("the supervisors to remove the semaphore sets", () => semaphoreSets().length === 0)
  })
})
