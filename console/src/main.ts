import { createPinia } from 'pinia'
import { createApp, watch } from 'vue'
import 'element-plus/theme-chalk/base.css'

import App from './App.vue'
import { i18n } from './i18n'
import { router } from './router'
import { useAuthStore } from './stores/auth'
import { installChunkReload } from './utils/chunkReload'
import './styles.css'

// A page's chunk gone after a deploy: the page it was going to, loaded again once.
installChunkReload(router)

const app = createApp(App)
app.use(createPinia())
app.use(i18n)
app.use(router)

// Signed out anywhere (log-out, a failed refresh, a revoked token): back to the login page.
const auth = useAuthStore()
watch(
  () => auth.loggedIn,
  (loggedIn) => {
    const current = router.currentRoute.value
    if (!loggedIn && !current.meta.public) {
      void router.replace({ name: 'login', query: { redirect: current.fullPath } })
    }
  },
)

document.documentElement.lang = i18n.global.locale.value
app.mount('#app')
