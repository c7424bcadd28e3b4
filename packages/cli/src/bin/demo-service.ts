#!/usr/bin/env node
/**
 * The embedded default service of `quiesce` and of the project demo: a small HTTP server, so that
 * trying Quiesce needs nothing but Node.
 *
 * Usage: `demo-service [--port N] [--host H] [--log FILE] [--name NAME]` (the port also comes from
 * `PORT` or `QUIESCE_SERVICE_PORT`; 0 or none picks a free one). Endpoints: `GET /health` answers
 * `ok`; `GET /` answers `{ name, pid, port, requests }`; `GET /slow?ms=N` answers after N ms.
 * It writes `demo-service <name> started pid=… port=…` and `… stopped …` to stderr and, with `--log`,
 * appends the same lines to FILE, which is how tests and the demo count starts and stops.
 * SIGTERM and SIGINT close the server gracefully.
 *
 * Deliberately plain `node:http` with no Effect: it is the thing being shared, and it should start
 * in a few tens of milliseconds.
 */
import { appendFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { parseArgs } from "node:util"

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    log: { type: "string" },
    name: { type: "string" }
  },
  strict: true
})

const name = values.name ?? process.env["QUIESCE_SERVICE_NAME"] ?? "demo"
const requestedPort = Number(values.port ?? process.env["PORT"] ?? process.env["QUIESCE_SERVICE_PORT"] ?? 0)
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  process.stderr.write(`demo-service: invalid port ${JSON.stringify(values.port ?? process.env["PORT"])}\n`)
  process.exit(2)
}

const log = (line: string): void => {
  const text = `demo-service ${name} ${line} pid=${process.pid} port=${port}\n`
  process.stderr.write(text)
  if (values.log !== undefined) appendFileSync(values.log, text)
}

let requests = 0
let port = requestedPort
const server = createServer((req, res) => {
  requests++
  const url = new URL(req.url ?? "/", "http://service")
  if (url.pathname === "/health") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n")
  } else if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ name, pid: process.pid, port, requests }) + "\n")
  } else if (url.pathname === "/slow") {
    const ms = Math.min(Math.max(Number(url.searchParams.get("ms") ?? 100), 0), 60_000)
    setTimeout(() => res.writeHead(200, { "content-type": "text/plain" }).end(`slept ${ms}ms\n`), ms)
  } else {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
  }
})

server.listen(requestedPort, values.host, () => {
  port = (server.address() as AddressInfo).port
  log("started")
})

let stopping = false
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return
  stopping = true
  server.close(() => {
    log(`stopped (${signal})`)
    process.exit(0)
  })
  server.closeIdleConnections()
  // In-flight requests get a moment to finish; then the service goes regardless.
  setTimeout(() => {
    log(`stopped (${signal}, forced)`)
    process.exit(0)
  }, 2_000).unref()
}
process.on("SIGTERM", () => stop("SIGTERM"))
process.on("SIGINT", () => stop("SIGINT"))
