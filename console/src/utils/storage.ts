// localStorage when there is one (the browser), else memory (Vitest under Node): the stores
// never touch window.localStorage directly.
const memory = new Map<string, string>()

function local(): Storage | null {
  try {
    return typeof globalThis.localStorage === 'undefined' ? null : globalThis.localStorage
  } catch {
    return null // storage disabled by the browser's privacy settings
  }
}

export const storage = {
  get(key: string): string | null {
    const s = local()
    return s ? s.getItem(key) : (memory.get(key) ?? null)
  },
  set(key: string, value: string): void {
    const s = local()
    if (s) s.setItem(key, value)
    else memory.set(key, value)
  },
  remove(key: string): void {
    const s = local()
    if (s) s.removeItem(key)
    else memory.delete(key)
  },
}
