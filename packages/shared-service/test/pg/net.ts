/**
 * Simulated machines for the PostgreSQL backend's tests: Linux network namespaces. One namespace
 * runs the database server; each machine namespace is joined to it by a veth pair whose two ends
 * carry loopback addresses (127.77.<i>.1 on the server's side, .2 on the machine's; with
 * `route_localnet`, set only inside these namespaces), so no traffic can leave them. Cutting a
 * machine off is `ip link set … down` on its end: its TCP connections go silent, as when a
 * machine vanishes, and only keepalives can tell.
 */
import { execFileSync } from "node:child_process"

const ip = (...args: ReadonlyArray<string>) => execFileSync("ip", args, { stdio: "pipe" })
const inNs = (ns: string, ...cmd: ReadonlyArray<string>) => execFileSync("ip", ["netns", "exec", ns, ...cmd], { stdio: "pipe" })

export interface Net {
  readonly server: string
  readonly machines: ReadonlyArray<string>
  /** The server's address as machine `i` reaches it. */
  readonly serverAddress: (i: number) => string
  /** Addresses the server listens on. */
  readonly listen: ReadonlyArray<string>
  /** The command prefix that runs a program on machine `i`. */
  readonly prefix: (i: number) => ReadonlyArray<string>
  /** Cuts machine `i` off (its link goes down). */
  readonly cut: (i: number) => void
  readonly destroy: () => void
}

export const makeNet = (machines: number): Net => {
  if (process.getuid?.() !== 0) {
    throw new Error("the PostgreSQL backend's machine tests create network namespaces (ip netns) and must run as root")
  }
  try {
    ip("-V")
  } catch {
    throw new Error("the PostgreSQL backend's machine tests need iproute2's ip (Debian: apt-get install iproute2)")
  }
  const tag = `q${process.pid % 100000}${Math.random().toString(36).slice(2, 4)}`
  const server = `${tag}-d`
  const names = Array.from({ length: machines }, (_, i) => `${tag}-m${i}`)
  const created: Array<string> = []
  const destroy = () => {
    for (const ns of created.splice(0).reverse()) {
      try {
        ip("netns", "del", ns)
      } catch {
        // gone
      }
    }
  }
  try {
    for (const ns of [server, ...names]) {
      ip("netns", "add", ns)
      created.push(ns)
      // Written directly: sysctl lives in /usr/sbin, which a minimal PATH (CI's) may not have.
      inNs(ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; echo 1 > /proc/sys/net/ipv4/conf/default/route_localnet")
      inNs(ns, "ip", "link", "set", "lo", "up")
    }
    names.forEach((ns, i) => {
      const a = `${tag}a${i}`
      const b = `${tag}b${i}`
      ip("link", "add", a, "type", "veth", "peer", "name", b)
      ip("link", "set", a, "netns", server)
      ip("link", "set", b, "netns", ns)
      inNs(server, "ip", "addr", "add", `127.77.${i}.1/30`, "dev", a)
      inNs(server, "ip", "link", "set", a, "up")
      inNs(ns, "ip", "addr", "add", `127.77.${i}.2/30`, "dev", b)
      inNs(ns, "ip", "link", "set", b, "up")
    })
  } catch (e) {
    destroy()
    throw e
  }
  return {
    server,
    machines: names,
    serverAddress: (i) => `127.77.${i}.1`,
    listen: names.map((_, i) => `127.77.${i}.1`),
    prefix: (i) => ["ip", "netns", "exec", names[i]!],
    cut: (i) => void inNs(names[i]!, "ip", "link", "set", `${tag}b${i}`, "down"),
    destroy
  }
}
