/**
 * `@quiesce/stage`: leader/followers access to a resource only one reader may poll at a time
 * (`Stage`), the same across worker threads (`SharedStage`), and their errors.
 *
 * @since 0.1.0
 */

/**
 * Leader/followers access to a single-reader resource, within one thread.
 *
 * @since 0.1.0
 */
export * as Stage from "./Stage.ts"

/**
 * The errors of `@quiesce/stage`.
 *
 * @since 0.1.0
 */
export * as StageError from "./StageError.ts"

/**
 * One stage shared by several worker threads through a `SharedArrayBuffer`.
 *
 * @since 0.1.0
 */
export * as SharedStage from "./SharedStage.ts"
