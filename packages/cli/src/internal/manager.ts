/**
 * What the commands need from `@quiesce/shared-service`, as one service, so that the command
 * layer reads as the user sees it and the integration lives in one place (`./shared.ts`).
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { QuiesceError } from "../QuiesceError.ts"
import type * as Readiness from "../Readiness.ts"
import type { ServiceStatus, StopReport } from "./format.ts"

export interface RunOptions {
  readonly name: string
  readonly command: string
  readonly ready: Readiness.Target | undefined
  readonly port: number | undefined
  readonly graceMillis: number
  readonly startTimeoutMillis: number
}

/** A held reference to a ready service. */
export interface Lease {
  readonly name: string
  readonly pid: number
  readonly port: number | undefined
  /** Whether this invocation started the service. */
  readonly started: boolean
}

export class Manager extends Context.Service<Manager, {
  /** Holds a reference to the service until the scope closes, starting it if no one holds it. */
  readonly acquire: (options: RunOptions) => Effect.Effect<Lease, QuiesceError, Scope.Scope>
  readonly status: (name: string) => Effect.Effect<ServiceStatus, QuiesceError>
  readonly list: Effect.Effect<ReadonlyArray<ServiceStatus>, QuiesceError>
  readonly stop: (name: string, options: { readonly timeoutMillis: number }) => Effect.Effect<StopReport, QuiesceError>
}>()("@quiesce/cli/internal/Manager") {}
