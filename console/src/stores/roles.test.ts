// What the console offers a user to grant: roles and permissions (the API's check_grantable).
import { describe, expect, it } from 'vitest'

import { grantablePermissions, grantableRoles, mayChangeHolder, mayGrant } from './roles'
import type { Role, Schemas } from '@/api/types'

const role = (name: string, permissions: string[]): Role => ({ id: name.length, name, description: '', builtin: true, org_id: null, permissions })
const permission = (name: string): Schemas['PermissionOut'] => ({ name, description: name }) as Schemas['PermissionOut']
const AGENT_ADMIN = new Set(['orgs.read', 'users.read', 'users.write', 'roles.write'])
const ROLES = [
  role('platform_admin', ['platform.admin', 'orgs.read', 'codes.issue']),
  role('brand_admin', ['orgs.read', 'codes.issue']),
  role('org_admin', ['orgs.read', 'users.write']),
  role('nothing', []),
]

describe('granting', () => {
  it('takes holding every permission, each by name (platform.admin implies none and is implied by none)', () => {
    expect(mayGrant(['orgs.read', 'users.write'], AGENT_ADMIN)).toBe(true)
    expect(mayGrant(['orgs.read', 'codes.issue'], AGENT_ADMIN)).toBe(false)
    expect(mayGrant([], AGENT_ADMIN)).toBe(true)
    expect(mayGrant(['codes.issue'], new Set(['platform.admin']))).toBe(false)
    expect(mayGrant(['platform.admin'], new Set(['orgs.read', 'codes.issue', 'users.write']))).toBe(false)
  })

  // A probe: an agent's administrator creating a user was offered every built-in role,
  // brand_admin and platform_admin among them, and saving with one was 400 permission_escalation.
  it('offers the roles whose permissions the user holds, and keeps the edited user’s own', () => {
    expect(grantableRoles(ROLES, AGENT_ADMIN).map((r) => r.name)).toEqual(['org_admin', 'nothing'])
    expect(grantableRoles(ROLES, AGENT_ADMIN, ['brand_admin']).map((r) => r.name)).toEqual(['brand_admin', 'org_admin', 'nothing'])
  })

  // A probe: the permission picker listed the whole catalogue; ticking codes.issue was refused.
  it('offers the permissions the user holds, and keeps those ticked on the edited role', () => {
    const all = ['platform.admin', 'codes.issue', 'orgs.read', 'users.write', 'members.read'].map(permission)
    expect(grantablePermissions(all, AGENT_ADMIN).map((p) => p.name)).toEqual(['orgs.read', 'users.write'])
    expect(grantablePermissions(all, AGENT_ADMIN, ['members.read']).map((p) => p.name)).toEqual(['orgs.read', 'users.write', 'members.read'])
  })

  // A probe: an agent's administrator was offered Edit and Reset password on a user holding a
  // brand role with a brand-only permission; saving either was 403 stronger_account.
  it('changes only holders of roles whose every permission the user holds, and known roles only', () => {
    expect(mayChangeHolder(['org_admin', 'nothing'], ROLES, AGENT_ADMIN)).toBe(true)
    expect(mayChangeHolder([], ROLES, AGENT_ADMIN)).toBe(true)
    expect(mayChangeHolder(['org_admin', 'brand_admin'], ROLES, AGENT_ADMIN)).toBe(false)
    expect(mayChangeHolder(['org_admin'], [], AGENT_ADMIN)).toBe(false) // the roles not loaded yet
    const twice = [...ROLES, role('org_admin', ['codes.issue'])] // two organisations' roles of one name
    expect(mayChangeHolder(['org_admin'], twice, AGENT_ADMIN)).toBe(false)
  })
})
