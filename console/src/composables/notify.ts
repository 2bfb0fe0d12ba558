import { i18n } from '@/i18n'
import { failureText } from '@/i18n/apiErrors'

/** Show an error as a message at the top: an ApiFailure in the console's language with its stable
 * code (src/i18n/apiErrors.ts), another Error's message. */
export function notifyError(error: unknown): void {
  const text = failureText(error, i18n.global.locale.value)
  ElMessage({ type: 'error', message: text, showClose: true, duration: 6000 })
}

export function notifyOk(text: string): void {
  ElMessage({ type: 'success', message: text })
}
