// The field force's pages of the staff app (SPEC F1–F3), registered by src/mobile/router.ts.
// /n/<code> is the address a store nameplate's QR code holds ({public URL}/m/n/<code>): a phone's
// own camera app opens it here, on the check-in page with that nameplate ready.
import type { RouteRecordRaw } from 'vue-router'

const visit = { permission: 'field.visit' }

export const fieldRoutes: RouteRecordRaw[] = [
  { path: '/field/checkin', name: 'field-checkin', component: () => import('./CheckinPage.vue'), meta: visit },
  { path: '/n/:code', name: 'field-nameplate', component: () => import('./CheckinPage.vue'), meta: visit, props: true },
  { path: '/field/plans', name: 'field-plans', component: () => import('./PlansPage.vue'), meta: visit },
  { path: '/field/plans/new', name: 'field-plan-new', component: () => import('./PlanPage.vue'), meta: visit },
  { path: '/field/plans/:id(\\d+)', name: 'field-plan', component: () => import('./PlanPage.vue'), meta: visit, props: true },
  { path: '/field/review', name: 'field-review', component: () => import('./ReviewPage.vue'), meta: visit },
  { path: '/field/track', name: 'field-track', component: () => import('./TrackPage.vue'), meta: visit },
  { path: '/field/supervise', name: 'field-supervise', component: () => import('./SupervisePage.vue'), meta: { permission: 'field.supervise' } },
]
