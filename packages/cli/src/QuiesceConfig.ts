/**
 * Services defined once, used by name: `quiesce.config.json` (or a `"quiesce"` key in
 * `package.json`), found upward from the working directory as npm finds `package.json`.
 *
 * ```json
 * {
 *   "services": {
 *     "db": {
 *       "command": "postgres -D ./data -p 5432 -k .",
 *       "ready": ["cmd:pg_isready -h 127.0.0.1 -p 5432"],
 *       "grace": "30s",
 *       "stopSignal": "SIGINT"
 *     },
 *     "web": { "command": "npm run dev", "port": 3000, "ready": "http://localhost:3000/health" }
 *   }
 * }
 * ```
 *
 * Then `quiesce run db web -- npm test`. A definition is validated with `Schema` when it is
 * loaded, and a mistake is reported in one line naming the file, the path in it and the problem
 * (an unknown key gets the nearest known one as a suggestion). Paths (`cwd`) are relative to the
 * file's directory, so every checkout of a project defines its own service: its fingerprint
 * (command, directory, environment) differs, and a `quiesce run` never adopts another checkout's.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { createHash } from "node:crypto"
import { closeSync, constants as fs, fstatSync, openSync, readFileSync } from "node:fs"
import { constants } from "node:os"
import { dirname, join, resolve } from "node:path"
import { SharedService } from "@quiesce/shared-service"
import { ConfigError } from "./QuiesceError.ts"
import * as Readiness from "./Readiness.ts"

/** The names of the files searched for, in each directory, in this order. */
const fileNames = ["quiesce.config.json", "package.json"] as const

// ---------------------------------------------------------------------------------------------
// The file's schema
// ---------------------------------------------------------------------------------------------

/** A string that `parse` accepts; its failure says what it expected. */
const fromParser = <A>(parse: (text: string) => Result.Result<A, string>) =>
  Schema.String.check(Schema.makeFilter((text) => {
    const parsed = parse(text)
    return Result.isSuccess(parsed) ? undefined : `Expected ${parsed.failure}, got ${JSON.stringify(text)}`
  }))

const Duration = Schema.Union([
  fromParser(Readiness.parseDuration),
  Schema.Number.check(Schema.isFinite(), Schema.isGreaterThanOrEqualTo(0))
]).annotate({ description: "a duration: \"500ms\", \"5s\", \"2m\", or milliseconds" })

const Port = Schema.Union([
  Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 65535 })),
  Schema.Literal("auto")
])

const Target = fromParser(Readiness.parse)

const signals = new Set(Object.keys(constants.signals))

const Signal = Schema.String.check(Schema.makeFilter((name) =>
  signals.has(name) ? undefined : `Expected a signal name such as SIGTERM or SIGINT, got ${JSON.stringify(name)}`
))

const ServiceSchema = Schema.Struct({
  description: Schema.optional(Schema.String),
  command: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  start: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  stop: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  host: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  cwd: Schema.optional(Schema.String),
  env: Schema.optional(Schema.Record(
    Schema.String.check(Schema.makeFilter((key) => /^[^=\0]+$/.test(key) ? undefined : "Expected a variable name")),
    Schema.String.check(Schema.makeFilter((value) => value.includes("\0") ? "Expected a value without NUL characters" : undefined))
  )),
  port: Schema.optional(Port),
  ready: Schema.optional(Schema.Union([Target, Schema.Array(Target)])),
  expect: Schema.optional(fromParser(Readiness.parseExpect)),
  insecure: Schema.optional(Schema.Boolean),
  readyTimeout: Schema.optional(Duration),
  grace: Schema.optional(Duration),
  startTimeout: Schema.optional(Duration),
  stopSignal: Schema.optional(Signal),
  stopTimeout: Schema.optional(Duration),
  output: Schema.optional(Schema.Literals(["file", "prefix", "inherit"]))
})

const FileSchema = Schema.Struct({
  $schema: Schema.optional(Schema.String),
  backend: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  services: Schema.Record(Schema.String, ServiceSchema)
})

type ServiceInput = typeof ServiceSchema.Type

// ---------------------------------------------------------------------------------------------
// What a definition resolves to
// ---------------------------------------------------------------------------------------------

/**
 * How the output of a service started by `quiesce run` is shown: only in its log (`file`, the
 * default; `quiesce logs NAME`), also on the run's terminal (`inherit`), or there with each
 * line prefixed by the service's name (`prefix`, as `concurrently` does).
 *
 * @example
 * ```ts
 * import type { QuiesceConfig } from "@quiesce/cli"
 *
 * const output: QuiesceConfig.Output = "prefix"
 * console.log(output) // prefix
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Output = "file" | "prefix" | "inherit"

/**
 * A service definition with every default applied and every path made absolute: what `quiesce
 * run` starts (or joins) for one name, from the config file or from `--name`/`--service`.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * const db = QuiesceConfig.define({ name: "db", command: "postgres -D ./data", cwd: "/srv/app" })
 * console.log(db.graceMillis, db.stopSignal, db.ready) // 5000 SIGTERM []
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Definition {
  readonly name: string
  /**
   * A `/bin/sh -c` command line: the service itself, run in the foreground (its process is the
   * service); for a `remote` service, the command that starts it elsewhere and exits.
   */
  readonly command: string
  /** A service started and stopped by commands, shared through a database (`backend`) instead of the kernel. */
  readonly remote?: Remote | undefined
  /** Absolute. */
  readonly cwd: string
  /** Added to the environment of the service (and of its `cmd:` probes). */
  readonly env: Readonly<Record<string, string>>
  /** `"auto"`: a free port that quiesce picks at the start. */
  readonly port: number | "auto" | undefined
  /** All must pass; none: the port's, else "alive for a moment". */
  readonly ready: ReadonlyArray<Readiness.Target>
  /** Bound on each probe attempt. */
  readonly readyTimeoutMillis: number
  readonly graceMillis: number
  readonly startTimeoutMillis: number
  readonly stopSignal: string
  readonly stopTimeoutMillis: number
  readonly output: Output
}

/**
 * What a service shared across machines has instead of a local process: where it runs, how it is
 * stopped, and the database whose sessions hold the references (`RefCounter.postgres`).
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * const config = QuiesceConfig.decode(JSON.stringify({
 *   backend: "postgres://ci@db.internal/quiesce",
 *   services: {
 *     preview: {
 *       start: "docker -H ssh://ci@shared run -d --rm -p 8080:80 nginx",
 *       stop: "docker -H ssh://ci@shared rm -f $QUIESCE_START_OUTPUT",
 *       host: "shared",
 *       port: 8080
 *     }
 *   }
 * }), "/srv/app/quiesce.config.json")
 * console.log(config.services.get("preview")?.remote?.host) // shared
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Remote {
  /** A libpq URL. */
  readonly backend: string
  /** Run with `QUIESCE_START_OUTPUT` (what `start` printed, e.g. a container id), bounded by the stop timeout; none: nothing to stop. */
  readonly stop: string | undefined
  /** Where clients reach it (`QUIESCE_<NAME>_HOST`); default `localhost`. */
  readonly host: string
}

/**
 * The defaults of a definition, as `quiesce run --help` documents them.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * console.log(QuiesceConfig.defaults.graceMillis, QuiesceConfig.defaults.startTimeoutMillis) // 5000 30000
 * ```
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  readyTimeoutMillis: 1_000,
  graceMillis: 5_000,
  startTimeoutMillis: 30_000,
  stopSignal: "SIGTERM",
  stopTimeoutMillis: 10_000,
  output: "file"
} as const

/**
 * A definition from its name, command and directory, the rest defaulted.
 *
 * @example
 * ```ts
 * import { QuiesceConfig, Readiness } from "@quiesce/cli"
 *
 * const web = QuiesceConfig.define({
 *   name: "web",
 *   command: "npm run dev",
 *   cwd: "/srv/app",
 *   port: 3000,
 *   ready: [Readiness.http("http://localhost:3000/health")]
 * })
 * console.log(web.port, web.startTimeoutMillis) // 3000 30000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const define = (
  definition: Partial<Definition> & Pick<Definition, "name" | "command" | "cwd">
): Definition => ({
  env: {},
  port: undefined,
  ready: [],
  ...defaults,
  ...definition
})

const millis = (input: string | number | undefined, fallback: number): number =>
  input === undefined ? fallback : typeof input === "number" ? input : Result.getOrThrow(Readiness.parseDuration(input))

/**
 * `targets` with the expected statuses and certificate policy given to their http(s) ones
 * (`--expect` and `--insecure`, or a definition's `expect` and `insecure`).
 *
 * @example
 * ```ts
 * import { QuiesceConfig, Readiness } from "@quiesce/cli"
 * import { Result } from "effect"
 *
 * const expect = Result.getOrThrow(Readiness.parseExpect("200,204"))
 * const [health] = QuiesceConfig.withHttpOptions([Readiness.http("https://localhost:8443/health")], { expect, insecure: true })
 * console.log(health?._tag === "HttpGet" && Readiness.formatExpect(health.expect), health?._tag === "HttpGet" && health.insecure)
 * // 200,204 true
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const withHttpOptions = (
  targets: ReadonlyArray<Readiness.Target>,
  options: { readonly expect?: ReadonlyArray<Readiness.StatusRange> | undefined; readonly insecure?: boolean | undefined }
): ReadonlyArray<Readiness.Target> =>
  targets.map((target) =>
    target._tag === "HttpGet"
      ? Readiness.http(target.url, { expect: options.expect ?? target.expect, insecure: options.insecure || target.insecure })
      : target
  )

const targets = (input: ServiceInput): ReadonlyArray<Readiness.Target> =>
  withHttpOptions(
    (input.ready === undefined ? [] : typeof input.ready === "string" ? [input.ready] : input.ready).map((spec) =>
      Result.getOrThrow(Readiness.parse(spec))
    ),
    {
      expect: input.expect === undefined ? undefined : Result.getOrThrow(Readiness.parseExpect(input.expect)),
      insecure: input.insecure
    }
  )

const fromInput = (name: string, input: ServiceInput, dir: string, backend: string | undefined): Definition =>
  define({
    name,
    command: input.command ?? input.start!,
    ...(input.start === undefined ? {} : {
      remote: { backend: backend!, stop: input.stop, host: input.host ?? "localhost" }
    }),
    cwd: resolve(dir, input.cwd ?? "."),
    env: input.env ?? {},
    port: input.port,
    ready: targets(input),
    readyTimeoutMillis: millis(input.readyTimeout, defaults.readyTimeoutMillis),
    graceMillis: millis(input.grace, defaults.graceMillis),
    startTimeoutMillis: millis(input.startTimeout, defaults.startTimeoutMillis),
    stopSignal: input.stopSignal ?? defaults.stopSignal,
    stopTimeoutMillis: millis(input.stopTimeout, defaults.stopTimeoutMillis),
    output: input.output ?? defaults.output
  })

/**
 * What identifies a definition's running instance: its command, directory, environment and
 * fixed port (not its timings, which any client may differ in). Two `quiesce run`s share an
 * instance only when their fingerprints are equal.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * const a = QuiesceConfig.define({ name: "db", command: "postgres -D ./data", cwd: "/home/ann/app" })
 * const b = QuiesceConfig.define({ name: "db", command: "postgres -D ./data", cwd: "/home/ann/app-old" })
 * console.log(QuiesceConfig.fingerprint(a) === QuiesceConfig.fingerprint(b)) // false
 * console.log(QuiesceConfig.fingerprint(a) === QuiesceConfig.fingerprint({ ...a, graceMillis: 60_000 })) // true
 * ```
 *
 * @since 0.1.0
 * @category identity
 */
export const fingerprint = (definition: Definition): string =>
  createHash("sha256").update(identity(definition)).digest("hex").slice(0, 16)

/**
 * The part of a definition its fingerprint covers, as one line of JSON (what a mismatch shows).
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * console.log(QuiesceConfig.identity(QuiesceConfig.define({ name: "db", command: "redis-server", cwd: "/srv" })))
 * // {"command":"redis-server","cwd":"/srv","env":{}}
 * ```
 *
 * @since 0.1.0
 * @category identity
 */
export const identity = (definition: Definition): string =>
  JSON.stringify({
    command: definition.command,
    ...(definition.remote === undefined ? {} : { stop: definition.remote.stop ?? null, host: definition.remote.host }),
    cwd: definition.cwd,
    env: Object.fromEntries(Object.entries(definition.env).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)),
    ...(typeof definition.port === "number" ? { port: definition.port } : {})
  })

// ---------------------------------------------------------------------------------------------
// Finding and reading the file
// ---------------------------------------------------------------------------------------------

/**
 * A loaded config file: where it is and the services it defines.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 *
 * const config: QuiesceConfig.Config = QuiesceConfig.decode(
 *   JSON.stringify({ services: { cache: { command: "redis-server --port 6390", port: 6390 } } }),
 *   "/srv/app/quiesce.config.json"
 * )
 * console.log(config.services.get("cache")?.cwd) // /srv/app
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Config {
  readonly file: string
  /** The database of its `start` services, `${VAR}`s expanded. */
  readonly backend?: string | undefined
  readonly services: ReadonlyMap<string, Definition>
}

/** `${NAME}` replaced by the environment's value (a database URL's password stays out of the file). */
const expand = (text: string, fail: (problem: string) => never): string =>
  text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, variable: string) => {
    const value = process.env[variable]
    return value === undefined ? fail(`\${${variable}} is not set in the environment`) : value
  })

const distance = (a: string, b: string): number => {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1))
      diagonal = above
    }
  }
  return row[b.length]!
}

const keysAt = (path: ReadonlyArray<PropertyKey>): ReadonlyArray<string> =>
  path.length === 1 ? Object.keys(FileSchema.fields) : path.length === 3 && path[0] === "services"
    ? Object.keys(ServiceSchema.fields)
    : []

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) =>
    typeof key === "number" ? `[${key}]` : /^[\w-]+$/.test(String(key)) ? `${i === 0 ? "" : "."}${String(key)}` : `[${JSON.stringify(String(key))}]`
  ).join("")

/** The first problem, in a sentence: an unknown key gets the nearest known one. */
const problemOf = (issue: SchemaIssue.Issue): { readonly path: string; readonly problem: string } => {
  const first = SchemaIssue.makeFormatterStandardSchemaV1()(issue).issues[0]
  const path = (first?.path ?? []).map((segment) => typeof segment === "object" ? segment.key : segment)
  const message = first?.message ?? "invalid"
  if (message === "Expected no excess property" && path.length === 4 && path[2] === "env") {
    // A record's key its filter refused reads as an excess one.
    return { path: formatPath(path), problem: `not a variable name (it must be non-empty, without "=" or NUL)` }
  }
  if (message === "Expected no excess property") {
    const key = String(path.at(-1))
    const known = keysAt(path)
    const nearest = known.map((k) => [k, distance(key.toLowerCase(), k.toLowerCase())] as const)
      .filter(([, d]) => d <= Math.max(2, Math.floor(key.length / 3)))
      .sort((a, b) => a[1] - b[1])[0]
    return {
      path: formatPath(path),
      problem: `unknown key${nearest === undefined ? ` (known: ${known.join(", ")})` : `; did you mean "${nearest[0]}"?`}`
    }
  }
  return { path: formatPath(path), problem: message === "Missing key" ? "missing" : message }
}

/**
 * Decodes a config file's text (`file` names it in errors and anchors relative paths). A
 * `package.json` is read for its `"quiesce"` key. Throws a `ConfigError`; `load` is the Effect.
 *
 * @example
 * ```ts
 * import { QuiesceConfig, QuiesceError } from "@quiesce/cli"
 *
 * try {
 *   QuiesceConfig.decode(`{ "services": { "db": { "comand": "postgres" } } }`, "/srv/app/quiesce.config.json")
 * } catch (error) {
 *   console.log(QuiesceError.render(error as QuiesceError.ConfigError))
 *   // quiesce: /srv/app/quiesce.config.json: services.db.comand: unknown key; did you mean "command"?
 * }
 * ```
 *
 * @since 0.1.0
 * @category parsing
 */
export const decode = (text: string, file: string, options?: { readonly backend?: string | undefined }): Config => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new ConfigError({ file, path: "", problem: `not valid JSON (${(error as Error).message})` })
  }
  const isPackage = file.endsWith("package.json")
  const body = isPackage ? (json as { quiesce?: unknown } | null)?.quiesce : json
  if (isPackage && body === undefined) throw new ConfigError({ file, path: "", problem: `has no "quiesce" key` })
  const decoded = Schema.decodeUnknownResult(FileSchema)(body, { onExcessProperty: "error" })
  if (Result.isFailure(decoded)) {
    const { path, problem } = problemOf(decoded.failure.issue)
    throw new ConfigError({ file, path: isPackage ? `quiesce${path === "" ? "" : `.${path}`}` : path, problem })
  }
  const dir = dirname(file)
  const at = (path: string) => `${isPackage ? "quiesce." : ""}${path}`
  const backend = options?.backend ?? (decoded.success.backend === undefined ? undefined : expand(decoded.success.backend, (problem) => {
    throw new ConfigError({ file, path: at("backend"), problem })
  }))
  for (const [name, input] of Object.entries(decoded.success.services)) {
    const invalid = SharedService.validateName(name)
    if (invalid !== undefined) {
      throw new ConfigError({ file, path: at("services"), problem: `${JSON.stringify(name)} is not a service name: ${invalid}` })
    }
    const where = at(`services.${formatPath([name])}`)
    if ((input.command === undefined) === (input.start === undefined)) {
      throw new ConfigError({
        file,
        path: where,
        problem: input.command === undefined
          ? "needs a command (a local service) or a start command (a service shared through a database)"
          : "has both command and start: command is a local service, start one shared through a database"
      })
    }
    if (input.command !== undefined) {
      const misplaced = (["stop", "host"] as const).find((key) => input[key] !== undefined)
      if (misplaced !== undefined) {
        throw new ConfigError({ file, path: `${where}.${misplaced}`, problem: "only a service with start (shared through a database) has one" })
      }
    } else if (backend === undefined) {
      throw new ConfigError({
        file,
        path: `${where}.start`,
        problem: "a service with start is shared through a database: set backend (a postgres:// URL) in the file, or pass --backend"
      })
    }
  }
  return {
    file,
    backend,
    services: new Map(Object.entries(decoded.success.services).map(([name, input]) => [name, fromInput(name, input, dir, backend ?? "")]))
  }
}

/** A config file is small: one larger than this is not one (a log, a `/dev/zero` link). */
const maxBytes = 1024 * 1024

/**
 * The text of the file at `path`, `undefined` when nothing is there. Opened without blocking
 * and read only if it is a regular file of at most 1 MiB: a FIFO, a device or a directory in
 * its place is an error, not a hang.
 */
const readIfExists = (path: string): string | undefined => {
  const refuse = (problem: string): never => {
    throw new ConfigError({ file: path, path: "", problem })
  }
  let fd: number
  try {
    fd = openSync(path, fs.O_RDONLY | fs.O_NONBLOCK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "ENOENT" || code === "ENOTDIR") return undefined
    return refuse(`cannot be read (${code ?? String(error)})`)
  }
  try {
    const stat = fstatSync(fd)
    if (stat.isDirectory()) return refuse("is a directory, not a file")
    if (!stat.isFile()) return refuse("is not a regular file")
    if (stat.size > maxBytes) return refuse(`is ${stat.size} bytes: a config file has at most ${maxBytes}`)
    return readFileSync(fd, "utf8").replace(/^\uFEFF/, "")
  } catch (error) {
    if (error instanceof ConfigError) throw error
    return refuse(`cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`)
  } finally {
    closeSync(fd)
  }
}

/**
 * The nearest config from `cwd` upward: a `quiesce.config.json`, or a `package.json` with a
 * `"quiesce"` key (one without is passed over, as the project may be nested in another);
 * `undefined` when there is none up to the root.
 */
const find = (cwd: string, backend: string | undefined): Config | undefined => {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    for (const name of fileNames) {
      const path = join(dir, name)
      const text = readIfExists(path)
      if (text === undefined) continue
      if (name === "package.json") {
        try {
          if ((JSON.parse(text) as { quiesce?: unknown } | null)?.quiesce === undefined) continue
        } catch {
          continue
        }
      }
      return decode(text, path, { backend })
    }
    if (dirname(dir) === dir) return undefined
  }
}

/**
 * Loads the config: `file` when given, else the nearest from `cwd` (default: the working
 * directory) upward; `backend` replaces the file's. Fails with a `ConfigError` naming the file, the path in it and the problem;
 * or, when there is no config at all, saying where it looked.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 * import { Effect } from "effect"
 * import { mkdtempSync, writeFileSync } from "node:fs"
 * import { tmpdir } from "node:os"
 * import { join } from "node:path"
 *
 * const project = mkdtempSync(join(tmpdir(), "project-"))
 * writeFileSync(join(project, "package.json"), JSON.stringify({
 *   name: "app",
 *   quiesce: { services: { cache: { command: "redis-server --port 6390", ready: "tcp:6390" } } }
 * }))
 * const config = await Effect.runPromise(QuiesceConfig.load({ cwd: project }))
 * console.log([...config.services.keys()]) // [ "cache" ]
 * ```
 *
 * @since 0.1.0
 * @category loading
 */
export const load = (options?: {
  readonly cwd?: string | undefined
  readonly file?: string | undefined
  /** The database of `start` services, instead of the file's `backend` (`--backend`). */
  readonly backend?: string | undefined
}): Effect.Effect<Config, ConfigError> =>
  Effect.try({
    try: () => {
      const cwd = options?.cwd ?? process.cwd()
      if (options?.file !== undefined) {
        const file = resolve(cwd, options.file)
        const text = readIfExists(file)
        if (text === undefined) throw new ConfigError({ file, path: "", problem: "no such file" })
        return decode(text, file, { backend: options.backend })
      }
      const found = find(cwd, options?.backend)
      if (found === undefined) {
        throw new ConfigError({
          file: join(resolve(cwd), fileNames[0]),
          path: "",
          problem: `not found, nor a package.json with a "quiesce" key, in ${resolve(cwd)} or above`
        })
      }
      return found
    },
    catch: (error) => error instanceof ConfigError ? error : new ConfigError({ file: options?.file ?? "", path: "", problem: String(error) })
  })

/**
 * The definitions of `names` in `config`, in that order; an unknown name fails, listing the
 * known ones.
 *
 * @example
 * ```ts
 * import { QuiesceConfig } from "@quiesce/cli"
 * import { Effect } from "effect"
 *
 * const config = QuiesceConfig.decode(JSON.stringify({ services: { db: { command: "postgres" } } }), "/app/quiesce.config.json")
 * const error = await Effect.runPromise(Effect.flip(QuiesceConfig.select(config, ["cache"])))
 * console.log(error.message) // /app/quiesce.config.json: services: no service "cache" (defined: db)
 * ```
 *
 * @since 0.1.0
 * @category loading
 */
export const select = (config: Config, names: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<Definition>, ConfigError> =>
  Effect.forEach(names, (name) => {
    const definition = config.services.get(name)
    return definition === undefined
      ? Effect.fail(new ConfigError({
        file: config.file,
        path: "services",
        problem: `no service ${JSON.stringify(name)} (defined: ${[...config.services.keys()].join(", ") || "none"})`
      }))
      : Effect.succeed(definition)
  })
