/** Where the API lives: the console's own origin (it is served by the API server at /console). */
export function apiBase(): string {
  return globalThis.location?.origin ?? 'http://localhost'
}
