// A tiny TCP echo server used as the example (and test) service: `node echo-server.mjs PORT`.
// Logs "listening" once bound (with the wall-clock times, in ms, at which this process began and
// became ready, for the benchmark) and exits on SIGTERM.
import { createServer } from "node:net"

const port = Number(process.argv[2] ?? 0)
const server = createServer((socket) => socket.pipe(socket))
server.listen(port, "127.0.0.1", () => {
  const ready = performance.timeOrigin + performance.now()
  console.log(`listening ${server.address().port} pid ${process.pid} origin ${performance.timeOrigin} ready ${ready}`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
