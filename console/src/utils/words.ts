// A code the API answers (a record's reason) in the reader's words: the text under
// ``<prefix>.<code>`` of the page area's messages, the code itself when there is none (a code
// added to the API later stays readable for support), '—' for none.
type Translate = (key: string) => string
type Has = (key: string) => boolean

export function wordsOf(t: Translate, te: Has, prefix: string, code: string | null | undefined): string {
  if (!code) return '—'
  const key = `${prefix}.${code}`
  return te(key) ? t(key) : code
}
