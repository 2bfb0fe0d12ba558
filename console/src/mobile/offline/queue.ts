// The offline queue: every scan or action the app sends goes through it. It is written to
// IndexedDB first (with a client id of its own), then sent: at once when online, in bulk when the
// network returns. The server's idempotency makes a re-send safe: inspections and rebate claims
// answer the first result for the same client_id; a document's codes sent again under the same
// client_id answer `added` for the codes that request added, and a code scanned into a document
// twice is a `duplicate`, never a second unit. An action leaves the queue when the server has answered it
// (2xx, or a refusal that a re-send would only repeat); network errors, 5xx, 408, 429 and 401
// (signed out: it goes once the user signs in again) and a 409 saying "try again"
// (RETRY_CONFLICTS) keep it pending for the next flush — but not a 429 `locked` (a code locked
// after wrong PINs: a re-send is no use, the user must see it).
// The queue's order is a counter kept in the database, never the phone's clock: a group re-sent
// after a lost answer starts with the same action however the clock was set meanwhile.

export type ActionKind = 'inspection' | 'doc_codes' | 'sale' | 'claim' | 'checkin' | 'review'

export interface QueuedAction {
  /** the client id, sent to the server where the endpoint takes one */
  id: string
  kind: ActionKind
  /** the signed-in user who queued it (another user's actions are not sent with your token) */
  user: number
  /** the document's id, for doc_codes */
  target?: number
  body: Record<string, unknown>
  /** what the list of pending actions shows */
  label: string
  /** when it was queued (the phone's clock: shown, never used to order the queue) */
  created: number
  /** its place in the queue: one more than the last action queued (the database's counter) */
  n: number
  attempts: number
  error?: string
}

export interface Outcome {
  action: QueuedAction
  ok: boolean
  status: number
  body: unknown
}

/** Send a group of actions (one kind, one target); one outcome per action, or throw to retry. */
export type Sender = (actions: QueuedAction[]) => Promise<Outcome[]>

/** The 409 codes whose answer says "try again": a passing conflict with another request, not a
 * refusal (a probe: a sale met a deadlock, a claim another claim, and both were dropped as
 * refused). Re-sent under the same client id, the server answers the first result if any.
 * `retry`: app/errors.py (deadlock, serialization failure) and the services' own "moved
 * meanwhile"; `claim_conflict`: a rebate, points or draw claim met another; `busy`: codes packed
 * by another upload; `orders_busy`: another ERP order import running. */
export const RETRY_CONFLICTS: ReadonlySet<string> = new Set(['retry', 'claim_conflict', 'busy', 'orders_busy'])

/** An answer that a re-send could change: keep the action pending. A 429 `locked` (a code
 * locked after too many wrong PINs) is not one: re-sent every 30 s nobody would see it (a probe).
 * A 403 `password_change_required` is: the user's own password change lets it through (its
 * scans, queued before an administrator's reset, were refused for good); so is a 409 of
 * RETRY_CONFLICTS (any other 409 is a refusal). */
export function retryable(status: number, body?: unknown): boolean {
  const code = (body as { error?: { code?: string } } | null)?.error?.code
  if (status === 429) return code !== 'locked'
  if (status === 403) return code === 'password_change_required'
  if (status === 409) return code !== undefined && RETRY_CONFLICTS.has(code)
  return status === 0 || status === 401 || status === 408 || status >= 500
}

const DB_NAME = 'tracecode-m'
const STORE = 'queue'
/** 1: ordered by (created, n), n a per-page counter; 2: ordered by n, the database's counter */
const DB_VERSION = 2

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve()
    tx.onerror = () => reject(tx.error)
    tx.onabort = () => reject(tx.error)
  })
}

/** Inspections sent in one POST /inspections/batch (the server takes up to 1000). */
export const INSPECTION_BATCH = 500

/** One scan's answer in a POST /inspections/batch answer. */
export interface BatchItem {
  client_id: string | null
  status: number
  scan?: unknown
  error?: { code: string; message: string; details?: unknown } | null
}

/**
 * The outcome of each inspection of a batch: its own status, and the body POST /inspections
 * would have answered (the scan, or `{error}`; a counterfeit's error carries the scan). When the
 * request as a whole failed (401, 5xx, …) every action gets that answer.
 */
export function batchOutcomes(group: QueuedAction[], status: number, body: unknown): Outcome[] {
  const items = (body as { items?: BatchItem[] } | null)?.items
  if (status !== 200 || !items || items.length !== group.length) {
    return group.map((action) => ({ action, ok: false, status: status === 200 ? 502 : status, body }))
  }
  return group.map((action, i) => {
    const item = items[i]!
    const ok = item.status >= 200 && item.status < 300
    return { action, ok, status: item.status, body: ok ? item.scan : { error: item.error } }
  })
}

/** A client id: random, printable, ≤ 64 characters (the API's ClientId). */
export function clientId(): string {
  const bytes = new Uint8Array(16)
  globalThis.crypto.getRandomValues(bytes)
  return 'm-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** Renumber a version 1 queue in its order (created, n) and order it by n alone. */
function upgradeFrom1(store: IDBObjectStore): void {
  const old = store.index('order').getAll()
  old.onsuccess = () => {
    const actions = old.result as QueuedAction[]
    actions.forEach((action, i) => store.put({ ...action, n: i + 1 }))
    store.deleteIndex('order')
    store.createIndex('order', 'n')
  }
}

/** Called with a group's answers that leave the queue, before they are removed from it. */
export type Answered = (outcomes: Outcome[]) => void

export class OfflineQueue {
  private db: Promise<IDBDatabase>
  private flushing: Promise<Outcome[]> | null = null
  private again = false

  constructor(name = DB_NAME, factory: IDBFactory = globalThis.indexedDB) {
    const open = factory.open(name, DB_VERSION)
    open.onupgradeneeded = (event) => {
      if (event.oldVersion < 1) {
        open.result.createObjectStore(STORE, { keyPath: 'id' }).createIndex('order', 'n')
      } else if (event.oldVersion < 2) {
        upgradeFrom1(open.transaction!.objectStore(STORE))
      }
    }
    this.db = request(open).then((db) => {
      db.onversionchange = () => db.close() // a newer app in another tab upgrades the database
      return db
    })
  }

  /** Queue an action (written before anything is sent); returns it with its client id and its
   * place: one after the last queued, read and written in one transaction. */
  async add(
    action: Omit<QueuedAction, 'id' | 'created' | 'n' | 'attempts'> & { id?: string },
  ): Promise<QueuedAction> {
    const full: QueuedAction = {
      id: clientId(),
      created: Date.now(),
      n: 0,
      attempts: 0,
      ...action,
      // a plain copy: IndexedDB cannot clone Vue's reactive proxies (a GPS fix, a form)
      body: JSON.parse(JSON.stringify(action.body)) as Record<string, unknown>,
    }
    const tx = (await this.db).transaction(STORE, 'readwrite')
    const store = tx.objectStore(STORE)
    const last = store.index('order').openCursor(null, 'prev')
    last.onsuccess = () => {
      full.n = ((last.result?.value as QueuedAction | undefined)?.n ?? 0) + 1
      store.put(full)
    }
    await done(tx)
    return full
  }

  async put(actions: QueuedAction[]): Promise<void> {
    const tx = (await this.db).transaction(STORE, 'readwrite')
    const store = tx.objectStore(STORE)
    for (const action of actions) store.put(action)
    await done(tx)
  }

  async remove(ids: string[]): Promise<void> {
    const tx = (await this.db).transaction(STORE, 'readwrite')
    const store = tx.objectStore(STORE)
    for (const id of ids) store.delete(id)
    await done(tx)
  }

  /** The queued actions, oldest first (of one user when given). */
  async all(user?: number): Promise<QueuedAction[]> {
    const tx = (await this.db).transaction(STORE, 'readonly')
    const rows = await request(tx.objectStore(STORE).index('order').getAll())
    const mine = user === undefined ? rows : rows.filter((a: QueuedAction) => a.user === user)
    return mine as QueuedAction[]
  }

  async count(user?: number): Promise<number> {
    return (await this.all(user)).length
  }

  /**
   * Send the user's queued actions, grouped by kind and target (a document's codes go in one
   * request; inspections in batches of `batchSize`, POST /inspections/batch), a few groups at a
   * time. Concurrent calls share one flush; a call during a flush makes
   * it run once more for what was queued meanwhile. Returns the outcomes of this flush;
   * `answered` gets each group's as it leaves the queue (to keep its refusals at once).
   */
  flush(
    user: number,
    send: Sender,
    concurrency = 4,
    batchSize = INSPECTION_BATCH,
    answered?: Answered,
  ): Promise<Outcome[]> {
    if (this.flushing) {
      this.again = true
      return this.flushing
    }
    this.flushing = (async () => {
      const outcomes: Outcome[] = []
      do {
        this.again = false
        const pending = await this.all(user)
        if (pending.length === 0) break
        const sent = await this.sendAll(pending, send, concurrency, batchSize, answered)
        outcomes.push(...sent.outcomes)
        if (sent.stalled) break // offline or the server is down: try on the next flush
      } while (this.again)
      return outcomes
    })().finally(() => {
      this.flushing = null
    })
    return this.flushing
  }

  private async sendAll(
    pending: QueuedAction[],
    send: Sender,
    concurrency: number,
    batchSize: number,
    answered?: Answered,
  ): Promise<{ outcomes: Outcome[]; stalled: boolean }> {
    const groups = new Map<string, QueuedAction[]>()
    let inspections = 0
    for (const action of pending) {
      const key =
        action.kind === 'doc_codes'
          ? `doc:${action.target}`
          : action.kind === 'inspection'
            ? `inspections:${Math.floor(inspections++ / batchSize)}`
            : action.id
      const group = groups.get(key)
      if (group) group.push(action)
      else groups.set(key, [action])
    }
    const queue = [...groups.values()]
    const outcomes: Outcome[] = []
    let stalled = false
    const worker = async (): Promise<void> => {
      while (!stalled) {
        const group = queue.shift()
        if (!group) return
        let results: Outcome[]
        try {
          results = await send(group)
        } catch (error) {
          stalled = true
          const message = error instanceof Error ? error.message : String(error)
          await this.put(group.map((a) => ({ ...a, attempts: a.attempts + 1, error: message })))
          return
        }
        const finished = results.filter((r) => !retryable(r.status, r.body))
        const kept = results.filter((r) => retryable(r.status, r.body))
        // told before they leave: a reload in between must not lose a refusal (a probe)
        if (finished.length) answered?.(finished)
        await this.remove(finished.map((r) => r.action.id))
        if (kept.length) {
          stalled = true
          await this.put(
            kept.map((r) => ({ ...r.action, attempts: r.action.attempts + 1, error: `${r.status}` })),
          )
        }
        outcomes.push(...finished)
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker))
    return { outcomes, stalled }
  }
}
