import createClient from 'openapi-fetch'
import { describe, expect, it } from 'vitest'

import { ApiFailure, unwrap } from './errors'

const answer = (status: number, body: string, type = 'application/json'): typeof fetch =>
  (async () => new Response(body, { status, statusText: 'Bad Request', headers: { 'Content-Type': type } })) as typeof fetch

describe('unwrap', () => {
  it("throws the API's error code and message of an openapi-fetch answer (its body already read)", async () => {
    const body = JSON.stringify({ error: { code: 'malformed_code', message: 'not a serial or SSCC', details: null } })
    const client = createClient<Record<string, never>>({ baseUrl: 'http://x', fetch: answer(400, body) })
    const failure = await unwrap(await client.GET('/trace/x' as never)).catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(ApiFailure)
    expect(failure).toMatchObject({ status: 400, code: 'malformed_code', message: 'not a serial or SSCC' })
  })

  it('falls back to the status for a body that is not the error shape', async () => {
    const client = createClient<Record<string, never>>({ baseUrl: 'http://x', fetch: answer(502, '<html>proxy</html>', 'text/html') })
    const failure = await unwrap(await client.GET('/x' as never)).catch((e: unknown) => e)
    expect(failure).toMatchObject({ status: 502, code: 'http_502' })
  })

  it('returns the data of a 2xx answer', async () => {
    const client = createClient<Record<string, never>>({ baseUrl: 'http://x', fetch: answer(200, '{"a":1}') })
    expect(await unwrap(await client.GET('/x' as never))).toEqual({ a: 1 })
  })
})
