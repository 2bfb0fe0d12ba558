// The inspectors the records can be filtered by (GET /inspections?inspector_id=): those behind
// the records the user sees, as GET /inspections/inspectors names them. Pure shaping here; the
// fetching in InspectorSelect.vue.
export interface Inspector {
  id: number
  name: string
}

/** An option of each inspector: the display name, else the username. */
export function inspectorOptions(rows: readonly { id: number; username: string; display_name: string }[]): Inspector[] {
  return rows.map((r) => ({ id: r.id, name: r.display_name.trim() || r.username }))
}
