/**
 * Exhaustive exploration of the lifecycle model (`world.ts`): a depth-first search over every
 * interleaving of atomic steps, with a visited set of canonical states, checking the invariants
 * in every state and, in every final state, that nothing is left behind — directly when nothing
 * destructive happened, and after one more (late) client otherwise, since a SIGKILLed party or
 * an `ipcrm` can leave a set or a file that only the next user can clean up.
 */
import * as W from "./world.ts"

export interface Config {
  readonly clients: number
  readonly budget: W.Budget
  /** In-process supervision, standbys (`world.ts`); default: detached supervisors. */
  readonly mode?: W.Mode | undefined
}

export interface Report {
  readonly config: Config
  readonly states: number
  readonly transitions: number
  readonly finals: number
  readonly maxDepth: number
  readonly millis: number
}

export class ModelViolation extends Error {
  readonly trace: ReadonlyArray<string>
  constructor(message: string, trace: ReadonlyArray<string>) {
    super(`${message}\n  after: ${trace.join("\n         ")}`)
    this.trace = trace
  }
}

/**
 * A set of 64-bit state fingerprints (hash compaction, as SPIN's): two independent 32-bit FNV-1a
 * hashes of the canonical key, in an open-addressing table. For the large runs, where keeping
 * every key would not fit in memory; the chance that two of N states collide, so that one is
 * wrongly taken as visited, is about N² / 2⁶⁵ (below 10⁻⁵ for 10⁷ states).
 */
class FingerprintSet {
  private table = new Uint32Array(2 * (1 << 20))
  private used = 0
  size = 0

  add(key: string): boolean {
    let a = 0x811c9dc5
    let b = 0x01000193 ^ 0x9e3779b9
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i)
      a = Math.imul(a ^ c, 0x01000193)
      // An odd multiplier (an even one shifts a bit out at every character, so that `b` only
      // depended on the key's last characters: the runs lost states to collisions).
      b = Math.imul(b ^ c, 0x5bd1e995)
    }
    a = (a >>> 0) || 1
    b >>>= 0
    if (this.used * 2 >= this.table.length / 2) this.grow()
    const mask = this.table.length / 2 - 1
    for (let slot = a & mask; ; slot = (slot + 1) & mask) {
      const x = this.table[2 * slot]!
      if (x === 0) {
        this.table[2 * slot] = a
        this.table[2 * slot + 1] = b
        this.used++
        this.size++
        return true
      }
      if (x === a && this.table[2 * slot + 1] === b) return false
    }
  }

  private grow() {
    const old = this.table
    this.table = new Uint32Array(old.length * 2)
    const mask = this.table.length / 2 - 1
    for (let i = 0; i < old.length; i += 2) {
      const a = old[i]!
      if (a === 0) continue
      let slot = a & mask
      while (this.table[2 * slot] !== 0) slot = (slot + 1) & mask
      this.table[2 * slot] = a
      this.table[2 * slot + 1] = old[i + 1]!
    }
  }
}

export const explore = (
  config: Config,
  options?: {
    readonly maxStates?: number
    readonly machines?: W.Machines
    /** Keep 64-bit fingerprints instead of whole keys (see `FingerprintSet`). */
    readonly compact?: boolean
  }
): Report => {
  const started = Date.now()
  const exact = new Set<string>()
  const compact = new FingerprintSet()
  const visited = options?.compact === true
    ? {
      add: (k: string) => compact.add(k),
      get size() {
        return compact.size
      }
    }
    : {
      add: (k: string) => {
        const before = exact.size
        return exact.add(k).size > before
      },
      get size() {
        return exact.size
      }
    }
  let transitions = 0
  let finals = 0
  let maxDepth = 0
  const limit = options?.maxStates ?? Infinity
  interface Frame {
    readonly world: W.World
    readonly label: string
    steps: Array<W.Step> | undefined
    index: number
  }
  const stack: Array<Frame> = []
  const trace = () => stack.map((f) => f.label)
  const visit = (world: W.World, label: string) => {
    if (!visited.add(W.key(world))) return
    if (visited.size > limit) throw new Error(`more than ${limit} states`)
    stack.push({ world, label, steps: undefined, index: 0 })
    maxDepth = Math.max(maxDepth, stack.length)
  }
  const onFinal = (w: W.World) => {
    finals++
    if (!W.settled(w)) throw new ModelViolation("deadlock: no party can move", trace())
    const left = W.leftovers(w)
    if (left.length === 0) return
    const late = "late" in w.procs
    if (!w.damaged || late) {
      throw new ModelViolation(`left behind after the last stop: ${left.join(", ")}`, trace())
    }
    // Damage (SIGKILL, ipcrm) may leave a set or files; the next client must clean them up.
    visit(W.withLateClient(w), "a late client arrives")
  }
  visit(W.initial(config.clients, config.budget, config.mode), "start")
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!
    if (frame.steps === undefined) {
      try {
        W.check(frame.world)
        frame.steps = W.successors(frame.world, options?.machines)
      } catch (e) {
        if (e instanceof W.Violation) throw new ModelViolation(e.message, trace())
        throw e
      }
      transitions += frame.steps.length
      // A final state (it may push a late client's exploration above itself).
      if (frame.steps.length === 0) onFinal(frame.world)
      continue
    }
    if (frame.index >= frame.steps.length) {
      stack.pop()
      continue
    }
    const step = frame.steps[frame.index++]!
    visit(step.next, step.label)
  }
  return { config, states: visited.size, transitions, finals, maxDepth, millis: Date.now() - started }
}
