/**
 * The workspace manifests are ready to publish (what `prepack` checks before it packs, here
 * without packing: `consumer.test.ts` packs and installs them).
 */
import { assert, describe, it } from "@effect/vitest"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { manifestProblems, publishedManifest, publishedReadme, repositoryWebUrl, root, workspaces } from "../scripts/pack.ts"

describe("workspace manifests", () => {
  it.each(workspaces().map((w) => w.dir))("%s is ready to publish", (dir) => {
    assert.deepStrictEqual(manifestProblems(dir), [])
  })

  it("refuses a workspace dependency on anything but the exact sibling version, and drifting shared ranges", () => {
    const cli = workspaces().find((w) => w.manifest.name === "@quiesce/cli")!
    const deps = cli.manifest["dependencies"] as Record<string, string>
    for (const range of ["*", "^0.1.0", "workspace:*"]) {
      const problems = manifestProblems(cli.dir, { ...cli.manifest, dependencies: { ...deps, "@quiesce/shared-service": range } })
      assert.strictEqual(problems.length, 1, range)
      assert.include(problems[0], "pin it to")
    }
    const drift = manifestProblems(cli.dir, { ...cli.manifest, dependencies: { ...deps, koffi: "^2.0.0" } })
    assert.deepStrictEqual(drift, [`koffi is "^2.0.0" here but "^3.3.4" in @quiesce/shared-service: declare the same range`])
  })

  it("refuses a manifest without repository links or public access", () => {
    const { dir, manifest } = workspaces()[0]!
    const { repository: _r, publishConfig: _p, ...bare } = manifest
    assert.strictEqual(manifestProblems(dir, bare as typeof manifest).length, 2)
  })

  it("the repository URL is written once, in the root package.json", () => {
    assert.match(repositoryWebUrl(), /^https:\/\/github\.com\/[\w.-]+\/[\w.-]+$/)
    assert.isTrue(existsSync(join(root, "LICENSE")))
  })

  it("the published manifest drops the source condition at every depth", () => {
    const published = publishedManifest({
      name: "@quiesce/x",
      version: "1.0.0",
      scripts: { prepack: "node ../../scripts/pack.ts prepack" },
      exports: { ".": { "@quiesce/source": "./src/index.ts", types: "./dist/index.d.ts", default: "./dist/index.js" }, "./internal/*": null }
    })
    assert.deepStrictEqual(published, {
      name: "@quiesce/x",
      version: "1.0.0",
      scripts: { prepack: "node ../../scripts/pack.ts prepack" },
      exports: { ".": { types: "./dist/index.d.ts", default: "./dist/index.js" }, "./internal/*": null }
    })
  })

  it("the published README links into the repository instead of relatively", () => {
    const web = repositoryWebUrl()
    const readme = "[a](../shared-service) [b](examples/udp.ts) [c](README.md#benchmarks) [d](https://effect.website) [e](#api)"
    assert.strictEqual(
      publishedReadme(readme, "packages/cli"),
      `[a](${web}/tree/main/packages/shared-service) [b](${web}/blob/main/packages/cli/examples/udp.ts) ` +
        `[c](${web}/blob/main/packages/cli/README.md#benchmarks) [d](https://effect.website) [e](#api)`
    )
    // What the packages' READMEs hold today comes out with no relative link left.
    for (const { dir } of workspaces()) {
      const out = publishedReadme(readFileSync(join(root, dir, "README.md"), "utf8"), dir)
      assert.deepStrictEqual([...out.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^(https?:|#)/.test(t)), [])
    }
  })
})

describe("root README", () => {
  it("says how to install every package from the registry", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8")
    const section = /\n## Install\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? ""
    const commands = (/```\n([\s\S]*?)```/.exec(section)?.[1] ?? "").split("\n").filter((line) => line.startsWith("npm install "))
    for (const { manifest } of workspaces()) {
      assert.isTrue(commands.some((line) => line.split(" ").includes(manifest.name)), `no install line for ${manifest.name}`)
    }
    assert.include(commands, "npm install --global @quiesce/cli")
  })
})
