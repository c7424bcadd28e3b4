/**
 * The hint file `<runtime dir>/<name>.json`: `{ version: 1, name, info }`, mode 0600, written
 * to a temporary file and renamed into place (readers see the old or the new hint, never half
 * of one). Only ever a hint: callers verify the pid and start time, and health-check.
 *
 * @internal
 */
import { Effect, Schema } from "effect"
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"
import { ServiceInfo } from "../ServiceInfo.ts"
import { CorruptHint, IpcUnavailable } from "../SharedServiceError.ts"
import { ensureRuntimeDir, runtimeDirPath } from "./paths.ts"

const HintFile = Schema.Struct({
  version: Schema.Literal(1),
  name: Schema.String,
  info: ServiceInfo
})
const decode = Schema.decodeUnknownSync(HintFile)
const encode = Schema.encodeSync(HintFile)

export const hintPath = (name: string, dir: string = runtimeDirPath()): string => join(dir, `${name}.json`)

interface Cached {
  readonly ino: number
  readonly mtimeMs: number
  readonly size: number
  readonly info: ServiceInfo
}
const cache = new Map<string, Cached>()

const uid = (): number => (typeof process.getuid === "function" ? process.getuid() : 0)

/** Synchronous read: `undefined` when there is no hint, `CorruptHint` when it cannot be used. */
export const readUnsafe = (name: string, dir?: string): ServiceInfo | undefined | CorruptHint => {
  const path = hintPath(name, dir)
  let st
  try {
    st = lstatSync(path)
  } catch {
    cache.delete(path)
    return undefined
  }
  const corrupt = (reason: string) => new CorruptHint({ service: name, path, reason })
  if (!st.isFile()) return corrupt("not a regular file")
  if (st.uid !== uid()) return corrupt(`owned by uid ${st.uid}, not ${uid()}`)
  if ((st.mode & 0o077) !== 0) return corrupt(`mode ${(st.mode & 0o777).toString(8)} is not 600`)
  const hit = cache.get(path)
  if (hit !== undefined && hit.ino === st.ino && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.info
  try {
    const parsed = decode(JSON.parse(readFileSync(path, "utf8")))
    if (parsed.name !== name) return corrupt(`it names "${parsed.name}"`)
    cache.set(path, { ino: st.ino, mtimeMs: st.mtimeMs, size: st.size, info: parsed.info })
    return parsed.info
  } catch (e) {
    return corrupt(e instanceof Error ? e.message.split("\n")[0]! : String(e))
  }
}

export const read = (name: string, dir?: string): Effect.Effect<ServiceInfo | undefined, CorruptHint> =>
  Effect.suspend(() => {
    const r = readUnsafe(name, dir)
    return r instanceof CorruptHint ? Effect.fail(r) : Effect.succeed(r)
  })

export const write = (name: string, info: ServiceInfo): Effect.Effect<void, IpcUnavailable> =>
  Effect.suspend(() => {
    const dir = ensureRuntimeDir()
    const fail = (syscall: string, e: unknown) =>
      Effect.fail(new IpcUnavailable({ service: name, syscall, errno: 0, code: e instanceof Error ? e.message : String(e) }))
    if (dir instanceof Error) return fail("mkdir(runtime dir)", dir)
    const path = hintPath(name, dir)
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
    try {
      const fd = openSync(tmp, "wx", 0o600)
      try {
        writeSync(fd, JSON.stringify(encode({ version: 1, name, info })) + "\n")
      } finally {
        closeSync(fd)
      }
      renameSync(tmp, path)
      return Effect.void
    } catch (e) {
      rmSync(tmp, { force: true })
      return fail("write(hint)", e)
    }
  })

/** Removes the hint, only if it still describes `instanceId` (when given) or is corrupt. */
export const remove = (name: string, instanceId?: string): Effect.Effect<void> =>
  Effect.sync(() => {
    const current = readUnsafe(name)
    if (current === undefined) return
    if (instanceId !== undefined && !(current instanceof CorruptHint) && current.instanceId !== instanceId) return
    rmSync(hintPath(name), { force: true })
  })

/** Names with a hint file in the runtime directory. */
export const list = (dir: string = runtimeDirPath()): Effect.Effect<ReadonlyArray<string>> =>
  Effect.sync(() => {
    try {
      return readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort()
    } catch {
      return []
    }
  })
