/**
 * A command to run under `quiesce run`, used by the end-to-end tests and by `npm run demo`.
 * Modes:
 * - `exit N`: exit with code N.
 * - `hold`: print `holding {env}` and wait until stdin closes, then exit 0.
 * - `signals`: print `waiting`, then on SIGINT print `got SIGINT` and exit 42, on SIGTERM print
 *   `got SIGTERM` and exit 55 (codes no shell would make up).
 * - `count-sigint`: print `waiting`, print `SIGINT` for each SIGINT; on SIGTERM, 300 ms later
 *   print `got N SIGINT` and exit 40 + N.
 * - `get`: GET the service's `/` and print `served {"service": its answer, "env": the QUIESCE_* variables}`;
 *   exit 1 if it fails.
 * - `visit LABEL`: GET the service's `/`, print `LABEL: service pid P on port N answered request #R`,
 *   then hold until stdin closes.
 * - `env`: print the QUIESCE_* environment as JSON.
 */
const [mode, arg] = process.argv.slice(2)

const env = () =>
  JSON.stringify({
    name: process.env["QUIESCE_SERVICE_NAME"],
    pid: process.env["QUIESCE_SERVICE_PID"],
    port: process.env["QUIESCE_SERVICE_PORT"]
  })

switch (mode) {
  case "exit":
    process.exit(Number(arg))
    break
  case "env":
    console.log(env())
    break
  case "hold":
    console.log(`holding ${env()}`)
    process.stdin.resume()
    process.stdin.on("end", () => process.exit(0))
    break
  case "signals":
    process.on("SIGINT", () => {
      console.log("got SIGINT")
      process.exit(42)
    })
    process.on("SIGTERM", () => {
      console.log("got SIGTERM")
      process.exit(55)
    })
    console.log("waiting")
    setInterval(() => {}, 1_000)
    break
  case "count-sigint": {
    let count = 0
    process.on("SIGINT", () => {
      count++
      console.log("SIGINT")
    })
    process.on("SIGTERM", () =>
      setTimeout(() => {
        console.log(`got ${count} SIGINT`)
        process.exit(40 + count)
      }, 300))
    console.log("waiting")
    setInterval(() => {}, 1_000)
    break
  }
  case "get": {
    const response = await fetch(`http://127.0.0.1:${process.env["QUIESCE_SERVICE_PORT"]}/`)
    console.log(`served ${JSON.stringify({ service: await response.json(), env: JSON.parse(env()) })}`)
    process.exit(response.ok ? 0 : 1)
    break
  }
  case "visit": {
    const response = await fetch(`http://127.0.0.1:${process.env["QUIESCE_SERVICE_PORT"]}/`)
    const served = (await response.json()) as { pid: number; port: number; requests: number }
    console.log(`${arg}: service pid ${served.pid} on port ${served.port} answered request #${served.requests}`)
    process.stdin.resume()
    process.stdin.on("end", () => process.exit(0))
    break
  }
  default:
    console.error(`client: unknown mode ${mode}`)
    process.exit(99)
}
