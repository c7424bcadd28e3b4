import { SharedService } from "@quiesce/shared-service"
import { Effect } from "effect"
import { fileURLToPath } from "node:url"

const server = fileURLToPath(new URL("./echo-server.mjs", import.meta.url))

// A command shared by every process that acquires `name`: the first one starts it under its
// own supervisor process, the others reuse it, and the supervisor stops it `idleTimeToLive`
// after the last client is gone, however that client ended.
export const program = (name: string, port: number) =>
  Effect.gen(function*() {
    const service = yield* SharedService.command({
      name,
      command: `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(server)} ${port}`,
      port,
      ready: SharedService.tcp(port),
      idleTimeToLive: "1 second"
    })
    const handle = yield* SharedService.acquire(service)
    return handle.info
  }).pipe(Effect.scoped)
