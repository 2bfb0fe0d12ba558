// Roles the user can assign (GET /roles) and every permission (GET /permissions), loaded once;
// forgotten when the signed-in user signs out or changes (roles are those of the user's line).
import { defineStore } from 'pinia'
import { shallowRef } from 'vue'

import { api } from '@/api/client'
import { unwrap } from '@/api/errors'
import type { Role, Schemas } from '@/api/types'
import { onUserChange } from '@/stores/auth'

type Permission = Schemas['PermissionOut']

/** May a user holding `held` grant every one of `permissions`? The API's rule (check_grantable in
 * app/auth/service.py): nobody hands out a permission they do not hold, each one by name (none
 * implies another, platform.admin included: held by a platform operator only). */
export function mayGrant(permissions: readonly string[], held: ReadonlySet<string>): boolean {
  return permissions.every((p) => held.has(p))
}

/** May a user holding `held` change (edit, reset the password of) a user holding the roles named
 * `names`? The API's rule (ensure_not_stronger in app/auth/service.py): only when every
 * permission of those roles is held (a probe: an agent's administrator was offered Edit on a user
 * with a brand role, and saving was 403 stronger_account). A name not among `roles` (not loaded
 * yet) cannot be judged: no. A name that roles of two organisations share counts both. */
export function mayChangeHolder(names: readonly string[], roles: readonly Role[], held: ReadonlySet<string>): boolean {
  return names.every((name) => {
    const named = roles.filter((r) => r.name === name)
    return named.length > 0 && named.every((r) => mayGrant(r.permissions, held))
  })
}

/** The roles to offer a user holding `held` (a probe: an agent's administrator was offered
 * brand_admin, and saving was 400 permission_escalation): those whose permissions they hold,
 * and the `kept` ones (the edited user's roles, shown so they are not silently dropped). */
export function grantableRoles(roles: readonly Role[], held: ReadonlySet<string>, kept: readonly string[] = []): Role[] {
  return roles.filter((r) => kept.includes(r.name) || mayGrant(r.permissions, held))
}

/** The permissions to offer a user holding `held` for a role or an API key: those they hold, and
 * the `kept` ones (already ticked on the role being edited). */
export function grantablePermissions(permissions: readonly Permission[], held: ReadonlySet<string>, kept: readonly string[] = []): Permission[] {
  return permissions.filter((p) => held.has(p.name) || kept.includes(p.name))
}

export const useRolesStore = defineStore('roles', () => {
  const roles = shallowRef<Role[]>([])
  const permissions = shallowRef<Permission[]>([])
  let generation = 0 // bumped by reset: an answer for the previous user is not kept

  async function loadRoles(force = false): Promise<Role[]> {
    if (roles.value.length && !force) return roles.value
    const mine = generation
    const found: Role[] = []
    for (let page = 1; page <= 10; page++) {
      const data = await unwrap(await api.GET('/roles', { params: { query: { page, per_page: 200 } } }))
      if (mine !== generation) return roles.value
      found.push(...data.items)
      if (page * 200 >= data.total) break
    }
    roles.value = found
    return found
  }

  async function loadPermissions(): Promise<Permission[]> {
    if (permissions.value.length) return permissions.value
    const mine = generation
    const data = await unwrap(await api.GET('/permissions', { params: { query: { page: 1, per_page: 200 } } }))
    if (mine !== generation) return permissions.value
    permissions.value = data.items
    return data.items
  }

  /** Forget the roles and permissions (another user signs in next). */
  function reset(): void {
    generation++
    roles.value = []
    permissions.value = []
  }

  onUserChange(reset)

  return { roles, permissions, loadRoles, loadPermissions, reset }
})
