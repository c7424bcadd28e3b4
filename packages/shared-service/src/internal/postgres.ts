/**
 * The PostgreSQL `RefCounter` (`RefCounter.postgres`): the kernel objects of `PROTOCOL.md` as
 * session-level advisory locks and one table row per (namespace, name).
 *
 * - row: `quiesce_shared_service(id, namespace, name, ring, hint, request_pid, request)`,
 *   created on first use; its `id` is the first half of every advisory key of the name, so two
 *   names of one database never share a lock (the second half is one of `ROLE`);
 * - startup lock: `pg_advisory_lock(id, LOCK)` on the process's client session, waited for in
 *   slices of `lock_timeout` (never abandoned mid-wait: a granted lock is always handed over);
 * - count: `pg_advisory_lock_shared(id, COUNT)` on the same session, taken in the statement that
 *   rings and gives the startup lock back; the count is the number of granted holders in
 *   `pg_locks`; the session ends → the server drops the reference;
 * - owner lock: `pg_advisory_lock(id, OWNER)` on a session of its own, which the in-process
 *   supervisor keeps (and acts through) for the generation's life; its stamp is the holder's
 *   backend pid, read from `pg_locks`;
 * - ring and hint: columns of the row; requests to a remote supervisor (retire, term) go in
 *   `request`, addressed to its backend pid, and are read by its polls; a kill is
 *   `pg_terminate_backend`.
 *
 * Sessions set `tcp_keepalives_idle/interval/count` and `tcp_user_timeout` at startup, so the
 * server ends the session of a machine that vanished within `idle + interval × count`; each
 * session also runs a heartbeat (`SELECT 1` every `idle`, answered within `interval × count`) so
 * that this process learns its session is gone within about the same bound (`SessionLost`,
 * and `ServiceHandle.lost`).
 *
 * @internal
 */
import * as PgConnection from "@effect/sql-pg/PgConnection"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Redacted, Schema, Scope, Semaphore } from "effect"
import type { Counter, HintStore, Owned, PostgresOptions, RefCounter } from "../RefCounter.ts"
import {
  AuthenticationFailed,
  CorruptHint,
  DatabaseError,
  DatabaseUnreachable,
  LockTimeout,
  SessionLost
} from "../SharedServiceError.ts"
import type { InvalidName, SystemError } from "../SharedServiceError.ts"
import { Hint } from "./hint.ts"
import { validate } from "./name.ts"

export const TABLE = "quiesce_shared_service"

/** Second halves of a name's advisory keys ("QS" and a role), so that other users of two-key advisory locks are unlikely to collide. */
const ROLE = { LOCK: 0x51530001, COUNT: 0x51530002, OWNER: 0x51530003 } as const
/** The one-key advisory lock that serializes creating the table (a concurrent CREATE TABLE IF NOT EXISTS can fail). */
const DDL_KEY = "5853164239447115777"

/** How long one startup-lock wait statement lasts at most: an interrupted acquisition ends within this. */
export const SLICE_MS = 500
/**
 * The same for owner-lock waits (standbys, retiring clients): longer, since a waiting standby
 * costs the server a statement per slice and nobody waits for it to be interrupted.
 */
export const OWNER_SLICE_MS = 5000
/** How often waits for count 0, a ring, or requests poll the server. */
export const POLL_MS = 25

interface Settings {
  readonly config: PgConnection.Config
  readonly address: string
  readonly idleMs: number
  readonly intervalMs: number
  readonly count: number
}

type SqlError = { readonly _tag: "SqlError"; readonly reason: { readonly _tag: string; readonly message: string; readonly cause?: unknown } }

const sqlState = (e: SqlError): string | undefined => {
  const c = e.reason.cause as { readonly code?: unknown } | undefined
  return typeof c?.code === "string" ? c.code : undefined
}

const causeText = (e: SqlError): string => {
  const c = e.reason.cause
  return c instanceof Error ? c.message : typeof c === "object" && c !== null && "message" in c ? String(c.message) : e.reason.message
}

/** A failure to open a session, as the typed error a caller acts on. */
const connectError = (s: Settings, service: string, e: SqlError): SystemError => {
  const fields = { service, address: s.address, reason: causeText(e), ...(sqlState(e) === undefined ? {} : { code: sqlState(e)! }) }
  switch (e.reason._tag) {
    case "AuthenticationError":
      return new AuthenticationFailed(fields)
    case "ConnectionError":
      return new DatabaseUnreachable(fields)
    default:
      return new DatabaseError({ ...fields, statement: "connect" })
  }
}

/**
 * One database session: a dedicated connection, its backend's identity, and whether it has
 * ended. Every statement goes through `query`, which reports a session that ended as
 * `SessionLost` (and marks it so) rather than a generic SQL error.
 */
class Session {
  lost: SessionLost | undefined = undefined
  closed = false
  readonly ended = Deferred.makeUnsafe<SessionLost>()
  heartbeat: Fiber.Fiber<unknown> | undefined = undefined
  /** The longest statement this session may have in flight now (a lock wait's slice): a heartbeat queues behind it. */
  sliceMs = SLICE_MS
  readonly settings: Settings
  readonly service: string
  readonly conn: PgConnection.PgConnection
  readonly scope: Scope.Closeable
  readonly backendPid: number
  readonly backendStart: number
  constructor(
    settings: Settings,
    service: string,
    conn: PgConnection.PgConnection,
    scope: Scope.Closeable,
    backendPid: number,
    backendStart: number
  ) {
    this.settings = settings
    this.service = service
    this.conn = conn
    this.scope = scope
    this.backendPid = backendPid
    this.backendStart = backendStart
  }

  get alive(): boolean {
    return this.lost === undefined && !this.closed
  }

  /** The session is gone (or must be treated so): record why and close the connection. */
  markLost(reason: string): SessionLost {
    if (this.lost !== undefined) return this.lost
    this.lost = new SessionLost({ service: this.service, address: this.settings.address, reason })
    Deferred.doneUnsafe(this.ended, Effect.succeed(this.lost))
    this.shutdown()
    return this.lost
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.shutdown()
  }

  private shutdown() {
    const heartbeat = this.heartbeat
    this.heartbeat = undefined
    // Closing the connection sends Terminate and ends the socket without waiting for the peer
    // (a machine that is cut off never answers); its in-flight statements fail at once.
    Effect.runFork(Effect.andThen(
      heartbeat === undefined ? Effect.void : Fiber.interrupt(heartbeat),
      Scope.close(this.scope, Exit.void)
    ))
  }

  query(sql: string, params: ReadonlyArray<unknown> = []): Effect.Effect<ReadonlyArray<PgConnection.Row>, SystemError> {
    return Effect.suspend(() => {
      if (this.lost !== undefined) return Effect.fail(this.lost)
      if (this.closed) return Effect.fail(new SessionLost({ service: this.service, address: this.settings.address, reason: "closed" }))
      return this.conn.query(sql, params).pipe(
        Effect.map((r) => r.rows),
        Effect.mapError((e): SystemError => {
          if (this.lost !== undefined) return this.lost
          if (e.reason._tag === "ConnectionError" || e.reason._tag === "AuthenticationError") return this.markLost(causeText(e))
          return new DatabaseError({
            service: this.service,
            address: this.settings.address,
            statement: sql.split(/\s+/).slice(0, 4).join(" "),
            reason: causeText(e),
            ...(sqlState(e) === undefined ? {} : { code: sqlState(e)! })
          })
        })
      )
    })
  }
}

const openSession = (s: Settings, service: string): Effect.Effect<Session, SystemError> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const opened = yield* Effect.exit(restore(Effect.gen(function*() {
        const conn = yield* PgConnection.make(s.config).pipe(
          Scope.provide(scope),
          Effect.mapError((e) => connectError(s, service, e))
        )
        const rows = yield* conn.query(
          "SELECT pg_backend_pid() AS pid, (extract(epoch FROM backend_start) * 1000)::float8 AS start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).pipe(Effect.mapError((e) => connectError(s, service, e)))
        const row = rows.rows[0]!
        return new Session(s, service, conn, scope, Number(row["pid"]), Number(row["start"]))
      })))
      if (Exit.isFailure(opened)) {
        yield* Scope.close(scope, Exit.void)
        return yield* Effect.failCause(opened.cause)
      }
      const session = opened.value
      session.heartbeat = Effect.runFork(heartbeat(session))
      return session
    })
  )

/**
 * Every `idle`, one `SELECT 1` that must be answered within `interval × count` (plus a lock
 * slice it may queue behind): otherwise the session is declared lost and closed, so what this
 * process believes it holds is never more than what the server still grants it.
 */
const heartbeat = (session: Session): Effect.Effect<void> => {
  const { idleMs, intervalMs, count } = session.settings
  // (A lock wait in flight delays the answer by up to its slice.)
  const beat: Effect.Effect<boolean> = Effect.gen(function*() {
    yield* Effect.sleep(Duration.millis(idleMs))
    if (!session.alive) return false
    const answerMs = intervalMs * count + session.sliceMs
    const probe = Effect.runFork(session.query("SELECT 1"))
    const r = yield* Effect.timeoutOption(Fiber.await(probe), Duration.millis(answerMs))
    if (r._tag === "None") {
      session.markLost(`no answer to a heartbeat within ${answerMs} ms`)
      return false
    }
    if (Exit.isFailure(r.value)) {
      // A statement error other than a lost session (never expected for SELECT 1) also ends it.
      session.markLost("the heartbeat failed")
      return false
    }
    return session.alive
  })
  return Effect.asVoid(Effect.repeat(beat, { while: (again) => again }))
}

// ---------------------------------------------------------------------------------------------

const ms = (input: Duration.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.fromInputUnsafe(input))

const addressOf = (config: PgConnection.Config): string => {
  if (config.url !== undefined) {
    try {
      const u = new URL(Redacted.value(config.url))
      u.password = ""
      return `${u.protocol}//${u.username === "" ? "" : `${u.username}@`}${u.host}${u.pathname}`
    } catch {
      return "postgres://(unparsable url)"
    }
  }
  return `postgres://${config.username === undefined ? "" : `${config.username}@`}${config.host ?? config.path ?? "localhost"}:${
    config.port ?? 5432
  }/${config.database ?? ""}`
}

export const settingsOf = (options: PostgresOptions): Settings => {
  const idleMs = Math.max(1000, ms(options.keepalive?.idle, 10_000))
  const intervalMs = Math.max(1000, ms(options.keepalive?.interval, 2_000))
  const count = Math.max(1, Math.floor(options.keepalive?.count ?? 5))
  const base: PgConnection.Config = options.client?.config ??
    (options.url === undefined
      ? {}
      : { url: typeof options.url === "string" ? Redacted.make(options.url) : options.url })
  const config: PgConnection.Config = {
    ...base,
    connectTimeout: options.connectTimeout ?? base.connectTimeout ?? Duration.seconds(10),
    keepAlive: Duration.millis(idleMs),
    applicationName: "quiesce",
    prepare: true,
    startupParameters: {
      ...base.startupParameters,
      tcp_keepalives_idle: String(Math.ceil(idleMs / 1000)),
      tcp_keepalives_interval: String(Math.ceil(intervalMs / 1000)),
      tcp_keepalives_count: String(count),
      // Keepalives only probe an idle connection; this bounds unacknowledged data the same way.
      tcp_user_timeout: String(idleMs + intervalMs * count)
    }
  }
  return { config, address: addressOf(config), idleMs, intervalMs, count }
}

/** The dead-client bound: how long the server may keep the reference of a machine that vanished. */
export const deadClientBound = (s: Settings): number => s.idleMs + s.intervalMs * s.count

// ---------------------------------------------------------------------------------------------

const decodeHint = Schema.decodeUnknownSync(Schema.fromJsonString(Hint))
const encodeHint = Schema.encodeSync(Schema.fromJsonString(Hint))

const countSql = `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1::int::oid AND objid = $2::int::oid`
/** Sessions waiting for a lock of the name (the owner lock's: standbys). */
const waitingSql = countSql.replace("AND granted AND", "AND NOT granted AND")
const holderSql = `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND mode = 'ExclusiveLock'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = $1::int::oid AND objid = $2::int::oid`

/**
 * One poll of a supervisor, in one statement: the count, whether the ring was rung (reset when
 * `$3`), and a request addressed to this session (consumed). The row is only written when there
 * is something to consume; a registration committed meanwhile is seen by the next poll.
 */
const pollSql = `WITH old AS (SELECT ring, request, request_pid = pg_backend_pid() AS mine FROM ${TABLE} WHERE id = $1),
  upd AS (UPDATE ${TABLE} t SET ring = CASE WHEN $3::boolean THEN 0 ELSE t.ring END,
            request = CASE WHEN old.mine THEN NULL ELSE t.request END,
            request_pid = CASE WHEN old.mine THEN NULL ELSE t.request_pid END
          FROM old WHERE t.id = $1 AND (($3::boolean AND old.ring > 0) OR old.mine) RETURNING 1)
  SELECT (${countSql.replace("count(*)::int AS n", "count(*)::int")}) AS n, old.ring > 0 AS rung,
         CASE WHEN old.mine THEN old.request END AS request, (SELECT count(*) FROM upd) AS written
  FROM old`

interface Shared {
  readonly settings: Settings
  readonly namespace: string
  /** Sessions this `RefCounter` opened for clients (closed with the layer). */
  readonly sessions: Set<Session>
}

/**
 * The counter of one name, acting through one session: the process's client session (`open`),
 * or the owner session of an in-process supervisor (`Owned.counter`).
 */
class PgCounter implements Counter {
  readonly kind = "postgres" as const
  readonly exact = true
  readonly dir: string
  readonly hints: HintStore
  readonly owner: Counter["owner"]
  /** The startup lock is not reentrant within this counter (PostgreSQL's session locks are). */
  private readonly local = Semaphore.makeUnsafe(1)
  private locked = false
  private session: Session | undefined
  /** The reference this counter registered, while it holds one. */
  private reference: Session | undefined
  /** Requests addressed to this counter's session, consumed by its polls (a supervisor's). */
  readonly requests = new Set<"Retire" | "Term">()
  /** A name's row is never re-created under its holders (kernel sets are): one incarnation. */
  readonly instance = () => this.id

  readonly shared: Shared
  readonly name: string
  readonly id: number
  /** A fixed session (an owner's) is never re-opened: once it ends, so does the owner. */
  private readonly fixed: boolean

  constructor(shared: Shared, name: string, id: number, fixed?: Session) {
    this.shared = shared
    this.name = name
    this.id = id
    this.session = fixed
    this.fixed = fixed !== undefined
    this.dir = `${shared.settings.address}#${shared.namespace}`
    this.hints = {
      read: Effect.map(
        Effect.exit(Effect.suspend(() => {
          const peeked = this.peeked("hint")
          return peeked !== undefined ? Effect.succeed([{ hint: peeked.hint }]) : this.q(`SELECT hint FROM ${TABLE} WHERE id = $1`, [id])
        })),
        (exit): Hint | undefined | CorruptHint => {
          const where = this.hints.where
          if (Exit.isFailure(exit)) return new CorruptHint({ service: name, path: where, reason: "the record could not be read" })
          const text = exit.value[0]?.["hint"]
          if (typeof text !== "string") return undefined
          try {
            const hint = decodeHint(text)
            return hint.name === name ? hint : new CorruptHint({ service: name, path: where, reason: `it names "${hint.name}"` })
          } catch (e) {
            return new CorruptHint({ service: name, path: where, reason: e instanceof Error ? e.message.split("\n")[0]! : String(e) })
          }
        }
      ),
      write: (hint) => Effect.asVoid(this.q(`UPDATE ${TABLE} SET hint = $2 WHERE id = $1`, [id, encodeHint(hint)])),
      remove: (generation) =>
        Effect.ignore(
          generation === undefined
            ? this.q(`UPDATE ${TABLE} SET hint = NULL WHERE id = $1`, [id])
            : this.q(`UPDATE ${TABLE} SET hint = NULL WHERE id = $1 AND (hint::jsonb)->>'generation' = $2`, [id, generation])
        ),
      where: `${shared.settings.address} ${TABLE} (namespace ${JSON.stringify(shared.namespace)}, name ${JSON.stringify(name)})`
    }
    this.owner = {
      // One statement finds the owner and, when it is held, what `ReadHint` reads next (its
      // stamp and the hint), kept for those two reads (`peek`): two round trips less under the lock.
      take: Effect.flatMap(
        this.q(`SELECT h.pid, t.owner_stamp, t.hint FROM ${TABLE} t LEFT JOIN (${holderSql}) h ON true WHERE t.id = $1`, [id, ROLE.OWNER]),
        (rows) => {
          const row = rows[0]
          if (row === undefined || row["pid"] === null) return this.takeOwner(0)
          const pid = Number(row["pid"])
          this.peek = { stamp: Number(row["owner_stamp"]) === pid ? pid : undefined, hint: row["hint"], stampRead: false, hintRead: false }
          return Effect.succeed(undefined)
        }
      ),
      awaitFree: (millis) => this.takeOwner(millis),
      held: Effect.orElseSucceed(Effect.map(this.q(holderSql, [id, ROLE.OWNER]), (rows) => rows.length > 0), () => false),
      // The holder's backend pid, once it has stamped the row as the owner (a standby that has
      // just taken the lock has not: clients then yield, as for a supervisor still booting).
      stamp: Effect.suspend(() => {
        const peeked = this.peeked("stamp")
        if (peeked !== undefined) return Effect.succeed(peeked.stamp)
        return Effect.orElseSucceed(
          Effect.map(
            this.q(`SELECT h.pid FROM (${holderSql}) h JOIN ${TABLE} t ON t.id = $1 AND t.owner_stamp = h.pid`, [id, ROLE.OWNER]),
            (rows) => rows.length > 0 ? Number(rows[0]!["pid"]) : undefined
          ),
          () => undefined
        )
      }),
      // To whichever session stamped the owner lock (an unstamped standby has nothing to retire).
      request: (what) => Effect.flatMap(this.owner.stamp, (pid) => pid === undefined ? Effect.void : this.signal(pid, what))
    }
  }

  /** What the last `owner.take` read besides the owner, for the next read of each (then it is read afresh). */
  private peek: { readonly stamp: number | undefined; readonly hint: unknown; stampRead: boolean; hintRead: boolean } | undefined

  private peeked(what: "stamp" | "hint") {
    const p = this.peek
    if (p === undefined) return undefined
    if (what === "stamp" ? p.stampRead : p.hintRead) {
      this.peek = undefined
      return undefined
    }
    if (what === "stamp") p.stampRead = true
    else p.hintRead = true
    if (p.stampRead && p.hintRead) this.peek = undefined
    return p
  }

  /** This counter's session, opened (again) when needed. */
  private sessionNow(): Effect.Effect<Session, SystemError> {
    return Effect.suspend(() => {
      const s = this.session
      if (s !== undefined && (s.alive || this.fixed)) return Effect.succeed(s)
      return Effect.map(openSession(this.shared.settings, this.name), (fresh) => {
        this.session = fresh
        this.shared.sessions.add(fresh)
        return fresh
      })
    })
  }

  private q(sql: string, params: ReadonlyArray<unknown>): Effect.Effect<ReadonlyArray<PgConnection.Row>, SystemError> {
    return Effect.flatMap(this.sessionNow(), (s) => {
      this.peek = undefined
      return s.query(sql, params)
    })
  }

  /**
   * A session that held nothing when its owner-lock wait ended, kept for the next wait (a
   * standby waits at every acquisition of a client that does not supervise the name).
   */
  private spare: Session | undefined

  /** A session of its own taking the owner lock, waiting up to `millis` (0: only if free now). */
  private takeOwner(millis: number): Effect.Effect<Owned | undefined, SystemError> {
    const session = Effect.suspend(() => {
      const s = this.spare
      this.spare = undefined
      return s !== undefined && s.alive ? Effect.succeed(s) : openSession(this.shared.settings, this.name)
    })
    return Effect.flatMap(session, (s) =>
      Effect.onExit(
        waitLock(s, this.id, ROLE.OWNER, millis, OWNER_SLICE_MS),
        // A wait ends holding nothing unless it got the lock (it is interruptible only between statements).
        (exit) =>
          Exit.isSuccess(exit) && exit.value ? Effect.void : Effect.sync(() => {
            if (this.spare === undefined && s.alive && !this.fixed) {
              this.spare = s
              this.shared.sessions.add(s)
            } else s.close()
          })
      ).pipe(Effect.map((got): Owned | undefined => got ? this.owned(s) : undefined)))
  }

  private owned(s: Session): Owned {
    // The owner's session belongs to its supervisor from now on, not to the layer's scope.
    this.shared.sessions.delete(s)
    const counter = new PgCounter(this.shared, this.name, this.id, s)
    const release = Effect.sync(() => s.close())
    const stamp = Effect.ignore(s.query(`UPDATE ${TABLE} SET owner_stamp = pg_backend_pid() WHERE id = $1`, [this.id]))
    return {
      fd: undefined,
      clearStamp: Effect.void,
      writeStamp: () => stamp,
      release,
      remove: release,
      stillHeld: () => s.alive,
      // Requests reach a database owner through `pending`.
      retireRequested: Effect.succeed(false),
      identity: { pid: s.backendPid, startTime: s.backendStart },
      counter,
      pending: () => [...counter.requests],
      clearPending: () => counter.requests.clear(),
    }
  }

  lock = (timeout: Duration.Duration): Effect.Effect<void, LockTimeout | SystemError> =>
    Effect.flatMap(Clock.currentTimeMillis, (start) => {
      this.peek = undefined
      const total = Duration.toMillis(timeout)
      const timedOut = () => new LockTimeout({ service: this.name, timeoutMillis: total })
      return Effect.flatMap(
        Effect.timeoutOption(this.local.take(1), Duration.millis(total)),
        (permit) =>
          permit._tag === "None" ? Effect.fail(timedOut()) : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.flatMap(this.sessionNow(), (s) => waitLock(s, this.id, ROLE.LOCK, Math.max(0, start + total - now), SLICE_MS)).pipe(
              Effect.flatMap((got) => got ? Effect.sync(() => void (this.locked = true)) : Effect.fail(timedOut())),
              Effect.onError(() => this.local.release(1))
            ))
      )
    })

  tryLock: Effect.Effect<boolean, SystemError> = Effect.suspend(() => Effect.flatMap(this.local.takeIfAvailable(1), (got) =>
    !got ? Effect.succeed(false) : Effect.flatMap(this.sessionNow(), (s) => waitLock(s, this.id, ROLE.LOCK, 0, SLICE_MS)).pipe(
      Effect.tap((locked) => locked ? Effect.sync(() => void (this.locked = true)) : this.local.release(1)),
      Effect.onError(() => this.local.release(1))
    )))

  private letGo: Effect.Effect<void> = Effect.suspend(() => {
    if (!this.locked) return Effect.void
    this.locked = false
    return Effect.asVoid(this.local.release(1))
  })

  unlock: Effect.Effect<void, SystemError> = Effect.suspend(() =>
    Effect.ensuring(Effect.asVoid(this.q(`SELECT pg_advisory_unlock($1, $2)`, [this.id, ROLE.LOCK])), this.letGo)
  )

  /** count +1 (the shared lock, on this session), ring +1, startup lock −1: one statement. */
  register: Effect.Effect<void, SystemError> = Effect.suspend(() => Effect.ensuring(
    Effect.flatMap(this.sessionNow(), (s) =>
      Effect.as(
        s.query(
          `WITH r AS (UPDATE ${TABLE} SET ring = ring + 1 WHERE id = $1 RETURNING ring)
           SELECT pg_advisory_lock_shared($1, $2), pg_advisory_unlock($1, $3) FROM r`,
          [this.id, ROLE.COUNT, ROLE.LOCK]
        ),
        undefined
      ).pipe(Effect.tap(() => Effect.sync(() => void (this.reference = s))))),
    this.letGo
  ))

  reregister: Effect.Effect<void, SystemError> = Effect.suspend(() => Effect.ensuring(
    Effect.flatMap(this.sessionNow(), (s) =>
      s.query(`SELECT pg_advisory_lock_shared($1, $2), pg_advisory_unlock($1, $3)`, [this.id, ROLE.COUNT, ROLE.LOCK]).pipe(
        Effect.tap(() => Effect.sync(() => void (this.reference = s))),
        Effect.asVoid
      )),
    this.letGo
  ))

  /** Drops the reference; a session that ended took it with it. */
  decrement: Effect.Effect<void, SystemError> = Effect.suspend(() => {
    const s = this.reference
    this.reference = undefined
    if (s === undefined || !s.alive) return Effect.void
    return Effect.asVoid(s.query(`SELECT pg_advisory_unlock_shared($1, $2)`, [this.id, ROLE.COUNT]))
  })

  referenceLost = () => this.reference?.ended

  standbys: Effect.Effect<number, SystemError> = Effect.suspend(() =>
    Effect.map(this.q(waitingSql, [this.id, ROLE.OWNER]), (rows) => Number(rows[0]!["n"]))
  )

  count: Effect.Effect<number, SystemError> = Effect.suspend(() =>
    Effect.map(this.q(countSql, [this.id, ROLE.COUNT]), (rows) => Number(rows[0]!["n"]))
  )

  rings: Effect.Effect<number, SystemError> = Effect.suspend(() =>
    Effect.map(this.q(`SELECT ring FROM ${TABLE} WHERE id = $1`, [this.id]), (rows) => Number(rows[0]?.["ring"] ?? 0))
  )

  /**
   * One poll of a supervisor: the count, the ring (consumed when `consume`), and the requests
   * addressed to this session (consumed), in one statement.
   */
  private poll(consume: boolean): Effect.Effect<{ readonly count: number; readonly rung: boolean }, SystemError> {
    return Effect.map(this.q(pollSql, [this.id, ROLE.COUNT, consume]), (rows) => {
      const row = rows[0]!
      const request = row["request"]
      if (request === "retire") this.requests.add("Retire")
      if (request === "term") this.requests.add("Term")
      return { count: Number(row["n"]), rung: row["rung"] === true }
    })
  }

  private pollUntil(millis: number, consume: boolean, done: (p: { count: number; rung: boolean }) => boolean) {
    return Effect.flatMap(Clock.currentTimeMillis, (start) => {
      const loop: Effect.Effect<boolean, SystemError> = Effect.flatMap(this.poll(consume), (p) => {
        if (done(p)) return Effect.succeed(true)
        return Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const left = start + millis - now
          return left <= 0 ? Effect.succeed(false) : Effect.andThen(Effect.sleep(Duration.millis(Math.min(POLL_MS, left))), loop)
        })
      })
      return loop
    })
  }

  awaitZero = (millis: number) => this.pollUntil(millis, false, (p) => p.count === 0)

  awaitRing = (millis: number) => this.pollUntil(millis, true, (p) => p.rung)

  reopen: Effect.Effect<void, SystemError> = Effect.void

  /**
   * The generation ends (count 0, under the startup lock): the ring is reset and the startup
   * lock given back. Nothing is removed: the row keeps the name's keys.
   */
  remove: Effect.Effect<void, SystemError> = Effect.suspend(() =>
    Effect.ensuring(
      Effect.asVoid(this.q(`UPDATE ${TABLE} SET ring = 0 WHERE id = $1 RETURNING pg_advisory_unlock($1, $2)`, [this.id, ROLE.LOCK])),
      this.letGo
    )
  )

  lockHolder: Effect.Effect<number | undefined> = Effect.suspend(() =>
    Effect.orElseSucceed(
      Effect.map(this.q(holderSql, [this.id, ROLE.LOCK]), (rows) => rows.length > 0 ? Number(rows[0]!["pid"]) : undefined),
      () => undefined
    )
  )

  /** A session cannot survive an `execve`: the exec'd program would hold a socket nobody answers for. */
  prepareExec: Effect.Effect<void, SystemError> = Effect.suspend(() =>
    Effect.fail(
      new DatabaseError({
        service: this.name,
        address: this.shared.settings.address,
        statement: "prepareExec",
        reason: "a PostgreSQL reference is a session of this process and cannot be handed to an exec'd program"
      })
    )
  )

  /**
   * Retire and term are requests to `pid`'s session. A kill ends whichever session holds the owner
   * lock now (a stuck supervisor, or a standby that took it and stopped): the client killing it
   * wants the lock free, and the process behind that session lives on.
   */
  signal = (pid: number, what: "retire" | "term" | "kill"): Effect.Effect<void> =>
    Effect.ignore(
      what === "kill"
        ? this.q(`SELECT pg_terminate_backend(h.pid) FROM (${holderSql}) h`, [this.id, ROLE.OWNER])
        : this.q(`UPDATE ${TABLE} SET request = $2, request_pid = $3 WHERE id = $1`, [this.id, what, pid])
    )
}

/**
 * Takes `role`'s exclusive lock on `s`, waiting up to `millis`: `true` once held. The wait runs in
 * uninterruptible statements of at most `sliceMs` (`lock_timeout`), so a granted lock is never
 * abandoned by an interruption; interruption is observed between them, while nothing is held.
 */
const waitLock = (s: Session, id: number, role: number, millis: number, sliceMs: number): Effect.Effect<boolean, SystemError> =>
  Effect.flatMap(s.query(`SELECT pg_try_advisory_lock($1, $2) AS got`, [id, role]), (rows) => {
    if (rows[0]!["got"] === true) return Effect.succeed(true)
    if (millis <= 0) return Effect.succeed(false)
    return Effect.flatMap(Clock.currentTimeMillis, (start) => {
      const loop: Effect.Effect<boolean, SystemError> = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const left = start + millis - now
        if (left <= 0) return Effect.succeed(false)
        const slice = Math.max(1, Math.min(sliceMs, left))
        s.sliceMs = Math.max(SLICE_MS, slice)
        return Effect.andThen(
          Effect.interruptible(Effect.void),
          Effect.uninterruptible(
            // `lock_timeout` local to this statement's transaction: no later statement inherits it.
            s.query(`SELECT set_config('lock_timeout', $3, true), pg_advisory_lock($1, $2)`, [id, role, `${slice}ms`]).pipe(
              Effect.as(true),
              Effect.catchIf(
                (e): e is DatabaseError => e._tag === "DatabaseError" && e.code === "55P03",
                () => Effect.succeed(false)
              )
            )
          ).pipe(
            Effect.ensuring(Effect.sync(() => void (s.sliceMs = SLICE_MS))),
            Effect.flatMap((got) => got ? Effect.succeed(true) : loop)
          )
        )
      })
      return loop
    })
  })

// ---------------------------------------------------------------------------------------------

const ddl = [
  `SELECT pg_advisory_xact_lock(${DDL_KEY})`,
  `CREATE TABLE IF NOT EXISTS ${TABLE} (
     id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
     namespace text NOT NULL,
     name text NOT NULL,
     ring bigint NOT NULL DEFAULT 0,
     hint text,
     request text,
     request_pid integer,
     owner_stamp integer,
     UNIQUE (namespace, name))`
]

export const make = (options: PostgresOptions): Effect.Effect<RefCounter, SystemError, Scope.Scope> =>
  Effect.gen(function*() {
    const settings = settingsOf(options)
    const sessions = new Set<Session>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const s of sessions) s.close()
        sessions.clear()
      })
    )
    const first = yield* openSession(settings, "(setup)")
    sessions.add(first)
    const exists = yield* first.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [TABLE])
    if (exists[0]!["ok"] !== true) {
      yield* first.query("BEGIN")
      const created = yield* Effect.exit(Effect.forEach(ddl, (sql) => first.query(sql), { discard: true }))
      yield* first.query(Exit.isSuccess(created) ? "COMMIT" : "ROLLBACK")
      if (Exit.isFailure(created)) return yield* Effect.failCause(created.cause)
    }
    const namespace = options.namespace ?? String((yield* first.query("SELECT current_user AS u"))[0]!["u"])
    const shared: Shared = { settings, namespace, sessions }
    const counters = new Map<string, PgCounter>()
    const select = (name: string) =>
      Effect.map(
        first.query(`SELECT id FROM ${TABLE} WHERE namespace = $1 AND name = $2`, [namespace, name]),
        (rows) => rows.length === 0 ? undefined : Number(rows[0]!["id"])
      )
    /**
     * The name's row id, creating the row if asked. Clients racing to create it: the losers'
     * `ON CONFLICT DO NOTHING` returns no row (and their statement cannot see the winner's), but
     * it waited for the winner to commit, so a new statement finds it.
     */
    const idOf = (name: string, create: boolean): Effect.Effect<number | undefined, SystemError> =>
      Effect.flatMap(select(name), (id) =>
        id !== undefined || !create ? Effect.succeed(id) : Effect.flatMap(
          first.query(
            `INSERT INTO ${TABLE} (namespace, name) VALUES ($1, $2) ON CONFLICT (namespace, name) DO NOTHING RETURNING id`,
            [namespace, name]
          ),
          (rows) => rows.length > 0 ? Effect.succeed(Number(rows[0]!["id"])) : select(name)
        ))
    // One counter per name, created in one step (the registry of the kernel counters does the
    // same): a process holds at most one reference per name.
    const gate = Semaphore.makeUnsafe(1)
    const open = (name: string): Effect.Effect<Counter, SystemError | InvalidName> =>
      Effect.flatMap(validate(name), () =>
        gate.withPermits(1)(Effect.suspend(() => {
          const existing = counters.get(name)
          if (existing !== undefined) return Effect.succeed(existing)
          return Effect.flatMap(idOf(name, true), (id) => {
            if (id === undefined || !Number.isInteger(id)) {
              return Effect.fail(
                new DatabaseError({ service: name, address: settings.address, statement: "INSERT", reason: "the name's row could not be created" })
              )
            }
            const c = new PgCounter(shared, name, id, undefined)
            counters.set(name, c)
            return Effect.succeed(c)
          })
        })))
    const rc: RefCounter = {
      kind: "postgres",
      open,
      openExisting: (name) =>
        Effect.flatMap(validate(name), () =>
          counters.has(name)
            ? Effect.succeed(counters.get(name))
            : Effect.flatMap(idOf(name, false), (id) => id === undefined ? Effect.succeed(undefined) : open(name))),
      view: (name) => open(name),
      names: Effect.map(
        first.query(`SELECT name FROM ${TABLE} WHERE namespace = $1 AND hint IS NOT NULL ORDER BY name`, [namespace]),
        (rows) => rows.map((r) => String(r["name"]))
      )
    }
    return rc
  })
