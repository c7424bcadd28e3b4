/**
 * The shared-memory ref. Its state lives in a SharedArrayBuffer that every thread maps, and each
 * view of it that takes references (normally one per thread) counts them in a slot of its own.
 * A view refreshes a heartbeat in its slot; a slot whose heartbeat stops for longer than the
 * lease is reclaimed by another thread, and the references counted in it are dropped — what
 * SEM_UNDO does for a process that dies holding a semaphore — so a terminated worker cannot hold
 * a rundown forever.
 *
 * Layout (Int32 words; the header and every slot own a 64-byte cache line, so that threads
 * counting in their own slots never write to a line another thread writes):
 *
 *   header  STATE    bit 0 RUNDOWN, bit 1 DRAINED, bits 2-3 zero, bits 4-31 the phase (+1 per rundown)
 *           MAGIC, SLOTS, LEASE (ms), fixed at creation
 *           USED     every slot ever claimed is below it: scans stop there
 *           DROPPED  references dropped by reclaims so far (only reported to waiters)
 *   slot    WORD     bits 3-31 the count, bits 0-2 the tag of the claim it belongs to
 *           OWNER    the slot's generation: odd = claimed by one view, even = free; +1 when a view
 *                    claims it and +1 when it is reclaimed
 *           BEAT     the owner's heartbeat counter
 *
 * The protocol. Each bracketed step is one atomic access; `test/model/protocol.ts` models them
 * in this order and checks every interleaving of a few threads, with any thread dying at any
 * step and live threads' slots reclaimed at any time (a blocked event loop).
 *
 *   acquire   [A_OWN] OWNER is still this claim's; [A_CAS] WORD: cached → cached + n;
 *             [A_STATE] read STATE: if RUNDOWN is set, [A_UNDO] take the n back and refuse.
 *             The count goes up before STATE is read, and `begin` sets RUNDOWN before it reads
 *             the counts: with sequentially consistent atomics, either the acquirer sees
 *             RUNDOWN or the scan sees its count (Dekker's argument).
 *   release   [R_OWN] OWNER is still this claim's; [R_CAS] WORD: cached → cached − n; if this
 *             slot's count is now zero, [R_STATE] read STATE and, running down, scan.
 *             (The OWNER checks and the first look at STATE in a release are plain reads: the
 *             model treats all reads as atomic; see acquireUnsafe and releaseUnsafe for why
 *             these two may be plain.)
 *   begin     [W_CAS] STATE: (phase, Active) → (phase + 1, RUNDOWN); then scan.
 *   scan      [K_USED] read USED; [K_WORD] read every count below it, stopping at the first that
 *             is not zero; [K_CAS] STATE: (phase, RUNDOWN) → + DRAINED. Only that CAS completes
 *             a rundown, once per phase; it notifies the waiters.
 *   claim     [C_OWN] find an even OWNER; [C_USED] raise USED above it; [C_CAS] OWNER: even →
 *             odd; then normalize.
 *   reclaim   [X_RECLAIM] OWNER: odd → even (from here on the owner's steps fail); then normalize.
 *   normalize [N_O1] read OWNER, [N_WORD] read WORD, [N_O2] read OWNER again (retry if it moved);
 *             if WORD does not carry the tag OWNER calls for (or a free slot still counts),
 *             [N_CAS] WORD → that tag with count zero. The count it wiped is dropped: if it was
 *             not zero, [N_STATE] read STATE and, running down, scan. Claims and reclaims end
 *             with it, and lease checks run it on every slot, so a thread that died between a
 *             CAS on OWNER and its normalize leaves nothing behind for long.
 *
 * Only the owner changes its slot's WORD while its claim stands, so it CASes with the value it
 * last wrote (`cached`) and never reads the word. A reclaim first moves OWNER and then rewrites
 * WORD with another tag: an owner that was stalled in between fails its next CAS, or its OWNER
 * check, and learns that its slot was taken. Its later releases of references taken under that
 * claim fail with `RundownLeaseError` and touch no count; it takes a new slot to acquire again.
 * The tag has 3 bits, so a stale CAS could only succeed if its owner stalled between its OWNER
 * check and its CAS (two instructions) while the slot was reclaimed and re-claimed 8 times —
 * each reclaim needing a lease to expire — and the count came back to the same value.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as RundownRef from "../RundownRef.ts"
import { RundownHandleError, RundownLeaseError, RundownSlotsError } from "../RundownError.ts"
import {
  DRAINED,
  MAX_COUNT,
  OVERFLOW,
  recordTiming,
  REFUSED,
  reportActive,
  RUNDOWN,
  RundownRefBase,
  startTiming,
  stateRunDown,
  type Timing,
  underflow
} from "./core.ts"

/** @internal */
export const HandleTag = "~@quiesce/rundown/SharedHandle"
const HANDLE_VERSION = 1

const H_STATE = 0
const H_MAGIC = 1
const H_SLOTS = 2
const H_LEASE = 3
const H_USED = 4
const H_DROPPED = 5
const HEADER_WORDS = 16
const S_WORD = 0
const S_OWNER = 1
const S_BEAT = 2
const SLOT_WORDS = 16
const MAGIC = 0x52444e32 // "RDN2"

const TAG = 7
const UNIT = 8
const PHASE = 16
const RESERVED = 12

/** @internal */
export const DEFAULT_LEASE_MILLIS = 2000
/** @internal */
export const DEFAULT_SLOTS = 64
const MIN_LEASE_MILLIS = 10
const MAX_LEASE_MILLIS = 1 << 30
const MAX_SLOTS = 4096

const bytesFor = (slots: number): number => (HEADER_WORDS + slots * SLOT_WORDS) * 4
const slotAt = (i: number): number => HEADER_WORDS + i * SLOT_WORDS
const tagOf = (owner: number): number => (owner >>> 1) & TAG
/** The tag WORD must carry: its owner's, or for a free slot the next owner's. */
const wantTag = (owner: number): number => tagOf((owner & 1) === 1 ? owner : owner + 1)
const runningDown = (s: number): boolean => (s & (RUNDOWN | DRAINED)) === RUNDOWN

const raiseUsed = (i32: Int32Array, n: number): void => {
  let used = Atomics.load(i32, H_USED)
  while (used < n) {
    const prev = Atomics.compareExchange(i32, H_USED, used, n)
    if (prev === used) return
    used = prev
  }
}

interface SharedWaiter {
  readonly token: number
  /** DROPPED when the wait began: a waiter whose rundown dropped references says so. */
  readonly dropped: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

/** @internal */
export class SharedRundownRef extends RundownRefBase implements RundownRef.SharedRundownRef {
  readonly i32: Int32Array
  readonly handle: RundownRef.SharedHandle
  readonly slots: number
  readonly lease: number

  // This view's claim. While it stands nobody else writes the slot's WORD, so `cached` is it.
  /** The OWNER generation of the claim; 0 = no claim. */
  gen = 0
  /** Index of the claimed slot's first word. */
  at = 0
  cached = 0
  /** The receipt of references taken under the current claim; moves at every claim and eviction. */
  claim = 0
  heartbeat: ReturnType<typeof setInterval> | undefined = undefined

  // What this view has seen of the other slots' heartbeats (allocated when it first looks).
  seenOwner: Int32Array | undefined = undefined
  seenBeat: Int32Array | undefined = undefined
  /** How long, in this thread's running time, each slot's heartbeat has not moved. */
  quiet: Float64Array | undefined = undefined
  observedAt = -1

  /**
   * This thread's waiters on this ref, and whether an `Atomics.waitAsync` on STATE is pending
   * for them. One pending wait serves all of them, so a thread with many waiters pays for one,
   * and interrupted waiters leave nothing behind but (at most) that one wait.
   */
  readonly waiters = new Set<SharedWaiter>()
  watching = false
  /** The lease checks, while this view has waiters (a ref'd timer: it keeps the thread alive). */
  checks: ReturnType<typeof setInterval> | undefined = undefined
  /** The rundown this view began, if its duration is to be recorded when it completes. */
  timing: Timing | undefined = undefined

  constructor(buffer: SharedArrayBuffer, metrics: RundownRef.RundownMetrics | undefined) {
    super(metrics)
    this.i32 = new Int32Array(buffer)
    this.handle = { _tag: HandleTag, version: HANDLE_VERSION, buffer }
    this.slots = this.i32[H_SLOTS]!
    this.lease = this.i32[H_LEASE]!
  }

  // A plain element read: aligned Int32Array accesses never tear, so a racing read returns a
  // value the word really held; it only ever refuses early, and every decision is made by the
  // atomic steps of `acquireUnsafe`.
  hint(): number {
    return this.i32[H_STATE]!
  }

  acquireUnsafe(n: number): number {
    const i32 = this.i32
    for (;;) {
      if (this.gen === 0) this.claimSlot()
      const at = this.at
      const w = this.cached
      // A plain read (an `Atomics.load` is a builtin call, ~15 ns): the tagged CAS below is what
      // catches a reclaim; this check only closes the tag's wrap for a thread that comes back
      // after its slot was reclaimed and re-claimed 8 times, long after the reclaim was written.
      if (i32[at + S_OWNER] !== this.gen) { // A_OWN
        this.evicted()
        continue
      }
      if ((w >>> 3) + n > MAX_COUNT) return OVERFLOW
      const next = (w + n * UNIT) | 0
      if (Atomics.compareExchange(i32, at + S_WORD, w, next) !== w) { // A_CAS
        this.evicted()
        continue
      }
      this.cached = next
      // Atomic, not a plain read: Dekker's argument needs this load ordered after the CAS
      // (on ARM64 a plain load may pass the CAS's store).
      const s = Atomics.load(i32, H_STATE) // A_STATE
      if ((s & RUNDOWN) !== 0) {
        this.undo(n, s)
        return REFUSED
      }
      if (this.metrics !== undefined) reportActive(this)
      return this.claim
    }
  }

  private undo(n: number, s: number): void {
    const w = this.cached
    const next = (w - n * UNIT) | 0
    if (Atomics.compareExchange(this.i32, this.at + S_WORD, w, next) !== w) { // A_UNDO
      // Reclaimed in between: the reclaim dropped these n with the rest.
      this.evicted()
      return
    }
    this.cached = next
    if ((next >>> 3) === 0 && runningDown(s)) this.scan(s)
  }

  releaseUnsafe(n: number, receipt: number): void {
    if (receipt !== this.claim) throw this.lost()
    const i32 = this.i32
    const at = this.at
    const w = this.cached
    if ((w >>> 3) < n) throw underflow(n, w >>> 3)
    const next = (w - n * UNIT) | 0
    if (
      i32[at + S_OWNER] !== this.gen || // R_OWN (a plain read, as in acquireUnsafe)
      Atomics.compareExchange(i32, at + S_WORD, w, next) !== w // R_CAS
    ) {
      this.evicted()
      throw this.lost()
    }
    this.cached = next
    // Whether to scan is only a question of promptness, so a plain read filters first (every
    // protect empties its slot, and an `Atomics.load` costs ~15 ns): were it stale and skipped a
    // scan that was needed, a waiter's next check (within a quarter lease) would complete the
    // rundown, as it does when the releasing thread dies right after its CAS.
    if ((next >>> 3) === 0 && (i32[H_STATE]! & RUNDOWN) !== 0) {
      const s = Atomics.load(i32, H_STATE) // R_STATE
      if (runningDown(s)) this.scan(s)
    }
    if (this.metrics !== undefined) reportActive(this)
  }

  private lost(): RundownLeaseError {
    return new RundownLeaseError({ leaseMillis: this.lease })
  }

  /** Completes the rundown `s` if no slot counts anything. */
  scan(s: number): void {
    const i32 = this.i32
    const used = Atomics.load(i32, H_USED) // K_USED
    for (let i = 0; i < used; i++) {
      if ((Atomics.load(i32, slotAt(i) + S_WORD) >>> 3) !== 0) return // K_WORD
    }
    if (Atomics.compareExchange(i32, H_STATE, s, s | DRAINED) !== s) return // K_CAS
    Atomics.notify(i32, H_STATE)
    const timing = this.timing
    if (timing !== undefined && timing.token === s) {
      this.timing = undefined
      recordTiming(timing)
    }
  }

  beginUnsafe(): number {
    const i32 = this.i32
    let s = Atomics.load(i32, H_STATE) // W_LOAD
    while ((s & RUNDOWN) === 0) {
      const next = (s + PHASE) | RUNDOWN
      const prev = Atomics.compareExchange(i32, H_STATE, s, next) // W_CAS
      if (prev === s) {
        this.timing = startTiming(this.metrics, next)
        this.scan(next)
        // Recorded when the rundown completes, even if nobody waits for it any more.
        if (this.timing !== undefined && !this.watching) this.watch()
        return next
      }
      s = prev
    }
    return s & ~DRAINED
  }

  /** A waiter on `token` (phase and RUNDOWN) is done as soon as STATE is anything else. */
  awaitDrained(token: number): Effect.Effect<void> {
    if (Atomics.load(this.i32, H_STATE) !== token) return Effect.void
    return Effect.callback<void>((resume) => {
      const waiter: SharedWaiter = { token, dropped: Atomics.load(this.i32, H_DROPPED), resume }
      this.waiters.add(waiter)
      if (this.checks === undefined) {
        this.checks = setInterval(this.check, Math.max(1, Math.floor(this.lease / 4)))
        // At once too: the thread that began the rundown, or released the last reference, may
        // have died before its scan.
        this.check()
      }
      if (!this.watching) this.watch()
      return Effect.sync(() => {
        if (this.waiters.delete(waiter) && this.waiters.size === 0) this.stopChecks()
      })
    })
  }

  private outcome(waiter: SharedWaiter): Effect.Effect<void> {
    const dropped = Atomics.load(this.i32, H_DROPPED) - waiter.dropped
    return dropped > 0
      ? Effect.logWarning(
        `RundownRef: this rundown dropped ${dropped} reference(s) of threads whose heartbeat stopped for longer ` +
          `than the ${this.lease} ms lease (dead, or with a blocked event loop; those are told when they release)`
      )
      : Effect.void
  }

  /**
   * Resumes the waiters that are done and records the duration of the rundown this view began,
   * then waits on STATE until the next notify. Only a completion notifies; a change of STATE
   * before the wait is registered makes it return "not-equal" at once, so no wake-up is lost.
   */
  readonly watch = (): void => {
    const i32 = this.i32
    this.watching = true
    for (;;) {
      const s = Atomics.load(i32, H_STATE)
      const timing = this.timing
      if (timing !== undefined && s !== timing.token) {
        this.timing = undefined
        recordTiming(timing)
      }
      for (const waiter of this.waiters) {
        if (s !== waiter.token) {
          this.waiters.delete(waiter)
          waiter.resume(this.outcome(waiter))
        }
      }
      if (this.waiters.size === 0) this.stopChecks()
      if (this.waiters.size === 0 && this.timing === undefined) {
        this.watching = false
        return
      }
      const result = Atomics.waitAsync(i32, H_STATE, s)
      if (result.async) {
        result.value.then(this.watch)
        return
      }
    }
  }

  private stopChecks(): void {
    if (this.checks === undefined) return
    clearInterval(this.checks)
    this.checks = undefined
  }

  /** A waiter's periodic check: reclaim expired slots, and complete the rundown if nothing is held. */
  readonly check = (): void => {
    this.observe(performance.now())
    const s = Atomics.load(this.i32, H_STATE) // X_STATE2
    if (runningDown(s)) this.scan(s)
  }

  /**
   * Looks at the other slots' heartbeats at this thread's time `now` (ms, monotonic), repairs
   * half-done claims and reclaims, and reclaims the slots whose heartbeat has not moved for
   * longer than the lease. Only time this thread itself was running counts towards that: a
   * longer gap between two looks (this thread's event loop was blocked, or the process stopped)
   * counts as half a lease, so a thread that was stopped along with this one gets the chance to
   * beat again before it can be found quiet. Counts are only dropped while a rundown waits for
   * them; an idle slot can always be taken back.
   */
  observe(now: number): void {
    const i32 = this.i32
    if (this.quiet === undefined) {
      this.seenOwner = new Int32Array(this.slots)
      this.seenBeat = new Int32Array(this.slots)
      this.quiet = new Float64Array(this.slots)
    }
    const seenOwner = this.seenOwner!
    const seenBeat = this.seenBeat!
    const quiet = this.quiet
    const credit = this.observedAt < 0 ? 0 : Math.min(Math.max(now - this.observedAt, 0), this.lease / 2)
    this.observedAt = now
    const used = Atomics.load(i32, H_USED) // X_USED
    for (let i = 0; i < used; i++) {
      const at = slotAt(i)
      if (this.gen !== 0 && at === this.at) continue
      const owner = Atomics.load(i32, at + S_OWNER) // X_OWN
      this.normalize(i)
      if ((owner & 1) === 0) {
        seenOwner[i] = owner
        continue
      }
      const beat = Atomics.load(i32, at + S_BEAT)
      if (owner !== seenOwner[i] || beat !== seenBeat[i]) {
        seenOwner[i] = owner
        seenBeat[i] = beat
        quiet[i] = 0
        continue
      }
      quiet[i] = quiet[i]! + credit
      if (quiet[i]! <= this.lease) continue
      if (
        (Atomics.load(i32, at + S_WORD) >>> 3) !== 0 && // X_COUNT
        !runningDown(Atomics.load(i32, H_STATE)) // X_STATE
      ) continue
      if (Atomics.compareExchange(i32, at + S_OWNER, owner, (owner + 1) | 0) === owner) this.normalize(i) // X_RECLAIM
    }
  }

  /** Makes slot `i`'s WORD carry the tag its OWNER calls for; whatever count that wipes is dropped. */
  normalize(i: number): void {
    const i32 = this.i32
    const at = slotAt(i)
    for (;;) {
      const owner = Atomics.load(i32, at + S_OWNER) // N_O1
      const w = Atomics.load(i32, at + S_WORD) // N_WORD
      if (Atomics.load(i32, at + S_OWNER) !== owner) continue // N_O2
      const want = wantTag(owner)
      if ((w & TAG) === want && ((owner & 1) === 1 || (w >>> 3) === 0)) return
      if (Atomics.compareExchange(i32, at + S_WORD, w, want) !== w) continue // N_CAS
      const dropped = w >>> 3
      if (dropped > 0) {
        Atomics.add(i32, H_DROPPED, dropped)
        const s = Atomics.load(i32, H_STATE) // N_STATE
        if (runningDown(s)) this.scan(s)
      }
      return
    }
  }

  private claimSlot(): void {
    const i32 = this.i32
    for (let i = 0; i < this.slots; i++) {
      const at = slotAt(i)
      let owner = Atomics.load(i32, at + S_OWNER) // C_OWN
      while ((owner & 1) === 0) {
        raiseUsed(i32, i + 1) // C_USED
        const prev = Atomics.compareExchange(i32, at + S_OWNER, owner, (owner + 1) | 0) // C_CAS
        if (prev === owner) {
          this.gen = (owner + 1) | 0
          this.at = at
          this.cached = tagOf(this.gen)
          this.claim++
          this.normalize(i)
          Atomics.add(i32, at + S_BEAT, 1)
          this.startHeartbeat()
          return
        }
        owner = prev
      }
    }
    throw new RundownSlotsError({ slots: this.slots })
  }

  /** Beats every quarter lease while the claim stands; unref'd, and dropped with the view. */
  private startHeartbeat(): void {
    const view = new WeakRef<SharedRundownRef>(this)
    const gen = this.gen
    const timer = setInterval(() => {
      const self = view.deref()
      if (self === undefined || self.gen !== gen) clearInterval(timer)
      else self.beat()
    }, Math.max(1, Math.floor(this.lease / 4)))
    // Node's timers have unref; elsewhere a heartbeat keeping the thread alive is the lesser harm.
    ;(timer as { unref?: () => void }).unref?.()
    this.heartbeat = timer
  }

  beat(): void {
    const i32 = this.i32
    if (Atomics.load(i32, this.at + S_OWNER) !== this.gen) {
      this.evicted()
      return
    }
    Atomics.add(i32, this.at + S_BEAT, 1)
    this.observe(performance.now())
  }

  /** This view's claim was reclaimed: references taken under it can no longer be released. */
  private evicted(): void {
    this.gen = 0
    this.claim++
    if (this.heartbeat !== undefined) {
      clearInterval(this.heartbeat)
      this.heartbeat = undefined
    }
  }

  reInitUnsafe(): RundownRef.RundownState | undefined {
    const i32 = this.i32
    const s = Atomics.load(i32, H_STATE)
    if (
      (s & (RUNDOWN | DRAINED)) === (RUNDOWN | DRAINED) &&
      Atomics.compareExchange(i32, H_STATE, s, s & ~(RUNDOWN | DRAINED)) === s
    ) return undefined
    return this.stateUnsafe()
  }

  stateUnsafe(): RundownRef.RundownState {
    const i32 = this.i32
    const s = Atomics.load(i32, H_STATE)
    if ((s & DRAINED) !== 0) return stateRunDown
    let count = 0
    const used = Atomics.load(i32, H_USED)
    for (let i = 0; i < used; i++) count += Atomics.load(i32, slotAt(i) + S_WORD) >>> 3
    return (s & RUNDOWN) === 0 ? { _tag: "Active", count } : { _tag: "RunningDown", count }
  }

  heldHere(): number {
    return this.gen === 0 ? 0 : this.cached >>> 3
  }
}

// -----------------------------------------------------------------------------
// Constructors and handles
// -----------------------------------------------------------------------------

const optionProblem = (slots: unknown, lease: unknown): string | undefined => {
  if (!Number.isSafeInteger(slots) || (slots as number) < 1 || (slots as number) > MAX_SLOTS) {
    return `slots must be an integer from 1 to ${MAX_SLOTS}, got ${String(slots)}`
  }
  if (!Number.isSafeInteger(lease) || (lease as number) < MIN_LEASE_MILLIS || (lease as number) > MAX_LEASE_MILLIS) {
    return `leaseMillis must be an integer from ${MIN_LEASE_MILLIS} to ${MAX_LEASE_MILLIS}, got ${String(lease)}`
  }
  return undefined
}

/** @internal */
export const makeSharedUnsafe = (options?: RundownRef.SharedOptions): SharedRundownRef => {
  const slots = options?.slots ?? DEFAULT_SLOTS
  const lease = options?.leaseMillis ?? DEFAULT_LEASE_MILLIS
  const problem = optionProblem(slots, lease)
  if (problem !== undefined) throw new RangeError(`RundownRef.makeShared: ${problem}`)
  const buffer = new SharedArrayBuffer(bytesFor(slots))
  const i32 = new Int32Array(buffer)
  i32[H_SLOTS] = slots
  i32[H_LEASE] = lease
  // Published last: a handle is only accepted once the magic word is there.
  Atomics.store(i32, H_MAGIC, MAGIC)
  return new SharedRundownRef(buffer, options?.metrics)
}

/** @internal */
export const handleProblem = (u: unknown): string | undefined => {
  if (typeof u !== "object" || u === null) return `expected an object, got ${u === null ? "null" : typeof u}`
  const h = u as Record<string, unknown>
  if (h._tag !== HandleTag) return `missing or wrong _tag (expected "${HandleTag}")`
  if (h.version !== HANDLE_VERSION) return `unsupported version ${String(h.version)} (expected ${HANDLE_VERSION})`
  if (!(h.buffer instanceof SharedArrayBuffer)) return "buffer is not a SharedArrayBuffer"
  const bytes = h.buffer.byteLength
  if (bytes >= 4) {
    const s = Atomics.load(new Int32Array(h.buffer, 0, 1), H_STATE)
    if ((s & RESERVED) !== 0 || (s & (RUNDOWN | DRAINED)) === DRAINED) {
      return `the shared word 0x${(s >>> 0).toString(16)} is not a valid rundown state`
    }
  }
  if (bytes < bytesFor(1)) return `buffer has ${bytes} bytes (expected at least ${bytesFor(1)})`
  const i32 = new Int32Array(h.buffer, 0, HEADER_WORDS)
  if (Atomics.load(i32, H_MAGIC) !== MAGIC) return "the buffer was not made by RundownRef.makeShared (no magic word)"
  const slots = Atomics.load(i32, H_SLOTS)
  const problem = optionProblem(slots, Atomics.load(i32, H_LEASE))
  if (problem !== undefined) return `the buffer's header is damaged: ${problem}`
  if (bytes !== bytesFor(slots)) return `buffer has ${bytes} bytes (expected ${bytesFor(slots)} for ${slots} slots)`
  return undefined
}

/** @internal */
export const fromSharedUnsafe = (handle: unknown, options?: RundownRef.Options): SharedRundownRef => {
  const problem = handleProblem(handle)
  if (problem !== undefined) throw new RundownHandleError({ reason: problem })
  return new SharedRundownRef((handle as RundownRef.SharedHandle).buffer, options?.metrics)
}
