/**
 * The in-process stage: one state machine for the stage (head, FIFO of waiters,
 * token index) and one per ticket. Every transition is a synchronous method of
 * `StageImpl`, so each one is atomic with respect to every other fiber: the
 * race arguments below only have to consider the order in which transitions
 * run, never an interleaving inside one. A transition does not resume the
 * fibers it wakes; it queues them on the trampoline (`trampoline.ts`) and
 * flushes it as its last step, so a woken fiber only ever sees a completed
 * transition and promotion chains take constant stack.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { pipeArguments } from "effect/Pipeable"
import * as Scope from "effect/Scope"
import type * as Stage from "../Stage.ts"
import type { ReceiveTimeoutError } from "../StageError.ts"
import { TokenInUseError } from "../StageError.ts"
import { receiveWith, showToken } from "./receive.ts"
import { TokenIndex } from "./tokenIndex.ts"
import * as trampoline from "./trampoline.ts"

/** @internal */
export const TypeId = "~@quiesce/stage/Stage"
/** @internal */
export const TicketTypeId = "~@quiesce/stage/Ticket"

/**
 * A ticket's life. `Idle`: registered, not entered (or back from an enter).
 * `Waiting`: parked in the FIFO. `Promoted`: chosen as the next head, its fiber
 * not yet running. `Heading`: running `head`. `Withdrawn`: its scope closed
 * (if it was heading, it keeps headship until its interrupted head leaves).
 *
 * @internal
 */
export type TicketState = TicketState.Idle | TicketState.Waiting | TicketState.Promoted | TicketState.Heading | TicketState.Withdrawn

/** @internal */
export declare namespace TicketState {
  interface Idle {
    readonly _tag: "Idle"
  }
  interface Waiting {
    readonly _tag: "Waiting"
    readonly waiter: Waiter
  }
  interface Promoted {
    readonly _tag: "Promoted"
  }
  interface Heading {
    readonly _tag: "Heading"
  }
  interface Withdrawn {
    readonly _tag: "Withdrawn"
  }
}

const idle: TicketState = { _tag: "Idle" }
const promoted: TicketState = { _tag: "Promoted" }
const heading: TicketState = { _tag: "Heading" }
const withdrawn: TicketState = { _tag: "Withdrawn" }

/** Why a parked waiter was resumed. */
type Wake = "Token" | "Promoted" | "Timeout" | "Closed"

const wakeEffects: Record<Wake, Effect.Effect<Wake>> = {
  Token: Effect.succeed("Token"),
  Promoted: Effect.succeed("Promoted"),
  Timeout: Effect.succeed("Timeout"),
  Closed: Effect.succeed("Closed")
}

/**
 * A parked `enter`: a node of the stage's intrusive doubly-linked FIFO, so
 * that joining, leaving from the middle (time-out, interruption, notify) and
 * promoting the oldest are all O(1).
 *
 * @internal
 */
export class Waiter {
  prev: Waiter | undefined = undefined
  next: Waiter | undefined = undefined
  linked = false
  wake: Wake | undefined = undefined
  resume: ((effect: Effect.Effect<any, any, any>) => void) | undefined = undefined
  /**
   * What the parked fiber is resumed with, per wake-up: the `Wake` itself for
   * a timed enter, which acts on it in its continuation; the untimed enter's
   * outcome directly (one continuation less on the hot path).
   */
  outcomes: Record<Wake, Effect.Effect<any, any, any>> = wakeEffects
  readonly ticket: TicketImpl<any>
  deadline: number
  /** Run when an untimed parked fiber is interrupted: undo or pass on what it was given. */
  readonly cancel: Effect.Effect<void>
  readonly waitingState: TicketState.Waiting
  constructor(ticket: TicketImpl<any>, deadline: number) {
    this.ticket = ticket
    this.deadline = deadline
    this.cancel = Effect.sync(() => ticket.stage.abandon(this))
    this.waitingState = { _tag: "Waiting", waiter: this }
  }
}

/** @internal */
export class TicketImpl<T> implements Stage.Ticket<T> {
  readonly [TicketTypeId] = TicketTypeId
  readonly token: T
  readonly stage: StageImpl<any, T, any>
  state: TicketState = idle
  /** Notifications not yet returned as `Token` by an `enter`. */
  pending = 0
  /**
   * The waiter reused by every `enter` without a timeout: a ticket has one
   * enter at a time, and such a waiter is only ever acted on while linked
   * (a transition) or parked (its canceller), never afterwards. A resumption
   * still queued on the trampoline when it is reused holds the old wait's
   * `resume`, which Effect ignores once that wait was interrupted.
   */
  reusableWaiter: Waiter | undefined = undefined
  /** The fiber running `head` while this ticket heads (interrupted if the ticket is withdrawn meanwhile). */
  headFiber: Fiber.Fiber<unknown, unknown> | undefined = undefined
  constructor(stage: StageImpl<any, T, any>, token: T) {
    this.stage = stage
    this.token = token
  }
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/** @internal */
export type StageState = { readonly _tag: "Open" } | { readonly _tag: "Closed" }

const variance: Stage.Stage.Variance<any> = { _T: (t: any) => t }

const open: StageState = { _tag: "Open" }
const closed: StageState = { _tag: "Closed" }

/** @internal */
export class StageImpl<R, T, B> implements Stage.Stage<R, T, B> {
  readonly [TypeId]: Stage.Stage.Variance<T> = variance
  readonly resource: R
  readonly buffer: B
  state: StageState = open
  head: TicketImpl<T> | undefined = undefined
  first: Waiter | undefined = undefined
  last: Waiter | undefined = undefined
  readonly tokens = new TokenIndex<TicketImpl<T>>()

  constructor(resource: R, buffer: B) {
    this.resource = resource
    this.buffer = buffer
  }

  pipe() {
    return pipeArguments(this, arguments)
  }

  /** How many waiters are parked (for tests and diagnostics; derived, so park and wake do not keep a count). */
  get waiting(): number {
    let n = 0
    for (let waiter = this.first; waiter !== undefined; waiter = waiter.next) n++
    return n
  }

  // ---------------------------------------------------------------------------
  // Transitions
  // ---------------------------------------------------------------------------

  register(token: T): TicketImpl<T> | undefined {
    if (this.tokens.get(token) !== undefined) return undefined
    const ticket = new TicketImpl<T>(this, token)
    this.tokens.set(token, ticket)
    return ticket
  }

  /**
   * Closing a ticket's scope. Only ever removes this ticket's own registration
   * (no ABA), and the token is free before any fiber this wakes runs. A parked
   * enter is interrupted. A ticket that heads keeps headship until its head
   * has left: its fiber is interrupted, and `leave` passes headship on, so a
   * second head never runs beside it. A promoted ticket whose fiber has not
   * started `head` yet passes headship on at once.
   */
  withdraw(ticket: TicketImpl<T>): void {
    const state = ticket.state
    if (state._tag === "Withdrawn") return
    ticket.state = withdrawn
    this.tokens.deleteIfSame(ticket.token, ticket)
    switch (state._tag) {
      case "Waiting": {
        this.unlink(state.waiter)
        this.wake(state.waiter, "Closed")
        break
      }
      case "Promoted": {
        if (this.head === ticket) this.handOn()
        break
      }
      case "Heading": {
        if (this.head === ticket && ticket.headFiber !== undefined) trampoline.defer(trampoline.interruptFiber, ticket.headFiber)
        break
      }
    }
    trampoline.flush()
  }

  notify(token: T): boolean {
    const ticket = this.tokens.get(token)
    if (ticket === undefined) return false
    const state = ticket.state
    if (state._tag === "Waiting") {
      const waiter = state.waiter
      this.unlink(waiter)
      ticket.state = idle
      waiter.wake = "Token"
      const resume = waiter.resume
      if (resume !== undefined) {
        waiter.resume = undefined
        trampoline.run(resume, waiter.outcomes.Token)
      }
    } else {
      // Idle (a notify before `enter`), Promoted, or Heading (the head's own
      // token): kept, and the next `enter` returns `Token` at once.
      ticket.pending++
    }
    return true
  }

  /** The synchronous part of `enter`: `Token`, `Head`, or a parked waiter. */
  tryEnter(ticket: TicketImpl<T>, deadline: number): "Token" | "Head" | Waiter {
    if (ticket.pending > 0) {
      ticket.pending--
      return "Token"
    }
    if (this.head === undefined) {
      this.head = ticket
      ticket.state = heading
      return "Head"
    }
    return this.wait(ticket, deadline)
  }

  /** The ticket joins the end of the queue. */
  wait(ticket: TicketImpl<T>, deadline: number): Waiter {
    let waiter: Waiter
    if (deadline === Infinity) {
      waiter = ticket.reusableWaiter ??= new Waiter(ticket, Infinity)
      waiter.wake = undefined
      waiter.resume = undefined
    } else {
      // A timed wait gets its own waiter: its timer may fire after the wait ended.
      waiter = new Waiter(ticket, deadline)
    }
    ticket.state = waiter.waitingState
    this.link(waiter)
    return waiter
  }

  /** Takes the free headship (the caller checked `head === undefined` in the same synchronous step). */
  takeHead(ticket: TicketImpl<T>, fiber: Fiber.Fiber<unknown, unknown>): boolean {
    if (this.head !== undefined || ticket.state._tag !== "Idle") return false
    this.head = ticket
    ticket.state = heading
    ticket.headFiber = fiber
    return true
  }

  /** A promoted waiter's fiber runs: it heads, unless its deadline passed, in which case it hands on. */
  takePromotion(ticket: TicketImpl<T>, expired: boolean, fiber: Fiber.Fiber<unknown, unknown>): boolean {
    if (ticket.state._tag !== "Promoted" || this.head !== ticket) return false
    if (expired) {
      ticket.state = idle
      this.handOn()
      trampoline.flush()
      return false
    }
    ticket.state = heading
    ticket.headFiber = fiber
    return true
  }

  /** The head leaves, however `head` ended (a withdrawn head too: only now does headship pass on). */
  leave(ticket: TicketImpl<T>): void {
    if (this.head !== ticket) return
    if (ticket.state._tag !== "Withdrawn") ticket.state = idle
    ticket.headFiber = undefined
    this.handOn()
    trampoline.flush()
  }

  expire(waiter: Waiter): void {
    const ticket = waiter.ticket
    if (ticket.state._tag !== "Waiting" || ticket.state.waiter !== waiter) return
    this.unlink(waiter)
    ticket.state = idle
    this.wake(waiter, "Timeout")
    trampoline.flush()
  }

  /**
   * The waiting fiber exited without observing its wake-up (interrupted while
   * parked, or before it could park). Runs once per wait. Effect also runs an
   * untimed wait's canceller when the outcome it was resumed with is
   * interrupted (a head interrupted after taking its promotion): by then the
   * head has left, and there is nothing left to undo.
   */
  abandon(waiter: Waiter): void {
    const ticket = waiter.ticket
    switch (waiter.wake) {
      case undefined: {
        if (ticket.state._tag === "Waiting" && ticket.state.waiter === waiter) {
          this.unlink(waiter)
          ticket.state = idle
        }
        return
      }
      case "Token": {
        // The notification was taken off the ticket but never returned: give it back.
        if (ticket.state._tag !== "Withdrawn") ticket.pending++
        return
      }
      case "Promoted": {
        if (this.head === ticket) {
          if (ticket.state._tag !== "Withdrawn") ticket.state = idle
          this.handOn()
          trampoline.flush()
        }
        return
      }
    }
  }

  close(): void {
    if (this.state._tag === "Closed") return
    this.state = closed
    let waiter = this.first
    this.first = this.last = undefined
    while (waiter !== undefined) {
      const next = waiter.next
      waiter.prev = waiter.next = undefined
      waiter.linked = false
      waiter.ticket.state = idle
      this.wake(waiter, "Closed")
      waiter = next
    }
    trampoline.flush()
  }

  /**
   * Headship passes to the oldest waiter, or lapses when nobody waits. Never
   * leaves a waiter parked without a head. The caller flushes the trampoline.
   */
  private handOn(): void {
    const next = this.first
    if (next === undefined) {
      this.head = undefined
      return
    }
    this.unlink(next)
    this.head = next.ticket
    next.ticket.state = promoted
    this.wake(next, "Promoted")
  }

  /**
   * Records why the waiter wakes and queues its resumption. A waiter that has
   * not parked yet (a timed enter between joining and parking) has no
   * `resume`: it finds `wake` set when it parks.
   */
  private wake(waiter: Waiter, wake: Wake): void {
    waiter.wake = wake
    const resume = waiter.resume
    if (resume === undefined) return
    waiter.resume = undefined
    trampoline.defer(resume, waiter.outcomes[wake])
  }

  private link(waiter: Waiter): void {
    waiter.linked = true
    waiter.prev = this.last
    if (this.last === undefined) this.first = waiter
    else this.last.next = waiter
    this.last = waiter
  }

  private unlink(waiter: Waiter): void {
    if (!waiter.linked) return
    waiter.linked = false
    if (waiter.prev === undefined) this.first = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.last = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
  }
}

// -----------------------------------------------------------------------------
// Effects
// -----------------------------------------------------------------------------

/** @internal */
export const makeUnsafe = <R, T, B>(options: { readonly resource: R; readonly buffer: B }): StageImpl<R, T, B> =>
  new StageImpl<R, T, B>(options.resource, options.buffer)

/** @internal */
export const make = <R, T, B>(options: { readonly resource: R; readonly buffer: B }) =>
  Effect.flatMap(Effect.scope, (scope) => {
    const stage = makeUnsafe<R, T, B>(options)
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => stage.close())), stage as Stage.Stage<R, T, B>)
  })

/** @internal */
export const ticket = <R, T, B>(
  self: Stage.Stage<R, T, B>,
  token: T
): Effect.Effect<Stage.Ticket<T>, TokenInUseError, Scope.Scope> =>
  Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) => {
    const stage = self as StageImpl<R, T, B>
    const ticket = stage.register(token)
    if (ticket === undefined) return Effect.fail(new TokenInUseError({ token: showToken(token) }))
    return Effect.as(Scope.addFinalizer(scope, Effect.sync(() => stage.withdraw(ticket))), ticket)
  }))

/** @internal */
export const finished = <A>(value: A): Stage.StageExit<A> => ({ _tag: "Finished", value })
const tokenExit: Stage.StageExit<never> = { _tag: "Token" }
const timeoutExit: Stage.StageExit<never> = { _tag: "Timeout" }
/** @internal */
export const succeedToken: Effect.Effect<Stage.StageExit<never>> = Effect.succeed(tokenExit)
/** @internal */
export const succeedTimeout: Effect.Effect<Stage.StageExit<never>> = Effect.succeed(timeoutExit)

class DirectorImpl<R, T, B> implements Stage.Director<R, T, B> {
  readonly stage: StageImpl<R, T, B>
  readonly token: T
  constructor(stage: StageImpl<R, T, B>, token: T) {
    this.stage = stage
    this.token = token
  }
  get resource(): R {
    return this.stage.resource
  }
  get buffer(): B {
    return this.stage.buffer
  }
  notifyUnsafe(token: T): boolean {
    return this.stage.notify(token)
  }
  notify(token: T): Effect.Effect<boolean> {
    return Effect.sync(() => this.stage.notify(token))
  }
}

/** Runs `head` for a ticket that has just taken headship; headship passes on however it ends. */
const runHead = <R, T, B, A, E, R2>(
  stage: StageImpl<R, T, B>,
  ticket: TicketImpl<T>,
  head: (director: Stage.Director<R, T, B>) => Effect.Effect<A, E, R2>,
  restore: <AX, EX, RX>(effect: Effect.Effect<AX, EX, RX>) => Effect.Effect<AX, EX, RX>
): Effect.Effect<Stage.StageExit<A>, E, R2> =>
  Effect.onExit(
    Effect.map(restore(Effect.suspend(() => head(new DirectorImpl(stage, ticket.token)))), finished),
    () => Effect.sync(() => stage.leave(ticket))
  )

/** A promotion that was not taken: its deadline passed (`Timeout`), or the ticket was withdrawn meanwhile (interrupted). */
const promotionLost = (ticket: TicketImpl<any>): Effect.Effect<Stage.StageExit<never>> =>
  ticket.state._tag === "Withdrawn" ? Effect.interrupt : succeedTimeout

/**
 * The timed enter's wait: resumes at once when the waiter was woken before it
 * parked, otherwise when a transition resumes it. No canceller: the timed
 * enter abandons the wait when this exits with a failure, whether it was
 * parked or never got that far.
 */
const parkTimed = (waiter: Waiter): Effect.Effect<Wake> =>
  Effect.callback<Wake>((resume) => {
    if (waiter.wake !== undefined) return resume(wakeEffects[waiter.wake])
    waiter.resume = resume as (effect: Effect.Effect<any, any, any>) => void
  })

/** @internal */
export const durationMillis = (timeout: Duration.Input | undefined): number | undefined =>
  timeout === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(timeout))

const invalidTicket = (stage: StageImpl<any, any, any>, ticket: TicketImpl<any>): Effect.Effect<never> =>
  Effect.die(
    new Error(
      `Stage.enter: the ticket is ${ticket.stage !== stage ? "from another stage" : ticket.state._tag}; an enter needs an idle ticket of this stage`
    )
  )

/**
 * The hot path: an `enter` without a timeout, with no clock read, no timer
 * fiber and no interruptibility regions around the wait.
 *
 * The decision and the parking happen in one synchronous callback
 * registration, so no interruption can fall between joining the queue and
 * parking; interrupted while parked, the canceller leaves the queue (or hands
 * on what the waiter had just been given). A pending notification or a free
 * headship is only looked at there and taken by the effect it resumes with,
 * which re-checks it, so an interruption in between takes nothing. A wake-up
 * resumes the fiber with the enter's outcome (`Token`, or taking headship
 * under `uninterruptibleMask`) in a fresh run of its loop, before any
 * scheduler yield could let an interruption in.
 */
const enterNoTimeout = <R, T, B, A, E, R2>(
  stage: StageImpl<R, T, B>,
  ticket: TicketImpl<T>,
  head: (director: Stage.Director<R, T, B>) => Effect.Effect<A, E, R2>
): Effect.Effect<Stage.StageExit<A>, E, R2> => {
  const self: Effect.Effect<Stage.StageExit<A>, E, R2> = Effect.callback<Stage.StageExit<A>, E, R2>((resume) => {
    if (stage.state._tag === "Closed") return resume(Effect.interrupt)
    if (ticket.stage !== stage || ticket.state._tag !== "Idle") return resume(invalidTicket(stage, ticket))
    if (ticket.pending > 0) return resume(takePending)
    if (stage.head === undefined) return resume(takeFree)
    const waiter = stage.wait(ticket, Infinity)
    waiter.outcomes = outcomes
    waiter.resume = resume
    return waiter.cancel
  })
  const takePending = Effect.suspend((): Effect.Effect<Stage.StageExit<A>, E, R2> => {
    if (ticket.pending === 0) return self
    ticket.pending--
    return succeedToken
  })
  const takeFree: Effect.Effect<Stage.StageExit<A>, E, R2> = Effect.withFiber((fiber) =>
    Effect.uninterruptibleMask((restore) => stage.takeHead(ticket, fiber) ? runHead(stage, ticket, head, restore) : self)
  )
  const outcomes: Record<Wake, Effect.Effect<Stage.StageExit<A>, E, R2>> = {
    Token: succeedToken,
    Promoted: Effect.withFiber((fiber) =>
      Effect.uninterruptibleMask((restore) =>
        stage.takePromotion(ticket, false, fiber) ? runHead(stage, ticket, head, restore) : promotionLost(ticket)
      )
    ),
    Timeout: succeedTimeout,
    Closed: Effect.interrupt
  }
  return self
}

/** @internal */
export const enter = <R, T, B, A, E, R2>(
  self: Stage.Stage<R, T, B>,
  ticket_: Stage.Ticket<T>,
  options: {
    readonly head: (director: Stage.Director<R, T, B>) => Effect.Effect<A, E, R2>
    readonly timeout?: Duration.Input | undefined
  }
): Effect.Effect<Stage.StageExit<A>, E, R2> => {
  const stage = self as StageImpl<R, T, B>
  const ticket = ticket_ as TicketImpl<T>
  const timeout = durationMillis(options.timeout)
  const head = options.head
  if (timeout === undefined) return enterNoTimeout(stage, ticket, head)
  return Effect.withFiber((fiber) =>
    Effect.uninterruptibleMask((restore) => {
      if (stage.state._tag === "Closed") return Effect.interrupt
      if (ticket.stage !== stage || ticket.state._tag !== "Idle") return invalidTicket(stage, ticket)
      return Effect.clockWith<Stage.StageExit<A>, E, R2>((clock) => {
        const entered = stage.tryEnter(ticket, clock.currentTimeMillisUnsafe() + timeout)
        if (entered === "Token") return succeedToken
        if (entered === "Head") {
          ticket.headFiber = fiber
          return runHead(stage, ticket, head, restore)
        }
        const waiter = entered
        // From here until it parks the fiber can yield to the scheduler (its op
        // budget) and be interrupted there; the interruption then surfaces at
        // `restore`. Whenever the wait fails, it is abandoned: unlinked, or what
        // it was given in the meantime is kept or passed on.
        const parked = Effect.flatMap(
          Effect.forkChild(
            Effect.andThen(Effect.sleep(Duration.millis(timeout)), Effect.sync(() => stage.expire(waiter))),
            { startImmediately: true }
          ),
          (timer) =>
            Effect.onExit(restore(parkTimed(waiter)), (exit) => {
              if (Exit.isFailure(exit)) stage.abandon(waiter)
              return Fiber.interrupt(timer)
            })
        )
        return Effect.flatMap(parked, (wake): Effect.Effect<Stage.StageExit<A>, E, R2> => {
          switch (wake) {
            case "Token":
              return succeedToken
            case "Timeout":
              return succeedTimeout
            case "Closed":
              return Effect.interrupt
            case "Promoted":
              return stage.takePromotion(ticket, clock.currentTimeMillisUnsafe() >= waiter.deadline, fiber)
                ? runHead(stage, ticket, head, restore)
                : promotionLost(ticket)
          }
        })
      })
    })
  )
}

/** @internal */
export const receive = <R, T, B, A, E, R2>(
  self: Stage.Stage<R, T, B>,
  options: {
    readonly token: T
    readonly take: (buffer: B, token: T) => A | undefined
    readonly poll: (director: Stage.Director<R, T, B>) => Effect.Effect<void, E, R2>
    readonly timeout?: Duration.Input | undefined
  }
): Effect.Effect<A, E | TokenInUseError | ReceiveTimeoutError, R2> =>
  receiveWith({
    token: options.token,
    buffer: self.buffer,
    take: options.take,
    poll: options.poll,
    timeoutMillis: durationMillis(options.timeout),
    ticket: ticket(self, options.token),
    onTicket: undefined,
    enter: (t, head, timeout) => enter(self, t, { head, timeout })
  })
