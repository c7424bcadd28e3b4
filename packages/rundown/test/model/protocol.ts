/**
 * An exhaustive model of the shared ref's cross-thread protocol (`src/internal/shared.ts`): the
 * state word with its rundown bit and phase, the per-thread slots (owner generation and tagged
 * count), claims, the reclaim of an expired slot, the repair of a half-done claim or reclaim
 * (`normalize`), the drain scan and the completion.
 *
 * Every thread runs a small program of operations (`acquire`, `release`, `wait` =
 * waitForRundown, `reinit`); each operation is the sequence of its atomic memory accesses, in the
 * same order as the implementation (the step names are the ones its comments use). The checker
 * enumerates every interleaving of those steps, and at every step lets any thread die (it never
 * runs again, its slot stops beating). A waiter's lease check may declare the slot of a dead
 * thread expired at any time and, when `stalls` is on, the slot of a live thread too (a thread
 * whose event loop was blocked for longer than the lease: it keeps running afterwards).
 *
 * Checked in every reachable state, with ghost state that the implementation does not have:
 * - each slot's count is exactly the references (and undecided acquisitions) of the claim that
 *   owns its tag, minus the ones a reclaim dropped: no release takes another claim's
 *   reference, nothing underflows;
 * - a rundown completes only when no reference is held that was not dropped by a reclaim, and
 *   completes once;
 * - a release that succeeds was never dropped; one that reports the loss does so only once the
 *   thread's slot was really taken from it;
 * - a waiter returns only after its rundown completed;
 * - from every state where the other threads have finished or died, one more waiter (that
 *   reclaims the dead threads' slots) completes any rundown that has begun.
 */

export type Op = "acquire" | "release" | "wait" | "reinit"

export interface Variant {
  /** Admits an acquisition without reading the state word after counting it (no Dekker check). */
  readonly noStateCheck?: boolean
  /** Slot words carry no owner tag and operations do not check the owner first. */
  readonly noTags?: boolean
  /** A release that empties its own slot completes the rundown without looking at the other slots. */
  readonly noScan?: boolean
  /** The repair does not re-read the owner after reading the word. */
  readonly noRecheck?: boolean
  /** A reclaim zeroes the count without first taking the slot's ownership away. */
  readonly noOwnerBump?: boolean
}

export interface Scenario {
  readonly name: string
  readonly programs: ReadonlyArray<ReadonlyArray<Op>>
  readonly slots: number
  /**
   * How many times a lease check may expire the slot of a live thread (one whose event loop was
   * blocked for longer than the lease); slots of dead threads can always expire.
   */
  readonly stalls: number
  /** Lease checks each wait runs before it only waits (the exploration is bounded by this). */
  readonly checks: number
}

export interface Result {
  readonly states: number
  readonly violation: string | undefined
}

// State word: bit 0 RUNDOWN, bit 1 DRAINED, phase from bit 4 (as in the implementation).
const RUNDOWN = 1
const DRAINED = 2
const PHASE = 16
const UNIT = 8

// Global words.
const G_H = 0
const G_USED = 1
const G_DONE = 2 // ghost: bitmask of completed phases
const G_STALLS = 3 // ghost: expiries of live threads' slots still allowed
const G_SLOTS = 4
const ownerAt = (i: number) => G_SLOTS + 2 * i
const wordAt = (i: number) => G_SLOTS + 2 * i + 1

// Per-thread fields.
const OP = 0
const PC = 1
const ALIVE = 2
const GEN = 3
const SLOT = 4
const CACHED = 5
const CLAIM = 6
const NH = 7 // held references: up to two, each [receipt, slot, gen, dropped]
const HELD = 8
const A_S = 16
const C_I = 17
const C_O = 18
const N_I = 19
const N_O = 20
const N_W = 21
const K_S = 22
const K_U = 23
const K_I = 24
const TOKEN = 25
const W_S = 26
const X_I = 27
const X_U = 28
const X_G = 29
const I_S = 30
const ROUNDS = 31 // lease checks run by the current wait
const TDROP = 32 // ghost: this thread's undecided acquisition was dropped by a repair
const NO = 33 // ghost: references released with a report whose count a repair has not yet dropped
const ORPHANS = 34 // [slot, gen] × 2
const SP = 38
const RET = 39 // return stack, 3 deep
const T_SIZE = 42

// Program counters: each one is a memory access (the step), except the pseudo-steps below 100,
// which are resolved locally before the thread's next step.
const P_ENTER = 1 // start the next operation
const P_FINISHED = 2
const P_RETURN = 3
const P_CLAIM = 4
const P_CLAIM_NEXT = 5
const P_NORMALIZE = 6
const P_SCAN = 7
const P_CHECK_NEXT = 8
const P_DECIDE = 9 // a choice, not an access: expire the slot or not
const P_FINISH_OP = 10

const A_OWN = 100
const A_CAS = 101
const A_STATE = 102
const A_UNDO = 103
const C_OWN = 110
const C_USED = 111
const C_CAS = 112
const N_O1 = 120
const N_WORD = 121
const N_O2 = 122
const N_CAS = 123
const N_STATE = 124
const N_WORD_THEN_DECIDE = 125
const K_USED = 130
const K_WORD = 131
const K_CAS = 132
const R_OWN = 140
const R_CAS = 141
const R_STATE = 142
const W_LOAD = 150
const W_CAS = 151
const W_WAIT = 152
const X_USED = 160
const X_OWN = 161
const X_COUNT = 162
const X_STATE = 163
const X_RECLAIM = 164
const X_STATE2 = 165
const I_LOAD = 170
const I_CAS = 171

class Violation extends Error {}

// Every value in a state is a small non-negative integer, so a state's key is its values as
// UTF-16 code units (much cheaper than joining decimal strings).
const keyOf = (st: Array<number>): string => String.fromCharCode.apply(null, st)

const runningDown = (s: number) => (s & (RUNDOWN | DRAINED)) === RUNDOWN
const count = (w: number) => w >>> 3

export const check = (scenario: Scenario, variant: Variant = {}, maxStates = 5_000_000): Result => {
  const { checks, programs, slots, stalls } = scenario
  const threads = programs.length
  const base = (t: number) => G_SLOTS + 2 * slots + t * T_SIZE
  const tagOf = (gen: number) => variant.noTags ? 0 : (gen >>> 1) & 7
  const wantTag = (owner: number) => tagOf((owner & 1) === 1 ? owner : owner + 1)

  const fail = (message: string): never => {
    throw new Violation(message)
  }

  // --- ghost bookkeeping -------------------------------------------------------------------

  /** The references of the claim whose tag `w` carried on slot `i` are dropped with it. */
  const dropWord = (st: Array<number>, i: number, w: number) => {
    if (count(w) === 0) return
    for (let t = 0; t < threads; t++) {
      const b = base(t)
      const pc = st[b + PC]!
      if ((pc === A_STATE || pc === A_UNDO) && st[b + SLOT] === i && tagOf(st[b + GEN]!) === (w & 7)) st[b + TDROP] = 1
      for (let h = 0; h < st[b + NH]!; h++) {
        const at = b + HELD + 4 * h
        if (st[at + 1] === i && tagOf(st[at + 2]!) === (w & 7)) st[at + 3] = 1
      }
      for (let o = st[b + NO]! - 1; o >= 0; o--) {
        const at = b + ORPHANS + 2 * o
        if (st[at] === i && tagOf(st[at + 1]!) === (w & 7)) removeOrphan(st, b, o)
      }
    }
  }

  const removeOrphan = (st: Array<number>, b: number, o: number) => {
    const n = st[b + NO]! - 1
    st[b + ORPHANS + 2 * o] = st[b + ORPHANS + 2 * n]!
    st[b + ORPHANS + 2 * o + 1] = st[b + ORPHANS + 2 * n + 1]!
    st[b + ORPHANS + 2 * n] = 0
    st[b + ORPHANS + 2 * n + 1] = 0
    st[b + NO] = n
  }

  /** The thread's oldest reference is released with a report: its count stays until a repair drops it. */
  const reportHeld = (st: Array<number>, b: number) => {
    if (st[b + HELD + 3] === 0) {
      const n = st[b + NO]!
      st[b + ORPHANS + 2 * n] = st[b + HELD + 1]!
      st[b + ORPHANS + 2 * n + 1] = st[b + HELD + 2]!
      st[b + NO] = n + 1
    }
    popHeld(st, b)
  }

  const invariants = (st: Array<number>) => {
    for (let i = 0; i < slots; i++) {
      const w = st[wordAt(i)]!
      let expected = 0
      for (let t = 0; t < threads; t++) {
        const b = base(t)
        const pc = st[b + PC]!
        if (
          (pc === A_STATE || pc === A_UNDO) && st[b + TDROP] === 0 && st[b + SLOT] === i &&
          tagOf(st[b + GEN]!) === (w & 7)
        ) expected++
        for (let h = 0; h < st[b + NH]!; h++) {
          const at = b + HELD + 4 * h
          if (st[at + 1] === i && tagOf(st[at + 2]!) === (w & 7) && st[at + 3] === 0) expected++
        }
        for (let o = 0; o < st[b + NO]!; o++) {
          const at = b + ORPHANS + 2 * o
          if (st[at] === i && tagOf(st[at + 1]!) === (w & 7)) expected++
        }
      }
      if (count(w) !== expected) fail(`slot ${i} counts ${count(w)} but ${expected} references of its claim are held`)
    }
  }

  const onComplete = (st: Array<number>, s: number) => {
    const phase = s >>> 4
    if ((st[G_DONE]! & (1 << phase)) !== 0) fail(`phase ${phase} completed twice`)
    for (let t = 0; t < threads; t++) {
      const b = base(t)
      for (let h = 0; h < st[b + NH]!; h++) {
        if (st[b + HELD + 4 * h + 3] === 0) fail(`rundown ${phase} completed while thread ${t} holds a reference`)
      }
    }
    st[G_DONE] = st[G_DONE]! | (1 << phase)
  }

  // --- thread helpers ----------------------------------------------------------------------

  const call = (st: Array<number>, b: number, pc: number, ret: number) => {
    const sp = st[b + SP]!
    st[b + RET + sp] = ret
    st[b + SP] = sp + 1
    st[b + PC] = pc
  }

  const endNormalize = (st: Array<number>, b: number) => {
    st[b + N_I] = st[b + N_O] = st[b + N_W] = 0
    st[b + PC] = P_RETURN
  }

  const endScan = (st: Array<number>, b: number) => {
    st[b + K_S] = st[b + K_U] = st[b + K_I] = 0
    st[b + PC] = P_RETURN
  }

  /** A dead thread keeps only what the others (and the ghost checks) can still see of it. */
  const die = (st: Array<number>, b: number) => {
    const transient = st[b + PC] === A_STATE || st[b + PC] === A_UNDO
    st[b + ALIVE] = 0
    st[b + OP] = 0
    st[b + PC] = transient ? A_STATE : 0
    st[b + CACHED] = st[b + CLAIM] = 0
    st.fill(0, b + A_S, b + ROUNDS + 1)
    if (!transient) st[b + TDROP] = 0
    st.fill(0, b + SP, b + T_SIZE)
  }

  const evict = (st: Array<number>, b: number) => {
    if (st[b + GEN] === 0) return
    st[b + GEN] = 0
    st[b + CLAIM] = st[b + CLAIM]! + 1
  }

  const popHeld = (st: Array<number>, b: number) => {
    for (let k = 0; k < 4; k++) st[b + HELD + k] = st[b + HELD + 4 + k]!
    for (let k = 0; k < 4; k++) st[b + HELD + 4 + k] = 0
    st[b + NH] = st[b + NH]! - 1
  }

  const startScan = (st: Array<number>, b: number, s: number, after: number) => {
    st[b + K_S] = s
    call(st, b, P_SCAN, after)
  }

  /** Runs the local (pseudo) steps until the thread's next memory access. */
  const resolve = (st: Array<number>, t: number) => {
    const b = base(t)
    for (;;) {
      const pc = st[b + PC]!
      switch (pc) {
        case P_ENTER: {
          const op = programs[t]![st[b + OP]!]
          if (op === undefined) {
            st[b + PC] = P_FINISHED
            return
          }
          st[b + SP] = 0
          switch (op) {
            case "acquire":
              if (st[b + GEN] === 0) call(st, b, P_CLAIM, A_OWN)
              else st[b + PC] = A_OWN
              break
            case "release":
              if (st[b + NH] === 0) finishOp(st, b)
              else if (st[b + HELD] !== st[b + CLAIM]) {
                // A reference of an earlier claim, which this thread saw taken away: reported,
                // touches nothing.
                reportHeld(st, b)
                finishOp(st, b)
              } else st[b + PC] = R_OWN
              break
            case "wait":
              st[b + PC] = W_LOAD
              break
            case "reinit":
              st[b + PC] = I_LOAD
              break
          }
          break
        }
        case P_RETURN: {
          const sp = st[b + SP]! - 1
          st[b + SP] = sp
          st[b + PC] = st[b + RET + sp]!
          break
        }
        case P_CLAIM:
          st[b + C_I] = 0
          st[b + PC] = C_OWN
          break
        case P_CLAIM_NEXT: {
          const i = st[b + C_I]! + 1
          st[b + C_I] = i
          if (i === slots) {
            // No free slot: the acquisition fails (a defect in the implementation).
            finishOp(st, b)
          } else st[b + PC] = C_OWN
          break
        }
        case P_NORMALIZE:
          st[b + PC] = N_O1
          break
        case P_FINISH_OP:
          finishOp(st, b)
          break
        case P_SCAN:
          st[b + PC] = K_USED
          break
        case P_CHECK_NEXT: {
          const i = st[b + X_I]! + 1
          st[b + X_I] = i
          st[b + PC] = i < st[b + X_U]! ? X_OWN : X_STATE2
          break
        }
        case A_OWN:
        case R_OWN:
          if (!variant.noTags) return
          // Without tags there is no owner check either.
          st[b + PC] = pc === A_OWN ? A_CAS : R_CAS
          break
        default:
          return
      }
    }
  }

  const finishOp = (st: Array<number>, b: number) => {
    st[b + OP] = st[b + OP]! + 1
    // Temporaries are dead between operations: clearing them keeps equal states equal.
    st.fill(0, b + A_S, b + TDROP + 1)
    st.fill(0, b + SP, b + T_SIZE)
    st[b + PC] = P_ENTER
  }

  /** One memory access of thread `t` (and the local computation after it). */
  const step = (st: Array<number>, t: number, out: Array<Array<number>>) => {
    const b = base(t)
    const pc = st[b + PC]!
    switch (pc) {
      // --- acquire -------------------------------------------------------------------------
      case A_OWN:
        if (st[ownerAt(st[b + SLOT]!)] !== st[b + GEN]) {
          evict(st, b)
          call(st, b, P_CLAIM, A_OWN)
        } else st[b + PC] = A_CAS
        break
      case A_CAS: {
        const at = wordAt(st[b + SLOT]!)
        const cached = st[b + CACHED]!
        if (st[at] !== cached) {
          evict(st, b)
          call(st, b, P_CLAIM, A_OWN)
        } else {
          st[at] = cached + UNIT
          st[b + CACHED] = cached + UNIT
          st[b + PC] = A_STATE
        }
        break
      }
      case A_STATE: {
        const s = st[G_H]!
        if ((s & RUNDOWN) !== 0 && !variant.noStateCheck) {
          st[b + A_S] = s
          st[b + PC] = A_UNDO
        } else {
          const n = st[b + NH]!
          if (n === 2) fail("model: more than two references held")
          const at = b + HELD + 4 * n
          st[at] = st[b + CLAIM]!
          st[at + 1] = st[b + SLOT]!
          st[at + 2] = st[b + GEN]!
          // Admitted after a reclaim dropped its count: the thread is told when it releases.
          st[at + 3] = st[b + TDROP]!
          st[b + NH] = n + 1
          finishOp(st, b)
        }
        break
      }
      case A_UNDO: {
        const at = wordAt(st[b + SLOT]!)
        const cached = st[b + CACHED]!
        if (st[at] !== cached) {
          // Reclaimed meanwhile: the reclaim dropped this increment too.
          evict(st, b)
          finishOp(st, b)
        } else {
          st[at] = cached - UNIT
          st[b + CACHED] = cached - UNIT
          const s = st[b + A_S]!
          if (count(cached - UNIT) === 0 && runningDown(s)) startScan(st, b, s, P_FINISH_OP)
          else finishOp(st, b)
        }
        break
      }
      // --- claim ---------------------------------------------------------------------------
      case C_OWN: {
        const o = st[ownerAt(st[b + C_I]!)]!
        if ((o & 1) === 1) st[b + PC] = P_CLAIM_NEXT
        else {
          st[b + C_O] = o
          st[b + PC] = C_USED
        }
        break
      }
      case C_USED:
        st[G_USED] = Math.max(st[G_USED]!, st[b + C_I]! + 1)
        st[b + PC] = C_CAS
        break
      case C_CAS: {
        const i = st[b + C_I]!
        const o = st[b + C_O]!
        const prev = st[ownerAt(i)]!
        if (prev !== o) {
          if ((prev & 1) === 0) {
            st[b + C_O] = prev
            st[b + PC] = C_USED
          } else st[b + PC] = P_CLAIM_NEXT
        } else {
          st[ownerAt(i)] = o + 1
          st[b + GEN] = o + 1
          st[b + SLOT] = i
          st[b + CLAIM] = st[b + CLAIM]! + 1
          st[b + CACHED] = tagOf(o + 1)
          st[b + C_I] = st[b + C_O] = 0
          st[b + N_I] = i
          // Repair whatever a dead claimer or reclaimer left, then return to the caller.
          st[b + PC] = P_NORMALIZE
        }
        break
      }
      // --- normalize (repair a slot's word to what its owner generation says) --------------
      case N_O1:
        st[b + N_O] = st[ownerAt(st[b + N_I]!)]!
        st[b + PC] = variant.noRecheck ? N_WORD_THEN_DECIDE : N_WORD
        break
      case N_WORD_THEN_DECIDE:
      case N_WORD: {
        st[b + N_W] = st[wordAt(st[b + N_I]!)]!
        if (pc === N_WORD) st[b + PC] = N_O2
        else decideNormal(st, b)
        break
      }
      case N_O2: {
        if (st[ownerAt(st[b + N_I]!)] !== st[b + N_O]) st[b + PC] = N_O1
        else decideNormal(st, b)
        break
      }
      case N_CAS: {
        const i = st[b + N_I]!
        const w = st[b + N_W]!
        if (st[wordAt(i)] !== w) st[b + PC] = N_O1
        else {
          st[wordAt(i)] = wantTag(st[b + N_O]!)
          dropWord(st, i, w)
          if (count(w) > 0) st[b + PC] = N_STATE
          else endNormalize(st, b)
        }
        break
      }
      case N_STATE: {
        const s = st[G_H]!
        if (runningDown(s)) {
          // The scan returns straight to normalize's caller.
          st[b + N_I] = st[b + N_O] = st[b + N_W] = 0
          st[b + K_S] = s
          st[b + PC] = K_USED
        } else endNormalize(st, b)
        break
      }
      // --- scan and complete ---------------------------------------------------------------
      case K_USED: {
        const u = st[G_USED]!
        st[b + K_U] = u
        st[b + K_I] = 0
        st[b + PC] = u === 0 ? K_CAS : K_WORD
        break
      }
      case K_WORD: {
        const i = st[b + K_I]!
        if (count(st[wordAt(i)]!) > 0) endScan(st, b)
        else {
          st[b + K_I] = i + 1
          st[b + PC] = i + 1 < st[b + K_U]! ? K_WORD : K_CAS
        }
        break
      }
      case K_CAS: {
        const s = st[b + K_S]!
        if (st[G_H] === s) {
          st[G_H] = s | DRAINED
          onComplete(st, s)
        }
        endScan(st, b)
        break
      }
      // --- release -------------------------------------------------------------------------
      case R_OWN:
        if (st[ownerAt(st[b + SLOT]!)] !== st[b + GEN]) {
          evict(st, b)
          reportHeld(st, b)
          finishOp(st, b)
        } else st[b + PC] = R_CAS
        break
      case R_CAS: {
        const i = st[b + SLOT]!
        const cached = st[b + CACHED]!
        if (st[wordAt(i)] !== cached) {
          if (st[ownerAt(i)] === st[b + GEN]) fail(`thread ${t} reports a lost reference but still owns its slot`)
          evict(st, b)
          reportHeld(st, b)
          finishOp(st, b)
        } else {
          if (st[b + HELD + 3] === 1) fail(`thread ${t} released a reference that a reclaim had dropped`)
          st[wordAt(i)] = cached - UNIT
          st[b + CACHED] = cached - UNIT
          popHeld(st, b)
          if (count(cached - UNIT) > 0) finishOp(st, b)
          else st[b + PC] = R_STATE
        }
        break
      }
      case R_STATE: {
        const s = st[G_H]!
        if (runningDown(s) && variant.noScan) {
          st[G_H] = s | DRAINED
          onComplete(st, s)
          finishOp(st, b)
        } else if (runningDown(s)) startScan(st, b, s, P_FINISH_OP)
        else finishOp(st, b)
        break
      }
      // --- waitForRundown ------------------------------------------------------------------
      case W_LOAD: {
        const s = st[G_H]!
        if ((s & RUNDOWN) !== 0) {
          st[b + TOKEN] = s & ~DRAINED
          st[b + PC] = W_WAIT
        } else {
          st[b + W_S] = s
          st[b + PC] = W_CAS
        }
        break
      }
      case W_CAS: {
        const s = st[b + W_S]!
        if (st[G_H] !== s) st[b + PC] = W_LOAD
        else {
          const next = (s + PHASE) | RUNDOWN
          st[b + W_S] = 0
          st[G_H] = next
          st[b + TOKEN] = next
          startScan(st, b, next, W_WAIT)
        }
        break
      }
      case W_WAIT: {
        const token = st[b + TOKEN]!
        if (st[G_H] !== token) {
          if ((st[G_DONE]! & (1 << (token >>> 4))) === 0) fail(`thread ${t}'s wait returned before its rundown completed`)
          finishOp(st, b)
        } else {
          st[b + ROUNDS] = st[b + ROUNDS]! + 1
          st[b + PC] = X_USED
        }
        break
      }
      // --- the waiter's lease check (observe) ----------------------------------------------
      case X_USED: {
        const u = st[G_USED]!
        st[b + X_U] = u
        st[b + X_I] = 0
        st[b + PC] = u === 0 ? X_STATE2 : X_OWN
        break
      }
      case X_OWN: {
        const i = st[b + X_I]!
        st[b + X_G] = st[ownerAt(i)]!
        st[b + N_I] = i
        call(st, b, P_NORMALIZE, P_DECIDE)
        break
      }
      case X_COUNT: {
        const i = st[b + X_I]!
        st[b + PC] = count(st[wordAt(i)]!) > 0 ? X_STATE : X_RECLAIM
        break
      }
      case X_STATE:
        st[b + PC] = runningDown(st[G_H]!) ? X_RECLAIM : P_CHECK_NEXT
        break
      case X_RECLAIM: {
        const i = st[b + X_I]!
        const g = st[b + X_G]!
        if (variant.noOwnerBump) {
          const w = st[wordAt(i)]!
          st[wordAt(i)] = tagOf(g)
          dropWord(st, i, w)
          st[b + PC] = P_CHECK_NEXT
        } else if (st[ownerAt(i)] !== g) st[b + PC] = P_CHECK_NEXT
        else {
          st[ownerAt(i)] = g + 1
          st[b + N_I] = i
          call(st, b, P_NORMALIZE, P_CHECK_NEXT)
        }
        break
      }
      case X_STATE2: {
        const s = st[G_H]!
        st[b + X_I] = st[b + X_U] = st[b + X_G] = 0
        if (runningDown(s)) startScan(st, b, s, W_WAIT)
        else st[b + PC] = W_WAIT
        break
      }
      // --- reInit --------------------------------------------------------------------------
      case I_LOAD: {
        const s = st[G_H]!
        if ((s & (RUNDOWN | DRAINED)) === (RUNDOWN | DRAINED)) {
          st[b + I_S] = s
          st[b + PC] = I_CAS
        } else finishOp(st, b)
        break
      }
      case I_CAS: {
        const s = st[b + I_S]!
        if (st[G_H] === s) st[G_H] = s & ~(RUNDOWN | DRAINED)
        finishOp(st, b)
        break
      }
      default:
        fail(`model: no step at pc ${pc}`)
    }
    resolve(st, t)
    if (st[b + PC] === P_DECIDE) {
      // Lease check of slot X_I, whose owner generation was X_G: expired or not.
      const g = st[b + X_G]!
      if ((g & 1) === 1) {
        const owner = ownerOf(st, st[b + X_I]!, g)
        const dead = owner === -1 || st[base(owner) + ALIVE] === 0
        if (owner !== t && (dead || st[G_STALLS]! > 0)) {
          const expired = st.slice()
          if (!dead) expired[G_STALLS] = expired[G_STALLS]! - 1
          expired[b + PC] = X_COUNT
          out.push(expired)
        }
      }
      st[b + PC] = P_CHECK_NEXT
      resolve(st, t)
    }
    out.push(st)
  }

  const decideNormal = (st: Array<number>, b: number) => {
    const o = st[b + N_O]!
    const w = st[b + N_W]!
    const want = wantTag(o)
    if ((w & 7) === want && ((o & 1) === 1 || count(w) === 0)) endNormalize(st, b)
    else st[b + PC] = N_CAS
  }

  /** The thread whose claim is generation `g` of slot `i` (-1: none; cannot happen). */
  const ownerOf = (st: Array<number>, i: number, g: number) => {
    for (let t = 0; t < threads; t++) {
      const b = base(t)
      if (st[b + SLOT] === i && st[b + GEN] === g) return t
    }
    return -1
  }

  // --- liveness: one more waiter, reclaiming the dead ---------------------------------------

  const quiescent = (st: Array<number>) => {
    for (let t = 0; t < threads; t++) {
      const b = base(t)
      if (st[b + ALIVE] === 0 || st[b + PC] === P_FINISHED || st[b + PC] === W_WAIT) continue
      return false
    }
    return true
  }

  const lateWaiter = (state: Array<number>) => {
    const st = state.slice()
    if (!runningDown(st[G_H]!)) return
    for (let i = 0; i < slots; i++) {
      const g = st[ownerAt(i)]!
      if ((g & 1) === 1) {
        const owner = ownerOf(st, i, g)
        if (owner === -1 || st[base(owner) + ALIVE] === 0) st[ownerAt(i)] = g + 1
      }
      const o = st[ownerAt(i)]!
      const w = st[wordAt(i)]!
      const want = wantTag(o)
      if (!((w & 7) === want && ((o & 1) === 1 || count(w) === 0))) {
        st[wordAt(i)] = want
        dropWord(st, i, w)
      }
    }
    for (let i = 0; i < st[G_USED]!; i++) {
      if (count(st[wordAt(i)]!) > 0) fail(`a late waiter cannot complete: slot ${i} still counts ${count(st[wordAt(i)]!)}`)
    }
    onComplete(st, st[G_H]!)
  }

  // --- exploration -------------------------------------------------------------------------

  const initial: Array<number> = new Array(G_SLOTS + 2 * slots + threads * T_SIZE).fill(0)
  initial[G_STALLS] = stalls
  for (let t = 0; t < threads; t++) {
    initial[base(t) + PC] = P_ENTER
    initial[base(t) + ALIVE] = 1
    resolve(initial, t)
  }
  const seen = new Set<string>()
  const stack: Array<Array<number>> = [initial]
  seen.add(keyOf(initial))
  let current = initial
  try {
    while (stack.length > 0) {
      const st = stack.pop()!
      current = st
      invariants(st)
      if (quiescent(st)) lateWaiter(st)
      const next: Array<Array<number>> = []
      for (let t = 0; t < threads; t++) {
        const b = base(t)
        if (st[b + ALIVE] === 0 || st[b + PC] === P_FINISHED) continue
        const blocked = st[b + PC] === W_WAIT && st[b + ROUNDS]! >= checks && st[G_H] === st[b + TOKEN]
        if (!blocked) step(st.slice(), t, next)
        const dead = st.slice()
        die(dead, b)
        next.push(dead)
      }
      for (const n of next) {
        const before = seen.size
        seen.add(keyOf(n))
        if (seen.size !== before) stack.push(n)
        if (seen.size > maxStates) throw new Error(`model: more than ${maxStates} states`)
      }
    }
  } catch (e) {
    if (e instanceof Violation) return { states: seen.size, violation: `${e.message}\n  in ${describe(current)}` }
    throw e
  }
  return { states: seen.size, violation: undefined }

  function describe(st: Array<number>): string {
    const slotsText = Array.from({ length: slots }, (_, i) => {
      const w = st[wordAt(i)]!
      return `slot${i}{owner ${st[ownerAt(i)]}, tag ${w & 7}, count ${count(w)}}`
    }).join(" ")
    const threadsText = Array.from({ length: threads }, (_, t) => {
      const b = base(t)
      return `T${t}{${st[b + ALIVE] ? "" : "dead "}op ${st[b + OP]} pc ${st[b + PC]} gen ${st[b + GEN]} slot ${st[b + SLOT]} held ${st[b + NH]}}`
    }).join(" ")
    return `state 0x${st[G_H]!.toString(16)} used ${st[G_USED]} ${slotsText} ${threadsText}`
  }
}
