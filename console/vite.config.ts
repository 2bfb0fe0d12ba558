/// <reference types="vitest/config" />
// The console's build: Vue SFCs, Element Plus components and their styles imported on demand
// (only what the pages use ends up in the bundle), route pages as lazy chunks, base /console/.
import { fileURLToPath, URL } from 'node:url'
import vue from '@vitejs/plugin-vue'
import AutoImport from 'unplugin-auto-import/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'
import Components from 'unplugin-vue-components/vite'
import { defineConfig } from 'vite'

export default defineConfig({
  base: '/console/',
  plugins: [
    vue(),
    // ElMessage, ElMessageBox, … as auto-imported functions (with their styles).
    AutoImport({ resolvers: [ElementPlusResolver()], dts: 'src/auto-imports.d.ts' }),
    // <el-table>, <el-button>, … imported where used (with their styles).
    Components({ resolvers: [ElementPlusResolver()], dts: 'src/components.d.ts', dirs: [] }),
  ],
  resolve: { alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 800,
    reportCompressedSize: false,
  },
  server: {
    // `npm run dev`: the API of a local `make run` behind the dev server.
    proxy: Object.fromEntries(
      ['/auth', '/api-keys', '/orgs', '/users', '/roles', '/permissions', '/audit', '/analytics',
        '/center', '/batches', '/products', '/categories', '/inspections', '/alerts', '/rebates',
        '/members', '/schema'].map((p) => [p, 'http://127.0.0.1:8000']),
    ),
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
  },
})
