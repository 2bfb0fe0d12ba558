// The inspectors the records can be filtered by (GET /inspections?inspector_id=): those of the
// latest records the user sees, and, for a user who may read the user directory (users.read),
// any user found by a search. Pure merging here; the fetching in InspectorSelect.vue.
export interface Inspector {
  id: number
  name: string
}

/** Distinct inspectors of inspection rows (rows without one left out), by name. */
export function inspectorsOf(rows: readonly { inspector_id?: number | null; inspector?: string | null }[]): Inspector[] {
  const seen = new Map<number, string>()
  for (const row of rows) {
    if (row.inspector_id === null || row.inspector_id === undefined || seen.has(row.inspector_id)) continue
    seen.set(row.inspector_id, row.inspector || `#${row.inspector_id}`)
  }
  return sortByName([...seen].map(([id, name]) => ({ id, name })))
}

/** Both lists, each inspector once (the first list's name wins), by name. */
export function mergeInspectors(a: readonly Inspector[], b: readonly Inspector[]): Inspector[] {
  const seen = new Map<number, Inspector>()
  for (const x of [...a, ...b]) if (!seen.has(x.id)) seen.set(x.id, x)
  return sortByName([...seen.values()])
}

/** Those whose name holds the text typed (any case); all for no text. */
export function matching(list: readonly Inspector[], typed: string): Inspector[] {
  const q = typed.trim().toLowerCase()
  return q ? list.filter((x) => x.name.toLowerCase().includes(q)) : [...list]
}

function sortByName(list: Inspector[]): Inspector[] {
  return list.sort((x, y) => x.name.localeCompare(y.name) || x.id - y.id)
}
