import { Effect } from "effect"
import { InvalidName } from "../SharedServiceError.ts"

const valid = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/

/** The reason `name` is not a valid shared service name, or `undefined` when it is. */
export const invalidReason = (name: string): string | undefined => {
  if (typeof name !== "string") return "not a string"
  if (name.length === 0) return "empty"
  if (name.length > 64) return "longer than 64 characters"
  if (!valid.test(name)) return "only letters, digits, '.', '_' and '-' are allowed, and it must not start with '.' or '-'"
  return undefined
}

export const validate = (name: string): Effect.Effect<string, InvalidName> => {
  const reason = invalidReason(name)
  return reason === undefined ? Effect.succeed(name) : Effect.fail(new InvalidName({ service: String(name), reason }))
}

/**
 * 32-bit FNV-1a of `quiesce:<uid>:<runtime dir>:<name>`, never 0 (IPC_PRIVATE). The runtime
 * directory is part of the key: its files (hint, owner lock) and the set are one namespace.
 */
export const ipcKey = (uid: number, dir: string, name: string): number => {
  const s = `quiesce:${uid}:${dir}:${name}`
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h | 0) === 0 ? 1 : h | 0
}
