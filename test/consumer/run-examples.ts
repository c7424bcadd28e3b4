/**
 * Runs the README examples of rundown, stage and shared-service in the consumer project, against
 * the installed packages (`consumer.test.ts` writes each README's example beside this file), and
 * prints what they returned as JSON. Type-checked there too, with the consumer's TypeScript.
 *
 * Usage (in the consumer project): `node run-examples.ts SERVICE_NAME`
 */
import { Effect } from "effect"
import { createServer, type AddressInfo } from "node:net"
import { program as rundown } from "./rundown.ts"
import { program as sharedService } from "./shared-service.ts"
import { quickstart as stage } from "./stage.ts"

const name = process.argv[2]
if (name === undefined) throw new Error("usage: node run-examples.ts SERVICE_NAME")

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })

const port = await freePort()
// The shared-service README: two concurrent programs share one server.
const [first, second] = await Promise.all([
  Effect.runPromise(sharedService(name, port)),
  Effect.runPromise(sharedService(name, port))
])

console.log(JSON.stringify({
  rundown: await Effect.runPromise(rundown),
  stage: await Effect.runPromise(Effect.scoped(stage)),
  sharedService: { pids: [first.pid, second.pid], ports: [first.port, second.port] }
}))
