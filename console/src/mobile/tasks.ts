// The home screen's tasks, by the permissions of the user's role (app/auth/permissions.py).
export interface Task {
  name: string
  title: string
  hint: string
  icon: string
  permission?: string
}

export const TASKS: readonly Task[] = [
  { name: 'inspect', title: 'home.inspect', hint: 'home.inspectHint', icon: 'scan', permission: 'inspect.scan' },
  { name: 'inspect-today', title: 'home.today', hint: 'home.todayHint', icon: 'todo-list-o', permission: 'inspect.scan' },
  { name: 'documents', title: 'home.documents', hint: 'home.documentsHint', icon: 'logistics', permission: 'logistics.scan' },
  { name: 'sale', title: 'home.sale', hint: 'home.saleHint', icon: 'shopping-cart-o', permission: 'logistics.scan' },
  { name: 'claim', title: 'home.claim', hint: 'home.claimHint', icon: 'gold-coin-o', permission: 'sales.claim' },
  { name: '', title: 'home.visits', hint: 'home.visitsHint', icon: 'location-o', permission: 'field.visit' },
]

export function tasksFor(permissions: readonly string[]): Task[] {
  const held = new Set(permissions)
  return TASKS.filter((task) => !task.permission || held.has(task.permission))
}
