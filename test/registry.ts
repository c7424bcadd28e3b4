/**
 * A package registry on 127.0.0.1 for the tarballs that `npm pack` made, so that the consumer
 * test installs the packages exactly as a user will once they are published: npm resolves
 * `@quiesce/cli`'s dependency on `@quiesce/shared-service@0.1.0` through the registry, in any
 * install strategy, also for `npm install --global`. npm is pointed at it for the `@quiesce`
 * scope only (`@quiesce:registry=…`); everything else comes from the usual registry.
 *
 * It serves what npm asks of a registry to install: the packument (`GET /@quiesce%2fcli`) and
 * the tarball it names.
 */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { basename } from "node:path"

export interface Published {
  readonly manifest: { readonly name: string; readonly version: string }
  readonly tarball: string
}

export interface Registry {
  readonly url: string
  readonly requests: ReadonlyArray<string>
  readonly close: () => Promise<void>
}

export const serve = async (packages: ReadonlyArray<Published>): Promise<Registry> => {
  const tarballs = new Map<string, Buffer>()
  const packuments = new Map<string, (url: string) => unknown>()
  for (const { manifest, tarball } of packages) {
    const data = readFileSync(tarball)
    const path = `/${manifest.name}/-/${basename(tarball)}`
    tarballs.set(path, data)
    packuments.set(manifest.name, (url) => ({
      name: manifest.name,
      "dist-tags": { latest: manifest.version },
      versions: {
        [manifest.version]: {
          ...manifest,
          _id: `${manifest.name}@${manifest.version}`,
          dist: {
            tarball: `${url}${path}`,
            integrity: `sha512-${createHash("sha512").update(data).digest("base64")}`,
            shasum: createHash("sha1").update(data).digest("hex")
          }
        }
      }
    }))
  }
  const requests: Array<string> = []
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://registry").pathname)
    requests.push(`${req.method} ${path}`)
    const tarball = tarballs.get(path)
    const packument = packuments.get(path.slice(1))
    if (req.method === "GET" && tarball !== undefined) {
      res.writeHead(200, { "content-type": "application/octet-stream", "cache-control": "no-store" }).end(tarball)
    } else if (req.method === "GET" && packument !== undefined) {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
        .end(JSON.stringify(packument(url)))
    } else {
      res.writeHead(404, { "content-type": "application/json" }).end(`{"error":"not found"}`)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
