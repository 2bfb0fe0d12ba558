// vue-i18n for the staff app: zh-CN by default, English; the choice kept in localStorage.
import { createI18n } from 'vue-i18n'

import en from './en'
import zhCN from './zh-CN'
import counter from '../pages/counter/messages'
import field from '../pages/field/messages'
import { storage } from '@/utils/storage'

export const LOCALES = ['zh-CN', 'en'] as const
export type Locale = (typeof LOCALES)[number]
const LOCALE_KEY = 'tracecode.m.locale'

function saved(): Locale {
  const value = storage.get(LOCALE_KEY)
  return (LOCALES as readonly string[]).includes(value ?? '') ? (value as Locale) : 'zh-CN'
}

export const i18n = createI18n({
  legacy: false,
  locale: saved(),
  fallbackLocale: 'zh-CN',
  messages: {
    'zh-CN': { ...zhCN, field: field['zh-CN'], counter: counter['zh-CN'] },
    en: { ...en, field: field.en, counter: counter.en },
  },
})

export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale
  storage.set(LOCALE_KEY, locale)
  document.documentElement.lang = locale
}
