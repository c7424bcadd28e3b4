/**
 * Token → value index with Effect's structural `Equal`/`Hash`. Primitive
 * tokens (the common case: strings, numbers) go straight to a native `Map`;
 * other tokens are bucketed by `Hash.hash` and compared with `Equal.equals`.
 */
import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"

const isPrimitive = (token: unknown): boolean =>
  token === null || (typeof token !== "object" && typeof token !== "function")

/** @internal */
export class TokenIndex<V> {
  private readonly primitives = new Map<unknown, V>()
  private readonly buckets = new Map<number, Array<readonly [unknown, V]>>()
  size = 0

  get(token: unknown): V | undefined {
    if (isPrimitive(token)) return this.primitives.get(token)
    const bucket = this.buckets.get(Hash.hash(token))
    if (bucket === undefined) return undefined
    for (let i = 0; i < bucket.length; i++) {
      if (Equal.equals(bucket[i]![0], token)) return bucket[i]![1]
    }
    return undefined
  }

  /** Adds an entry; the caller has checked that the token is absent. */
  set(token: unknown, value: V): void {
    this.size++
    if (isPrimitive(token)) {
      this.primitives.set(token, value)
      return
    }
    const hash = Hash.hash(token)
    const bucket = this.buckets.get(hash)
    if (bucket === undefined) this.buckets.set(hash, [[token, value]])
    else bucket.push([token, value])
  }

  /** Removes the entry for `token` only if it is still `value`: a later holder of an equal token is left alone. */
  deleteIfSame(token: unknown, value: V): boolean {
    if (isPrimitive(token)) {
      if (this.primitives.get(token) !== value) return false
      this.primitives.delete(token)
      this.size--
      return true
    }
    const hash = Hash.hash(token)
    const bucket = this.buckets.get(hash)
    if (bucket === undefined) return false
    const i = bucket.findIndex((entry) => entry[1] === value)
    if (i < 0) return false
    bucket.splice(i, 1)
    if (bucket.length === 0) this.buckets.delete(hash)
    this.size--
    return true
  }
}
