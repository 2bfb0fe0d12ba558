// vue-i18n: zh-CN by default, English; the choice kept in localStorage. Messages: the shared ones
// here, plus every page area's src/pages/<area>/messages.ts (found by the build, no list to edit),
// each exporting { 'zh-CN': {...}, en: {...} } under its own top-level key.
import { createI18n } from 'vue-i18n'

import en from './en'
import zhCN from './zh-CN'
import { storage } from '@/utils/storage'

export const LOCALES = ['zh-CN', 'en'] as const
export type Locale = (typeof LOCALES)[number]
const LOCALE_KEY = 'tracecode.console.locale'

type Tree = { [key: string]: string | Tree }
type AreaMessages = { default: Record<Locale, Tree> }

function merge(target: Tree, source: Tree): Tree {
  for (const [key, value] of Object.entries(source)) {
    const current = target[key]
    target[key] =
      typeof value === 'object' && typeof current === 'object' ? merge({ ...current }, value) : value
  }
  return target
}

const messages: Record<Locale, Tree> = { 'zh-CN': merge({}, zhCN), en: merge({}, en) }
const areas = import.meta.glob<AreaMessages>('../pages/*/messages.ts', { eager: true })
for (const area of Object.values(areas)) {
  for (const locale of LOCALES) merge(messages[locale], area.default[locale] ?? {})
}

export function savedLocale(): Locale {
  const saved = storage.get(LOCALE_KEY)
  return (LOCALES as readonly string[]).includes(saved ?? '') ? (saved as Locale) : 'zh-CN'
}

export const i18n = createI18n({
  legacy: false,
  locale: savedLocale(),
  fallbackLocale: 'zh-CN',
  messages,
})

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale
  storage.set(LOCALE_KEY, locale)
  document.documentElement.lang = locale
}
