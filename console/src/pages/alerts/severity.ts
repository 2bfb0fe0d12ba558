// Alert severity (seed 三: 预警以颜色标注) as an Element Plus tag type: info grey, warning amber,
// critical red. An unknown severity shows as info.
export type TagType = 'primary' | 'success' | 'info' | 'warning' | 'danger'

const TAGS: Record<string, TagType> = { info: 'info', warning: 'warning', critical: 'danger' }

export function severityTag(severity: string | null | undefined): TagType {
  return TAGS[severity ?? ''] ?? 'info'
}
