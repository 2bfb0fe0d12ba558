// The app's one queue and the way its actions reach the API. Every scan is queued (IndexedDB,
// client id) and then sent; online, at once, and the page gets the answer; offline (or on a
// network error), it waits, shown as pending, and the whole queue goes out in bulk when the
// browser says it is online again (and every 30 s while anything is pending). What the server
// refused is kept (refused.ts) until the user dismisses it, from the moment it leaves the queue
// (a group at a time, not at the end of the pass: a reload in between lost it — a probe). A
// user's actions are sent with that user's token only.
import { reactive } from 'vue'

import {
  batchOutcomes,
  OfflineQueue,
  retryable,
  type ActionKind,
  type Outcome,
  type QueuedAction,
  type Sender,
} from './queue'
import { dismissRefusals, keepRefusals, refusals, type Refusal } from './refused'
import { request } from '../api'
import { i18n } from '../i18n'
import { refusalOf } from '../verdicts'
import { subject, useAuthStore } from '@/stores/auth'

export const state = reactive({
  online: typeof navigator === 'undefined' ? true : navigator.onLine,
  pending: 0,
  /** refusals kept for the user to see (the queue page), until dismissed */
  refused: 0,
  syncing: false,
  recent: [] as Outcome[],
  /** the answers of the last pass that no page waited for (actions sent from the queue) */
  arrived: [] as Outcome[],
})

let queue: OfflineQueue | null = null
let user: number | null = null
const waiting = new Map<string, (outcome: Outcome | null) => void>()

function theQueue(): OfflineQueue {
  queue ??= new OfflineQueue()
  return queue
}

async function answerOf(response: Response): Promise<unknown> {
  try {
    return await response.json()
  } catch {
    return null
  }
}

type Post = (method: string, path: string, body?: unknown) => Promise<Response>

/** A request of many actions refused as a whole (a 4xx a re-send would repeat): one malformed
 * action can do that, so each goes again on its own and only the bad one is refused. */
function refusedWhole(outcome: Outcome): boolean {
  return outcome.status >= 400 && !retryable(outcome.status, outcome.body)
}

/**
 * The sender of the queue's groups through `post`: a group of one kind (and document) in one
 * request where the API takes many. A network failure throws (the group stays queued).
 */
export function sender(post: Post): Sender {
  const send = async (group: QueuedAction[]): Promise<Outcome[]> => {
    const outcomes = await sendGroup(post, group)
    if (group.length > 1 && outcomes.every((o) => !o.ok && refusedWhole(o) && o.status === outcomes[0]!.status)) {
      const alone: Outcome[] = []
      const ids = splitIds(group)
      for (const [i, action] of group.entries()) alone.push(...(await sendGroup(post, [action], ids[i])))
      return alone
    }
    return outcomes
  }
  return send
}

/** The client id each action of a group refused as a whole is sent alone under. A document's
 * codes keep the group's (its first action's): a code an earlier send of the group added, its
 * answer lost, answers `added`, not `duplicate` (a probe: the phone's count came out short); a
 * code twice in the group goes the second time under its own id, a duplicate as in one request.
 * Other actions go under their own ids (their endpoints take one each). */
function splitIds(group: QueuedAction[]): string[] {
  const seen = new Set<string>()
  return group.map((action) => {
    if (action.kind !== 'doc_codes') return action.id
    const code = String(action.body.code)
    const again = seen.has(code)
    seen.add(code)
    return again ? action.id : group[0]!.id
  })
}

async function sendGroup(post: Post, group: QueuedAction[], id = group[0]!.id): Promise<Outcome[]> {
  const first = group[0]!
  if (first.kind === 'doc_codes') {
    // the request's client id is its first action's: a group re-sent after a lost answer starts
    // with the same action (actions leave the queue in order, a group's all at once), so the
    // codes it added answer `added` again rather than `duplicate`
    const codes = group.map((a) => String(a.body.code))
    const response = await post('POST', `/documents/${first.target}/codes`, { codes, client_id: id })
    const body = await answerOf(response)
    const items = (body as { items?: { code: string }[] } | null)?.items ?? []
    return group.map((action, i) => ({
      action,
      ok: response.ok,
      status: response.status,
      body: response.ok ? (items[i] ?? items.find((it) => it.code === action.body.code)) : body,
    }))
  }
  if (first.kind === 'inspection' && group.length > 1) {
    const items = group.map((a) => ({ ...a.body, client_id: a.id }))
    const response = await post('POST', '/inspections/batch', { items })
    return batchOutcomes(group, response.status, await answerOf(response))
  }
  const path = {
    inspection: '/inspections',
    sale: '/sales',
    claim: '/rebates/claims',
    checkin: '/field/checkins',
    review: '/field/reviews',
  }[
    first.kind as Exclude<ActionKind, 'doc_codes'>
  ]
  const withId = { ...first.body, client_id: first.id }
  const response = await post('POST', path, withId)
  return [{ action: first, ok: response.ok, status: response.status, body: await answerOf(response) }]
}

const viaAuth = sender(request)

/** Is the signed-in token the user's (its JWT's subject)? */
function tokenOf(userId: number): boolean {
  return subject(useAuthStore().tokens?.access_token) === String(userId)
}

/** The app's sender: through the auth store (token, silent refresh), and only with the token of
 * the user who queued the actions — another user signed in meanwhile (the console of the same
 * browser) keeps them queued until theirs is back (a probe: an inspector's scan was recorded as
 * the admin's). */
export const send: Sender = async (group) => {
  if (!tokenOf(group[0]!.user)) throw new Error('signed in as another user')
  try {
    return await viaAuth(group)
  } catch (error) {
    timedOut ||= error instanceof DOMException && error.name === 'TimeoutError'
    throw error
  }
}

/** The refusals among these outcomes, as kept for the user to see (those of actions sent from
 * the queue: a page that waited for its answer has shown it already). */
function refused(outcomes: Outcome[]): Refusal[] {
  const out: Refusal[] = []
  for (const o of outcomes) {
    const message = refusalOf(o, i18n.global.locale.value) // in the language of the moment
    if (message === null) continue
    const { id, kind, label } = o.action
    out.push({ id, kind, label, status: o.status, message, at: Date.now() })
  }
  return out
}

/** Keep the refusals of a group that left the queue, but those a page waits for (it shows
 * them): called before the group is removed from the queue. */
function keepAnswered(user: number, outcomes: Outcome[]): void {
  const unattended = outcomes.filter((o) => !waiting.has(o.action.id))
  keepRefusals(user, refused(unattended.reverse()))
  refreshRefused()
}

function refreshRefused(): void {
  state.refused = user === null ? 0 : refusals(user).length
}

/** The signed-in user's refusals, newest first. */
export function refusedActions(): Refusal[] {
  return user === null ? [] : refusals(user)
}

/** Dismiss the given refusals (or all of them). */
export function dismissRefused(ids?: readonly string[]): void {
  if (user !== null) dismissRefusals(user, ids)
  refreshRefused()
}

async function refreshCount(): Promise<void> {
  state.pending = user === null ? 0 : await theQueue().count(user)
}

let current: Promise<Outcome[]> | null = null
/** A send given up for want of an answer (REQUEST_TIMEOUT_MS) since `enqueue` last looked. */
let timedOut = false
let rerun = false

/** Send what is queued (now); resolves when this pass is over. A call during a pass joins it
 * (and makes it look once more for what was queued meanwhile). */
export function flush(): Promise<Outcome[]> {
  if (user === null) return Promise.resolve([])
  if (current) {
    rerun = true
    return current
  }
  current = pass(user).finally(() => {
    current = null
  })
  return current
}

async function pass(user: number): Promise<Outcome[]> {
  state.syncing = true
  try {
    const outcomes: Outcome[] = []
    const unattended: Outcome[] = [] // answers no page waits for: sent from the queue
    do {
      rerun = false
      const got = await theQueue().flush(user, send, undefined, undefined, (group) => keepAnswered(user, group))
      for (const outcome of got) {
        const answer = waiting.get(outcome.action.id)
        if (answer) answer(outcome)
        else unattended.push(outcome)
        waiting.delete(outcome.action.id)
      }
      outcomes.push(...got)
      // counted inside the loop: nothing may await between the last look at `rerun` and the end
      // of the pass, or an action queued then would wait for the next flush
      await refreshCount()
    } while (rerun)
    outcomes.reverse() // newest first
    if (outcomes.length) state.recent = [...outcomes, ...state.recent].slice(0, 50)
    if (unattended.length) state.arrived = unattended
    return outcomes
  } finally {
    state.syncing = false
    void refreshCount()
  }
}

/**
 * Queue an action and, online, send it: resolves with its outcome once the server answered, or
 * null when it stays queued (offline, server unreachable).
 */
export async function enqueue(
  kind: ActionKind,
  body: Record<string, unknown>,
  label: string,
  target?: number,
): Promise<{ action: QueuedAction; outcome: Outcome | null }> {
  if (user === null) throw new Error('not signed in')
  const action = await theQueue().add({ kind, body, label, user, target })
  await refreshCount()
  if (!state.online) return { action, outcome: null }
  const answered = new Promise<Outcome | null>((resolve) => waiting.set(action.id, resolve))
  // Still queued after the pass: tried once more when it joined a pass that may have been past
  // its last look, or when its send failed but not by a time-out (an answer lost on a mobile
  // network: sent again under its client id, the server answers it); not after a stalled send,
  // which waited its whole time-out already (a probe: the page was held twice that)
  const joined = current !== null
  timedOut = false
  await flush()
  if ((joined || !timedOut) && waiting.has(action.id) && state.online) await flush()
  if (waiting.has(action.id)) {
    // still queued: the send failed; a later flush answers nobody
    waiting.delete(action.id)
    return { action, outcome: null }
  }
  return { action, outcome: await answered }
}

export function pendingActions(): Promise<QueuedAction[]> {
  return user === null ? Promise.resolve([]) : theQueue().all(user)
}

let timer: ReturnType<typeof setInterval> | null = null

/** Start syncing for the signed-in user (call after sign-in and at start). */
export function startSync(userId: number): void {
  user = userId
  refreshRefused()
  void refreshCount().then(() => (state.online && state.pending ? flush() : undefined))
  if (timer !== null) return
  window.addEventListener('online', () => {
    state.online = true
    void flush()
  })
  window.addEventListener('offline', () => {
    state.online = false
  })
  timer = setInterval(() => {
    if (state.pending > 0 && state.online) void flush()
  }, 30_000)
}

export function stopSync(): void {
  user = null
  state.pending = 0
  state.refused = 0
  state.recent = []
  state.arrived = []
}
