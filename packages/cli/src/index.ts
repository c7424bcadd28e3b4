/**
 * `@quiesce/cli`: the `quiesce` command line, which shares one local service between
 * concurrent commands, and the pieces it is built from.
 *
 * @since 0.1.0
 */

/**
 * `main(argv)`: the `quiesce` command line, run in this process.
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.ts"

/**
 * Errors of the command line and the exit codes they map to.
 *
 * @since 0.1.0
 */
export * as QuiesceError from "./QuiesceError.ts"

/**
 * Readiness probes that try every address a host resolves to.
 *
 * @since 0.1.0
 */
export * as Readiness from "./Readiness.ts"

/**
 * Services defined once in `quiesce.config.json` (or `package.json`'s `"quiesce"` key), used by name.
 *
 * @since 0.1.0
 */
export * as QuiesceConfig from "./QuiesceConfig.ts"

/**
 * Shared services for test runners: a vitest or Playwright `globalSetup` that holds them in-process.
 *
 * @since 0.1.0
 */
export * as GlobalSetup from "./GlobalSetup.ts"
