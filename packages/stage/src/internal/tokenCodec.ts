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

const encoder = new TextEncoder()

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
      if (Array.isArray(value)) return `[${value.map((v) => canonical(v, depth + 1)).join(",")}]`
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
export const hashBytes = (bytes: Uint8Array): number => {
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
  const bytes = encoder.encode(text)
  if (bytes.length > maxBytes) return { error: `its encoding takes ${bytes.length} bytes, more than maxTokenBytes (${maxBytes})` }
  return { bytes, hash: hashBytes(bytes) }
}
