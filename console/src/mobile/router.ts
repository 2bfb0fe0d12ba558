// The staff app's pages, in history mode under /m/ (the server answers index.html below it).
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'

import { counterRoutes } from './pages/counter/routes'
import { fieldRoutes } from './pages/field/routes'
import { ensureMe } from './session'
import { startSync } from './offline/sync'
import { useAuthStore } from '@/stores/auth'

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean
    permission?: string | readonly string[]
  }
}

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./pages/LoginPage.vue'), meta: { public: true } },
  { path: '/', name: 'home', component: () => import('./pages/HomePage.vue') },
  { path: '/inspect', name: 'inspect', component: () => import('./pages/InspectPage.vue'), meta: { permission: 'inspect.scan' } },
  { path: '/inspect/today', name: 'inspect-today', component: () => import('./pages/InspectTodayPage.vue'), meta: { permission: 'inspect.scan' } },
  { path: '/documents', name: 'documents', component: () => import('./pages/DocumentsPage.vue'), meta: { permission: 'logistics.scan' } },
  { path: '/documents/:id(\\d+)', name: 'document', component: () => import('./pages/DocumentPage.vue'), meta: { permission: 'logistics.scan' } },
  { path: '/sale', name: 'sale', component: () => import('./pages/SalePage.vue'), meta: { permission: 'logistics.scan' } },
  { path: '/claim', name: 'claim', component: () => import('./pages/ClaimPage.vue'), meta: { permission: 'sales.claim' } },
  { path: '/queue', name: 'queue', component: () => import('./pages/QueuePage.vue') },
  { path: '/password', name: 'password', component: () => import('./pages/PasswordPage.vue') },
  ...counterRoutes,
  ...fieldRoutes,
  { path: '/:rest(.*)*', redirect: { name: 'home' } },
]

export const router = createRouter({ history: createWebHistory(import.meta.env.BASE_URL), routes })

router.beforeEach(async (to) => {
  if (to.meta.public) return true
  const me = await ensureMe()
  if (!me || me.user_id === null) return { name: 'login', query: { redirect: to.fullPath } }
  // a password given to be replaced first: nothing else works until then (403 from the API)
  if (me.must_change_password) return to.name === 'password' ? true : { name: 'password' }
  startSync(me.user_id)
  if (!useAuthStore().can(to.meta.permission)) return { name: 'home' }
  return true
})
