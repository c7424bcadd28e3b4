/**
 * The parts of a shared ref's view that the lease tests drive directly (the implementation,
 * src/internal/shared.ts, is internal and in another tsc project).
 */
import type { RundownRef } from "@quiesce/rundown"

export interface SharedViewInternals {
  /** The lease check its timers run, at this thread's time `now` (ms). */
  observe(now: number): void
  /** One heartbeat (its heartbeat timer's tick). */
  beat(): void
  /** When it last looked (-1: never). */
  readonly observedAt: number
  /** The generation of its slot's claim (0: none). */
  readonly gen: number
  /** Which slot it claimed (the slot's first word). */
  readonly at: number
}

export const internals = (ref: RundownRef.SharedRundownRef): SharedViewInternals =>
  ref as unknown as SharedViewInternals
