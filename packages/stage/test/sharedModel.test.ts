/**
 * Randomized model test of the shared stage's state machine: three workers'
 * views of one SharedArrayBuffer, driven transition by transition in random
 * order — register, enter, notify/deliver (by the head), leave, timeouts
 * (winning or losing against an in-flight wake-up), interruption while parked,
 * inbox drains with promotions taken late (deadline passed) or on time,
 * withdrawal (including of the head). After every step: the shared structure
 * is consistent (one head at most, a head whenever someone waits, the FIFO
 * count matches). At every withdrawal: every notify that found this ticket was
 * delivered exactly once (a `Token`, or still pending).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { SharedStage } from "@quiesce/stage"
import { keyOf, REC_EVENT, REC_TOKEN, type SharedInternals, sharedInternals } from "./internals.ts"
import { mulberry32 } from "./random.ts"

interface Reg {
  readonly w: number
  readonly slot: number
  readonly gen: number
  readonly token: string
  state: "idle" | "parked" | "heading"
  seq: number
  timedOut: boolean
  notified: number
  got: number
  events: number
}

const TOKENS = Array.from({ length: 10 }, (_, i) => `t${i}`)

const runSeed = (seed: number, steps: number, shared: SharedInternals, workers: ReadonlyArray<number>) => {
  const random = mulberry32(seed)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]!
  const byToken = new Map<string, Reg>()
  const bySlot = new Map<number, Reg>()
  const violations: Array<string> = []
  let ops = 0
  const check = (what: string) => {
    shared.rings.length = 0
    const problem = shared.checkLocked()
    if (problem !== undefined) violations.push(`seed ${seed} after ${what}: ${problem}`)
    const heads = [...bySlot.values()].filter((r) => r.state === "heading")
    if (heads.length > 1) violations.push(`seed ${seed} after ${what}: ${heads.length} heading`)
    if (heads.length === 1 && shared.head !== heads[0]!.slot) violations.push(`seed ${seed} after ${what}: head mismatch`)
  }
  const withdraw = (reg: Reg) => {
    const pending = shared.pendingOf(reg.slot)
    if (reg.notified !== reg.got + pending) {
      violations.push(`seed ${seed}: ${reg.token} notified ${reg.notified}, got ${reg.got} + pending ${pending}`)
    }
    shared.withdrawLocked(reg.slot, reg.gen)
    byToken.delete(reg.token)
    bySlot.delete(reg.slot)
  }
  const drain = (w: number) =>
    shared.drain(w, (kind, slot, gen, seq, event) => {
      const reg = bySlot.get(slot)
      if (reg === undefined || reg.gen !== gen) return
      if (event !== undefined) reg.events++
      if (kind === REC_EVENT) return
      // A wake-up for another wait of this ticket is spurious and ignored.
      if (reg.state !== "parked" || reg.seq !== seq) return
      if (kind === REC_TOKEN) {
        reg.got++
        reg.state = "idle"
      } else {
        const expired = reg.timedOut || random() < 0.2
        reg.state = shared.takePromotionLocked(slot, gen, seq, expired) ? "heading" : "idle"
      }
    })

  for (let step = 0; step < steps; step++) {
    ops++
    const r = random()
    const regs = [...bySlot.values()]
    if (r < 0.15) {
      const w = pick(workers)
      const token = pick(TOKENS)
      const { bytes: key, hash } = keyOf(token)
      const slot = shared.registerLocked(w, key, hash)
      if (slot === -1 && !byToken.has(token)) violations.push(`seed ${seed}: ${token} refused while free`)
      if (slot >= 0) {
        if (byToken.has(token)) violations.push(`seed ${seed}: ${token} granted twice`)
        const reg: Reg = { w, slot, gen: shared.genOf(slot), token, state: "idle", seq: -1, timedOut: false, notified: 0, got: 0, events: 0 }
        byToken.set(token, reg)
        bySlot.set(slot, reg)
      }
      check("register")
    } else if (r < 0.35) {
      const idle = regs.filter((x) => x.state === "idle")
      if (idle.length === 0) continue
      const reg = pick(idle)
      const entered = shared.enterLocked(reg.slot)
      if (entered === 1) reg.got++
      else if (entered === 2) reg.state = "heading"
      else {
        reg.state = "parked"
        reg.seq = -entered - 3
        reg.timedOut = false
      }
      check("enter")
    } else if (r < 0.55) {
      const head = regs.find((x) => x.state === "heading")
      if (head === undefined) continue
      const token = pick(TOKENS)
      const { bytes: key, hash } = keyOf(token)
      const holder = byToken.get(token)
      const event = random() < 0.5 ? new Uint8Array([1, 2, 3, 4, 5]) : undefined
      const owner = shared.notifyLocked(key, hash, event)
      // The owner's inbox is full (-2 - owner): a real head would retry once it drained.
      if (owner <= -2) continue
      if ((owner >= 0) !== (holder !== undefined)) violations.push(`seed ${seed}: notify(${token}) -> ${owner}`)
      if (holder !== undefined && owner >= 0) {
        holder.notified++
        if (owner !== holder.w) violations.push(`seed ${seed}: notify routed to worker ${owner}, holder in ${holder.w}`)
      }
      check("notify")
    } else if (r < 0.62) {
      const head = regs.find((x) => x.state === "heading")
      if (head === undefined) continue
      shared.leaveLocked(head.slot, head.gen)
      head.state = "idle"
      check("leave")
    } else if (r < 0.7) {
      const parked = regs.filter((x) => x.state === "parked")
      if (parked.length === 0) continue
      const reg = pick(parked)
      if (shared.expireLocked(reg.slot, reg.gen, reg.seq)) reg.state = "idle"
      else reg.timedOut = true // a wake-up is in flight: it is taken from the inbox
      check("expire")
    } else if (r < 0.75) {
      const parked = regs.filter((x) => x.state === "parked")
      if (parked.length === 0) continue
      const reg = pick(parked)
      shared.abandonLocked(reg.slot, reg.gen, reg.seq)
      reg.state = "idle"
      check("abandon")
    } else if (r < 0.92) {
      drain(pick(workers))
      check("drain")
    } else {
      const candidates = regs.filter((x) => x.state !== "parked")
      if (candidates.length === 0) continue
      withdraw(pick(candidates))
      check("withdraw")
    }
  }
  // Wind down: drain, let heads leave, and withdraw everyone; nobody may be left waiting.
  for (let round = 0; round < 1_000 && bySlot.size > 0; round++) {
    for (const w of workers) drain(w)
    for (const reg of [...bySlot.values()]) {
      if (reg.state === "heading") {
        shared.leaveLocked(reg.slot, reg.gen)
        reg.state = "idle"
      }
      if (reg.state === "idle") withdraw(reg)
    }
    check("wind-down")
  }
  if (bySlot.size > 0) violations.push(`seed ${seed}: ${bySlot.size} tickets never released`)
  for (const w of workers) drain(w)
  shared.rings.length = 0
  return { ops, violations }
}

describe("SharedStage model", () => {
  it.effect("random transitions across three workers: one head, exactly-once delivery, nobody stranded (≥100,000 steps)", () =>
    Effect.gen(function*() {
      const memory = SharedStage.makeMemory({ capacity: 16, maxWorkers: 3, inboxBytes: 4096 })
      const views = []
      for (let i = 0; i < 3; i++) views.push(yield* SharedStage.attach(memory, { resource: null, buffer: null }))
      const shared = sharedInternals(views[0]!).shared
      const workers = views.map((v) => sharedInternals(v).me)
      let ops = 0
      let seeds = 0
      for (let seed = 1; ops < 100_000; seed++) {
        const result = runSeed(seed, 2_000, shared, workers)
        assert.deepStrictEqual(result.violations, [])
        ops += result.ops
        seeds++
      }
      assert.isAtLeast(ops, 100_000)
      assert.isAtLeast(seeds, 50)
    }), { timeout: 120_000 })
})
