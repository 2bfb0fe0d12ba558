// The counter's pages of the staff app, registered by src/mobile/router.ts: redeeming a member's
// gift code (M4, as the API: `redemptions.fulfil`) and a consumer's return or exchange (L8,
// `logistics.scan`, as POST /returns).
import type { RouteRecordRaw } from 'vue-router'

export const counterRoutes: RouteRecordRaw[] = [
  { path: '/redeem', name: 'redeem', component: () => import('./RedeemPage.vue'), meta: { permission: 'redemptions.fulfil' } },
  { path: '/return', name: 'return', component: () => import('./ReturnPage.vue'), meta: { permission: 'logistics.scan' } },
]
