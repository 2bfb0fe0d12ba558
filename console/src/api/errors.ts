// The API's one error shape, {"error": {"code", "message", "details"}} (app/errors.py), as an
// Error the pages can catch and show.
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message)
    this.name = 'ApiFailure'
  }
}

/** Did the server refuse the session itself (401: revoked, expired past refresh; 403)? Any other
 * failure (offline, 408, 429, a gateway's 5xx or HTML page, a refresh not getting through) says
 * nothing of it: the user stays signed in (a probe: a 503 of GET /auth/me signed a clerk out). */
export function sessionRefused(error: unknown): boolean {
  return error instanceof ApiFailure && (error.status === 401 || error.status === 403)
}

/** The ApiFailure of a non-2xx answer (any body: JSON error, HTML proxy page, nothing). */
export async function failureOf(response: Response): Promise<ApiFailure> {
  let code = `http_${response.status}`
  let message = response.statusText || code
  let details: unknown = null
  try {
    const body = (await response.clone().json()) as { error?: { code?: string; message?: string; details?: unknown } }
    if (body?.error?.code) {
      code = body.error.code
      message = body.error.message ?? message
      details = body.error.details ?? null
    }
  } catch {
    // not JSON: keep the status
  }
  return new ApiFailure(response.status, code, message, details)
}

/** The data of an openapi-fetch answer, or its ApiFailure thrown. openapi-fetch has already read
 * the body of an error answer (into ``error``), so its code and message are taken from there. */
export async function unwrap<D>(result: { data?: D; error?: unknown; response: Response }): Promise<D> {
  if (result.response.ok) return result.data as D
  const body = result.error as { error?: { code?: string; message?: string; details?: unknown } } | undefined
  if (body && typeof body === 'object' && body.error?.code) {
    const { status, statusText } = result.response
    throw new ApiFailure(status, body.error.code, body.error.message ?? statusText, body.error.details ?? null)
  }
  throw await failureOf(result.response)
}
