/**
 * What a service is probed with, the same for a local service and a remote one: its own
 * readiness targets, else a TCP connection to its port (on its host), else none.
 */
import type { Definition } from "../QuiesceConfig.ts"
import * as Readiness from "../Readiness.ts"

export const targetsOf = (definition: Definition, port: number | undefined, host?: string): ReadonlyArray<Readiness.Target> =>
  definition.ready.length > 0 ? definition.ready : port === undefined ? [] : [Readiness.tcp(port, host)]

/** The targets as the progress line and a not-ready error name them; `none` when there are none. */
export const describeTargets = (targets: ReadonlyArray<Readiness.Target>, none: string): string =>
  targets.length === 0 ? none : targets.map(Readiness.format).join(", ")
