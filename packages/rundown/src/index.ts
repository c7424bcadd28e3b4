/**
 * `@quiesce/rundown`: run-down protection (`RundownRef`) for Effect, and its errors.
 *
 * @since 0.1.0
 */

/**
 * Run-down protection: acquire protection on a shared resource, run it down, wait for the
 * in-flight users to drain.
 *
 * @since 0.1.0
 */
export * as RundownRef from "./RundownRef.ts"

/**
 * The errors of `@quiesce/rundown`.
 *
 * @since 0.1.0
 */
export * as RundownError from "./RundownError.ts"
