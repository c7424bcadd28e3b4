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

export const explore = (config: Config, options?: { readonly maxStates?: number }): Report => {
  const started = Date.now()
  const visited = new Set<string>()
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
    const k = W.key(world)
    if (visited.has(k)) return
    visited.add(k)
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
  visit(W.initial(config.clients, config.budget), "start")
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!
    if (frame.steps === undefined) {
      try {
        W.check(frame.world)
        frame.steps = W.successors(frame.world)
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
