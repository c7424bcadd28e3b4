/**
 * Human and JSON renderings of what `status`, `list` and `stop` report.
 */
import { formatMillis } from "../QuiesceError.ts"

/** What `quiesce status` knows about one service, verified against reality. */
export interface ServiceStatus {
  readonly name: string
  /** `running`: the recorded process is alive (pid and start time match); `stopped`: nothing recorded or it is gone. */
  readonly state: "running" | "stopped"
  readonly pid: number | null
  readonly port: number | null
  /** Clients holding a reference now; `null` where the platform can only tell "some" from "none". */
  readonly clients: number | null
  readonly command: string | null
  readonly startedAt: string | null
  /** The readiness probe's verdict now, when the service has a target. */
  readonly ready: boolean | null
  /** What identifies its definition (command, directory, environment): a `quiesce run` of another one is refused. */
  readonly fingerprint: string | null
}

export interface StopReport {
  readonly name: string
  readonly stopped: boolean
  readonly pid: number | null
  readonly clients: number | null
}

export const toJson = (value: unknown): string => JSON.stringify(value, null, 2)

const uptime = (startedAt: string | null, now: number): string => {
  if (startedAt === null) return "-"
  const ms = now - Date.parse(startedAt)
  return Number.isFinite(ms) && ms >= 0 ? formatMillis(ms) : "-"
}

const show = (value: number | string | boolean | null): string => value === null ? "-" : String(value)

const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()).join("\n")
}

export const statusTable = (services: ReadonlyArray<ServiceStatus>, now: number): string =>
  services.length === 0
    ? "No services."
    : table([
      ["NAME", "STATE", "PID", "PORT", "CLIENTS", "UPTIME", "COMMAND"],
      ...services.map((s) => [
        s.name,
        s.state,
        show(s.pid),
        show(s.port),
        show(s.clients),
        s.state === "running" ? uptime(s.startedAt, now) : "-",
        s.command ?? "-"
      ])
    ])

export const statusDetail = (s: ServiceStatus, now: number): string =>
  s.state === "stopped"
    ? `${s.name}: stopped`
    : [
      `${s.name}: running`,
      `  pid      ${show(s.pid)}`,
      `  port     ${show(s.port)}`,
      `  clients  ${show(s.clients)}`,
      `  uptime   ${uptime(s.startedAt, now)}`,
      `  ready    ${s.ready === null ? "-" : s.ready ? "yes" : "no"}`,
      `  command  ${s.command ?? "-"}`,
      `  identity ${s.fingerprint ?? "-"}`
    ].join("\n")

export const stopLine = (r: StopReport): string =>
  r.stopped
    ? `Stopped ${r.name} (pid ${show(r.pid)})${
      r.clients !== null && r.clients > 0 ? `; ${r.clients} client(s) still held it and will see it gone` : ""
    }.`
    : `${r.name} was not running.`
