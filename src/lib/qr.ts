import QRCode from 'qrcode';

// 'M' survives a smudged or glare-covered phone-camera scan without making the symbol dense.
const OPTIONS = { errorCorrectionLevel: 'M', margin: 4 } as const;
/** Pixels per module, of the PNG and of the SVG's stated size. */
const SCALE = 5;

export type QrCode = { svg: string; pngDataUrl: string };

/**
 * The QR code as SVG and PNG, both of the same size (SCALE pixels per module, the quiet zone
 * included). The SVG states it (width, height): inlined without a size it rendered 0×0 in a flex
 * row and as wide as the page elsewhere, too big to select with the authenticator.cc extension the
 * help page names (interop review, session 32).
 */
export async function renderQrCode(text: string): Promise<QrCode> {
  const modules = QRCode.create(text, OPTIONS).modules.size;
  const width = (modules + 2 * OPTIONS.margin) * SCALE;
  const [svg, pngDataUrl] = await Promise.all([
    QRCode.toString(text, { ...OPTIONS, type: 'svg', width }),
    QRCode.toDataURL(text, { ...OPTIONS, type: 'image/png', scale: SCALE }),
  ]);
  return { svg, pngDataUrl };
}
