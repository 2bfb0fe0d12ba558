// vue-router in history mode under /console/ (the server answers index.html for every path below
// it). Signed-out users go to /login; a page the user may not open shows "forbidden". Who the user
// is (GET /auth/me, after a reload) not answered — offline, a gateway's 5xx, a refresh that did not
// get through — keeps the session and shows "unavailable" with a retry: only a refusal of the
// session (401/403, sessionRefused) signs out (a probe: a 503 signed out the console and the staff
// app sharing its tokens, the refresh token revoked on the server).
import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'

import { PAGES } from './pages'
import { sessionRefused } from '@/api/errors'
import ConsoleLayout from '@/layouts/ConsoleLayout.vue'
import { useAuthStore } from '@/stores/auth'

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean
    title?: string
    permission?: string | readonly string[]
    brandStaff?: boolean
  }
}

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('@/pages/login/LoginPage.vue'), meta: { public: true } },
  {
    path: '/unavailable',
    name: 'unavailable',
    component: () => import('@/pages/errors/UnavailablePage.vue'),
    meta: { public: true },
  },
  {
    path: '/',
    component: ConsoleLayout,
    children: [
      ...PAGES.map((page) => ({
        path: page.path,
        name: page.name,
        component: page.component,
        meta: { title: page.title, permission: page.permission, brandStaff: page.brandStaff },
      })),
      { path: 'forbidden', name: 'forbidden', component: () => import('@/pages/errors/ForbiddenPage.vue') },
      { path: ':rest(.*)*', name: 'not-found', component: () => import('@/pages/errors/NotFoundPage.vue') },
    ],
  },
]

export const router = createRouter({ history: createWebHistory(import.meta.env.BASE_URL), routes })

router.beforeEach(async (to) => {
  const auth = useAuthStore()
  if (to.meta.public) return true
  if (!auth.loggedIn) return { name: 'login', query: { redirect: to.fullPath } }
  if (!auth.me) {
    try {
      await auth.loadMe()
    } catch (error) {
      if (sessionRefused(error) || !auth.loggedIn) {
        await auth.logout()
        return { name: 'login', query: { redirect: to.fullPath } }
      }
      return { name: 'unavailable', query: { redirect: to.fullPath } } // signed in still: a retry
    }
  }
  if (!auth.can(to.meta.permission) || (to.meta.brandStaff && !auth.me?.brand_staff)) return { name: 'forbidden' }
  return true
})
