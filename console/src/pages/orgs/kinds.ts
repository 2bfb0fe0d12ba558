import type { Schemas } from '@/api/types'

export type Kind = Schemas['OrgIn']['kind']
export const KINDS: Kind[] = ['brand', 'factory', 'warehouse', 'branch', 'agent', 'distributor', 'store', 'printer']
