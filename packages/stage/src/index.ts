/**
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 */
export * as Stage from "./Stage.ts"

/**
 * @since 0.1.0
 */
export * as StageError from "./StageError.ts"

/**
 * @since 0.1.0
 */
export * as SharedStage from "./SharedStage.ts"
