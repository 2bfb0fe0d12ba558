// The staff app's service worker (built into dist/m/sw.js by vite.mobile.config.ts): it caches
// the app shell (every file of the build) when installed, so the app starts without a network.
// Navigations: the network first (a new build is seen at once), the cached index.html offline.
// The build's files: from the cache (their names carry a content hash). The API is never cached:
// it goes to the network, and the app queues what it could not send (src/mobile/offline).
const VERSION = '__VERSION__'
const SHELL = __SHELL__
const CACHE = `tracecode-m-${VERSION}`
const SCOPE = new URL(self.registration.scope).pathname

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((file) => new URL(file, self.registration.scope).href)))
      .then(() => self.skipWaiting()),
  )
})

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(keys.filter((k) => k.startsWith('tracecode-m-') && k !== CACHE).map((k) => caches.delete(k))),
      )
      .then(() => self.clients.claim()),
  )
})

self.addEventListener('fetch', (event) => {
  const request = event.request
  if (request.method !== 'GET') return
  const url = new URL(request.url)
  if (url.origin !== self.location.origin || !url.pathname.startsWith(SCOPE)) return
  if (request.mode === 'navigate') {
    event.respondWith(
      fetch(request).catch(() => caches.match(self.registration.scope, { cacheName: CACHE })),
    )
    return
  }
  event.respondWith(caches.match(request, { cacheName: CACHE }).then((hit) => hit ?? fetch(request)))
})
