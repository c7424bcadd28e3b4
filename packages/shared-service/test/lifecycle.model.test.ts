/**
 * The exhaustive model check of the lifecycle protocol (`PROTOCOL.md`): every interleaving of
 * the atomic steps of clients, supervisors and services, with an adversary that SIGKILLs and
 * SIGSTOPs any process at any step, removes the set (`ipcrm`), makes the service exit on its
 * own, SIGTERMs a supervisor and refuses a start. The decision code explored is the one that
 * ships (`src/internal/protocol.ts`). The configurations here run in seconds; the large ones
 * (three clients and several faults at once) are `npm run model-check` in this package, with
 * their figures in the README.
 *
 * A checker that cannot fail proves nothing: broken variants of the protocol are fed to it too,
 * and each must be caught.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Protocol from "@quiesce/shared-service/internal/protocol"
import { explore, ModelViolation } from "./model/explore.ts"
import type { Budget, Machines, Mode } from "./model/world.ts"
import { protocol } from "./model/world.ts"

const none: Budget = { kill: 0, stop: 0, ipcrm: 0, exit: 0, term: 0, refuse: 0 }

/** Explores `m` with its broken machines: it must end in a violation matching `finds`. */
const expectCaught = (m: {
  readonly clients: number
  readonly budget: Partial<Budget>
  readonly mode?: Mode
  readonly machines: Machines
  readonly finds: RegExp
}) => {
  try {
    explore({ clients: m.clients, budget: { ...none, ...m.budget }, mode: m.mode }, { machines: m.machines, maxStates: 2_000_000 })
  } catch (e) {
    if (!(e instanceof ModelViolation)) throw e
    assert.match(e.message, m.finds)
    return
  }
  assert.fail("the broken protocol passed the model check")
}

interface Configuration {
  readonly clients: number
  readonly budget: Partial<Budget>
  readonly mode?: Mode
}

/** A broken protocol the checker must reject, with the faults that expose it. */
interface Mutant {
  readonly name: string
  readonly budget: Partial<Budget>
  readonly machines: Machines
  readonly finds: RegExp
}

/** Explores every configuration exhaustively (each must run to final states, none violating an invariant). */
const exhaustive = (title: string, label: string, configurations: ReadonlyArray<Configuration>) =>
  describe(title, () => {
    it.each(configurations)("every interleaving of $clients clients, mode $mode, faults $budget", (c) => {
      const report = explore({ clients: c.clients, budget: { ...none, ...c.budget }, mode: c.mode })
      console.log(
        `model${label}: ${c.clients} clients ${JSON.stringify(c.budget)}: ${report.states} states, ` +
          `${report.transitions} transitions, ${report.finals} final states, depth ${report.maxDepth}, ${report.millis} ms`
      )
      assert.isAbove(report.states, 500)
      assert.isAbove(report.finals, 0)
    }, 120_000)
  })

const configurations: ReadonlyArray<Configuration> = [
  { clients: 3, budget: {} },
  { clients: 2, budget: { kill: 1, refuse: 1 } },
  { clients: 2, budget: { stop: 1, exit: 1 } },
  { clients: 2, budget: { term: 1, refuse: 1 } },
  { clients: 2, budget: { ipcrm: 1 } }
]

exhaustive("lifecycle protocol, exhaustive model check", "", configurations)

/** Broken protocols the checker must reject, each with a configuration that exposes it. */
const mutants: ReadonlyArray<Mutant & { readonly clients: number }> = [
  {
    name: "the supervisor stops after the grace period without re-checking under the lock",
    clients: 2,
    budget: {},
    machines: {
      ...protocol,
      supervisor: (state, result) =>
        state._tag === "Grace" && result._tag === "Expired"
          ? { _tag: "Stop", reason: "Idle", locked: false }
          : Protocol.supervisor(state, result)
    },
    finds: /stopped its idle service/
  },
  {
    name: "a healthy generation is joined without registering",
    clients: 2,
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "Health" && result._tag === "Healthy" ? { _tag: "Done", gen: state.gen } : Protocol.client(state, result)
    },
    finds: /holds no reference|deadlock|left behind/
  },
  {
    name: "a retire does not wait for the old owner to leave",
    clients: 2,
    budget: { stop: 1 },
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "Retire" ? { _tag: "Sweep" } : Protocol.client(state, result)
    },
    finds: /live owner|two live instances|does not hold the owner file|without holding the owner lock/
  },
  {
    name: "a client starts a generation although the owner lock is held",
    clients: 2,
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "ProbeOwner" && result._tag === "Held" ? { _tag: "Sweep" } : Protocol.client(state, result)
    },
    finds: /live owner|two live instances|without holding the owner lock/
  },
  {
    name: "a supervisor ending on a SIGTERM cleans up even when it could not get the lock",
    clients: 2,
    budget: { term: 1, stop: 1 },
    machines: {
      ...protocol,
      supervisor: (state, result) =>
        state._tag === "Stop" && !state.locked && state.reason !== "Retire" && result._tag === "Ok"
          ? { _tag: "Cleanup" }
          : Protocol.supervisor(state, result)
    },
    finds: /without the lock/
  }
]

/**
 * In-process supervision (`make` services with `reaper: "in-process"`, every service on the
 * PostgreSQL counter): the service does not die with its supervisor (the client fiber that
 * started it), and clients holding it run standbys queued on the owner lock. Invariants on top of
 * the ones above: a live service outliving its supervisor is still named by the hint (a standby
 * adopts it, or the next client sweeps it); an owner never supervises an older generation than
 * the hint's; a standby adopts only holding both locks, and only after the supervisor is gone.
 */
const inProcessConfigurations: ReadonlyArray<Configuration> = [
  { clients: 3, budget: {}, mode: { inProcess: true, standby: true } },
  { clients: 2, budget: { kill: 1 }, mode: { inProcess: true } },
  { clients: 2, budget: { kill: 1, refuse: 1 }, mode: { inProcess: true, standby: true } },
  { clients: 2, budget: { stop: 1, exit: 1 }, mode: { inProcess: true, standby: true } },
  { clients: 2, budget: { term: 1, refuse: 1 }, mode: { inProcess: true, standby: true } }
]

exhaustive("in-process supervision with standbys, exhaustive model check", " (in-process)", inProcessConfigurations)

const inProcessMutants: ReadonlyArray<Mutant> = [
  {
    name: "a standby adopts without taking the startup lock",
    budget: { kill: 1 },
    machines: {
      ...protocol,
      standby: (state, result) =>
        state._tag === "AwaitOwner" && result._tag === "Got" ? { _tag: "ReadHint", gen: state.gen } : Protocol.standby(state, result)
    },
    finds: /adopted without the startup lock/
  },
  {
    name: "the last releaser, finding no owner, removes the hint of a service that outlived its supervisor without stopping it",
    budget: { kill: 1 },
    machines: {
      ...protocol,
      tidy: (state, result) =>
        state._tag === "ProbeOwner" && result._tag === "Free" ? { _tag: "Remove" } : Protocol.tidy(state, result)
    },
    finds: /nobody is responsible/
  },
  {
    name: "a client sweeps (in-process) although the owner lock is held",
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "ProbeOwner" && result._tag === "Held" ? { _tag: "Sweep" } : Protocol.client(state, result)
    },
    finds: /live owner|two live instances|without holding the owner lock/
  }
]

describe("the model checker catches broken in-process protocols", () => {
  it.each(inProcessMutants)("$name", (m) => expectCaught({ ...m, clients: 2, mode: { inProcess: true, standby: true } }), 120_000)
})

describe("the model checker catches broken protocols", () => {
  it.each(mutants)("$name", (m) => expectCaught(m), 120_000)
})

/**
 * Clients of two definitions (fingerprints; client `i` has definition `i % 2`): a client only
 * ever holds a generation of its own definition, and a generation that clients hold is never
 * retired or abandoned by a client of another (it fails with `DefinitionMismatch`); one nobody
 * holds (in its grace period) is replaced, and someone else's start of another definition is
 * replaced rather than waited for.
 */
const definitionConfigurations: ReadonlyArray<Configuration> = [
  { clients: 3, budget: {}, mode: { definitions: 2 } },
  { clients: 2, budget: { kill: 1 }, mode: { definitions: 2 } },
  { clients: 2, budget: { stop: 1, exit: 1 }, mode: { definitions: 2 } },
  { clients: 2, budget: { ipcrm: 1 }, mode: { definitions: 2 } },
  { clients: 3, budget: {}, mode: { inProcess: true, standby: true, definitions: 2 } },
  { clients: 2, budget: { kill: 1 }, mode: { inProcess: true, standby: true, definitions: 2 } }
]

exhaustive("clients of different definitions, exhaustive model check", " (2 definitions)", definitionConfigurations)

const definitionMutants: ReadonlyArray<Mutant> = [
  {
    name: "a client joins a generation of another definition",
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "Health" && result._tag === "Mismatch" ? { _tag: "Register", gen: state.gen } : Protocol.client(state, result)
    },
    finds: /runs another definition/
  },
  {
    name: "a client replaces a generation of another definition that clients hold",
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "Health" && result._tag === "Mismatch"
          ? { _tag: "Retire", target: { _tag: "Gen", gen: state.gen } }
          : Protocol.client(state, result)
    },
    finds: /retired g\d+ of another definition, held/
  },
  {
    name: "a mismatch abandons the generation (as a failed recovery does)",
    budget: {},
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "Health" && result._tag === "Mismatch"
          ? { _tag: "Abandon", error: result.error, gen: state.gen }
          : Protocol.client(state, result)
    },
    finds: /abandoned g\d+ of another definition, held/
  },
  {
    name: "someone else's start of another definition is waited for and joined",
    budget: { kill: 1 },
    machines: {
      ...protocol,
      client: (state, result) =>
        state._tag === "AwaitReady" && !state.own && result._tag === "NotReady" && result.error === "DefinitionMismatch"
          ? { _tag: "MarkReady", gen: state.gen }
          : Protocol.client(state, result)
    },
    finds: /runs another definition/
  }
]

describe("the model checker catches clients sharing across definitions", () => {
  it.each(definitionMutants)("$name", (m) => expectCaught({ ...m, clients: 2, mode: { definitions: 2 } }), 120_000)
})
