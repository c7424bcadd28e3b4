/**
 * A small A/B harness: the case and its baseline run interleaved in one process, after a warm-up,
 * so that the ratio between them is meaningful on a noisy shared machine even when absolute
 * times are not.
 */
import { createServer, type AddressInfo } from "node:net"
import { performance } from "node:perf_hooks"

export interface Subject {
  readonly name: string
  /** Runs one batch of `iterations` operations. */
  readonly run: (iterations: number) => Promise<void> | void
}

export interface Comparison {
  readonly title: string
  readonly subject: Subject
  readonly baseline: Subject
  /** Operations per batch. */
  readonly iterations: number
  /** Interleaved rounds (each runs one batch of each side). */
  readonly rounds?: number
  readonly warmupRounds?: number
  /** The goal, as the largest acceptable subject/baseline time ratio. */
  readonly goal?: { readonly maxRatio: number } | { readonly minSpeedup: number }
}

export interface ComparisonResult {
  readonly title: string
  readonly subjectNsPerOp: number
  readonly baselineNsPerOp: number
  readonly ratio: number
  readonly met: boolean | undefined
}

const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const timeBatch = async (subject: Subject, iterations: number): Promise<number> => {
  const start = performance.now()
  await subject.run(iterations)
  return ((performance.now() - start) * 1e6) / iterations
}

export const compare = async (c: Comparison): Promise<ComparisonResult> => {
  const rounds = c.rounds ?? 15
  const warmup = c.warmupRounds ?? 3
  for (let i = 0; i < warmup; i++) {
    await c.subject.run(c.iterations)
    await c.baseline.run(c.iterations)
  }
  const a: Array<number> = []
  const b: Array<number> = []
  for (let i = 0; i < rounds; i++) {
    // Alternate which side goes first so neither always runs on a warmer (or colder) heap.
    if (i % 2 === 0) {
      a.push(await timeBatch(c.subject, c.iterations))
      b.push(await timeBatch(c.baseline, c.iterations))
    } else {
      b.push(await timeBatch(c.baseline, c.iterations))
      a.push(await timeBatch(c.subject, c.iterations))
    }
  }
  const subjectNsPerOp = median(a)
  const baselineNsPerOp = median(b)
  const ratio = subjectNsPerOp / baselineNsPerOp
  const met = c.goal === undefined
    ? undefined
    : "maxRatio" in c.goal
    ? ratio <= c.goal.maxRatio
    : 1 / ratio >= c.goal.minSpeedup
  const result = { title: c.title, subjectNsPerOp, baselineNsPerOp, ratio, met }
  report(c, result)
  return result
}

const fmt = (ns: number): string => ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`

const report = (c: Comparison, r: ComparisonResult): void => {
  const goal = c.goal === undefined
    ? "report only"
    : "maxRatio" in c.goal
    ? `goal ≤ ${c.goal.maxRatio}×`
    : `goal ≥ ${c.goal.minSpeedup}× faster`
  const verdict = r.met === undefined ? "" : r.met ? "  ✓" : "  ✗ MISSED"
  console.log(
    `${c.title}\n  ${c.subject.name}: ${fmt(r.subjectNsPerOp)}/op   ${c.baseline.name}: ${fmt(r.baselineNsPerOp)}/op` +
      `\n  ratio ${r.ratio.toFixed(3)}× (${(1 / r.ratio).toFixed(2)}× speed)  ${goal}${verdict}`
  )
}

/** Percentiles of a sample of latencies in nanoseconds. */
export const percentiles = (samples: ReadonlyArray<number>): { p50: number; p90: number; p99: number } => {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) }
}

export { fmt as formatNs }

/** A TCP port free on 127.0.0.1 at the time of the call. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
