// Short names for the generated API shapes (src/api/schema.d.ts, `npm run gen-api`).
import type { components, paths } from './schema'

export type Schemas = components['schemas']
export type Me = Schemas['MeOut']
export type Tokens = Schemas['TokenOut']
export type User = Schemas['UserOut']
export type Org = Schemas['OrgOut']
export type Role = Schemas['RoleOut']
export type ApiKey = Schemas['ApiKeyOut']
export type ApiKeyCreated = Schemas['ApiKeyCreated']
export type AuditRow = Schemas['AuditOut']
export type ApiError = Schemas['Error']

/** Every list endpoint's answer (app/paging.py ``Page``). */
export interface Page<T> {
  items: T[]
  page: number
  per_page: number
  total: number
}

/** API paths answering GET (the paged list component takes one of these). */
export type GetPath = {
  [P in keyof paths]: paths[P] extends { get: unknown } ? P : never
}[keyof paths]
