/**
 * Where `quiesce run`'s own options end, as `env`, `timeout` and `sudo` decide it: at the first
 * word that is not an option (or an option's value), or at `--`. Everything after is the
 * command, passed on untouched, `-p 7 -n hi` included.
 *
 * `effect/cli` takes flags anywhere on the line and ends them only at `--`, so `delimit` makes
 * the end explicit before it parses: it inserts `--` where the options end, and rewrites each
 * option that takes a value into its `--flag=value` form, so that a value starting with `-`
 * (`--start-timeout -1s`) reaches the flag's own validation instead of being read as more flags.
 * Which flags take a value comes from their `effect/cli` definitions, not from a second list.
 */
import type * as Param from "effect/cli/Param"

/** A negative number is a word, not an option (as `effect/cli`'s lexer reads it). */
const negativeNumber = /^-(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/

const isOption = (word: string): boolean => word.startsWith("-") && word !== "-" && !negativeNumber.test(word)

type Node =
  | Param.Single<Param.ParamKind, unknown>
  | Param.Map<Param.ParamKind, unknown, unknown>
  | Param.Transform<Param.ParamKind, unknown, unknown>
  | Param.Optional<Param.ParamKind, unknown>
  | Param.Variadic<Param.ParamKind, unknown>

/** The leaves of a flag definition (under its `map`, `filter`, `optional`, …). */
const singles = (param: Param.Any): ReadonlyArray<Param.Single<Param.ParamKind, unknown>> => {
  const node = param as Node
  return node._tag === "Single" ? [node] : singles(node.param)
}

/** The names and one-letter aliases of the flags among `flags` that take a value. */
export const valueFlags = (flags: ReadonlyArray<Param.AnyFlag>): ReadonlySet<string> =>
  new Set(
    flags.flatMap(singles)
      .filter((single) => single.primitiveType._tag !== "Boolean" && single.optionalValue === undefined)
      .flatMap((single) => [single.name, ...single.aliases])
  )

/**
 * `argv` with `--` inserted after `subcommand`'s options, when `argv` invokes `subcommand`
 * (its first word that is not an option; the root command has boolean flags only). Other
 * invocations are returned as they are.
 */
export const delimit = (
  argv: ReadonlyArray<string>,
  subcommand: string,
  takesValue: ReadonlySet<string>
): ReadonlyArray<string> => {
  const at = argv.findIndex((word) => word === "--" || !isOption(word))
  if (at === -1 || argv[at] !== subcommand) return argv
  const out = argv.slice(0, at + 1)
  let i = at + 1
  while (i < argv.length) {
    const word = argv[i]!
    if (word === "--") return [...out, ...argv.slice(i)]
    if (!isOption(word)) break
    const body = word.startsWith("--") ? word.slice(2) : word.slice(1)
    // `--flag=value` and `-f=value` carry their value; in a cluster of one-letter flags (`-xf`)
    // only the last one can take the next word.
    const name = word.startsWith("--") ? body : body.slice(-1)
    if (!body.includes("=") && takesValue.has(name) && i + 1 < argv.length) {
      // The next word is the value whatever it looks like, as getopt reads a required argument.
      out.push(`${word}=${argv[i + 1]!}`)
      i += 2
    } else {
      out.push(word)
      i += 1
    }
  }
  return [...out, "--", ...argv.slice(i)]
}
