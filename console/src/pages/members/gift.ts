// The gift form of the gifts page: what a gift shows in it, and the body sent for a creation
// (POST /gifts) or an edit (PATCH /gifts/{id}: only the fields changed — the stock above all: an
// edit of the name never writes back the stock the form was opened with while members redeemed
// meanwhile).
import type { Schemas } from '@/api/types'
import { shanghaiInstant, shanghaiWallClock } from '@/utils/format'

export type Gift = Schemas['GiftOut']
export type GiftCreate = Schemas['GiftIn']
export type GiftChanges = Schemas['GiftPatch']

export interface GiftForm {
  name: string
  kind: 'online' | 'offline'
  points_cost: number
  stock: number
  collect_days: number
  description: string
  picture_url: string
  how_to_collect: string
  display_order: number
  /** Asia/Shanghai wall-clock times (the picker's WALL_CLOCK, as the tables show them), '' or
   * null for none; sent with their offset (+08:00). */
  valid_from: string | null
  valid_to: string | null
  provinces: string[]
}

export function blankGift(): GiftForm {
  return {
    name: '',
    kind: 'offline',
    points_cost: 100,
    stock: 0,
    collect_days: 30,
    description: '',
    picture_url: '',
    how_to_collect: '',
    display_order: 0,
    valid_from: '',
    valid_to: '',
    provinces: [],
  }
}

export function giftForm(g: Gift): GiftForm {
  return {
    name: g.name,
    kind: g.kind,
    points_cost: g.points_cost,
    stock: g.stock,
    collect_days: g.collect_days,
    description: g.description ?? '',
    picture_url: g.picture_url ?? '',
    how_to_collect: g.how_to_collect ?? '',
    display_order: g.display_order,
    valid_from: shanghaiWallClock(g.valid_from),
    valid_to: shanghaiWallClock(g.valid_to),
    provinces: [...g.provinces],
  }
}

function orNull(text: string | null): string | null {
  const value = (text ?? '').trim()
  return value === '' ? null : value
}

function fields(form: GiftForm) {
  return {
    name: form.name.trim(),
    kind: form.kind,
    points_cost: form.points_cost,
    stock: form.stock,
    collect_days: form.collect_days,
    description: orNull(form.description),
    picture_url: orNull(form.picture_url),
    how_to_collect: orNull(form.how_to_collect),
    display_order: form.display_order,
    valid_from: shanghaiInstant(orNull(form.valid_from)),
    valid_to: shanghaiInstant(orNull(form.valid_to)),
    provinces: [...form.provinces],
  }
}

export function giftCreateBody(form: GiftForm): GiftCreate {
  return fields(form)
}

function sameProvinces(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort()
  const y = [...b].sort()
  return x.length === y.length && x.every((p, i) => p === y[i])
}

/** Two times the same instant ("…+08:00" picked, "…Z" answered), or both none. */
function sameTime(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b
  const x = Date.parse(a)
  const y = Date.parse(b)
  return Number.isNaN(x) || Number.isNaN(y) ? a === b : x === y
}

/** The changed fields only (nothing: the save writes nothing). */
export function giftPatchBody(before: Gift, form: GiftForm): GiftChanges {
  const now = fields(form)
  const changes: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(now)) {
    const old = before[key as keyof Gift] as unknown
    const same =
      key === 'provinces'
        ? sameProvinces(value as string[], old as string[])
        : key === 'valid_from' || key === 'valid_to'
          ? sameTime(value as string | null, old as string | null)
          : value === old
    if (!same) changes[key] = value
  }
  return changes as GiftChanges
}
