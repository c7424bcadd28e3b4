/**
 * The parts of the stages' state machines that tests observe or drive directly
 * (the source modules are internal and in another tsc project).
 */
import { SharedStage, type Stage } from "@quiesce/stage"

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

/**
 * The shared stage's state machine (`SharedState`), which the shared-stage
 * tests drive transition by transition on an attachment's memory.
 */
export interface SharedInternals {
  readonly m: Int32Array
  readonly head: number
  readonly rings: Array<number>
  readonly l: { readonly workersAt: number; readonly inboxesAt: number; readonly inboxWords: number }
  registerLocked(w: number, key: Uint8Array, hash: number): number
  withdrawLocked(s: number, gen: number, headRunning?: boolean): void
  reapLocked(w: number): void
  enterLocked(s: number): number
  waitLocked(s: number): number
  takePendingLocked(s: number): boolean
  takeHeadLocked(s: number): boolean
  leaveLocked(s: number, gen: number): void
  expireLocked(s: number, gen: number, seq: number): boolean
  takePromotionLocked(s: number, gen: number, seq: number, expired: boolean): boolean
  abandonLocked(s: number, gen: number, seq: number): number
  notifyLocked(key: Uint8Array, hash: number, event: Uint8Array | undefined): number
  lookupLocked(key: Uint8Array, hash: number): number
  drain(w: number, onRecord: (kind: number, slot: number, gen: number, seq: number, event: Uint8Array | undefined) => void): void
  genOf(s: number): number
  pendingOf(s: number): number
  checkLocked(): string | undefined
}

/** An attachment's view of the shared state, and its worker slot. */
export const sharedInternals = (stage: { readonly [SharedStage.TypeId]: SharedStage.TypeId }) =>
  stage as unknown as { readonly shared: SharedInternals; readonly me: number }

/** Inbox record kinds, as `drain` reports them. */
export const REC_EVENT = 1
export const REC_TOKEN = 2

/** FNV-1a, as the shared stage hashes token encodings. */
export const hashOf = (bytes: Uint8Array): number => {
  let h = 0x811c9dc5
  for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193)
  return h | 0
}

const keys = new Map<string, { readonly bytes: Uint8Array; readonly hash: number }>()
/** A string token's canonical encoding, as the shared index keys it, and its hash. */
export const keyOf = (token: string): { readonly bytes: Uint8Array; readonly hash: number } => {
  let key = keys.get(token)
  if (key === undefined) {
    const bytes = new TextEncoder().encode(JSON.stringify(token))
    key = { bytes, hash: hashOf(bytes) }
    keys.set(token, key)
  }
  return key
}
