/**
 * What clients learn about a running shared service: its pid (with the process start time
 * that makes the pid unambiguous), its port, an instance id that changes on every (re)start,
 * and free-form metadata. It travels between processes in a hint file that is only ever a
 * hint: every reader verifies it against reality (pid plus start time, and the health check).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * What a running shared service is: its pid (with the start time that makes it unambiguous), port, instance id and metadata, as recorded in its hint.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { ServiceInfo } from "@quiesce/shared-service"
 *
 * // It is a Schema class: decode it from JSON received from another process.
 * const decode = Schema.decodeUnknownSync(ServiceInfo.ServiceInfo)
 * const info = decode({ pid: 4242, port: 5432, instanceId: "a1", metadata: { url: "postgres://127.0.0.1:5432" } })
 * console.log(info.metadata["url"]) // "postgres://127.0.0.1:5432"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export class ServiceInfo extends Schema.Class<ServiceInfo>("@quiesce/shared-service/ServiceInfo")({
  /** The service's process id. */
  pid: Schema.Int,
  /**
   * The process start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) when it was
   * recorded, so that a recycled pid is never mistaken for the service. `undefined` when unknown
   * (the process is then only checked by pid).
   */
  startTime: Schema.optional(Schema.Number),
  /**
   * The service leads its own process group (it was spawned detached): stopping it signals the
   * whole group, so a shell wrapper and its children go together.
   */
  processGroup: Schema.optional(Schema.Boolean),
  /** The TCP port the service listens on, if any. */
  port: Schema.optional(Schema.Int),
  /** Unique per (re)start of the service. */
  instanceId: Schema.String,
  /** Anything else clients need (a URL, a socket path…). */
  metadata: Schema.Record(Schema.String, Schema.String)
}) {}

/**
 * Creates a `ServiceInfo`, filling in a fresh `instanceId` and empty metadata.
 *
 * @example
 * ```ts
 * import { ServiceInfo } from "@quiesce/shared-service"
 *
 * const info = ServiceInfo.make({ pid: 4242, port: 5432, metadata: { db: "dev" } })
 * console.log(info.port, info.instanceId.length > 0) // 5432 true
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: {
  readonly pid: number
  readonly port?: number | undefined
  readonly startTime?: number | undefined
  readonly processGroup?: boolean | undefined
  readonly instanceId?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}): ServiceInfo =>
  new ServiceInfo({
    pid: options.pid,
    ...(options.startTime === undefined ? {} : { startTime: options.startTime }),
    ...(options.processGroup === undefined ? {} : { processGroup: options.processGroup }),
    ...(options.port === undefined ? {} : { port: options.port }),
    instanceId: options.instanceId ?? globalThis.crypto.randomUUID(),
    metadata: { ...options.metadata }
  })

/**
 * Whether `u` is a `ServiceInfo`.
 *
 * @example
 * ```ts
 * import { ServiceInfo } from "@quiesce/shared-service"
 *
 * console.log(ServiceInfo.isServiceInfo(ServiceInfo.make({ pid: 1 }))) // true
 * console.log(ServiceInfo.isServiceInfo({ pid: 1 })) // false
 * ```
 *
 * @category guards
 * @since 0.1.0
 */
export const isServiceInfo = (u: unknown): u is ServiceInfo => u instanceof ServiceInfo
