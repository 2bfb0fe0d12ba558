// Camera decoding with ZXing (@zxing/browser over @zxing/library, Apache-2.0, both on npm): QR
// codes (unit serials, Digital Link URLs, store nameplates), Data Matrix, and the 1D codes on
// cases (Code 128 / GS1-128 SSCC). Loaded on demand: the app's first load does not carry it.
import { BrowserMultiFormatReader, type IScannerControls } from '@zxing/browser'
import { BarcodeFormat, DecodeHintType } from '@zxing/library'

export interface CameraScan {
  stop(): void
}

/** Decode from the back camera into `video`; `onText` gets each code read (the same code again
 * only after it has been out of view for `repeatMs`). */
export async function startCamera(
  video: HTMLVideoElement,
  onText: (text: string) => void,
  repeatMs = 2000,
): Promise<CameraScan> {
  const hints = new Map<DecodeHintType, unknown>()
  hints.set(DecodeHintType.POSSIBLE_FORMATS, [
    BarcodeFormat.QR_CODE,
    BarcodeFormat.CODE_128,
    BarcodeFormat.DATA_MATRIX,
  ])
  const reader = new BrowserMultiFormatReader(hints, { delayBetweenScanAttempts: 100 })
  let last = ''
  let lastAt = 0
  const controls: IScannerControls = await reader.decodeFromConstraints(
    { video: { facingMode: 'environment' }, audio: false },
    video,
    (result) => {
      if (!result) return
      let text = result.getText()
      if (result.getBarcodeFormat() === BarcodeFormat.CODE_128 && /^\d+$/.test(text) && text.startsWith('00')) {
        text = `]C1${text}` // a GS1-128 read without its FNC1: say so to the parser
      }
      const now = Date.now()
      if (text === last && now - lastAt < repeatMs) {
        lastAt = now // still in view: one scan, however long the camera looks at it
        return
      }
      last = text
      lastAt = now
      onText(text)
    },
  )
  return { stop: () => controls.stop() }
}
