// Roles the user can assign (GET /roles) and every permission (GET /permissions), loaded once.
import { defineStore } from 'pinia'
import { shallowRef } from 'vue'

import { api } from '@/api/client'
import { unwrap } from '@/api/errors'
import type { Role, Schemas } from '@/api/types'

type Permission = Schemas['PermissionOut']

export const useRolesStore = defineStore('roles', () => {
  const roles = shallowRef<Role[]>([])
  const permissions = shallowRef<Permission[]>([])

  async function loadRoles(force = false): Promise<Role[]> {
    if (roles.value.length && !force) return roles.value
    const found: Role[] = []
    for (let page = 1; page <= 10; page++) {
      const data = await unwrap(await api.GET('/roles', { params: { query: { page, per_page: 200 } } }))
      found.push(...data.items)
      if (page * 200 >= data.total) break
    }
    roles.value = found
    return found
  }

  async function loadPermissions(): Promise<Permission[]> {
    if (permissions.value.length) return permissions.value
    const data = await unwrap(await api.GET('/permissions', { params: { query: { page: 1, per_page: 200 } } }))
    permissions.value = data.items
    return data.items
  }

  return { roles, permissions, loadRoles, loadPermissions }
})
