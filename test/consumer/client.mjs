// The command `quiesce run` runs in the consumer test: while it holds the service (so the service
// is alive), it reports what a user's command sees and which processes serve and supervise it.
import { readdirSync, readFileSync } from "node:fs"

const cmdline = (pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ")
const name = process.env.QUIESCE_SERVICE_NAME
const pid = Number(process.env.QUIESCE_SERVICE_PID)
const service = await (await fetch(`http://127.0.0.1:${process.env.QUIESCE_SERVICE_PORT}/`)).json()
const supervisors = readdirSync("/proc").filter((e) => /^\d+$/.test(e)).flatMap((e) => {
  try {
    const line = cmdline(e)
    return line.includes("supervisor") && line.includes(name) ? [line] : []
  } catch {
    return []
  }
})
console.log(JSON.stringify({ name, pid, service, serviceCmdline: cmdline(pid), supervisors }))
