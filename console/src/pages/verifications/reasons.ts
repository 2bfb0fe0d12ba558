// A verification record's reason in words (``verifications.reasons`` of messages.ts), one map for
// the records page and a member's scans (members/MemberDrawer.vue): both showed the code
// (``pin_required``, ``first_query``…) beside a result in words.
import { useI18n } from 'vue-i18n'

import { wordsOf } from '@/utils/words'

/** The function showing a record's reason in the reader's words. */
export function useVerificationReason(): (reason: string | null | undefined) => string {
  const { t, te } = useI18n()
  return (reason) => wordsOf(t, te, 'verifications.reasons', reason)
}
