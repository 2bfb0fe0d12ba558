import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { isFinal, percentOf, pollJob, type JobLike } from './exportJob'

const job = (state: string, progress: number, total = 1000): JobLike => ({ state, progress, total })

describe('percentOf', () => {
  it('is the share written, bounded, and 100 once done', () => {
    expect(percentOf(job('queued', 0))).toBe(0)
    expect(percentOf(job('running', 333))).toBe(33)
    expect(percentOf(job('running', 5000))).toBe(100)
    expect(percentOf(job('done', 0))).toBe(100)
    expect(percentOf(job('running', 5, 0))).toBe(0)
  })
  it('knows the final states', () => {
    expect(isFinal(job('done', 1))).toBe(true)
    expect(isFinal(job('failed', 1))).toBe(true)
    expect(isFinal(job('running', 1))).toBe(false)
  })
})

describe('pollJob (fake timers)', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('reads every interval until done, reporting each answer', async () => {
    const answers = [job('running', 400), job('running', 800), job('done', 1000)]
    const read = vi.fn(async () => answers.shift()!)
    const seen: number[] = []
    const watching = pollJob(job('queued', 0), read, { interval: 500, onUpdate: (j) => seen.push(percentOf(j)) })
    expect(read).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(499)
    expect(read).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(read).toHaveBeenCalledTimes(1)
    await vi.advanceTimersByTimeAsync(1000)
    const last = await watching
    expect(last.state).toBe('done')
    expect(read).toHaveBeenCalledTimes(3)
    expect(seen).toEqual([0, 40, 80, 100])
  })

  it('does not read a job that is already done', async () => {
    const read = vi.fn()
    const last = await pollJob(job('done', 1000), read)
    expect(last.state).toBe('done')
    expect(read).not.toHaveBeenCalled()
  })

  it('stops at failed', async () => {
    const read = vi.fn(async () => job('failed', 10))
    const watching = pollJob(job('running', 0), read, { interval: 100 })
    await vi.advanceTimersByTimeAsync(100)
    expect((await watching).state).toBe('failed')
    expect(read).toHaveBeenCalledTimes(1)
  })

  it('stops when aborted', async () => {
    const read = vi.fn(async () => job('running', 10))
    const stop = new AbortController()
    const watching = pollJob(job('running', 0), read, { interval: 100, signal: stop.signal })
    await vi.advanceTimersByTimeAsync(250)
    stop.abort()
    await vi.advanceTimersByTimeAsync(100)
    const last = await watching
    expect(last.state).toBe('running')
    expect(read).toHaveBeenCalledTimes(2)
  })

  it('ends with the error of a failed read', async () => {
    const read = vi.fn(async () => {
      throw new Error('boom')
    })
    const watching = pollJob(job('running', 0), read, { interval: 100 })
    const caught = watching.catch((e: Error) => e.message)
    await vi.advanceTimersByTimeAsync(100)
    expect(await caught).toBe('boom')
  })
})
