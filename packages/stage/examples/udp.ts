/**
 * Many fibers exchange request/response datagrams with several peers over ONE
 * `node:dgram` socket on 127.0.0.1, each receiving exactly the reply meant for
 * it — the usage of the original `exit-left` crate.
 *
 * The socket is the stage's resource. Sending needs no head, so every fiber
 * sends through the backdoor (`stage.resource`). Reading is the head's job:
 * whichever fiber heads the stage reads datagrams, files each reply in the
 * buffer under its token (`"<peer port>:<request id>"`) and notifies that
 * token; when the head's own reply arrives it leaves and the oldest waiter
 * takes over. The peers are real UDP sockets in a worker thread.
 */
import * as dgram from "node:dgram"
import { Worker } from "node:worker_threads"
import { Effect } from "effect"
import { Stage, type StageError } from "@quiesce/stage"

/** One received datagram. */
export interface Datagram {
  readonly text: string
  readonly port: number
}

/** A pull-based reader over a dgram socket, so that "only the head reads" is meaningful. */
export class UdpEndpoint {
  readonly socket: dgram.Socket
  private readonly queue: Array<Datagram> = []
  private waiting: ((datagram: Datagram) => void) | undefined = undefined

  constructor(socket: dgram.Socket) {
    this.socket = socket
    socket.on("message", (message, rinfo) => {
      const datagram = { text: message.toString("utf8"), port: rinfo.port }
      const waiting = this.waiting
      if (waiting !== undefined) {
        this.waiting = undefined
        waiting(datagram)
      } else {
        this.queue.push(datagram)
      }
    })
  }

  /** The ids of the fibers that have read from the socket. */
  readonly readers = new Set<number>()

  /** The next datagram (for the head). Interrupting it loses nothing. */
  readonly recv: Effect.Effect<Datagram> = Effect.withFiber((fiber) => {
    this.readers.add(fiber.id)
    return Effect.callback<Datagram>((resume) => {
      const queued = this.queue.shift()
      if (queued !== undefined) return resume(Effect.succeed(queued))
      this.waiting = (datagram) => resume(Effect.succeed(datagram))
      return Effect.sync(() => {
        this.waiting = undefined
      })
    })
  })

  /** Sends a datagram (for anyone: no head needed). */
  send(port: number, text: string): Effect.Effect<void, Error> {
    return Effect.callback<void, Error>((resume) => {
      this.socket.send(text, port, "127.0.0.1", (error) => resume(error ? Effect.fail(error) : Effect.void))
    })
  }
}

/** The client socket as a stage: replies are filed by `"<peer port>:<request id>"`. */
export type UdpStage = Stage.Stage<UdpEndpoint, string, Map<string, string>>

/** Binds a client socket on 127.0.0.1 and puts a stage over it, both closed with the scope. */
export const makeUdpStage = Effect.gen(function*() {
  const socket = yield* Effect.acquireRelease(
    Effect.callback<dgram.Socket>((resume) => {
      const socket = dgram.createSocket("udp4")
      socket.bind(0, "127.0.0.1", () => resume(Effect.succeed(socket)))
    }),
    (socket) => Effect.sync(() => socket.close())
  )
  return yield* Stage.make<UdpEndpoint, string, Map<string, string>>({ resource: new UdpEndpoint(socket), buffer: new Map() })
})

/** The head's work: read one datagram, file it under its token and notify that token. */
const route = (director: Stage.Director<UdpEndpoint, string, Map<string, string>>) =>
  Effect.map(director.resource.recv, ({ port, text }) => {
    const token = `${port}:${text.slice(0, text.indexOf("|"))}`
    director.buffer.set(token, text)
    director.notifyUnsafe(token)
  })

const take = (buffer: Map<string, string>, token: string): string | undefined => {
  const reply = buffer.get(token)
  if (reply !== undefined) buffer.delete(token)
  return reply
}

/** Sends one request and waits for its reply, whoever ends up reading the socket. */
export const request = (stage: UdpStage, port: number, id: string, payload: string) =>
  Effect.andThen(
    stage.resource.send(port, `${id}|${payload}`),
    Stage.receive(stage, { token: `${port}:${id}`, take, poll: route, timeout: "10 seconds" })
  )

/** Starts `count` peer sockets in a worker thread; terminated with the scope. */
export const peers = (count: number) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.callback<readonly [Worker, ReadonlyArray<number>], Error>((resume) => {
        const worker = new Worker(new URL("./udp-peers.ts", import.meta.url), {
          workerData: { count },
          execArgv: ["--conditions=@quiesce/source"]
        })
        worker.once("message", (ports: ReadonlyArray<number>) => resume(Effect.succeed([worker, ports] as const)))
        worker.once("error", (error) => resume(Effect.fail(error)))
      }),
      ([worker]) => Effect.promise(() => worker.terminate())
    ),
    ([, ports]) => ports
  )

/** What a run of the example did. */
export interface UdpReport {
  readonly peers: number
  readonly requests: number
  /** Replies that were not the one meant for the fiber that received them (must be 0). */
  readonly misrouted: number
  /** How many different fibers headed the stage (read the socket) during the run. */
  readonly heads: number
}

/**
 * The example: `fibers` fibers each send `requestsPerFiber` requests, one at a
 * time, to peers chosen round-robin, all over one client socket.
 */
export const udpExample = (options?: {
  readonly peers?: number
  readonly fibers?: number
  readonly requestsPerFiber?: number
}): Effect.Effect<UdpReport, Error | StageError.TokenInUseError | StageError.ReceiveTimeoutError> =>
  Effect.scoped(Effect.gen(function*() {
    const peerCount = options?.peers ?? 4
    const fibers = options?.fibers ?? 64
    const perFiber = options?.requestsPerFiber ?? 8
    const ports = yield* peers(peerCount)
    const stage = yield* makeUdpStage
    let misrouted = 0
    yield* Effect.forEach(
      Array.from({ length: fibers }, (_, f) => f),
      (f) =>
        Effect.gen(function*() {
          for (let r = 0; r < perFiber; r++) {
            const peer = (f + r) % peerCount
            const id = `f${f}r${r}`
            const reply = yield* request(stage, ports[peer]!, id, `hello ${r}`)
            if (reply !== `${id}|peer${peer}:hello ${r}`) misrouted++
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    return { peers: peerCount, requests: fibers * perFiber, misrouted, heads: stage.resource.readers.size }
  }))
