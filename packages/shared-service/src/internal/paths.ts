/**
 * The per-user runtime directory: `$XDG_RUNTIME_DIR/quiesce` when that is set and usable,
 * otherwise `<tmpdir>/quiesce-<uid>`, created 0700 and refused unless owned by this user with
 * no group/other access (a hostile pre-created directory is not used).
 *
 * @internal
 */
import { chmodSync, lstatSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const uid = (): number => (typeof process.getuid === "function" ? process.getuid() : 0)

export const runtimeDirPath = (env: NodeJS.ProcessEnv = process.env): string => {
  const override = env["QUIESCE_RUNTIME_DIR"]
  if (override !== undefined && override !== "") return override
  const xdg = env["XDG_RUNTIME_DIR"]
  if (xdg !== undefined && xdg !== "") return join(xdg, "quiesce")
  return join(tmpdir(), `quiesce-${uid()}`)
}

/** Ensures the directory exists with mode 0700 and belongs to us; returns its path or an error text. */
export const ensureRuntimeDir = (dir: string = runtimeDirPath()): string | Error => {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const st = lstatSync(dir)
    if (!st.isDirectory()) return new Error(`${dir} is not a directory`)
    if (st.uid !== uid()) return new Error(`${dir} is owned by uid ${st.uid}, not ${uid()}`)
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700)
    return dir
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e))
  }
}
