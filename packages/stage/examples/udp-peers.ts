/**
 * The peers of the UDP example, run in a worker thread: `count` real UDP
 * sockets on 127.0.0.1 that answer each request `"<id>|<payload>"` with
 * `"<id>|<peer>:<payload>"`, after a small random delay so that replies come
 * back out of order and interleaved between peers.
 */
import * as dgram from "node:dgram"
import { parentPort, workerData } from "node:worker_threads"

const { count } = workerData as { readonly count: number }
const sockets: Array<dgram.Socket> = []
let bound = 0

for (let i = 0; i < count; i++) {
  const socket = dgram.createSocket("udp4")
  sockets.push(socket)
  socket.on("message", (message, rinfo) => {
    const text = message.toString("utf8")
    const bar = text.indexOf("|")
    const reply = `${text.slice(0, bar)}|peer${i}:${text.slice(bar + 1)}`
    setTimeout(() => socket.send(reply, rinfo.port, rinfo.address), Math.floor(Math.random() * 3))
  })
  socket.bind(0, "127.0.0.1", () => {
    if (++bound === count) parentPort!.postMessage(sockets.map((s) => s.address().port))
  })
}

parentPort!.on("message", (message) => {
  if (message === "close") {
    for (const s of sockets) s.close()
    parentPort!.close()
  }
})
