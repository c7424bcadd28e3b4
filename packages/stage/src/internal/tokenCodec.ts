/**
 * Canonical encoding of tokens that cross worker threads: canonical JSON
 * (object keys sorted, `-0` written as `0`), so that two tokens are equal under
 * Effect's structural `Equal` exactly when their encodings are equal.
 * Supported: strings, finite numbers, booleans, `null`, and arrays and plain
 * objects of those. Anything else (undefined, bigint, symbols, functions,
 * NaN/±Infinity, class instances, cycles) is rejected.
 */

/** @internal */
export type Encoded = { readonly bytes: Uint8Array; readonly hash: number } | { readonly error: string }

/** UTF-8 without `TextEncoder`, whose per-call cost dominates for short tokens. */
const utf8 = (text: string): Uint8Array => {
  let length = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) length += 1
    else if (c < 0x800) length += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      length += 4
      i++
    } else length += 3
  }
  const bytes = new Uint8Array(length)
  let at = 0
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (c < 0x80) {
      bytes[at++] = c
    } else if (c < 0x800) {
      bytes[at++] = 0xc0 | (c >> 6)
      bytes[at++] = 0x80 | (c & 0x3f)
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00)
      bytes[at++] = 0xf0 | (c >> 18)
      bytes[at++] = 0x80 | ((c >> 12) & 0x3f)
      bytes[at++] = 0x80 | ((c >> 6) & 0x3f)
      bytes[at++] = 0x80 | (c & 0x3f)
    } else {
      bytes[at++] = 0xe0 | (c >> 12)
      bytes[at++] = 0x80 | ((c >> 6) & 0x3f)
      bytes[at++] = 0x80 | (c & 0x3f)
    }
  }
  return bytes
}

const canonical = (value: unknown, depth: number): string => {
  if (depth > 32) throw new Error("nested deeper than 32 levels")
  switch (typeof value) {
    case "string":
      return JSON.stringify(value)
    case "number":
      if (!Number.isFinite(value)) throw new Error(`${value} is not a finite number`)
      return Object.is(value, -0) ? "0" : String(value)
    case "boolean":
      return value ? "true" : "false"
    case "object": {
      if (value === null) return "null"
      if (Array.isArray(value)) {
        // By index, not `map`: `map` skips holes, so `[, 1]` would encode as "[,1]" instead of being refused as `[undefined, 1]` is.
        let out = "["
        for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonical(value[i], depth + 1)
        return out + "]"
      }
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) {
        throw new Error(`instances of ${(value as object).constructor?.name ?? "a class"} have no canonical encoding`)
      }
      const keys = Object.keys(value).sort()
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k], depth + 1)}`).join(",")}}`
    }
    default:
      throw new Error(`a ${typeof value} has no canonical encoding`)
  }
}

/** FNV-1a over the bytes. */
const hashBytes = (bytes: Uint8Array): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!
    h = Math.imul(h, 0x01000193)
  }
  return h | 0
}

/** @internal */
export const encodeToken = (token: unknown, maxBytes: number): Encoded => {
  let text: string
  try {
    text = canonical(token, 0)
  } catch (error) {
    return { error: (error as Error).message }
  }
  const bytes = utf8(text)
  if (bytes.length > maxBytes) return { error: `its encoding takes ${bytes.length} bytes, more than maxTokenBytes (${maxBytes})` }
  return { bytes, hash: hashBytes(bytes) }
}

/**
 * `encodeToken` with a bounded cache for primitive tokens (the common case:
 * a head notifying the same tokens over and over).
 *
 * @internal
 */
export class TokenEncoder {
  private readonly cache = new Map<unknown, Encoded>()
  private readonly maxBytes: number
  constructor(maxBytes: number) {
    this.maxBytes = maxBytes
  }
  encode(token: unknown): Encoded {
    if (typeof token !== "string" && typeof token !== "number") return encodeToken(token, this.maxBytes)
    let encoded = this.cache.get(token)
    if (encoded === undefined) {
      if (this.cache.size >= 4096) this.cache.clear()
      encoded = encodeToken(token, this.maxBytes)
      this.cache.set(token, encoded)
    }
    return encoded
  }
}
