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
  { name: 'return', title: 'counter.home.ret', hint: 'counter.home.retHint', icon: 'exchange', permission: 'logistics.scan' },
  { name: 'redeem', title: 'counter.home.redeem', hint: 'counter.home.redeemHint', icon: 'gift-o', permission: 'redemptions.fulfil' },
  { name: 'field-checkin', title: 'field.home.checkin', hint: 'field.home.checkinHint', icon: 'location-o', permission: 'field.visit' },
  { name: 'field-plans', title: 'field.home.plans', hint: 'field.home.plansHint', icon: 'calendar-o', permission: 'field.visit' },
  { name: 'field-review', title: 'field.home.review', hint: 'field.home.reviewHint', icon: 'star-o', permission: 'field.visit' },
  { name: 'field-track', title: 'field.home.track', hint: 'field.home.trackHint', icon: 'guide-o', permission: 'field.visit' },
  { name: 'field-supervise', title: 'field.home.supervise', hint: 'field.home.superviseHint', icon: 'friends-o', permission: 'field.supervise' },
]

export function tasksFor(permissions: readonly string[]): Task[] {
  const held = new Set(permissions)
  return TASKS.filter((task) => !task.permission || held.has(task.permission))
}
