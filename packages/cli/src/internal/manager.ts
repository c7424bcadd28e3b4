/**
 * What the commands need from `@quiesce/shared-service`, as one service, so that the command
 * layer reads as the user sees it and the integration lives in one place (`./shared.ts`).
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Lease } from "../GlobalSetup.ts"
import type { Definition } from "../QuiesceConfig.ts"
import type { QuiesceError } from "../QuiesceError.ts"
import type { ServiceStatus, StopReport } from "./format.ts"

/** What an acquisition reports while it waits, for the progress line. */
export interface Progress {
  /** What it waits for ("tcp:localhost:5432"), once known. */
  target: string | undefined
  /** The last readiness probe's failure, while the service is starting. */
  lastFailure: string | undefined
}

/**
 * With neither `--ready` nor `--port` there is nothing to probe: the service is ready once its
 * process has stayed alive this long (long enough for a bad command or a config error to fail).
 */
export const aliveMillis = 500

/** A held reference to a ready service (documented where it is public, in `GlobalSetup`). */
export type { Lease }

export class Manager extends Context.Service<Manager, {
  /** Holds a reference to the service until the scope closes, starting it if no one holds it. */
  readonly acquire: (definition: Definition, progress?: Progress) => Effect.Effect<Lease, QuiesceError, Scope.Scope>
  /**
   * Makes the references this process holds (on `service` and any other) survive `execve`, so
   * that the program it becomes holds them until it exits (the acquiring scope is then never closed).
   */
  readonly prepareExec: (service: string) => Effect.Effect<void, QuiesceError>
  /** `backend`: a PostgreSQL URL, for services shared through it (else this machine's kernel counters). */
  readonly status: (name: string, backend?: string) => Effect.Effect<ServiceStatus, QuiesceError>
  readonly list: (backend?: string) => Effect.Effect<ReadonlyArray<ServiceStatus>, QuiesceError>
  readonly stop: (
    name: string,
    options: { readonly timeoutMillis: number; readonly backend?: string | undefined }
  ) => Effect.Effect<StopReport, QuiesceError>
  /** Prints the service's output (its current instance's, else its last one's); with `follow`, until that instance ends. */
  readonly logs: (name: string, options: { readonly follow: boolean }) => Effect.Effect<void, QuiesceError>
}>()("@quiesce/cli/internal/Manager") {}
