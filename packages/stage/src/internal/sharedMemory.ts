/**
 * The shared stage's state in a SharedArrayBuffer: head, FIFO of waiters,
 * ticket slots, token index, and one inbox (mailbox ring) per worker. All of it
 * is changed only by the transitions of `SharedState`, each run under one spin
 * lock whose critical sections never allocate, await or call user code, so the
 * lock is held for well under a microsecond. Waiting is never done on the lock:
 * waiters park on their worker's doorbell with `Atomics.waitAsync`.
 *
 * Ordering: a transition that wakes a ticket writes the wake-up record into the
 * owner's inbox and publishes the inbox tail with `Atomics.store` before
 * releasing the lock; the owner reads the tail with `Atomics.load`. Atomics are
 * sequentially consistent, so the record's plain writes are visible to the
 * owner once it sees the tail.
 *
 * Crash safety: every attached worker bumps a heartbeat counter (a quarter
 * lease apart). A worker whose counter another thread has watched stand still
 * for longer than the lease is reaped by that thread (a parked worker watches
 * every quarter lease; a `ticket` its tokens would refuse; a `deliver` waiting
 * for room in its inbox): its tickets are withdrawn and, if one of them
 * headed, headship passes to the oldest waiter. A dead lock holder is detected
 * the same way and its lock is broken. No clock is shared: each watcher times
 * the silence on its own monotonic clock (`performance.now()`), so a
 * wall-clock jump reaps nobody, and a silence counts only while the watcher
 * itself was running (see `isDead`), so a stall of the watcher (its event loop
 * blocked, a GC pause, the whole process stopped) is not taken for the
 * other's. A reaped worker that still runs finds out under the lock
 * (`isCurrent`) and stops: it never writes the shared state again.
 *
 * One head at a time: a ticket withdrawn by its (live) owner while its head
 * runs becomes `LEAVING`: its token is unregistered at once, but it keeps
 * headship until its head has left (`leaveLocked`), so no second head is
 * promoted beside it. Only a dead worker's heads lose headship at once.
 */

// Spins politely where the engine has Atomics.pause (Node >= 24).
const pause: () => void = (Atomics as unknown as { readonly pause?: () => void }).pause?.bind(Atomics) ?? (() => {})

// Header words.
const LOCK = 0
const HEAD = 1
const EPOCH = 2
const QFIRST = 3
const QLAST = 4
const FREE = 5
const WAITING = 6
const TOMBSTONES = 7
const CAPACITY = 8
const MAX_WORKERS = 9
const KEY_WORDS = 10
const INBOX_WORDS = 11
const LEASE = 12
const MAGIC = 13
// Words 14 and 15 are spare.
const HEADER_WORDS = 16
const MAGIC_VALUE = 0x53746167 // "Stag"

// Worker slot words.
const W_ALIVE = 0
/** A counter its worker bumps; never a time (threads share no clock worth trusting). */
const W_HEARTBEAT = 1
const W_DOORBELL = 2
const W_INBOX_HEAD = 3
const W_INBOX_TAIL = 4
const W_GEN = 5
const WORKER_WORDS = 8

// Ticket slot words.
const T_STATE = 0
const T_OWNER = 1
const T_GEN = 2
const T_PENDING = 3
const T_PREV = 4
const T_NEXT = 5
const T_HASH = 6
const T_KEYLEN = 7
const T_SEQ = 8
const T_INDEX = 9
const TICKET_FIXED = 10

/** Ticket states. */
export const FREE_SLOT = 0
export const IDLE = 1
export const WAITING_STATE = 2
export const PROMOTED = 3
export const HEADING = 4
/** Withdrawn while its head runs: unregistered, but heading until the head leaves. */
export const LEAVING = 5

/** Inbox record kinds. */
export const REC_EVENT = 1
export const REC_TOKEN = 2
export const REC_PROMOTE = 3

const EMPTY = -1
const TOMBSTONE = -2

/** @internal */
export interface Layout {
  readonly capacity: number
  readonly maxWorkers: number
  readonly keyWords: number
  readonly inboxWords: number
  readonly indexSize: number
  readonly ticketWords: number
  readonly workersAt: number
  readonly ticketsAt: number
  readonly indexAt: number
  readonly inboxesAt: number
  readonly totalWords: number
}

const pow2 = (n: number): number => {
  let p = 1
  while (p < n) p <<= 1
  return p
}

/** @internal */
export const layout = (capacity: number, maxWorkers: number, keyWords: number, inboxWords: number): Layout => {
  const indexSize = pow2(capacity * 2)
  const ticketWords = TICKET_FIXED + keyWords
  const workersAt = HEADER_WORDS
  const ticketsAt = workersAt + maxWorkers * WORKER_WORDS
  const indexAt = ticketsAt + capacity * ticketWords
  const inboxesAt = indexAt + indexSize
  const totalWords = inboxesAt + maxWorkers * inboxWords
  return { capacity, maxWorkers, keyWords, inboxWords, indexSize, ticketWords, workersAt, ticketsAt, indexAt, inboxesAt, totalWords }
}

/** @internal */
export const initialize = (
  buffer: SharedArrayBuffer,
  options: { capacity: number; maxWorkers: number; keyWords: number; inboxWords: number; leaseMillis: number }
): void => {
  const l = layout(options.capacity, options.maxWorkers, options.keyWords, options.inboxWords)
  const m = new Int32Array(buffer)
  m[HEAD] = -1
  m[QFIRST] = -1
  m[QLAST] = -1
  m[CAPACITY] = l.capacity
  m[MAX_WORKERS] = l.maxWorkers
  m[KEY_WORDS] = l.keyWords
  m[INBOX_WORDS] = l.inboxWords
  m[LEASE] = options.leaseMillis
  for (let s = 0; s < l.capacity; s++) {
    const at = l.ticketsAt + s * l.ticketWords
    m[at + T_NEXT] = s + 1 < l.capacity ? s + 1 : -1
    m[at + T_PREV] = -1
    m[at + T_INDEX] = -1
  }
  m[FREE] = 0
  m.fill(EMPTY, l.indexAt, l.indexAt + l.indexSize)
  Atomics.store(m, MAGIC, MAGIC_VALUE)
}

/** @internal */
export const bytesFor = (capacity: number, maxWorkers: number, keyWords: number, inboxWords: number): number =>
  layout(capacity, maxWorkers, keyWords, inboxWords).totalWords * 4

/**
 * A view of the shared state with its transitions. One per attached worker
 * (and one per handle in the creating thread).
 *
 * @internal
 */
export class SharedState {
  readonly m: Int32Array
  readonly l: Layout
  readonly lease: number
  /** Workers whose inbox got records under the current lock hold; rung after it is released. */
  readonly rings: Array<number> = []
  /**
   * This thread's watch of each worker's heartbeat (see `isDead`): the
   * counter and generation last seen, since when (this thread's monotonic
   * clock) they have stood still, and when this thread last looked.
   */
  private readonly watchBeat: Int32Array
  private readonly watchGen: Int32Array
  private readonly watchSince: Float64Array
  private readonly watchLooked: Float64Array

  constructor(buffer: SharedArrayBuffer) {
    this.m = new Int32Array(buffer)
    if (Atomics.load(this.m, MAGIC) !== MAGIC_VALUE) throw new Error("SharedStage: the buffer is not an initialized shared stage")
    this.l = layout(this.m[CAPACITY]!, this.m[MAX_WORKERS]!, this.m[KEY_WORDS]!, this.m[INBOX_WORDS]!)
    this.lease = this.m[LEASE]!
    this.watchBeat = new Int32Array(this.l.maxWorkers)
    this.watchGen = new Int32Array(this.l.maxWorkers)
    this.watchSince = new Float64Array(this.l.maxWorkers)
    this.watchLooked = new Float64Array(this.l.maxWorkers).fill(-Infinity)
  }

  // ---------------------------------------------------------------------------
  // Lock
  // ---------------------------------------------------------------------------

  lock(me: number): void {
    const m = this.m
    for (let spins = 1;; spins++) {
      if (Atomics.compareExchange(m, LOCK, 0, me + 1) === 0) return
      if ((spins & 0x3ff) === 0) {
        // The holder never blocks inside: a long wait means it was descheduled, or died.
        const holder = Atomics.load(m, LOCK) - 1
        if (holder >= 0 && this.isDead(holder)) Atomics.compareExchange(m, LOCK, holder + 1, 0)
      } else {
        pause()
      }
    }
  }

  /**
   * Releases the lock if `me` still holds it. A holder whose lock was broken
   * (it looked dead for the lease, see `lock`) must not release the lock of
   * whoever took it since.
   */
  unlock(me: number): void {
    Atomics.compareExchange(this.m, LOCK, me + 1, 0)
  }

  // ---------------------------------------------------------------------------
  // Workers
  // ---------------------------------------------------------------------------

  workerAt(w: number): number {
    return this.l.workersAt + w * WORKER_WORDS
  }

  doorbellIndex(w: number): number {
    return this.workerAt(w) + W_DOORBELL
  }

  heartbeat(w: number): void {
    Atomics.add(this.m, this.workerAt(w) + W_HEARTBEAT, 1)
  }

  /**
   * Whether worker `w` is presumed dead: attached, and its heartbeat counter
   * has stood still for longer than the lease while this thread watched. A
   * look more than half a lease after this thread's previous look at `w`
   * starts the watch over: this thread was not running in between (its loop
   * was blocked, it was paused, or the process was stopped, in which case `w`
   * was stopped too), so that time is not counted as `w`'s silence. Watchers
   * look a quarter lease apart (the heartbeat's period), or continuously
   * (`deliver`'s retries, the lock's spin).
   */
  isDead(w: number): boolean {
    const m = this.m
    const at = this.workerAt(w)
    if (Atomics.load(m, at + W_ALIVE) !== 1) return false
    const beat = Atomics.load(m, at + W_HEARTBEAT)
    const gen = Atomics.load(m, at + W_GEN)
    const now = performance.now()
    const looked = this.watchLooked[w]!
    this.watchLooked[w] = now
    if (beat !== this.watchBeat[w] || gen !== this.watchGen[w] || now - looked > this.lease / 2) {
      this.watchBeat[w] = beat
      this.watchGen[w] = gen
      this.watchSince[w] = now
      return false
    }
    return now - this.watchSince[w]! > this.lease
  }

  /** Attaches a worker: returns its slot and generation, or -1 when all slots are taken. */
  attach(): readonly [number, number] | undefined {
    const m = this.m
    for (let w = 0; w < this.l.maxWorkers; w++) {
      const at = this.workerAt(w)
      if (Atomics.compareExchange(m, at + W_ALIVE, 0, 1) === 0) {
        // A new generation: watchers start their watch of this slot over.
        const gen = Atomics.add(m, at + W_GEN, 1) + 1
        return [w, gen]
      }
    }
    return undefined
  }

  isCurrent(w: number, gen: number): boolean {
    const at = this.workerAt(w)
    return Atomics.load(this.m, at + W_ALIVE) === 1 && Atomics.load(this.m, at + W_GEN) === gen
  }

  /**
   * Under the lock: withdraws every ticket of worker `w` but the one whose
   * head still runs there (`runningHead`, a slot, or -1), which becomes
   * `LEAVING`.
   */
  withdrawAllLocked(w: number, runningHead: number): void {
    const m = this.m
    for (let s = 0; s < this.l.capacity; s++) {
      const at = this.ticketAt(s)
      if (m[at + T_STATE] !== FREE_SLOT && m[at + T_OWNER] === w) this.withdrawLocked(s, m[at + T_GEN]!, s === runningHead)
    }
  }

  /** Under the lock: withdraws every ticket of worker `w` and frees its slot (it is dead, or detaching with no head running). */
  reapLocked(w: number): void {
    const m = this.m
    this.withdrawAllLocked(w, -1)
    const at = this.workerAt(w)
    Atomics.store(m, at + W_INBOX_HEAD, Atomics.load(m, at + W_INBOX_TAIL))
    Atomics.add(m, at + W_GEN, 1)
    Atomics.store(m, at + W_ALIVE, 0)
  }

  /** Reaps every worker whose lease expired. Returns how many. */
  reapDead(me: number): number {
    let dead = 0
    for (let w = 0; w < this.l.maxWorkers; w++) {
      if (w !== me && this.isDead(w)) dead++
    }
    if (dead === 0) return 0
    this.lock(me)
    dead = 0
    for (let w = 0; w < this.l.maxWorkers; w++) {
      if (w !== me && this.isDead(w)) {
        this.reapLocked(w)
        dead++
      }
    }
    this.unlock(me)
    return dead
  }

  // ---------------------------------------------------------------------------
  // Tickets and the token index
  // ---------------------------------------------------------------------------

  ticketAt(s: number): number {
    return this.l.ticketsAt + s * this.l.ticketWords
  }

  get head(): number {
    return Atomics.load(this.m, HEAD)
  }

  get epoch(): number {
    return Atomics.load(this.m, EPOCH)
  }

  get waiting(): number {
    return Atomics.load(this.m, WAITING)
  }

  stateOf(s: number): number {
    return Atomics.load(this.m, this.ticketAt(s) + T_STATE)
  }

  pendingOf(s: number): number {
    return Atomics.load(this.m, this.ticketAt(s) + T_PENDING)
  }

  private keyEquals(s: number, key: Uint8Array, hash: number): boolean {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_HASH] !== hash || m[at + T_KEYLEN] !== key.length) return false
    const words = at + TICKET_FIXED
    for (let i = 0; i < key.length; i++) {
      if (((m[words + (i >> 2)]! >>> ((i & 3) << 3)) & 0xff) !== key[i]) return false
    }
    return true
  }

  /** Under the lock: the slot holding `key`, or -1. */
  lookupLocked(key: Uint8Array, hash: number): number {
    const m = this.m
    const mask = this.l.indexSize - 1
    for (let i = 0, p = hash & mask; i < this.l.indexSize; i++, p = (p + 1) & mask) {
      const s = m[this.l.indexAt + p]!
      if (s === EMPTY) return -1
      if (s >= 0 && this.keyEquals(s, key, hash)) return s
    }
    return -1
  }

  private rebuildIndexLocked(): void {
    const m = this.m
    const { indexAt, indexSize } = this.l
    m.fill(EMPTY, indexAt, indexAt + indexSize)
    const mask = indexSize - 1
    for (let s = 0; s < this.l.capacity; s++) {
      const at = this.ticketAt(s)
      if (m[at + T_STATE] === FREE_SLOT || m[at + T_STATE] === LEAVING) continue
      let p = m[at + T_HASH]! & mask
      while (m[indexAt + p] !== EMPTY) p = (p + 1) & mask
      m[indexAt + p] = s
      m[at + T_INDEX] = p
    }
    m[TOMBSTONES] = 0
  }

  /** Under the lock: registers `key` for worker `w`. Returns the slot, -1 if the token is held, -2 if full. */
  registerLocked(w: number, key: Uint8Array, hash: number): number {
    const m = this.m
    if (this.lookupLocked(key, hash) >= 0) return -1
    const s = m[FREE]!
    if (s < 0) return -2
    const at = this.ticketAt(s)
    m[FREE] = m[at + T_NEXT]!
    m[at + T_OWNER] = w
    m[at + T_PENDING] = 0
    m[at + T_PREV] = -1
    m[at + T_NEXT] = -1
    m[at + T_HASH] = hash
    m[at + T_KEYLEN] = key.length
    const words = at + TICKET_FIXED
    for (let i = 0; i < this.l.keyWords; i++) m[words + i] = 0
    for (let i = 0; i < key.length; i++) m[words + (i >> 2)] = m[words + (i >> 2)]! | (key[i]! << ((i & 3) << 3))
    Atomics.store(m, at + T_STATE, IDLE)
    const mask = this.l.indexSize - 1
    let p = hash & mask
    while (m[this.l.indexAt + p]! >= 0) p = (p + 1) & mask
    if (m[this.l.indexAt + p] === TOMBSTONE) m[TOMBSTONES] = m[TOMBSTONES]! - 1
    m[this.l.indexAt + p] = s
    m[at + T_INDEX] = p
    return s
  }

  genOf(s: number): number {
    return Atomics.load(this.m, this.ticketAt(s) + T_GEN)
  }

  /**
   * Under the lock: withdraws slot `s` if it still has generation `gen` (no
   * ABA). Its token is free at once. If it heads and its head is still
   * running (`headRunning`: the owner says so), it becomes `LEAVING` and keeps
   * headship until `leaveLocked`; otherwise headship passes on now.
   */
  withdrawLocked(s: number, gen: number, headRunning = false): void {
    const m = this.m
    const at = this.ticketAt(s)
    const state = m[at + T_STATE]!
    if (state === FREE_SLOT || m[at + T_GEN] !== gen) return
    if (state === LEAVING) {
      // Already unregistered; its head has left only if the owner no longer says it runs (or the owner is dead).
      if (!headRunning) this.freeLocked(s)
      return
    }
    if (state === WAITING_STATE) this.unlinkLocked(s)
    const leaving = headRunning && state === HEADING && m[HEAD] === s
    // The state first: a rebuild of the index below keeps only registered slots.
    Atomics.store(m, at + T_STATE, leaving ? LEAVING : FREE_SLOT)
    m[this.l.indexAt + m[at + T_INDEX]!] = TOMBSTONE
    m[at + T_INDEX] = -1
    m[TOMBSTONES] = m[TOMBSTONES]! + 1
    if (m[TOMBSTONES]! > this.l.capacity >> 1) this.rebuildIndexLocked()
    if (!leaving) this.freeLocked(s)
  }

  /** Under the lock: an unregistered slot goes back on the free list, passing headship on if it held it. */
  private freeLocked(s: number): void {
    const m = this.m
    const at = this.ticketAt(s)
    Atomics.store(m, at + T_STATE, FREE_SLOT)
    if (m[HEAD] === s) this.handOnLocked()
    Atomics.add(m, at + T_GEN, 1)
    m[at + T_NEXT] = m[FREE]!
    m[FREE] = s
  }

  // ---------------------------------------------------------------------------
  // The FIFO
  // ---------------------------------------------------------------------------

  private linkLocked(s: number): void {
    const m = this.m
    const at = this.ticketAt(s)
    const last = m[QLAST]!
    m[at + T_PREV] = last
    m[at + T_NEXT] = -1
    if (last < 0) m[QFIRST] = s
    else m[this.ticketAt(last) + T_NEXT] = s
    m[QLAST] = s
    m[WAITING] = m[WAITING]! + 1
  }

  private unlinkLocked(s: number): void {
    const m = this.m
    const at = this.ticketAt(s)
    const prev = m[at + T_PREV]!
    const next = m[at + T_NEXT]!
    if (prev < 0) m[QFIRST] = next
    else m[this.ticketAt(prev) + T_NEXT] = next
    if (next < 0) m[QLAST] = prev
    else m[this.ticketAt(next) + T_PREV] = prev
    m[at + T_PREV] = -1
    m[at + T_NEXT] = -1
    m[WAITING] = m[WAITING]! - 1
  }

  private handOnLocked(): void {
    const m = this.m
    const next = m[QFIRST]!
    Atomics.add(m, EPOCH, 1)
    if (next < 0) {
      Atomics.store(m, HEAD, -1)
      return
    }
    this.unlinkLocked(next)
    const at = this.ticketAt(next)
    Atomics.store(m, at + T_STATE, PROMOTED)
    Atomics.store(m, HEAD, next)
    // A promotion cannot wait for inbox space; the record is three words and the inbox keeps room for it.
    this.postLocked(m[at + T_OWNER]!, REC_PROMOTE, next, m[at + T_GEN]!, m[at + T_SEQ]!, undefined, true)
  }

  // ---------------------------------------------------------------------------
  // Transitions of enter / leave / notify
  // ---------------------------------------------------------------------------

  /** Under the lock. 1: Token, 2: Head, otherwise the wait's sequence number is returned negated minus 3. */
  enterLocked(s: number): number {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_PENDING]! > 0) {
      m[at + T_PENDING] = m[at + T_PENDING]! - 1
      return 1
    }
    if (m[HEAD]! < 0) {
      Atomics.store(m, HEAD, s)
      Atomics.add(m, EPOCH, 1)
      Atomics.store(m, at + T_STATE, HEADING)
      return 2
    }
    const seq = (m[at + T_SEQ]! + 1) & 0x3fffffff
    m[at + T_SEQ] = seq
    Atomics.store(m, at + T_STATE, WAITING_STATE)
    this.linkLocked(s)
    return -seq - 3
  }

  /**
   * Under the lock: the no-timeout `enter`. Only looks at a pending
   * notification (1) or a free headship (2), which the caller then takes with
   * `takePendingLocked` / `takeHeadLocked`; otherwise joins the queue and
   * returns the wait's sequence number negated minus 3.
   */
  waitLocked(s: number): number {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_PENDING]! > 0) return 1
    if (m[HEAD]! < 0) return 2
    const seq = (m[at + T_SEQ]! + 1) & 0x3fffffff
    m[at + T_SEQ] = seq
    Atomics.store(m, at + T_STATE, WAITING_STATE)
    this.linkLocked(s)
    return -seq - 3
  }

  takePendingLocked(s: number): boolean {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_PENDING]! <= 0) return false
    m[at + T_PENDING] = m[at + T_PENDING]! - 1
    return true
  }

  takeHeadLocked(s: number): boolean {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[HEAD]! >= 0 || m[at + T_STATE] !== IDLE) return false
    Atomics.store(m, HEAD, s)
    Atomics.add(m, EPOCH, 1)
    Atomics.store(m, at + T_STATE, HEADING)
    return true
  }

  /** Under the lock: the head `s` leaves (a `LEAVING` one is freed now). */
  leaveLocked(s: number, gen: number): void {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[HEAD] !== s || m[at + T_GEN] !== gen) return
    if (m[at + T_STATE] === LEAVING) {
      this.freeLocked(s)
      return
    }
    Atomics.store(m, at + T_STATE, IDLE)
    this.handOnLocked()
  }

  /** Under the lock: a parked wait `seq` times out. False when a wake-up for it is already in its inbox. */
  expireLocked(s: number, gen: number, seq: number): boolean {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_GEN] !== gen || m[at + T_SEQ] !== seq || m[at + T_STATE] !== WAITING_STATE) return false
    this.unlinkLocked(s)
    Atomics.store(m, at + T_STATE, IDLE)
    return true
  }

  /** Under the lock: a promoted ticket's fiber runs; it heads unless its deadline passed (then headship passes on). */
  takePromotionLocked(s: number, gen: number, seq: number, expired: boolean): boolean {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[HEAD] !== s || m[at + T_GEN] !== gen || m[at + T_SEQ] !== seq || m[at + T_STATE] !== PROMOTED) return false
    if (expired) {
      Atomics.store(m, at + T_STATE, IDLE)
      this.handOnLocked()
      return false
    }
    Atomics.store(m, at + T_STATE, HEADING)
    return true
  }

  /**
   * Under the lock: the wait `seq` was abandoned (interrupted). Returns what it
   * had already been given: 0 nothing, 1 a notification (kept as pending), 2
   * headship (passed on).
   */
  abandonLocked(s: number, gen: number, seq: number): number {
    const m = this.m
    const at = this.ticketAt(s)
    if (m[at + T_GEN] !== gen || m[at + T_SEQ] !== seq) return 0
    switch (m[at + T_STATE]) {
      case WAITING_STATE:
        this.unlinkLocked(s)
        Atomics.store(m, at + T_STATE, IDLE)
        return 0
      case PROMOTED:
        if (m[HEAD] === s) {
          Atomics.store(m, at + T_STATE, IDLE)
          this.handOnLocked()
        }
        return 2
      case IDLE:
        // Woken with Token and interrupted before seeing it: keep the notification.
        m[at + T_PENDING] = m[at + T_PENDING]! + 1
        // Invalidate the in-flight record.
        m[at + T_SEQ] = (seq + 1) & 0x3fffffff
        return 1
      default:
        return 0
    }
  }

  /**
   * Under the lock: notifies the holder of `key`, with an optional event for
   * its worker's buffer. Returns the owner worker (>= 0), -1 when no one holds
   * the token, or `-2 - owner` when the owner's inbox has no room now (retry
   * later, once it has drained, or reap it if it died).
   */
  notifyLocked(key: Uint8Array, hash: number, event: Uint8Array | undefined): number {
    const m = this.m
    const s = this.lookupLocked(key, hash)
    if (s < 0) return -1
    const at = this.ticketAt(s)
    const owner = m[at + T_OWNER]!
    if (m[at + T_STATE] === WAITING_STATE) {
      if (!this.postLocked(owner, REC_TOKEN, s, m[at + T_GEN]!, m[at + T_SEQ]!, event, false)) return -2 - owner
      this.unlinkLocked(s)
      Atomics.store(m, at + T_STATE, IDLE)
    } else {
      if (event !== undefined && !this.postLocked(owner, REC_EVENT, s, m[at + T_GEN]!, 0, event, false)) return -2 - owner
      m[at + T_PENDING] = m[at + T_PENDING]! + 1
    }
    return owner
  }

  /** The longest event an inbox can ever take (a longer one could never be delivered). */
  get maxEventBytes(): number {
    return (this.l.inboxWords - SharedState.RESERVE - 5) * 4
  }

  // ---------------------------------------------------------------------------
  // Inboxes: [kind, slot, gen, seq, length, ...payload words]
  // ---------------------------------------------------------------------------

  /** Words kept free in every inbox for promotions, which cannot be refused. */
  static readonly RESERVE = 64

  private postLocked(
    w: number,
    kind: number,
    s: number,
    gen: number,
    seq: number,
    event: Uint8Array | undefined,
    reserved: boolean
  ): boolean {
    const m = this.m
    const wat = this.workerAt(w)
    const size = this.l.inboxWords
    const base = this.l.inboxesAt + w * size
    const head = Atomics.load(m, wat + W_INBOX_HEAD)
    const tail = m[wat + W_INBOX_TAIL]!
    const length = event === undefined ? -1 : event.length
    const need = 5 + (length > 0 ? (length + 3) >> 2 : 0)
    const free = size - ((tail - head) | 0)
    if (need > free - (reserved ? 0 : SharedState.RESERVE)) return false
    const mask = size - 1
    m[base + (tail & mask)] = kind
    m[base + ((tail + 1) & mask)] = s
    m[base + ((tail + 2) & mask)] = gen
    m[base + ((tail + 3) & mask)] = seq
    m[base + ((tail + 4) & mask)] = length
    if (event !== undefined) {
      for (let i = 0, word = 0; i < event.length; i += 4, word++) {
        const v = event[i]! | ((event[i + 1] ?? 0) << 8) | ((event[i + 2] ?? 0) << 16) | ((event[i + 3] ?? 0) << 24)
        m[base + ((tail + 5 + word) & mask)] = v
      }
    }
    Atomics.store(m, wat + W_INBOX_TAIL, (tail + need) | 0)
    if (!this.rings.includes(w)) this.rings.push(w)
    return true
  }

  /** Rings worker `w`'s doorbell (after the lock is released). */
  ring(w: number): void {
    const at = this.workerAt(w) + W_DOORBELL
    Atomics.add(this.m, at, 1)
    Atomics.notify(this.m, at)
  }

  /**
   * Worker `w` reads its inbox (no lock: it is the only reader). Each record is
   * consumed (the head index advanced) before `onRecord` sees it, and the
   * indices are read afresh for every record, so a read started from inside
   * `onRecord` takes the records after it and the outer read resumes after
   * those: no record is seen twice, and the head index never moves back.
   */
  drain(
    w: number,
    onRecord: (kind: number, slot: number, gen: number, seq: number, event: Uint8Array | undefined) => void
  ): void {
    const m = this.m
    const wat = this.workerAt(w)
    const size = this.l.inboxWords
    const mask = size - 1
    const base = this.l.inboxesAt + w * size
    for (;;) {
      let head = m[wat + W_INBOX_HEAD]!
      if (head === Atomics.load(m, wat + W_INBOX_TAIL)) return
      const kind = m[base + (head & mask)]!
      const s = m[base + ((head + 1) & mask)]!
      const gen = m[base + ((head + 2) & mask)]!
      const seq = m[base + ((head + 3) & mask)]!
      const length = m[base + ((head + 4) & mask)]!
      let event: Uint8Array | undefined
      if (length >= 0) {
        event = new Uint8Array(length)
        for (let i = 0; i < length; i++) {
          event[i] = (m[base + ((head + 5 + (i >> 2)) & mask)]! >>> ((i & 3) << 3)) & 0xff
        }
      }
      head = (head + 5 + (length > 0 ? (length + 3) >> 2 : 0)) | 0
      Atomics.store(m, wat + W_INBOX_HEAD, head)
      onRecord(kind, s, gen, seq, event)
    }
  }

  doorbell(w: number): number {
    return Atomics.load(this.m, this.workerAt(w) + W_DOORBELL)
  }

  /** Checks the structure (for tests): no two heads, a head whenever someone waits, FIFO links consistent. */
  checkLocked(): string | undefined {
    const m = this.m
    let heads = 0
    let waiting = 0
    for (let s = 0; s < this.l.capacity; s++) {
      const st = m[this.ticketAt(s) + T_STATE]
      if (st === HEADING || st === PROMOTED || st === LEAVING) heads++
      if (st === WAITING_STATE) waiting++
    }
    if (heads > 1) return `${heads} heads`
    if (waiting !== m[WAITING]) return `waiting count ${m[WAITING]} but ${waiting} waiting tickets`
    if (waiting > 0 && m[HEAD]! < 0) return `${waiting} waiting without a head`
    return undefined
  }
}
