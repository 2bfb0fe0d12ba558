// An export job (POST /batches/{n}/exports answers 201 done, or 202 queued for a worker) watched
// until it ends: GET /exports/{id} every `interval` ms, each answer reported, until done or failed.

export interface JobLike {
  state: string
  progress: number
  total: number
}

export const FINAL_STATES = ['done', 'failed'] as const

export function isFinal(job: JobLike): boolean {
  return (FINAL_STATES as readonly string[]).includes(job.state)
}

/** Percent written, 0..100 (a done job is 100 whatever its counter says). */
export function percentOf(job: JobLike): number {
  if (job.state === 'done') return 100
  if (!job.total) return 0
  return Math.max(0, Math.min(100, Math.floor((job.progress * 100) / job.total)))
}

export interface PollOptions {
  /** Milliseconds between two reads. */
  interval?: number
  /** Called with each answer (the first one included). */
  onUpdate?: (job: JobLike) => void
  /** Stop early (a closed dialog): the promise resolves with the last answer. */
  signal?: AbortSignal
  sleep?: (ms: number) => Promise<void>
}

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Read the job until it is done or failed (or the signal aborts); the last answer. A read that
 * throws (network, 5xx) ends the watch with that error. */
export async function pollJob<J extends JobLike>(
  first: J,
  read: () => Promise<J>,
  { interval = 1000, onUpdate, signal, sleep = wait }: PollOptions = {},
): Promise<J> {
  let job = first
  onUpdate?.(job)
  while (!isFinal(job) && !signal?.aborted) {
    await sleep(interval)
    if (signal?.aborted) break
    job = await read()
    onUpdate?.(job)
  }
  return job
}
