// A reason typed in a prompt (a batch voided, a member frozen, a statement rejected): the API
// takes at most 500 characters (app: ``VoidIn.reason``, ``Reason``), counted once trimmed, as the
// console sends it; a longer one is told in the prompt, not refused by the server.
export const REASON_MAX = 500

/** Whether ``value`` (trimmed) fits: at most REASON_MAX characters (code points, as the API
 * counts). */
export function reasonFits(value: string | null | undefined): boolean {
  return [...(value ?? '').trim()].length <= REASON_MAX
}
