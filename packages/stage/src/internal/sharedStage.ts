/**
 * One worker's view of a shared stage: the shared state machine lives in
 * `sharedMemory.ts`; this module keeps the worker-local side — its tickets
 * (slot → local ticket), the fibers parked on them, the fiber running `head`
 * here if one does, and the pump that waits on the worker's doorbell with
 * `Atomics.waitAsync` and turns inbox records into buffered events and
 * wake-ups. Woken fibers are resumed through the trampoline
 * (`trampoline.ts`): after the inbox read or transition that woke them, never
 * inside it.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { pipeArguments } from "effect/Pipeable"
import * as Scope from "effect/Scope"
import type * as SharedStage from "../SharedStage.ts"
import type * as Stage from "../Stage.ts"
import type { ReceiveTimeoutError } from "../StageError.ts"
import { StageCapacityError, TokenEncodingError, TokenInUseError, WorkerDeadError, WorkerEvictedError } from "../StageError.ts"
import { receiveWith, showToken } from "./receive.ts"
import * as memory from "./sharedMemory.ts"
import { durationMillis, finished, succeedTimeout, succeedToken } from "./stage.ts"
import { TokenEncoder } from "./tokenCodec.ts"
import * as trampoline from "./trampoline.ts"

/** @internal */
export const TypeId = "~@quiesce/stage/SharedStage"

type Wake = "Token" | "Promoted" | "Timeout" | "Closed"

const wakeEffects: Record<Wake, Effect.Effect<Wake>> = {
  Token: Effect.succeed("Token"),
  Promoted: Effect.succeed("Promoted"),
  Timeout: Effect.succeed("Timeout"),
  Closed: Effect.succeed("Closed")
}

/** @internal */
export class LocalTicket<T> implements SharedStage.Ticket<T> {
  readonly token: T
  readonly slot: number
  readonly gen: number
  readonly stage: SharedStageImpl<any, T, any, any>
  seq = -1
  wake: Wake | undefined = undefined
  /** The parked fiber's resume, and what it is resumed with per wake-up (see `wakeUp`). */
  resume: ((effect: Effect.Effect<any, any, any>) => void) | undefined = undefined
  outcomes: Record<Wake, Effect.Effect<any, any, any>> = wakeEffects
  parked = false
  /** Whether the current untimed wait was resumed with its promotion (see `abandonParked`). */
  promotionTaken = false
  withdrawn = false
  /** The fiber running `head` while this ticket heads (interrupted if the ticket is withdrawn or the worker detaches meanwhile). */
  headFiber: Fiber.Fiber<unknown, unknown> | undefined = undefined
  /**
   * The canceller of an untimed `enter` parked on this ticket (one per ticket:
   * a ticket has one enter at a time, and `seq` is that enter's while parked).
   */
  readonly abandonParked: Effect.Effect<void>
  /** The canceller of a timed wait, which abandons the wait itself when it fails. */
  readonly forgetResume: Effect.Effect<void> = Effect.sync(() => {
    this.resume = undefined
  })
  constructor(stage: SharedStageImpl<any, T, any, any>, token: T, slot: number, gen: number) {
    this.stage = stage
    this.token = token
    this.slot = slot
    this.gen = gen
    this.abandonParked = Effect.sync(() => {
      unpark(stage, this)
      // Effect also runs a callback's canceller when the effect it resumed with is interrupted:
      // once this wait's promotion is being acted on, there is nothing of it left to abandon.
      if (this.promotionTaken) return
      if (!stage.closed && !this.withdrawn) stage.locked((s) => s.abandonLocked(slot, gen, this.seq), 0)
    })
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/** @internal */
export const makeMemory = (options?: SharedStage.MemoryOptions): SharedStage.Memory => {
  const capacity = options?.capacity ?? 1024
  const maxWorkers = options?.maxWorkers ?? 16
  const keyWords = Math.ceil((options?.maxTokenBytes ?? 64) / 4)
  let inboxWords = 1024
  while (inboxWords * 4 < (options?.inboxBytes ?? 256 * 1024)) inboxWords <<= 1
  const buffer = new SharedArrayBuffer(memory.bytesFor(capacity, maxWorkers, keyWords, inboxWords))
  memory.initialize(buffer, { capacity, maxWorkers, keyWords, inboxWords, leaseMillis: options?.leaseMillis ?? 2000 })
  return { _tag: "SharedStageMemory", buffer }
}

/** @internal */
export class SharedStageImpl<R, T, B, E> implements SharedStage.SharedStage<R, T, B, E> {
  readonly [TypeId] = TypeId
  readonly resource: R
  readonly buffer: B
  readonly shared: memory.SharedState
  readonly events: SharedStage.Events<T, B, E> | undefined
  readonly me: number
  readonly gen: number
  readonly maxTokenBytes: number
  readonly encoder: TokenEncoder
  readonly locals: Array<LocalTicket<T> | undefined> = []
  tickets = 0
  parkedCount = 0
  pumping = false
  closed = false
  /** Another worker reaped this one (see `stopEvicted`). */
  evicted = false
  /** The ticket whose head runs in this worker (at most one: there is one head). */
  localHead: LocalTicket<T> | undefined = undefined
  heartbeat: ReturnType<typeof setInterval> | undefined

  constructor(shared: memory.SharedState, me: number, gen: number, options: SharedStage.AttachOptions<R, T, B, E>) {
    this.shared = shared
    this.me = me
    this.gen = gen
    this.resource = options.resource
    this.buffer = options.buffer
    this.events = options.events
    this.maxTokenBytes = shared.l.keyWords * 4
    this.encoder = new TokenEncoder(this.maxTokenBytes)
    // The heartbeat also watches, while fibers of this worker are parked, that
    // the head's worker (and every other) is alive: a dead one is reaped. It
    // watches every beat, a quarter lease apart: a look more than half a lease
    // after the last one starts the watch over (`isDead`). And it checks that
    // this worker is still attached: one that was evicted (its loop was
    // blocked past the lease) stops at once.
    this.heartbeat = setInterval(() => {
      if (!shared.isCurrent(me, gen)) {
        this.stopEvicted()
        trampoline.flush()
        return
      }
      shared.heartbeat(me)
      if (this.parkedCount > 0 && !this.closed) this.checkLeases()
    }, Math.max(1, Math.floor(shared.lease / 4)))
    this.heartbeat.unref?.()
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  /**
   * Runs `f` under the shared lock, then rings the doorbells its records need,
   * reads this worker's own inbox, and resumes the fibers that woke.
   */
  locked<A>(f: (state: memory.SharedState) => A, ifEvicted: A): A {
    const result = this.lockedQuiet(f, ifEvicted)
    this.flushRings()
    trampoline.flush()
    return result
  }

  /**
   * `f` under the shared lock, leaving the doorbells to ring (`flushRings`)
   * and the trampoline to flush to the caller. If this worker was reaped,
   * `f` is not run (its slots may be another worker's by now): the worker
   * stops (`stopEvicted`) and `ifEvicted` is returned. The check is made
   * under the lock, which reaping takes too, so no transition of an evicted
   * worker ever reaches the shared state.
   */
  lockedQuiet<A>(f: (state: memory.SharedState) => A, ifEvicted: A): A {
    if (this.evicted) return ifEvicted
    this.shared.lock(this.me)
    if (!this.shared.isCurrent(this.me, this.gen)) {
      this.shared.unlock(this.me)
      this.stopEvicted()
      return ifEvicted
    }
    try {
      return f(this.shared)
    } finally {
      this.shared.unlock(this.me)
    }
  }

  evictedError(): WorkerEvictedError {
    return new WorkerEvictedError({ leaseMillis: this.shared.lease })
  }

  /** Rings the doorbells the last transitions wrote records for; this worker's own inbox is read at once. */
  flushRings(): void {
    const rings = this.shared.rings
    if (rings.length === 0) return
    let self = false
    for (let i = 0; i < rings.length; i++) {
      const w = rings[i]!
      if (w === this.me) self = true
      else this.shared.ring(w)
    }
    rings.length = 0
    if (self) this.drain()
  }

  readonly onRecord = (kind: number, slot: number, gen: number, seq: number, event: Uint8Array | undefined): void => {
    const ticket = this.locals[slot]
    if (ticket === undefined || ticket.gen !== gen) return
    if (event !== undefined && this.events !== undefined) {
      this.events.offer(this.buffer, ticket.token, this.events.decode(event))
    }
    if (kind === memory.REC_EVENT) return
    // Only the wait the record was written for may take it: a record left over
    // from an abandoned wait is a spurious wake-up and is ignored.
    if (!ticket.parked || ticket.seq !== seq || ticket.wake !== undefined) return
    this.wakeUp(ticket, kind === memory.REC_TOKEN ? "Token" : "Promoted")
  }

  /**
   * Reads this worker's inbox; the fibers it wakes are queued on the
   * trampoline (the caller flushes it). Not once evicted: the slot (and its
   * inbox) may belong to another worker by then.
   */
  drain(): void {
    if (!this.evicted && this.shared.isCurrent(this.me, this.gen)) this.shared.drain(this.me, this.onRecord)
  }

  /**
   * This worker was evicted: another worker watched its heartbeat stand
   * still for longer than the lease and reaped it (withdrew its tickets, and
   * may have promoted a head in place of this worker's). Whatever it still
   * runs stops, as if detached: parked enters and the head running here are
   * interrupted (queued on the trampoline: the caller flushes it), later
   * enters are interrupted, and `ticket`, `notify` and `deliver` fail with
   * `WorkerEvictedError`. Nothing of it touches the shared state again.
   */
  stopEvicted(): void {
    if (this.evicted) return
    this.evicted = true
    this.closed = true
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.heartbeat = undefined
    for (const ticket of this.locals) {
      if (ticket === undefined) continue
      ticket.withdrawn = true
      if (ticket.parked && ticket.wake === undefined) this.wakeUp(ticket, "Closed")
    }
    this.locals.length = 0
    if (this.localHead?.headFiber !== undefined) trampoline.defer(trampoline.interruptFiber, this.localHead.headFiber)
    this.localHead = undefined
    this.shared.rings.length = 0
  }

  /**
   * Records why the parked fiber wakes (it is no longer parked: later records
   * for its wait are ignored) and queues its resumption: with the `Wake` for a
   * timed enter, with its outcome for an untimed one.
   */
  wakeUp(ticket: LocalTicket<T>, wake: Wake): void {
    ticket.wake = wake
    unpark(this, ticket)
    const resume = ticket.resume
    ticket.resume = undefined
    if (resume !== undefined) trampoline.defer(resume, ticket.outcomes[wake])
  }

  startPump(): void {
    if (this.pumping || this.closed) return
    this.pumping = true
    const m = this.shared.m
    const index = this.shared.doorbellIndex(this.me)
    const step = (): void => {
      for (;;) {
        if (this.tickets === 0 || this.closed || !this.shared.isCurrent(this.me, this.gen)) {
          this.pumping = false
          return
        }
        const seen = Atomics.load(m, index)
        this.drain()
        trampoline.flush()
        const waited = Atomics.waitAsync(m, index, seen)
        if (!waited.async) continue
        waited.value.then(step)
        return
      }
    }
    step()
  }

  checkLeases(): void {
    if (this.evicted || !this.shared.isCurrent(this.me, this.gen)) return
    if (this.shared.reapDead(this.me) > 0) {
      this.flushRings()
      trampoline.flush()
    }
  }

  /** A ticket of this worker takes headship: `fiber` runs its head. */
  startHead(ticket: LocalTicket<T>, fiber: Fiber.Fiber<unknown, unknown>): void {
    ticket.headFiber = fiber
    this.localHead = ticket
  }

  /**
   * The head running here left, however it ended. Headship passes on now (a
   * withdrawn ticket's slot is freed then); if the worker was detaching while
   * it ran, the detach completes.
   */
  headLeft(ticket: LocalTicket<T>): void {
    ticket.headFiber = undefined
    if (this.localHead !== ticket) return
    this.localHead = undefined
    if (this.evicted) return
    if (this.closed) {
      this.release()
      return
    }
    this.locked((s) => s.leaveLocked(ticket.slot, ticket.gen), undefined)
  }

  /**
   * Detaching: parked enters are interrupted and every ticket is withdrawn. A
   * head running here is interrupted and keeps headship until it has left;
   * until then the worker stays attached (and heartbeating, so if it dies
   * meanwhile it is reaped as usual), and `headLeft` completes the detach.
   */
  close(): void {
    if (this.closed) return
    this.closed = true
    const head = this.localHead
    // Wake-ups already in the inbox are taken first (see the ticket's finalizer).
    this.drain()
    if (head === undefined) this.release()
    else {
      this.lockedQuiet((s) => s.withdrawAllLocked(this.me, head.slot), undefined)
      this.ringOthers()
    }
    // Stops the pump (an evicted worker's slot may be another's: its doorbell is not rung).
    if (!this.evicted) this.shared.ring(this.me)
    for (const ticket of this.locals) {
      if (ticket !== undefined && ticket.parked && ticket.wake === undefined) this.wakeUp(ticket, "Closed")
    }
    if (head?.headFiber !== undefined) trampoline.defer(trampoline.interruptFiber, head.headFiber)
    trampoline.flush()
  }

  /** Frees this worker's tickets and slot (nothing of it heads any more). */
  private release(): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.lockedQuiet((s) => s.reapLocked(this.me), undefined)
    this.ringOthers()
  }

  /** Rings the doorbells of other workers' records; this worker's own inbox is not read (it is detaching). */
  private ringOthers(): void {
    const rings = this.shared.rings
    for (const w of rings) if (w !== this.me) this.shared.ring(w)
    rings.length = 0
  }
}

/** @internal */
export const attach = <R, T, B, E = never>(
  mem: SharedStage.Memory,
  options: SharedStage.AttachOptions<R, T, B, E>
): Effect.Effect<SharedStage.SharedStage<R, T, B, E>, StageCapacityError, Scope.Scope> =>
  Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) => {
    const shared = new memory.SharedState(mem.buffer)
    const slot = shared.attach()
    if (slot === undefined) return Effect.fail(new StageCapacityError({ resource: "workers", limit: shared.l.maxWorkers }))
    const stage = new SharedStageImpl<R, T, B, E>(shared, slot[0], slot[1], options)
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => stage.close())), stage)
  }))

/** @internal */
export const ticket = <R, T, B, E>(
  self: SharedStage.SharedStage<R, T, B, E>,
  token: T
): Effect.Effect<SharedStage.Ticket<T>, TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError, Scope.Scope> =>
  Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope): Effect.Effect<SharedStage.Ticket<T>, TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError> => {
    const stage = self as SharedStageImpl<R, T, B, E>
    if (stage.evicted) return Effect.fail(stage.evictedError())
    if (stage.closed) return Effect.interrupt
    const encoded = stage.encoder.encode(token)
    if ("error" in encoded) return Effect.fail(new TokenEncodingError({ reason: encoded.error }))
    let slot = stage.locked((s) => s.registerLocked(stage.me, encoded.bytes, encoded.hash), -3)
    if (slot < 0 && slot !== -3 && stage.shared.reapDead(stage.me) > 0) {
      // The token (or the slot) may have been held by a worker that died.
      stage.flushRings()
      trampoline.flush()
      slot = stage.locked((s) => s.registerLocked(stage.me, encoded.bytes, encoded.hash), -3)
    }
    if (slot === -3) return Effect.fail(stage.evictedError())
    if (slot === -1) return Effect.fail(new TokenInUseError({ token: showToken(token) }))
    if (slot === -2) return Effect.fail(new StageCapacityError({ resource: "tickets", limit: stage.shared.l.capacity }))
    const local = new LocalTicket<T>(stage, token, slot, stage.shared.genOf(slot))
    stage.locals[slot] = local
    stage.tickets++
    stage.startPump()
    return Effect.as(
      Scope.addFinalizer(
        scope,
        Effect.sync(() => {
          // A wake-up already written to our inbox (a notify that returned true) is taken first, as
          // in one thread, where it would have resumed the waiter at once: only a waiter that is
          // still parked afterwards is interrupted.
          if (!stage.closed) stage.drain()
          local.withdrawn = true
          // A head running here keeps headship until it has left (`headLeft`): it is interrupted.
          const headRunning = stage.localHead === local
          if (!stage.closed) stage.lockedQuiet((s) => s.withdrawLocked(slot, local.gen, headRunning), undefined)
          if (stage.locals[slot] === local) stage.locals[slot] = undefined
          // Its scope closed under a parked enter: the enter is interrupted.
          if (local.parked && local.wake === undefined) stage.wakeUp(local, "Closed")
          if (headRunning && local.headFiber !== undefined) trampoline.defer(trampoline.interruptFiber, local.headFiber)
          // The pump stops with the last ticket; ring our own doorbell so its pending wait returns.
          if (--stage.tickets === 0 && !stage.evicted) stage.shared.ring(stage.me)
          // Only now, with this worker's side up to date too, may the fibers it woke run.
          stage.flushRings()
          trampoline.flush()
        })
      ),
      local
    )
  }))

class SharedDirector<R, T, B, E> implements SharedStage.Director<R, T, B, E> {
  readonly stage: SharedStageImpl<R, T, B, E>
  readonly token: T
  constructor(stage: SharedStageImpl<R, T, B, E>, token: T) {
    this.stage = stage
    this.token = token
  }
  get resource(): R {
    return this.stage.resource
  }
  get buffer(): B {
    return this.stage.buffer
  }
  notify(token: T): Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError> {
    return send(this.stage, token, undefined)
  }
  deliver(token: T, event: E): Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError | StageCapacityError> {
    const stage = this.stage
    const events = stage.events
    if (events === undefined) return Effect.die(new Error("SharedStage: deliver needs the `events` codec given to attach"))
    return Effect.suspend((): Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError | StageCapacityError> => {
      const bytes = events.encode(event)
      // No inbox could ever take it: waiting for room would wait forever.
      if (bytes.length > stage.shared.maxEventBytes) {
        return Effect.fail(new StageCapacityError({ resource: "inbox", limit: stage.shared.maxEventBytes }))
      }
      return send(stage, token, bytes)
    })
  }
}

const succeedTrue: Effect.Effect<boolean> = Effect.succeed(true)
/** What `notifyLocked` "returns" in an evicted worker (it never returns this itself). */
const EVICTED = Number.MIN_SAFE_INTEGER
const succeedFalse: Effect.Effect<boolean> = Effect.succeed(false)

/**
 * Notifies `token`'s holder (with `event` for its buffer). When the holder's
 * inbox is full, retries every millisecond while its worker lives (it drains
 * on its next event-loop turn); once that worker's lease has run out it is
 * reaped here (nobody else may be in a position to) and the notify fails with
 * `WorkerDeadError`. So the wait is bounded by the lease (as this thread
 * watches it: retrying every millisecond, it watches continuously). A worker
 * that was itself evicted fails with `WorkerEvictedError`.
 */
const send = <R, T, B, E>(
  stage: SharedStageImpl<R, T, B, E>,
  token: T,
  event: Uint8Array | undefined
): Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError> =>
  Effect.suspend(function attempt(): Effect.Effect<boolean, WorkerDeadError | WorkerEvictedError> {
    const encoded = stage.encoder.encode(token)
    // A token without an encoding cannot be held by anyone.
    if ("error" in encoded) return succeedFalse
    const owner = stage.locked((s) => s.notifyLocked(encoded.bytes, encoded.hash, event), EVICTED)
    if (owner === EVICTED) return Effect.fail(stage.evictedError())
    if (owner >= 0) return succeedTrue
    if (owner === -1) return succeedFalse
    const worker = -2 - owner
    if (!stage.shared.isDead(worker)) return Effect.flatMap(Effect.sleep(Duration.millis(1)), attempt)
    if (stage.shared.reapDead(stage.me) > 0) {
      stage.flushRings()
      trampoline.flush()
    }
    return Effect.fail(new WorkerDeadError({ token: showToken(token), leaseMillis: stage.shared.lease }))
  })

/** Runs `head` for a ticket that has just taken headship (`startHead` was called); headship passes on however it ends. */
const runHead = <R, T, B, E, A, EH, RH>(
  stage: SharedStageImpl<R, T, B, E>,
  ticket: LocalTicket<T>,
  head: (director: SharedStage.Director<R, T, B, E>) => Effect.Effect<A, EH, RH>,
  restore: <AX, EX, RX>(effect: Effect.Effect<AX, EX, RX>) => Effect.Effect<AX, EX, RX>
): Effect.Effect<Stage.StageExit<A>, EH, RH> =>
  Effect.onExit(
    Effect.map(restore(Effect.suspend(() => head(new SharedDirector(stage, ticket.token)))), finished),
    () => Effect.sync(() => stage.headLeft(ticket))
  )

/**
 * Takes headship under the lock with `take` (true when it did), for `fiber`:
 * recorded before any fiber woken by `take` (an expired promotion passed on)
 * can run.
 */
const takeHeadship = (
  stage: SharedStageImpl<any, any, any, any>,
  ticket: LocalTicket<any>,
  fiber: Fiber.Fiber<unknown, unknown>,
  take: (state: memory.SharedState) => boolean
): boolean => {
  const took = stage.lockedQuiet(take, false)
  if (took) stage.startHead(ticket, fiber)
  stage.flushRings()
  trampoline.flush()
  return took
}

/** Takes headship with `take` and, if that succeeded, runs `head` in this fiber. */
const headWith = <R, T, B, E, A, EH, RH>(
  stage: SharedStageImpl<R, T, B, E>,
  ticket: LocalTicket<T>,
  head: (director: SharedStage.Director<R, T, B, E>) => Effect.Effect<A, EH, RH>,
  take: (state: memory.SharedState) => boolean,
  otherwise: () => Effect.Effect<Stage.StageExit<A>, EH, RH>
): Effect.Effect<Stage.StageExit<A>, EH, RH> =>
  Effect.withFiber((fiber) =>
    Effect.uninterruptibleMask((restore) =>
      takeHeadship(stage, ticket, fiber, take) ? runHead(stage, ticket, head, restore) : otherwise()
    )
  )

/** A promotion that was not taken: the ticket was withdrawn or the worker detached meanwhile (interrupted), or its deadline passed. */
const promotionLost = (stage: SharedStageImpl<any, any, any, any>, ticket: LocalTicket<any>, retry: () => Effect.Effect<any, any, any>) =>
  stage.closed || ticket.withdrawn ? Effect.interrupt : retry()

/** The timed enter's wait: resumes at once when a wake-up came before it parked. */
const park = <T>(ticket: LocalTicket<T>): Effect.Effect<Wake> =>
  Effect.callback<Wake>((resume) => {
    if (ticket.wake !== undefined) return resume(wakeEffects[ticket.wake])
    ticket.outcomes = wakeEffects
    ticket.resume = resume as (effect: Effect.Effect<any, any, any>) => void
    return ticket.forgetResume
  })

/**
 * The hot path, an `enter` without a timeout (the same argument as the
 * in-process stage's): joining the queue and parking happen in one callback
 * registration; a pending notification or a free headship is only looked at
 * there and taken, under the lock, by the effect it resumes with. A wake-up
 * resumes the fiber with the enter's outcome directly.
 */
const enterNoTimeout = <R, T, B, E, A, EH, RH>(
  stage: SharedStageImpl<R, T, B, E>,
  ticket: LocalTicket<T>,
  head: (director: SharedStage.Director<R, T, B, E>) => Effect.Effect<A, EH, RH>
): Effect.Effect<Stage.StageExit<A>, EH, RH> => {
  const self: Effect.Effect<Stage.StageExit<A>, EH, RH> = Effect.callback<Stage.StageExit<A>, EH, RH>((resume) => {
    if (stage.closed) return resume(Effect.interrupt)
    if (ticket.stage !== stage || ticket.withdrawn || ticket.parked) return resume(invalidTicket)
    const entered = stage.locked((s) => s.waitLocked(ticket.slot), 0)
    if (entered === 0) return resume(Effect.interrupt)
    if (entered === 1) return resume(takePending)
    if (entered === 2) return resume(takeFree)
    ticket.seq = -entered - 3
    ticket.wake = undefined
    ticket.promotionTaken = false
    ticket.parked = true
    stage.parkedCount++
    stage.startPump()
    ticket.outcomes = outcomes
    ticket.resume = resume
    return ticket.abandonParked
  })
  const takePending = Effect.suspend((): Effect.Effect<Stage.StageExit<A>, EH, RH> => {
    if (!stage.locked((s) => s.takePendingLocked(ticket.slot), false)) return self
    // Its event, if any, was written to our inbox before the notification was counted.
    stage.drain()
    trampoline.flush()
    return succeedToken
  })
  const takeFree = headWith(stage, ticket, head, (s) => s.takeHeadLocked(ticket.slot), () => self)
  const takePromotion = headWith(
    stage,
    ticket,
    head,
    (s) => s.takePromotionLocked(ticket.slot, ticket.gen, ticket.seq, false),
    () => promotionLost(stage, ticket, () => self)
  )
  const outcomes: Record<Wake, Effect.Effect<Stage.StageExit<A>, EH, RH>> = {
    Token: succeedToken,
    Promoted: Effect.suspend(() => {
      ticket.promotionTaken = true
      return takePromotion
    }),
    Timeout: succeedTimeout,
    Closed: Effect.interrupt
  }
  return self
}

const invalidTicket = Effect.die(new Error("SharedStage.enter: the ticket is withdrawn, parked, or from another stage"))

const unpark = (stage: SharedStageImpl<any, any, any, any>, ticket: LocalTicket<any>): void => {
  if (ticket.parked) {
    ticket.parked = false
    stage.parkedCount--
  }
}

/** @internal */
export const enter = <R, T, B, E, A, EH, RH>(
  self: SharedStage.SharedStage<R, T, B, E>,
  ticket_: SharedStage.Ticket<T>,
  options: {
    readonly head: (director: SharedStage.Director<R, T, B, E>) => Effect.Effect<A, EH, RH>
    readonly timeout?: Duration.Input | undefined
  }
): Effect.Effect<Stage.StageExit<A>, EH, RH> => {
  const stage = self as SharedStageImpl<R, T, B, E>
  const ticket = ticket_ as LocalTicket<T>
  const timeout = durationMillis(options.timeout)
  if (timeout === undefined) return enterNoTimeout(stage, ticket, options.head)
  return Effect.withFiber((fiber) => Effect.uninterruptibleMask((restore) =>
    Effect.clockWith<Stage.StageExit<A>, EH, RH>((clock) => {
      if (stage.closed) return Effect.interrupt
      if (ticket.stage !== stage || ticket.withdrawn || ticket.parked) {
        return Effect.die(new Error("SharedStage.enter: the ticket is withdrawn, parked, or from another stage"))
      }
      const deadline = clock.currentTimeMillisUnsafe() + timeout
      let entered = 0
      if (takeHeadship(stage, ticket, fiber, (s) => (entered = s.enterLocked(ticket.slot)) === 2)) {
        return runHead(stage, ticket, options.head, restore)
      }
      // Evicted: the transition did not run.
      if (entered === 0) return Effect.interrupt
      if (entered === 1) {
        // Its event, if any, was written to our inbox before the notification was counted.
        stage.drain()
        trampoline.flush()
        return succeedToken
      }
      const seq = -entered - 3
      ticket.seq = seq
      ticket.wake = undefined
      ticket.parked = true
      stage.parkedCount++
      stage.startPump()
      const expire = Effect.sync(() => {
        if (ticket.wake !== undefined || !ticket.parked) return
        if (stage.locked((s) => s.expireLocked(ticket.slot, ticket.gen, seq), false)) {
          stage.wakeUp(ticket, "Timeout")
          trampoline.flush()
        }
        // Otherwise a wake-up is already in our inbox: it arrives with the next drain.
      })
      const waitForWake: Effect.Effect<Wake> = Effect.flatMap(
        Effect.forkChild(Effect.andThen(Effect.sleep(Duration.millis(timeout)), expire), { startImmediately: true }),
        (timer) => Effect.onExit(restore(park(ticket)), () => Fiber.interrupt(timer))
      )
      return Effect.flatMap(
        Effect.onExit(waitForWake, (exit) =>
          Effect.sync(() => {
            unpark(stage, ticket)
            if (Exit.isFailure(exit) && !stage.closed && !ticket.withdrawn) {
              stage.locked((s) => s.abandonLocked(ticket.slot, ticket.gen, seq), 0)
            }
          })),
        // The same dispatch as the in-process stage's timed enter, kept apart on purpose: here a
        // promotion is taken under the shared lock, by slot, generation and wait sequence (the
        // wake-up came from another thread's record); sharing the switch would put an indirect
        // call on every wake-up of both stages' enter path.
        (wake): Effect.Effect<Stage.StageExit<A>, EH, RH> => {
          switch (wake) {
            case "Token":
              return succeedToken
            case "Timeout":
              return succeedTimeout
            case "Closed":
              return Effect.interrupt
            case "Promoted": {
              const expired = clock.currentTimeMillisUnsafe() >= deadline
              return takeHeadship(stage, ticket, fiber, (s) => s.takePromotionLocked(ticket.slot, ticket.gen, seq, expired))
                ? runHead(stage, ticket, options.head, restore)
                : promotionLost(stage, ticket, () => succeedTimeout)
            }
          }
        }
      )
    })
  ))
}

/** @internal */
export const receive = <R, T, B, E, A, EP, RP>(
  self: SharedStage.SharedStage<R, T, B, E>,
  options: SharedStage.ReceiveOptions<R, T, B, E, A, EP, RP>
): Effect.Effect<A, EP | TokenInUseError | TokenEncodingError | StageCapacityError | WorkerEvictedError | ReceiveTimeoutError, RP> =>
  receiveWith({
    token: options.token,
    buffer: self.buffer,
    take: options.take,
    poll: options.poll,
    timeoutMillis: durationMillis(options.timeout),
    ticket: ticket(self, options.token),
    onTicket: options.onTicket,
    enter: (t, head, timeout) => enter(self, t, { head, timeout })
  })
