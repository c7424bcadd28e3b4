/**
 * Exhaustive check of the shared stage's protocol: every interleaving, within
 * small bounds, of the transitions that two workers' fibers make on one
 * SharedArrayBuffer (the real `SharedState` code), explored depth-first with
 * the states seen so far skipped (a state is the shared memory, inboxes
 * decoded, and every fiber's local state).
 *
 * The actors are tickets (registered at the start), each the fiber of one
 * `enter` at a time. Their steps are the worker-local side's, one shared
 * transition each, so that any other worker's transition can fall between two
 * of them:
 * - enter timed (`enterLocked`) or untimed (`waitLocked`, then
 *   `takePendingLocked`/`takeHeadLocked` as a later step, retried if lost);
 * - parked: its timer fires (`expireLocked`), it is interrupted
 *   (`abandonLocked`), or its worker reads one inbox record for it and later
 *   resumes it (promotion: `takePromotionLocked`, late if its timer fired);
 * - heading: notify or deliver to any token, held or not (`notifyLocked`; a
 *   full inbox of a dead worker gets it reaped, as `send` does), or leave;
 * - withdrawn (its scope closes) in any state, from outside: its worker reads
 *   its inbox first, then `withdrawLocked`, with `headRunning` when it heads
 *   (the head then leaves later: `LEAVING`, freed by `leaveLocked`);
 * - a worker dies (its fibers stop) and the other reaps it (`reapLocked`).
 *
 * Checked in every state: the shared structure is consistent
 * (`checkLocked`); at most one live fiber runs `head` (a withdrawn head
 * counts until it has left), and it is the one the memory names; a withdrawn
 * token is free at once. In every final state (nothing left to do): every
 * live fiber has finished (no waiter stranded, no head kept), headship and
 * the queue are empty, and every notification that found a holder was seen
 * exactly once by it (a `Token`, or pending when it withdrew).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SharedStage } from "@quiesce/stage"
import { keyOf, REC_EVENT, REC_TOKEN, type SharedInternals, sharedInternals } from "./internals.ts"

type Local =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Deciding"; readonly take: "Pending" | "Free" }
  | { readonly _tag: "Parked"; readonly seq: number; readonly timed: boolean; readonly timedOut: boolean }
  | { readonly _tag: "Woken"; readonly seq: number; readonly timed: boolean; readonly timedOut: boolean; readonly wake: "Token" | "Promoted" }
  | { readonly _tag: "Heading"; readonly notifies: number }
  | { readonly _tag: "Leaving" }
  | { readonly _tag: "Done" }

type Mode = "timed" | "untimed"

interface Actor {
  readonly token: string
  readonly worker: number
  /** How its enters wait. */
  readonly modes: ReadonlyArray<Mode>
  local: Local
  slot: number
  gen: number
  enters: number
  notified: number
  tokens: number
  pendingAtEnd: number
}

interface Bounds {
  /** Enters per actor. */
  readonly enters: number
  /** Notifies per headship. */
  readonly notifies: number
  /** Interruptions of parked waiters, in all. */
  readonly interrupts: number
  /** Withdrawals from outside (of a waiter, a head, anyone not idle at the end), in all. */
  readonly withdrawals: number
  /** Worker deaths, in all (only the second worker dies). */
  readonly deaths: number
  /** Whether heads also deliver events (which can fill an inbox), besides notifying. */
  readonly events: boolean
}

/** How a state was reached, built only to report a violation. */
interface Path {
  readonly step: string
  readonly parent: Path | undefined
}
const show = (path: Path | undefined): string => {
  const steps: Array<string> = []
  for (let p = path; p !== undefined; p = p.parent) steps.push(p.step)
  return steps.reverse().join(", ")
}

interface World {
  readonly actors: Array<Actor>
  dead: Array<boolean>
  reaped: Array<boolean>
  interrupts: number
  withdrawals: number
  deaths: number
}

const cloneWorld = (w: World): World => ({
  actors: w.actors.map((a) => ({ ...a })),
  dead: [...w.dead],
  reaped: [...w.reaped],
  interrupts: w.interrupts,
  withdrawals: w.withdrawals,
  deaths: w.deaths
})

// An event long enough that two of them fill a 4 KiB inbox (less the words kept for promotions).
const EVENT = new Uint8Array(2_000)

/** A token nobody ever holds: notifying it must find no one. */
const NOBODY = "z"

const explore = (
  shared: SharedInternals,
  workers: ReadonlyArray<number>,
  tickets: ReadonlyArray<readonly [string, number, ReadonlyArray<Mode>]>,
  bounds: Bounds
) => {
  const keys = new Map([...tickets.map(([token]) => token), NOBODY].map((token) => [token, keyOf(token)]))
  const inboxWords = shared.l.inboxWords
  const violations: Array<string> = []
  let finals = 0
  /** How often the paths that matter were taken (a check that the bounds reach them). */
  const covered: Record<string, number> = {}
  const cover = (what: string) => void (covered[what] = (covered[what] ?? 0) + 1)

  /** The state, canonically: shared words that matter, each inbox's unread records, and the actors. */
  const stateKey = (world: World): string => {
    const m = shared.m
    const parts: Array<string> = []
    // Ticket slots, index and header words (not the lock, the epoch counter or heartbeats).
    const header = [1, 3, 4, 5, 6, 7].map((i) => m[i])
    parts.push(header.join(","))
    parts.push(Array.from(m.subarray(shared.l.workersAt + 16, shared.l.inboxesAt)).join(","))
    for (const w of workers) {
      const at = shared.l.workersAt + w * 8
      const head = m[at + 3]!
      const tail = m[at + 4]!
      const base = shared.l.inboxesAt + w * inboxWords
      const records: Array<string> = [`${m[at]}|${m[at + 5]}`]
      for (let p = head; p !== tail;) {
        const length = m[base + ((p + 4) & (inboxWords - 1))]!
        records.push([0, 1, 2, 3, 4].map((k) => m[base + ((p + k) & (inboxWords - 1))]).join("."))
        p = (p + 5 + (length > 0 ? (length + 3) >> 2 : 0)) | 0
      }
      parts.push(records.join(";"))
    }
    for (const a of world.actors) {
      const l = a.local as Partial<{ seq: number; timed: boolean; timedOut: boolean; wake: string; take: string; notifies: number }>
      parts.push(`${a.local._tag}.${l.seq}.${l.timed}.${l.timedOut}.${l.wake}.${l.take}.${l.notifies}.${a.slot}.${a.gen}.${a.enters}.${a.notified}.${a.tokens}.${a.pendingAtEnd}`)
    }
    parts.push(`${world.dead}.${world.reaped}.${world.interrupts}.${world.withdrawals}.${world.deaths}`)
    return parts.join("/")
  }

  /** The memory, without the inboxes' dead words: the words before the inboxes, and each inbox's unread words. */
  type Snapshot = { readonly prefix: Int32Array; readonly inboxes: ReadonlyArray<Int32Array> }
  const snapshot = (): Snapshot => {
    const m = shared.m
    return {
      prefix: m.slice(0, shared.l.inboxesAt),
      inboxes: workers.map((w) => {
        const at = shared.l.workersAt + w * 8
        const base = shared.l.inboxesAt + w * inboxWords
        const words = new Int32Array((m[at + 4]! - m[at + 3]!) | 0)
        for (let i = 0; i < words.length; i++) words[i] = m[base + ((m[at + 3]! + i) & (inboxWords - 1))]!
        return words
      })
    }
  }
  const restore = (snap: Snapshot): void => {
    const m = shared.m
    m.set(snap.prefix)
    workers.forEach((w, k) => {
      const at = shared.l.workersAt + w * 8
      const base = shared.l.inboxesAt + w * inboxWords
      const words = snap.inboxes[k]!
      for (let i = 0; i < words.length; i++) m[base + ((m[at + 3]! + i) & (inboxWords - 1))] = words[i]!
    })
  }

  const headsRunning = (world: World) =>
    world.actors.filter((a) => !world.dead[a.worker] && (a.local._tag === "Heading" || a.local._tag === "Leaving"))

  const check = (world: World, path: Path) => {
    shared.rings.length = 0
    const problem = shared.checkLocked()
    if (problem !== undefined) violations.push(`after ${show(path)}: ${problem}`)
    const heads = headsRunning(world)
    if (heads.length > 1) violations.push(`after ${show(path)}: ${heads.length} heads run (${heads.map((a) => a.token)})`)
    if (heads.length === 1 && shared.head !== heads[0]!.slot) {
      violations.push(`after ${show(path)}: ${heads[0]!.token} runs head but the memory names slot ${shared.head}`)
    }
  }

  /** The next step of the untimed enter's decision, or a retry of it. */
  const waitUntimed = (a: Actor) => {
    const entered = shared.waitLocked(a.slot)
    a.local = entered === 1
      ? { _tag: "Deciding", take: "Pending" }
      : entered === 2
      ? { _tag: "Deciding", take: "Free" }
      : { _tag: "Parked", seq: -entered - 3, timed: false, timedOut: false }
  }

  /**
   * The ticket's scope closes: its worker reads its inbox, then withdraws it.
   * A fiber whose `Token` was read already returns it (its resumption is
   * queued); a parked one is interrupted.
   */
  const withdraw = (world: World, a: Actor) => {
    const before = a.local._tag
    readInbox(world, a.worker)
    if (a.local._tag !== before) cover("a wake-up read by the withdrawal itself")
    if (a.local._tag === "Woken" && a.local.wake === "Token") a.tokens++
    const running = a.local._tag === "Heading"
    a.pendingAtEnd = shared.pendingOf(a.slot)
    shared.withdrawLocked(a.slot, a.gen, running)
    if (running) cover("a head withdrawn while it runs")
    a.local = running ? { _tag: "Leaving" } : { _tag: "Done" }
    const { bytes, hash } = keys.get(a.token)!
    if (shared.lookupLocked(bytes, hash) >= 0) violations.push(`${a.token} still held after its withdrawal`)
  }

  /** One inbox record, as `onRecord` takes it: the wake-up is recorded, the fiber resumes in a later step. */
  const readRecord = (world: World, w: number) => {
    // The real `drain`, shown one record: the tail is set to that record's end for the call.
    const m = shared.m
    const at = shared.l.workersAt + w * 8
    const head = m[at + 3]!
    const tail = m[at + 4]!
    const length = m[shared.l.inboxesAt + w * inboxWords + ((head + 4) & (inboxWords - 1))]!
    m[at + 4] = (head + 5 + (length > 0 ? (length + 3) >> 2 : 0)) | 0
    shared.drain(w, (kind, slot, gen, seq) => {
      const a = world.actors.find((x) => x.worker === w && x.slot === slot && x.gen === gen && x.local._tag !== "Done")
      if (a === undefined || kind === REC_EVENT) return
      if (a.local._tag !== "Parked" || a.local.seq !== seq) return
      a.local = { ...a.local, _tag: "Woken", wake: kind === REC_TOKEN ? "Token" : "Promoted" }
    })
    m[at + 4] = tail
  }
  const inboxEmpty = (w: number) => {
    const at = shared.l.workersAt + w * 8
    return shared.m[at + 3] === shared.m[at + 4]
  }
  const readInbox = (world: World, w: number) => {
    while (!inboxEmpty(w)) readRecord(world, w)
  }

  /** The waiting fiber of actor `i` is interrupted: its canceller abandons the wait `seq`. */
  const interrupted = (i: number, seq: number) => (w: World) => {
    const x = w.actors[i]!
    w.interrupts++
    shared.abandonLocked(x.slot, x.gen, seq)
    x.local = { _tag: "Idle" }
  }

  type Step = readonly [string, (world: World) => void]
  const steps = (world: World): Array<Step> => {
    const out: Array<Step> = []
    for (const [i, a] of world.actors.entries()) {
      if (world.dead[a.worker]) continue
      const me = (w: World) => w.actors[i]!
      const name = (what: string) => `${a.token}: ${what}`
      const outside = world.withdrawals < bounds.withdrawals
      switch (a.local._tag) {
        case "Idle":
          if (a.enters > 0) {
            if (a.modes.includes("timed")) out.push([name("enter (timed)"), (w) => {
              const x = me(w)
              x.enters--
              const entered = shared.enterLocked(x.slot)
              if (entered === 1) {
                x.tokens++
                x.local = { _tag: "Idle" }
              } else if (entered === 2) x.local = { _tag: "Heading", notifies: bounds.notifies }
              else x.local = { _tag: "Parked", seq: -entered - 3, timed: true, timedOut: false }
            }])
            if (a.modes.includes("untimed")) out.push([name("enter (untimed)"), (w) => {
              const x = me(w)
              x.enters--
              waitUntimed(x)
            }])
          } else out.push([name("withdraw"), (w) => withdraw(w, me(w))])
          break
        case "Deciding":
          out.push([name(`take ${a.local.take}`), (w) => {
            const x = me(w)
            const take = (x.local as { take: string }).take
            if (take === "Pending") {
              if (shared.takePendingLocked(x.slot)) {
                x.tokens++
                x.local = { _tag: "Idle" }
              } else waitUntimed(x)
            } else if (shared.takeHeadLocked(x.slot)) x.local = { _tag: "Heading", notifies: bounds.notifies }
            else {
              cover("a free headship taken by someone else first")
              waitUntimed(x)
            }
          }])
          break
        case "Parked": {
          const parked = a.local
          if (parked.timed && !parked.timedOut) {
            out.push([name("timer fires"), (w) => {
              const x = me(w)
              if (shared.expireLocked(x.slot, x.gen, parked.seq)) x.local = { _tag: "Idle" }
              else x.local = { ...parked, timedOut: true }
            }])
          }
          if (world.interrupts < bounds.interrupts) out.push([name("interrupted"), interrupted(i, parked.seq)])
          if (outside) out.push([name("withdrawn while parked"), (w) => {
            w.withdrawals++
            withdraw(w, me(w))
          }])
          break
        }
        case "Woken": {
          const woken = a.local
          out.push([name(`resumes (${woken.wake})`), (w) => {
            const x = me(w)
            if (woken.wake === "Token") {
              x.tokens++
              x.local = { _tag: "Idle" }
            } else if (shared.takePromotionLocked(x.slot, x.gen, woken.seq, woken.timedOut)) {
              x.local = { _tag: "Heading", notifies: bounds.notifies }
            } else if (woken.timed) {
              if (woken.timedOut) cover("a promotion taken after its deadline, passed on")
              x.local = { _tag: "Idle" }
            } else waitUntimed(x)
          }])
          // Interrupted after its wake-up was read, before it ran: the canceller gives the wake-up back or passes it on.
          if (world.interrupts < bounds.interrupts) out.push([name("interrupted before it resumes"), interrupted(i, woken.seq)])
          if (outside) out.push([name("withdrawn while woken"), (w) => {
            w.withdrawals++
            withdraw(w, me(w))
          }])
          break
        }
        case "Heading": {
          if (a.local.notifies > 0) {
            for (const target of keys.keys()) {
              for (const event of bounds.events ? [undefined, EVENT] : [undefined]) {
                out.push([name(`${event === undefined ? "notify" : "deliver to"} ${target}`), (w) => {
                  const x = me(w)
                  x.local = { _tag: "Heading", notifies: (x.local as { notifies: number }).notifies - 1 }
                  const { bytes, hash } = keys.get(target)!
                  const holder = w.actors.find((y) => y.token === target && y.local._tag !== "Done" && y.local._tag !== "Leaving" && !w.reaped[y.worker])
                  const owner = shared.notifyLocked(bytes, hash, event)
                  if (owner >= 0) {
                    if (holder === undefined) violations.push(`notify ${target} found a holder the model does not know`)
                    else holder.notified++
                  } else if (owner === -1) {
                    if (holder !== undefined) violations.push(`notify ${target} missed its holder ${holder.token}`)
                  } else {
                    // The owner's inbox is full: a live owner drains it (a later retry), a dead one is reaped.
                    const full = -2 - owner
                    if (w.dead[full] && !w.reaped[full]) {
                      cover("a full inbox of a dead worker: reaped by the sender")
                      shared.reapLocked(full)
                      w.reaped[full] = true
                    }
                  }
                }])
              }
            }
          }
          out.push([name("head leaves"), (w) => {
            const x = me(w)
            shared.leaveLocked(x.slot, x.gen)
            x.local = { _tag: "Idle" }
          }])
          if (outside) out.push([name("withdrawn while heading"), (w) => {
            w.withdrawals++
            withdraw(w, me(w))
          }])
          break
        }
        case "Leaving":
          out.push([name("withdrawn head leaves"), (w) => {
            const x = me(w)
            if (w.actors.some((y) => y !== x && y.local._tag !== "Done" && !w.dead[y.worker])) cover("a withdrawn head leaves with others still there")
            shared.leaveLocked(x.slot, x.gen)
            x.local = { _tag: "Done" }
          }])
          break
        case "Done":
          break
      }
    }
    for (const w of workers) {
      if (!world.dead[w] && !inboxEmpty(w)) out.push([`worker ${w} reads a record`, (x) => readRecord(x, w)])
    }
    const mortal = workers[1]!
    if (!world.dead[mortal] && world.deaths < bounds.deaths) {
      out.push([`worker ${mortal} dies`, (x) => {
        x.deaths++
        x.dead[mortal] = true
      }])
    }
    if (world.dead[mortal] && !world.reaped[mortal]) {
      out.push([`worker ${mortal} is reaped`, (x) => {
        if (x.actors.some((a) => a.worker === mortal && a.local._tag === "Heading")) cover("a dead worker reaped while it headed")
        shared.reapLocked(mortal)
        x.reaped[mortal] = true
      }])
    }
    return out
  }

  const finalCheck = (world: World, path: Path | undefined) => {
    finals++
    const stuck = world.actors.filter((a) => !world.dead[a.worker] && a.local._tag !== "Done")
    if (stuck.length > 0) violations.push(`final state with ${stuck.map((a) => `${a.token} ${a.local._tag}`)} after ${show(path)}`)
    const live = world.actors.some((a) => !world.dead[a.worker])
    if (live && world.dead.every((d, w) => !d || world.reaped[w]) && (shared.head !== -1 || shared.m[6] !== 0)) {
      violations.push(`final state with head ${shared.head} and ${shared.m[6]} waiting after ${show(path)}`)
    }
    for (const a of world.actors) {
      if (world.dead[a.worker]) continue
      if (a.notified !== a.tokens + a.pendingAtEnd) {
        violations.push(`${a.token} notified ${a.notified}, saw ${a.tokens} + pending ${a.pendingAtEnd} after ${show(path)}`)
      }
    }
  }

  const initial = shared.m.slice()
  const world: World = {
    actors: tickets.map(([token, worker, modes]) => {
      const { bytes, hash } = keys.get(token)!
      const slot = shared.registerLocked(worker, bytes, hash)
      return { token, worker, modes, local: { _tag: "Idle" }, slot, gen: shared.genOf(slot), enters: bounds.enters,
      notified: 0,
      tokens: 0,
      pendingAtEnd: 0 }
    }),
    dead: workers.map(() => false),
    reaped: workers.map(() => false),
    interrupts: 0,
    withdrawals: 0,
    deaths: 0
  }
  const seen = new Set<string>()
  const stack: Array<{ memory: Snapshot; world: World; path: Path | undefined }> = [
    { memory: snapshot(), world, path: undefined }
  ]
  while (stack.length > 0 && violations.length === 0) {
    const { memory, path, world } = stack.pop()!
    restore(memory)
    const key = stateKey(world)
    if (seen.has(key)) continue
    seen.add(key)
    const next = steps(world)
    if (next.length === 0) {
      finalCheck(world, path)
      continue
    }
    for (const [step, apply] of next) {
      restore(memory)
      const child = cloneWorld(world)
      apply(child)
      const childPath = { step, parent: path }
      check(child, childPath)
      if (violations.length > 0) break
      stack.push({ memory: snapshot(), world: child, path: childPath })
    }
  }
  shared.m.set(initial)
  shared.rings.length = 0
  return { states: seen.size, finals, violations, covered }
}

const both: ReadonlyArray<Mode> = ["timed", "untimed"]
const untimed: ReadonlyArray<Mode> = ["untimed"]
const timed: ReadonlyArray<Mode> = ["timed"]

/** Two attachments' view of one small memory, and the explorations run on it. */
const setup = Effect.gen(function*() {
  const memory = SharedStage.makeMemory({ capacity: 4, maxWorkers: 2, maxTokenBytes: 8, inboxBytes: 4096 })
  const views = [
    yield* SharedStage.attach(memory, { resource: null, buffer: null }),
    yield* SharedStage.attach(memory, { resource: null, buffer: null })
  ]
  const shared = sharedInternals(views[0]!).shared
  const workers = views.map((v) => sharedInternals(v).me)
  const [w0, w1] = workers as [number, number]
  const runs = [
    // Withdrawal of a head (and of waiters) from outside, three tickets over two workers.
    { tickets: [["a", w0, untimed], ["b", w1, both], ["c", w0, timed]] as const, bounds: { enters: 1, notifies: 1, interrupts: 0, withdrawals: 1, deaths: 0, events: false } },
    // Interruption, re-entry, and a second notify per head.
    { tickets: [["a", w0, both], ["b", w1, both]] as const, bounds: { enters: 2, notifies: 1, interrupts: 1, withdrawals: 1, deaths: 0, events: false } },
    // The second worker dies (heading, waiting, or with an inbox full of deliveries) and is reaped.
    { tickets: [["a", w0, untimed], ["b", w1, both]] as const, bounds: { enters: 1, notifies: 2, interrupts: 0, withdrawals: 0, deaths: 1, events: true } }
  ]
  return { shared, workers, runs }
})

/**
 * Broken variants of the protocol (one transition changed each, on a view
 * whose other transitions are the real ones): the exploration must find a
 * violation in every one, or it could not find the bug it was written for.
 */
const mutants: ReadonlyArray<readonly [string, (real: SharedInternals) => Partial<SharedInternals>]> = [
  // Issue 10 item 2, as it was: a withdrawn head loses headship at once, while it still runs.
  ["a withdrawn running head passes headship on at once", (real) => ({
    withdrawLocked: (s, gen) => real.withdrawLocked.call(mutant, s, gen, false)
  })],
  // A notification read by a waiter interrupted before it ran is dropped instead of kept pending.
  ["an abandoned wake-up is dropped", (real) => ({
    abandonLocked: (s, gen, seq) => {
      const given = real.abandonLocked.call(mutant, s, gen, seq)
      if (given === 1) mutant.m[ticketAt(real, s) + 3]!--
      return given
    }
  })],
  // A pending notification is taken without being consumed: seen twice.
  ["a pending notification taken twice", (real) => ({
    takePendingLocked: (s) => real.pendingOf.call(mutant, s) > 0
  })],
  // A timed-out waiter is marked idle but left linked in the queue (the shape of item 3).
  ["an expired waiter left in the queue", (real) => ({
    expireLocked: (s, gen, seq) => {
      const at = ticketAt(real, s)
      const m = mutant.m
      if (m[at + 2] !== gen || m[at + 8] !== seq || m[at] !== 2) return false
      m[at] = 1
      return true
    }
  })]
]
let mutant: SharedInternals

/** A ticket slot's first word (its words: state, owner, gen, pending, prev, next, hash, key length, seq, index). */
const ticketAt = (real: SharedInternals, s: number) => (real as unknown as { ticketAt(s: number): number }).ticketAt(s)

describe("SharedStage protocol, every interleaving", () => {
  it.effect("two workers, three tickets: one head, no stranded waiter, exactly-once delivery, withdrawn tokens free at once", () =>
    Effect.gen(function*() {
      const { runs, shared, workers } = yield* setup
      const covered: Record<string, number> = {}
      let states = 0
      for (const { bounds, tickets } of runs) {
        const result = explore(shared, workers, tickets, bounds)
        console.log(`exhaustive: ${tickets.length} tickets, ${JSON.stringify(bounds)}: ${result.states} states, ${result.finals} final`)
        assert.deepStrictEqual(result.violations, [])
        states += result.states
        for (const [what, n] of Object.entries(result.covered)) covered[what] = (covered[what] ?? 0) + n
      }
      console.log(`exhaustive: ${states} states in all; paths covered:`, covered)
      // The bounds reach every path the protocol changes for issue 10 turned on.
      assert.deepStrictEqual(Object.keys(covered).sort(), [
        "a dead worker reaped while it headed",
        "a free headship taken by someone else first",
        "a full inbox of a dead worker: reaped by the sender",
        "a head withdrawn while it runs",
        "a promotion taken after its deadline, passed on",
        "a wake-up read by the withdrawal itself",
        "a withdrawn head leaves with others still there"
      ])
    }), { timeout: 120_000 })

  it.effect("finds a violation in every broken variant of the protocol (mutants)", () =>
    Effect.gen(function*() {
      const { runs, shared, workers } = yield* setup
      for (const [name, change] of mutants) {
        mutant = Object.assign(Object.create(shared) as SharedInternals, change(shared))
        let found: string | undefined
        for (const { bounds, tickets } of runs) {
          found = explore(mutant, workers, tickets, bounds).violations[0]
          if (found !== undefined) break
        }
        assert.isDefined(found, `mutant "${name}" went unnoticed`)
        console.log(`exhaustive: mutant "${name}" caught: ${found!.slice(0, 160)}`)
      }
    }), { timeout: 120_000 })
})
