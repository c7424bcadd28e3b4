/**
 * The large model-check runs (`npm run model-check` in this package): three clients with each
 * fault and with faults combined, fingerprinted states. Prints a Markdown table of what was
 * explored; exits non-zero on the first violation, with the trace that leads to it.
 */
import { explore, ModelViolation } from "./explore.ts"
import type { Budget, Mode } from "./world.ts"

const none: Budget = { kill: 0, stop: 0, ipcrm: 0, exit: 0, term: 0, refuse: 0 }
const runs: ReadonlyArray<Partial<Budget> & { readonly mode?: Mode }> = [
  {},
  { kill: 1 },
  { stop: 1 },
  { exit: 1 },
  { term: 1 },
  { refuse: 1 },
  { ipcrm: 1 },
  { kill: 1, stop: 1 },
  { kill: 1, exit: 1 },
  { kill: 2 },
  { stop: 1, exit: 1, term: 1 },
  { kill: 1, ipcrm: 1 },
  // In-process supervision (the service outlives its supervisor) with standbys.
  { mode: { inProcess: true, standby: true } },
  { kill: 1, mode: { inProcess: true, standby: true } },
  { kill: 1, refuse: 1, mode: { inProcess: true, standby: true } },
  { stop: 1, exit: 1, term: 1, mode: { inProcess: true, standby: true } },
  // Clients of two definitions (fingerprints: c0 and c2 alike, c1 another).
  { mode: { definitions: 2 } },
  { kill: 1, mode: { definitions: 2 } },
  { stop: 1, mode: { definitions: 2 } },
  { exit: 1, mode: { definitions: 2 } },
  { term: 1, mode: { definitions: 2 } },
  { refuse: 1, mode: { definitions: 2 } },
  { mode: { inProcess: true, standby: true, definitions: 2 } },
  { kill: 1, mode: { inProcess: true, standby: true, definitions: 2 } }
]
const only = process.argv[2] === undefined ? undefined : Number(process.argv[2])
console.log("| clients | faults (at most, each at any step) | states | transitions | final states | depth | time |")
console.log("|---|---|---|---|---|---|---|")
let states = 0
const started = Date.now()
for (const [i, budget] of runs.entries()) {
  if (only !== undefined && i !== only) continue
  const { mode, ...faultBudget } = budget
  const modes = [
    ...(mode?.inProcess === true ? ["in-process, standbys"] : []),
    ...(mode?.definitions === undefined ? [] : [`${mode.definitions} definitions`])
  ]
  const faults = (Object.entries(faultBudget).map(([k, v]) => `${v} ${k}`).join(", ") || "none") +
    (modes.length === 0 ? "" : ` (${modes.join("; ")})`)
  try {
    const r = explore({ clients: 3, budget: { ...none, ...faultBudget }, mode }, { compact: true })
    states += r.states
    console.log(
      `| 3 | ${faults} | ${r.states.toLocaleString("en")} | ${r.transitions.toLocaleString("en")} | ${r.finals.toLocaleString("en")} | ${r.maxDepth} | ${(r.millis / 1000).toFixed(1)} s |`
    )
  } catch (e) {
    console.log(`| 3 | ${faults} | VIOLATION | | | | |`)
    console.error(e instanceof ModelViolation ? e.message : e)
    process.exit(1)
  }
}
console.log(`\n${states.toLocaleString("en")} states in ${((Date.now() - started) / 1000).toFixed(0)} s, no violation.`)
