/**
 * The seeded random number generator of the randomized tests: a failing seed
 * replays the same run.
 */

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
export const mulberry32 = (seed: number) => () => {
  seed = (seed + 0x6D2B79F5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
