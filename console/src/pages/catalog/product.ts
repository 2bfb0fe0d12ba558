// The product form of the catalogue page: what a product shows in it, and the body sent for a
// creation (POST /products) or an edit (PATCH /products/{id}: only the fields changed, so a
// save that changes nothing writes nothing and a GTIN already printed on labels is never sent
// again by an edit of another field).
import type { Schemas } from '@/api/types'
import { gtin14 } from './gtin'

export type Product = Schemas['ProductOut']
export type ProductCreate = Schemas['ProductIn']
export type ProductChanges = Schemas['ProductPatch']

export interface ProductForm {
  name: string
  product_no: string
  /** The category's id as text ('' for none). */
  category_id: string
  spec: string
  product_type: string
  barcode: string
  gtin: string
  image_url: string
  colour_no: string
  efficacy: string
  video_url: string
  display_order: number
  published: boolean
  /** The owning organisation's id as text ('' for the caller's own); only for a creation. */
  org_id: string
}

export function blankProduct(): ProductForm {
  return {
    name: '',
    product_no: '',
    category_id: '',
    spec: '',
    product_type: '',
    barcode: '',
    gtin: '',
    image_url: '',
    colour_no: '',
    efficacy: '',
    video_url: '',
    display_order: 0,
    published: false,
    org_id: '',
  }
}

export function formOf(p: Product): ProductForm {
  return {
    name: p.name,
    product_no: p.product_no,
    category_id: p.category_id === null ? '' : String(p.category_id),
    spec: p.spec,
    product_type: p.product_type,
    barcode: p.barcode ?? '',
    gtin: p.gtin ?? '',
    image_url: p.image_url ?? '',
    colour_no: p.colour_no ?? '',
    efficacy: p.efficacy ?? '',
    video_url: p.video_url ?? '',
    display_order: p.display_order,
    published: p.published,
    org_id: String(p.org_id),
  }
}

/** Blank (after trimming) is null: the API's "none" for the optional fields. */
function orNull(text: string): string | null {
  const value = text.trim()
  return value === '' ? null : value
}

function idOrNull(text: string): number | null {
  return text === '' ? null : Number(text)
}

/** The fields of a product both bodies carry, from the form (trimmed; blanks as null). */
function fields(form: ProductForm) {
  return {
    name: form.name.trim(),
    product_no: form.product_no.trim(),
    category_id: idOrNull(form.category_id),
    spec: form.spec.trim(),
    product_type: form.product_type.trim(),
    barcode: orNull(form.barcode),
    gtin: orNull(form.gtin),
    image_url: orNull(form.image_url),
    colour_no: orNull(form.colour_no),
    efficacy: orNull(form.efficacy),
    video_url: orNull(form.video_url),
    display_order: form.display_order,
    published: form.published,
  }
}

export function createBody(form: ProductForm): ProductCreate {
  return { ...fields(form), org_id: idOrNull(form.org_id) }
}

/** The changed fields only; a GTIN counts as changed when its GTIN-14 differs (the API answers
 * ``06901234567892`` for a ``6901234567892`` typed). */
export function patchBody(before: Product, form: ProductForm): ProductChanges {
  const now = fields(form)
  const changes: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(now)) {
    const old = before[key as keyof Product]
    if (key === 'gtin') {
      const same = value === null ? old === null : old !== null && gtin14(value as string) === old
      if (!same) changes[key] = value
    } else if (value !== old) changes[key] = value
  }
  return changes as ProductChanges
}
