/**
 * The parts of the in-process stage's state machine that tests observe or drive
 * directly (the source module is internal and in another tsc project).
 */
import type { Stage } from "@quiesce/stage"

export interface TicketInternals {
  readonly token: unknown
  readonly state: { readonly _tag: string }
  pending: number
}

export interface StageInternals {
  readonly head: TicketInternals | undefined
  readonly first: unknown
  readonly waiting: number
  register(token: unknown): TicketInternals | undefined
  notify(token: unknown): boolean
  tryEnter(ticket: TicketInternals, deadline: number): unknown
  leave(ticket: TicketInternals): void
  takePromotion(ticket: TicketInternals, expired: boolean): boolean
}

export const internals = (stage: Stage.Stage<any, any, any>): StageInternals => stage as unknown as StageInternals
