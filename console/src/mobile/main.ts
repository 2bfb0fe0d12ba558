// The staff mobile app (issue 18): Vue 3 + Vant, zh-CN/English, served at /m, installable and
// usable offline (service worker for the shell, IndexedDB queue for scans).
import { createPinia } from 'pinia'
import { createApp, watch } from 'vue'
import 'vant/es/toast/style'
import 'vant/es/dialog/style'
import 'vant/es/notify/style'

import App from './App.vue'
import { i18n } from './i18n'
import { router } from './router'
import { stopSync } from './offline/sync'
import { useAuthStore } from '@/stores/auth'
import { installChunkReload } from '@/utils/chunkReload'

// A page's chunk gone after a deploy (the new worker drops the old cache): loaded again once.
installChunkReload(router)

const app = createApp(App)
app.use(createPinia())
app.use(i18n)
app.use(router)

const auth = useAuthStore()
watch(
  () => auth.loggedIn,
  (loggedIn) => {
    if (loggedIn) return
    stopSync()
    const current = router.currentRoute.value
    if (!current.meta.public) void router.replace({ name: 'login', query: { redirect: current.fullPath } })
  },
)

document.documentElement.lang = i18n.global.locale.value
app.mount('#app')

if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  void navigator.serviceWorker.register(`${import.meta.env.BASE_URL}sw.js`, { scope: import.meta.env.BASE_URL })
}
