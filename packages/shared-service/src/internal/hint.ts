/**
 * The hint file `<runtime dir>/<name>.json`: which generation runs — its supervisor (pid and
 * start time, verified against the owner lock's stamp), its service's `ServiceInfo`, whether it
 * was seen ready. Mode 0600, written atomically (readers see the old or the new hint, never half
 * of one), and only ever written by a holder of the startup lock. Only ever a hint: readers
 * verify the supervisor against the kernel (it must hold the owner lock) and the service with
 * its pid and start time and the health check.
 *
 * @internal
 */
import { Effect, Schema } from "effect"
import { readdirSync } from "node:fs"
import { ServiceInfo } from "../ServiceInfo.ts"
import { CorruptHint } from "../SharedServiceError.ts"
import type { RuntimeDirectoryUnusable, SystemError } from "../SharedServiceError.ts"
import { filePath, readSecureCached, unlinkIf, writeAtomic } from "./paths.ts"

const Pid = Schema.Struct({ pid: Schema.Int, startTime: Schema.Number })
const Supervisor = Schema.Struct({
  pid: Schema.Int,
  startTime: Schema.Number,
  /** A fiber of a client process (`reaper: "in-process"`), not a supervisor process of ours. */
  inProcess: Schema.optional(Schema.Boolean)
})

export class Hint extends Schema.Class<Hint>("@quiesce/shared-service/Hint")({
  version: Schema.Literal(2),
  name: Schema.String,
  /** Unique per generation (the service's `instanceId`). */
  generation: Schema.String,
  /**
   * `abandoned`: its start failed; the client that found out (holding the lock) asks its
   * supervisor to stop and clean up — a request the supervisor reads between waits, so it is
   * never lost, not even while the supervisor is still booting.
   */
  state: Schema.Literals(["starting", "ready", "abandoned"]),
  supervisor: Supervisor,
  /**
   * Set by a client that holds the lock and replaces this generation (it was found unhealthy):
   * the supervisor stops its service and exits. Read between the supervisor's waits, like
   * `abandoned`; a detached supervisor is also sent SIGUSR2 to hear it at once.
   */
  retire: Schema.optional(Schema.Boolean),
  /** The client that started it: a `make` start only it can finish (it runs `start`). */
  starter: Schema.optional(Pid),
  /** Absent while a `make` service's `start` runs. */
  info: Schema.optional(ServiceInfo),
  /**
   * What defines the service (command, directory, environment): a client whose definition has
   * another fingerprint does not share this generation (`DefinitionMismatch`, or a replacement).
   */
  fingerprint: Schema.optional(Schema.String),
  /** How the supervisor stops the service: this signal (default SIGTERM), SIGKILL after `stopTimeoutMillis`. */
  stopSignal: Schema.optional(Schema.String),
  stopTimeoutMillis: Schema.optional(Schema.Number),
  /** Epoch milliseconds. */
  startedAt: Schema.Number,
  startTimeoutMillis: Schema.Number,
  readyAt: Schema.optional(Schema.Number)
}) {}

const decode = Schema.decodeUnknownSync(Schema.fromJsonString(Hint))
const encode = Schema.encodeSync(Schema.fromJsonString(Hint))

export const hintPath = (dir: string, name: string): string => filePath(dir, name, "json")

/** The hint, `undefined` when there is none, `CorruptHint` when it cannot be used. */
export const read = (dir: string, name: string): Hint | undefined | CorruptHint => {
  const path = hintPath(dir, name)
  const got = readSecureCached(name, path, decoded, (text) => parse(name, path, text))
  if (got === undefined || got instanceof Hint || got instanceof CorruptHint) return got
  return new CorruptHint({ service: name, path, reason: got.reason })
}

/** Decoded hints by path, reused while the file is unchanged (see `readSecureCached`). */
const decoded = new Map<string, { readonly dev: number; readonly ino: number; readonly size: number; readonly mtimeNs: bigint; readonly value: Hint | CorruptHint }>()

const parse = (name: string, path: string, text: string): Hint | CorruptHint => {
  try {
    const hint = decode(text.trim())
    if (hint.name !== name) return new CorruptHint({ service: name, path, reason: `it names "${hint.name}"` })
    return hint
  } catch (e) {
    return new CorruptHint({ service: name, path, reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) })
  }
}

export const write = (dir: string, hint: Hint): RuntimeDirectoryUnusable | undefined =>
  writeAtomic(hint.name, hintPath(dir, hint.name), encode(hint) + "\n")

/** Removes the hint if it describes `generation` (or whatever it says, when not given). */
export const remove = (dir: string, name: string, generation?: string): void => {
  if (generation !== undefined) {
    const current = read(dir, name)
    if (current instanceof Hint && current.generation !== generation) return
  }
  unlinkIf(hintPath(dir, name))
}

/** Names that have a hint or an owner file in `dir` (what `list` shows, live or stale). */
export const names = (dir: string): ReadonlyArray<string> => {
  let entries: Array<string>
  try {
    entries = readdirSync(dir)
  } catch {
    return []
  }
  const out = new Set<string>()
  for (const f of entries) {
    const m = /^(.+)\.(json|owner)$/.exec(f)
    if (m !== null) out.add(m[1]!)
  }
  return [...out].sort()
}

/** The hint store of a name in a runtime directory (what `Counter.hints` is for the kernel counters). */
export const fileHints = (dir: string, name: string): Store => ({
  read: Effect.sync(() => read(dir, name)),
  write: (hint) =>
    Effect.suspend(() => {
      const error = write(dir, hint)
      return error === undefined ? Effect.void : Effect.fail(error)
    }),
  remove: (generation) => Effect.sync(() => remove(dir, name, generation)),
  where: hintPath(dir, name)
})

/** Where a name's generation record lives: a file here, a table row for a database counter. */
export interface Store {
  readonly read: Effect.Effect<Hint | undefined | CorruptHint>
  readonly write: (hint: Hint) => Effect.Effect<void, SystemError>
  /** Removes the record if it describes `generation` (or whatever it says, when not given). */
  readonly remove: (generation?: string) => Effect.Effect<void>
  /** Where it is, for people (`inspect`). */
  readonly where: string
}
