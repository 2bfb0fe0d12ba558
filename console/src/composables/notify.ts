import { ApiFailure } from '@/api/errors'

/** Show an error (an ApiFailure's message, with its code) as a message at the top. */
export function notifyError(error: unknown): void {
  const text =
    error instanceof ApiFailure ? `${error.message} (${error.code})` : error instanceof Error ? error.message : String(error)
  ElMessage({ type: 'error', message: text, showClose: true, duration: 6000 })
}

export function notifyOk(text: string): void {
  ElMessage({ type: 'success', message: text })
}
