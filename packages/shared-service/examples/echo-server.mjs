// A tiny TCP echo server used as the example (and test) service: `node echo-server.mjs PORT`.
// Logs "listening" once bound and exits on SIGTERM.
import { createServer } from "node:net"

const port = Number(process.argv[2] ?? 0)
const server = createServer((socket) => socket.pipe(socket))
server.listen(port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port} pid ${process.pid}`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
