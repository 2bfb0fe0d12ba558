/// <reference types="vitest/config" />
// The staff mobile app's build (issue 18): the second entry of this project, mobile/index.html →
// dist/m, served by the API server at /m. Its own config (base /m/, Vant instead of Element Plus),
// so the console's bundle and first load are untouched; it shares src/ (the auth store, the API
// client and its types). No CDN: everything it loads is in dist/m, and a small service worker
// written here (sw.js, from mobile/sw.template.js with the list of the build's files) caches the
// whole app so it starts offline. vite-plugin-pwa would do the same through workbox-build (Babel,
// Rollup and some 300 packages more) for what is 40 lines of worker.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath, URL } from 'node:url'
import { VantResolver } from '@vant/auto-import-resolver'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { defineConfig, type Plugin } from 'vite'

const root = fileURLToPath(new URL('./mobile', import.meta.url))
const PUBLIC_FILES = ['manifest.webmanifest', 'icon-192.png', 'icon-512.png', 'icon.svg']

/** sw.js: the worker template with the app shell (every file of the build) and a version. */
function shellWorker(): Plugin {
  return {
    name: 'tracecode-shell-worker',
    apply: 'build',
    enforce: 'post',
    generateBundle(_options, bundle) {
      const built = Object.keys(bundle).filter((f) => !f.endsWith('.map') && f !== 'index.html')
      const shell = ['./', ...built.sort(), ...PUBLIC_FILES]
      const digest = createHash('sha256')
      for (const name of built.sort()) {
        const item = bundle[name]!
        digest.update(name).update(item.type === 'chunk' ? item.code : String(item.source))
      }
      const source = readFileSync(`${root}/sw.template.js`, 'utf8')
        .replace('__VERSION__', digest.digest('hex').slice(0, 16))
        .replace('__SHELL__', JSON.stringify(shell))
      this.emitFile({ type: 'asset', fileName: 'sw.js', source })
    },
  }
}

/** Vant's icon font is inlined (a data: URL) with a CDN copy as its fallback: drop the CDN. */
function noCdnFonts(): Plugin {
  return {
    name: 'tracecode-no-cdn-fonts',
    enforce: 'pre',
    transform(code, id) {
      if (!id.includes('vant') || !id.endsWith('.css')) return null
      return code.replace(/,\s*url\((["']?)(?:https?:)?\/\/[^)]+\)\s*format\(["']?\w+["']?\)/g, '')
    },
  }
}

export default defineConfig({
  root,
  base: '/m/',
  publicDir: `${root}/public`,
  plugins: [
    vue(),
    noCdnFonts(),
    // <van-button>, <van-field>, … imported where used (with their styles).
    Components({ resolvers: [VantResolver()], dts: '../src/mobile/components.d.ts', dirs: [] }),
    shellWorker(),
  ],
  resolve: { alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) } },
  build: {
    outDir: fileURLToPath(new URL('./dist/m', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 800,
    reportCompressedSize: true,
  },
  server: {
    proxy: Object.fromEntries(
      ['/auth', '/orgs', '/inspections', '/documents', '/orders', '/sales', '/rebates'].map((p) => [
        p,
        'http://127.0.0.1:8000',
      ]),
    ),
  },
})
