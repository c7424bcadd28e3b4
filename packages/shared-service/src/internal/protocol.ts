/**
 * The lifecycle protocol of a shared service, as data: the client's acquisition and the
 * supervisor's life are two state machines whose every step is one atomic interaction with the
 * kernel (a semop, a flock, a file rename, a signal, a spawn). Nothing here does I/O: the real
 * implementation (`acquire.ts`, `supervisor.ts`) performs each step and feeds its result back
 * into `client`/`supervisor`; the model checker (`test/model/`) performs the same steps
 * against a simulated kernel and enumerates every interleaving. Both run this code, so what
 * the model checks is what ships. `PROTOCOL.md` explains the design.
 *
 * Kernel objects of one service name (per user and runtime directory):
 *
 * - the SysV set: the startup lock (`{wait-for-zero, +1}` with SEM_UNDO), the count (+1 with
 *   SEM_UNDO per client process) and the ring (+1 without undo at every registration, consumed
 *   by the supervisor: a client that came and went during the grace period is never missed);
 * - the owner lock: `flock(LOCK_EX)` on `<name>.owner`, taken by the client that starts a
 *   generation and handed to the supervisor at spawn as an inherited descriptor, so the
 *   supervisor holds it from the instant it exists, and the kernel drops it when it dies;
 * - the hint `<name>.json` (only ever written by a holder of the startup lock) naming the
 *   generation: supervisor and service pids with their start times, state starting/ready.
 *
 * The rules the machines implement:
 *
 * 1. Every decision, and every change to the owner file or the hint, is taken under the
 *    startup lock. A release (count −1) needs no lock.
 * 2. A generation exists exactly while its supervisor lives; the supervisor is the service's
 *    parent and its death kills the service (parent-death signal). A live service therefore
 *    always has exactly one party responsible for stopping it.
 * 3. A client that finds no owner sweeps what an earlier generation may have left, then starts
 *    a new one; a client that finds an owner it cannot use (unhealthy, not ready in time, not
 *    described by the hint) retires it and waits until it is gone before starting another.
 * 4. The supervisor stops the service only under the lock, with count 0 and no ring since the
 *    grace period began, then removes the files and the set (which also frees the lock: waiting
 *    clients see the set removed and start over on a fresh one).
 *
 * @internal
 */

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/** What a retire is aimed at: the generation the hint describes, or the owner's own stamp. */
export type Target<G> = { readonly _tag: "Gen"; readonly gen: G } | { readonly _tag: "Stamp" }

export type Client<G, F> =
  /** Take the startup lock (bounded). */
  | { readonly _tag: "Lock" }
  /** Under the lock: try the owner lock without waiting. */
  | { readonly _tag: "ProbeOwner" }
  /** Owner held: read and verify the hint. */
  | { readonly _tag: "ReadHint" }
  /** The owner is a start in progress that has not stamped itself yet: unlock, come back. */
  | { readonly _tag: "Yield" }
  /**
   * The generation is ready: check that it runs this definition (its fingerprint), then its
   * health (bounded; a stopped service is unhealthy).
   */
  | { readonly _tag: "Health"; readonly gen: G }
  /**
   * The generation is starting (ours, or one whose starter died): wait until ready (bounded).
   * Someone else's start of another definition is `NotReady` at once: nobody can have
   * registered with it (its starter held the lock until it died), so it is replaced.
   */
  | { readonly _tag: "AwaitReady"; readonly gen: G; readonly own: boolean }
  /** Record it ready in the hint. */
  | { readonly _tag: "MarkReady"; readonly gen: G }
  /** Ask the owner to stop its service and exit (SIGUSR2: the requester holds the lock). */
  | { readonly _tag: "Retire"; readonly target: Target<G> }
  /** Wait (bounded) until the owner lock is free; on success this process holds it. */
  | { readonly _tag: "AwaitOwner"; readonly target: Target<G>; readonly killed: boolean }
  /** The owner did not leave in time: SIGKILL it (its service dies with it). */
  | { readonly _tag: "Kill"; readonly target: Target<G> }
  /** No owner: kill whatever carries this service's marker (leftovers of a dead generation, or an unowned one). */
  | { readonly _tag: "Sweep" }
  /** Holding the owner lock: start a generation (supervisor and service, owner handed over). */
  | { readonly _tag: "Spawn" }
  /** Record the generation (starting) in the hint. */
  | { readonly _tag: "WriteHint"; readonly gen: G }
  /** count +1 (SEM_UNDO), ring +1, lock −1, atomically. */
  | { readonly _tag: "Register"; readonly gen: G }
  /**
   * Failure under the lock. With `gen` (a generation we started or waited for): SIGTERM its
   * supervisor, which stops the service and cleans up once it has the lock; remove the hint.
   * Without (nothing was spawned; we hold the owner lock): remove the hint and the owner file.
   */
  | { readonly _tag: "Abandon"; readonly error: F; readonly gen: G | undefined }
  /** Give the lock back; when no supervisor is responsible (`remove`) and count is 0, remove the set. */
  | { readonly _tag: "Release"; readonly error: F; readonly remove: boolean }
  | { readonly _tag: "Done"; readonly gen: G }
  | { readonly _tag: "Failed"; readonly error: F }

export type Owner =
  | {
    readonly _tag: "Free"
    /**
     * (Tidy) The hint names a generation whose service outlives its supervisor (in-process
     * supervision): it may still run, so the releaser stops it before removing the hint.
     */
    readonly orphan?: boolean | undefined
  }
  | { readonly _tag: "Held" }

/** The hint as verified: it describes the owner (pid and start time), or not. */
export type HintView<G> =
  | { readonly _tag: "None" }
  | { readonly _tag: "Unstamped" }
  | { readonly _tag: "Starting"; readonly gen: G }
  | { readonly _tag: "Running"; readonly gen: G }

export type ClientResult<G, F> =
  | { readonly _tag: "Locked" }
  | { readonly _tag: "LockTimeout"; readonly error: F }
  /** The set was removed under us (EIDRM/EINVAL): re-open it and take the lock again. */
  | { readonly _tag: "Removed" }
  | Owner
  | HintView<G>
  | { readonly _tag: "Healthy" }
  | { readonly _tag: "Recovered"; readonly gen: G }
  | { readonly _tag: "Unhealthy" }
  /**
   * (Health) The generation runs another definition (its fingerprint is not the client's).
   * `held`: it has clients (count > 0, read under the lock, where it can only decrease): it is
   * left alone and the client fails with `error`. Not held (it is in its grace period): it is
   * replaced, as an unhealthy one is.
   */
  | { readonly _tag: "Mismatch"; readonly error: F; readonly held: boolean }
  /** Ready; with the generation's record completed (a `make` start's `ServiceInfo`). */
  | { readonly _tag: "Ready"; readonly gen?: G | undefined }
  | { readonly _tag: "NotReady"; readonly error: F }
  | { readonly _tag: "Gone" }
  | { readonly _tag: "Stuck"; readonly error: F }
  | { readonly _tag: "Spawned"; readonly gen: G }
  | { readonly _tag: "Refused"; readonly error: F }
  | { readonly _tag: "Ok" }
  | { readonly _tag: "Error"; readonly error: F }

export const clientStart: Client<never, never> = { _tag: "Lock" }

const unexpected = (state: { readonly _tag: string }, result: { readonly _tag: string }): never => {
  throw new Error(`protocol: result ${result._tag} is not one of state ${state._tag}`)
}

/** The next state of an acquisition, given the result of performing `state`. */
export const client = <G, F>(state: Client<G, F>, result: ClientResult<G, F>): Client<G, F> => {
  switch (state._tag) {
    case "Lock":
      switch (result._tag) {
        case "Locked":
          return { _tag: "ProbeOwner" }
        case "Removed":
          return state
        case "LockTimeout":
          return { _tag: "Failed", error: result.error }
      }
      break
    case "ProbeOwner":
      switch (result._tag) {
        case "Free":
          // No live generation owns the name, as far as the owner lock can tell — which is not
          // far if its file was deleted under a live one (a tmp cleaner, an `rm -rf`): whatever
          // carries the name's marker goes before anything is started.
          return { _tag: "Sweep" }
        case "Held":
          return { _tag: "ReadHint" }
        case "Error":
          // The owner file cannot be used (a hostile runtime directory): give up, leaving no set.
          return { _tag: "Release", error: result.error, remove: true }
      }
      break
    case "ReadHint":
      switch (result._tag) {
        case "Running":
          return { _tag: "Health", gen: result.gen }
        case "Starting":
          return { _tag: "AwaitReady", gen: result.gen, own: false }
        case "Unstamped":
          return { _tag: "Yield" }
        case "None":
          // An owner the hint does not describe (its starter died before recording it, or its
          // service died): nothing can be said about its service, so it is replaced.
          return { _tag: "Retire", target: { _tag: "Stamp" } }
      }
      break
    case "Yield":
      if (result._tag === "Ok" || result._tag === "Removed") return { _tag: "Lock" }
      break
    case "Health":
      switch (result._tag) {
        case "Healthy":
          return { _tag: "Register", gen: state.gen }
        case "Recovered":
          // The definition's own `recover` brought it back in this generation: record it.
          return { _tag: "MarkReady", gen: result.gen }
        case "Unhealthy":
          return { _tag: "Retire", target: { _tag: "Gen", gen: state.gen } }
        case "Mismatch":
          // Sharing is never silent adoption: a generation of another definition that someone
          // holds is not touched (the lock is given back, nothing is stopped); one that nobody
          // holds is replaced by this definition.
          return result.held
            ? { _tag: "Release", error: result.error, remove: false }
            : { _tag: "Retire", target: { _tag: "Gen", gen: state.gen } }
        case "Error":
          // `recover` failed: the generation's supervisor stops what is left of it.
          return { _tag: "Abandon", error: result.error, gen: state.gen }
      }
      break
    case "AwaitReady":
      switch (result._tag) {
        case "Ready":
          return { _tag: "MarkReady", gen: result.gen ?? state.gen }
        case "NotReady":
          // Our own start failed: report it. Someone else's never became ready: replace it.
          return state.own
            ? { _tag: "Abandon", error: result.error, gen: state.gen }
            : { _tag: "Retire", target: { _tag: "Gen", gen: state.gen } }
      }
      break
    case "MarkReady":
    case "WriteHint":
      switch (result._tag) {
        case "Ok":
          return state._tag === "MarkReady"
            ? { _tag: "Register", gen: state.gen }
            : { _tag: "AwaitReady", gen: state.gen, own: true }
        case "Error":
          return { _tag: "Abandon", error: result.error, gen: state.gen }
      }
      break
    case "Retire":
      if (result._tag === "Ok") return { _tag: "AwaitOwner", target: state.target, killed: false }
      break
    case "AwaitOwner":
      switch (result._tag) {
        case "Gone":
          return { _tag: "Sweep" }
        case "Stuck":
          return state.killed
            ? { _tag: "Release", error: result.error, remove: false }
            : { _tag: "Kill", target: state.target }
      }
      break
    case "Kill":
      if (result._tag === "Ok") return { _tag: "AwaitOwner", target: state.target, killed: true }
      break
    case "Sweep":
      if (result._tag === "Ok") return { _tag: "Spawn" }
      break
    case "Spawn":
      switch (result._tag) {
        case "Spawned":
          return { _tag: "WriteHint", gen: result.gen }
        case "Refused":
          return { _tag: "Abandon", error: result.error, gen: undefined }
      }
      break
    case "Register":
      switch (result._tag) {
        case "Ok":
          return { _tag: "Done", gen: state.gen }
        case "Removed":
          // The set went away while we held its lock (ipcrm): nothing was registered; start over.
          return { _tag: "Lock" }
        case "Error":
          return { _tag: "Release", error: result.error, remove: false }
      }
      break
    case "Abandon":
      if (result._tag === "Ok") return { _tag: "Release", error: state.error, remove: state.gen === undefined }
      break
    case "Release":
      if (result._tag === "Ok" || result._tag === "Removed") return { _tag: "Failed", error: state.error }
      break
    case "Done":
    case "Failed":
      break
  }
  return unexpected(state, result)
}

/** Whether this process holds the startup lock in `state` (it took it and has not given it back). */
export const holdsLock = (state: Client<unknown, unknown>): boolean =>
  state._tag !== "Lock" && state._tag !== "Done" && state._tag !== "Failed"

/**
 * After a release that left the count at 0 (checked right after the decrement): if nobody owns
 * the set any more (its generation failed and no supervisor took charge of it), the releaser
 * removes it, so that the last one out leaves nothing behind. Every step is non-blocking.
 */
export type Tidy =
  | { readonly _tag: "TryLock" }
  | { readonly _tag: "ProbeOwner" }
  /** No owner, count 0, the hint names a service that outlived its supervisor: stop it (the definition's `stop`). */
  | { readonly _tag: "Sweep" }
  /** No owner, count 0: remove the hint, the owner file and the set. */
  | { readonly _tag: "Remove" }
  | { readonly _tag: "Unlock" }
  | { readonly _tag: "End" }

export type TidyResult =
  | { readonly _tag: "Locked" }
  | { readonly _tag: "Busy" }
  | { readonly _tag: "Removed" }
  | Owner
  | { readonly _tag: "Ok" }

export const tidyStart: Tidy = { _tag: "TryLock" }

export const tidy = (state: Tidy, result: TidyResult): Tidy => {
  switch (state._tag) {
    case "TryLock":
      return result._tag === "Locked" ? { _tag: "ProbeOwner" } : { _tag: "End" }
    case "ProbeOwner":
      if (result._tag === "Free") return result.orphan === true ? { _tag: "Sweep" } : { _tag: "Remove" }
      if (result._tag === "Held") return { _tag: "Unlock" }
      break
    case "Sweep":
      if (result._tag === "Ok") return { _tag: "Remove" }
      break
    case "Remove":
    case "Unlock":
      return { _tag: "End" }
    case "End":
      break
  }
  return unexpected(state, result)
}

// ---------------------------------------------------------------------------------------------
// Supervisor
// ---------------------------------------------------------------------------------------------

/** Why a supervisor ends its service. */
export type Reason =
  /** count 0 for the whole grace period. */
  | "Idle"
  /** The service exited on its own. */
  | "Exited"
  /** SIGTERM: a failed start, `forceStop`, a shutdown. */
  | "Term"
  /** SIGUSR2 from a client that holds the startup lock and manages the files itself. */
  | "Retire"

export type Supervisor =
  /**
   * Wait until count is 0 (or an event). `gone`: the service has been stopped or has exited;
   * the supervisor stays, owning the set, until the last holder has left, then removes it.
   */
  | { readonly _tag: "AwaitZero"; readonly gone: boolean }
  /** count is 0: wait `idleTimeToLive` for a ring (a client registering). */
  | { readonly _tag: "Grace" }
  /** Take the startup lock (bounded) to end the service for `reason`. */
  | { readonly _tag: "Lock"; readonly reason: Exclude<Reason, "Retire"> }
  /** Under the lock, after the grace period: is anyone holding, or did anyone register? */
  | { readonly _tag: "Recheck" }
  | { readonly _tag: "Unlock" }
  /** Stop the service and its whole tree. */
  | { readonly _tag: "Stop"; readonly reason: Reason; readonly locked: boolean }
  /** Under the lock: remove the hint (if it is ours), keep the log as `.1`. */
  | { readonly _tag: "Cleanup" }
  /** Under the lock: count 0 → remove the owner file and the set, exit; else unlock and stay. */
  | { readonly _tag: "Release" }
  /** The set was removed (ipcrm): re-create it and give holders time to re-register. */
  | { readonly _tag: "Reopen"; readonly gone: boolean }
  | { readonly _tag: "Exit" }

/** Events that end a wait: the service exited, a signal, the set was removed. */
export type SupervisorEvent = "Exited" | "Term" | "Retire" | "Removed"

export type SupervisorResult =
  | { readonly _tag: "Zero" }
  | { readonly _tag: "Rung" }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "Locked" }
  | { readonly _tag: "LockTimeout" }
  | { readonly _tag: "Busy" }
  | { readonly _tag: "Idle" }
  /** Release: the set was removed (count 0), or kept (holders left). */
  | { readonly _tag: "SetRemoved" }
  | { readonly _tag: "Kept" }
  | { readonly _tag: "Ok" }
  | { readonly _tag: "Event"; readonly event: SupervisorEvent }

export const supervisorStart: Supervisor = { _tag: "AwaitZero", gone: false }

/** Whether `event` ends a wait in `state` (the real waits check exactly these). */
export const interrupts = (state: Supervisor, event: SupervisorEvent): boolean => {
  switch (state._tag) {
    case "AwaitZero":
      return event === "Retire" || event === "Removed" || (!state.gone && (event === "Exited" || event === "Term"))
    case "Grace":
      return true
    case "Lock":
      return event === "Retire" || event === "Removed" || (state.reason === "Idle" && (event === "Exited" || event === "Term"))
    case "Reopen":
      return event === "Retire" || (!state.gone && (event === "Exited" || event === "Term"))
    case "Recheck":
    case "Unlock":
    case "Release":
      return event === "Removed"
    default:
      return false
  }
}

/** The next state of a supervisor, given the result of performing `state`. */
export const supervisor = (state: Supervisor, result: SupervisorResult): Supervisor => {
  if (result._tag === "Event") {
    if (!interrupts(state, result.event)) return unexpected(state, { _tag: result.event })
    switch (result.event) {
      case "Retire":
        return { _tag: "Stop", reason: "Retire", locked: false }
      case "Removed":
        return state._tag === "Release" ? { _tag: "Exit" } : { _tag: "Reopen", gone: isGone(state) }
      case "Exited":
      case "Term":
        return { _tag: "Lock", reason: result.event }
    }
  }
  switch (state._tag) {
    case "AwaitZero":
      if (result._tag === "Zero") return state.gone ? { _tag: "Lock", reason: "Exited" } : { _tag: "Grace" }
      break
    case "Grace":
      if (result._tag === "Rung") return { _tag: "AwaitZero", gone: false }
      if (result._tag === "Expired") return { _tag: "Lock", reason: "Idle" }
      break
    case "Lock":
      if (result._tag === "Locked") {
        return state.reason === "Idle" ? { _tag: "Recheck" } : { _tag: "Stop", reason: state.reason, locked: true }
      }
      if (result._tag === "LockTimeout") {
        // Idle: someone holds the lock for long (a client starting or checking): come back later.
        // Exited/Term: the service must go now; without the lock no file is touched, and the
        // supervisor stays until it can clean up.
        return state.reason === "Idle" ? { _tag: "AwaitZero", gone: false } : { _tag: "Stop", reason: state.reason, locked: false }
      }
      break
    case "Recheck":
      if (result._tag === "Busy") return { _tag: "Unlock" }
      if (result._tag === "Idle") return { _tag: "Stop", reason: "Idle", locked: true }
      break
    case "Unlock":
      if (result._tag === "Ok") return { _tag: "AwaitZero", gone: false }
      break
    case "Stop":
      if (result._tag === "Ok") {
        if (state.reason === "Retire") return { _tag: "Exit" }
        return state.locked ? { _tag: "Cleanup" } : { _tag: "AwaitZero", gone: true }
      }
      break
    case "Cleanup":
      if (result._tag === "Ok") return { _tag: "Release" }
      break
    case "Release":
      if (result._tag === "SetRemoved") return { _tag: "Exit" }
      if (result._tag === "Kept") return { _tag: "AwaitZero", gone: true }
      break
    case "Reopen":
      if (result._tag === "Ok") return { _tag: "AwaitZero", gone: state.gone }
      break
    case "Exit":
      break
  }
  return unexpected(state, result)
}

const isGone = (state: Supervisor): boolean =>
  (state._tag === "AwaitZero" || state._tag === "Reopen") ? state.gone : false

/** Whether the supervisor holds the startup lock in `state`. */
export const supervisorHoldsLock = (state: Supervisor): boolean =>
  state._tag === "Recheck" || state._tag === "Unlock" || state._tag === "Cleanup" || state._tag === "Release" ||
  (state._tag === "Stop" && state.locked)

// ---------------------------------------------------------------------------------------------
// Standby
// ---------------------------------------------------------------------------------------------

/**
 * A standby supervisor, for generations supervised in-process (`make` services whose service
 * does not die with its supervisor: `reaper: "in-process"`, and every service on a database
 * counter). Any client holding a reference may run one; it queues on the owner lock for as long
 * as its client holds the reference (it is interrupted, letting go of anything it took, when
 * the reference is released). When it gets the lock, the generation's supervisor has died (its
 * process, or its session): it takes the startup lock and adopts the generation only if the
 * hint still names the one its client registered with, ready — then it supervises it from
 * `AwaitZero` like any supervisor. Otherwise (another generation, a failed one, none) it lets
 * both locks go: the owner is free and the hint is evidence, so the next client sweeps.
 */
export type Standby<G> =
  /** Wait (unbounded, interruptible) for the owner lock; on success this process holds it. */
  | { readonly _tag: "AwaitOwner"; readonly gen: G }
  /** Holding the owner lock: take the startup lock (bounded). */
  | { readonly _tag: "Lock"; readonly gen: G }
  /** Under both locks: read the hint. */
  | { readonly _tag: "ReadHint"; readonly gen: G }
  /** Record this process as the generation's supervisor (the hint's supervisor and the stamp). */
  | { readonly _tag: "Adopt"; readonly gen: G }
  /** Give the startup lock back and supervise from `AwaitZero`. */
  | { readonly _tag: "Unlock"; readonly gen: G }
  /** Not ours: let the owner lock and the startup lock go. */
  | { readonly _tag: "Decline" }
  /** The owner lock could not be used (its session ended): let it go, queue again. */
  | { readonly _tag: "Retry"; readonly gen: G }
  | { readonly _tag: "Supervise"; readonly gen: G }
  | { readonly _tag: "End" }

export type StandbyResult =
  | { readonly _tag: "Got" }
  | { readonly _tag: "Locked" }
  | { readonly _tag: "LockTimeout" }
  /** The hint names the standby's generation, ready and not abandoned. */
  | { readonly _tag: "Ours" }
  | { readonly _tag: "NotOurs" }
  | { readonly _tag: "Ok" }
  /** The step failed (the owner's session ended meanwhile). */
  | { readonly _tag: "Lost" }

export const standbyStart = <G>(gen: G): Standby<G> => ({ _tag: "AwaitOwner", gen })

export const standby = <G>(state: Standby<G>, result: StandbyResult): Standby<G> => {
  switch (state._tag) {
    case "AwaitOwner":
      if (result._tag === "Got") return { _tag: "Lock", gen: state.gen }
      break
    case "Lock":
      if (result._tag === "Locked") return { _tag: "ReadHint", gen: state.gen }
      // Someone holds the startup lock for long: keep the owner lock and try again (while the
      // owner lock is held, no client can start a generation; the holder is deciding something
      // else, and a client that finds this standby holding the owner lock, unstamped, yields).
      if (result._tag === "LockTimeout") return state
      if (result._tag === "Lost") return { _tag: "Retry", gen: state.gen }
      break
    case "ReadHint":
      if (result._tag === "Ours") return { _tag: "Adopt", gen: state.gen }
      if (result._tag === "NotOurs") return { _tag: "Decline" }
      if (result._tag === "Lost") return { _tag: "Retry", gen: state.gen }
      break
    case "Adopt":
      if (result._tag === "Ok") return { _tag: "Unlock", gen: state.gen }
      if (result._tag === "Lost") return { _tag: "Retry", gen: state.gen }
      break
    case "Unlock":
      if (result._tag === "Ok") return { _tag: "Supervise", gen: state.gen }
      if (result._tag === "Lost") return { _tag: "Retry", gen: state.gen }
      break
    case "Decline":
      if (result._tag === "Ok") return { _tag: "End" }
      break
    case "Retry":
      if (result._tag === "Ok") return { _tag: "AwaitOwner", gen: state.gen }
      break
    case "Supervise":
    case "End":
      break
  }
  return unexpected(state, result)
}

/** Whether the standby holds the startup lock in `state`. */
export const standbyHoldsLock = (state: Standby<unknown>): boolean =>
  state._tag === "ReadHint" || state._tag === "Adopt" || state._tag === "Unlock"
