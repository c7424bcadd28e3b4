/**
 * `@quiesce/shared-service`: one service process shared by many client processes, started by
 * the first and stopped after the last, with the kernel counting the clients.
 *
 * @since 0.1.0
 */

/**
 * Cross-process reference counting of one shared service.
 *
 * @since 0.1.0
 */
export * as SharedService from "./SharedService.ts"

/**
 * What clients learn about the running service (pid, port, metadata).
 *
 * @since 0.1.0
 */
export * as ServiceInfo from "./ServiceInfo.ts"

/**
 * The kernel reference counter: SysV semaphores, flock fallback, in-memory.
 *
 * @since 0.1.0
 */
export * as RefCounter from "./RefCounter.ts"

/**
 * Processes as Effects, PID-reuse proof.
 *
 * @since 0.1.0
 */
export * as Process from "./Process.ts"

/**
 * The typed errors of this package.
 *
 * @since 0.1.0
 */
export * as SharedServiceError from "./SharedServiceError.ts"
