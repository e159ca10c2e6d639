import QRCode from 'qrcode';

// 'M' survives a smudged or glare-covered phone-camera scan without making the symbol dense.
const OPTIONS = { errorCorrectionLevel: 'M', margin: 4 } as const;

export type QrCode = { svg: string; pngDataUrl: string };

export async function renderQrCode(text: string): Promise<QrCode> {
  const [svg, pngDataUrl] = await Promise.all([
    QRCode.toString(text, { ...OPTIONS, type: 'svg' }),
    QRCode.toDataURL(text, { ...OPTIONS, type: 'image/png', scale: 5 }),
  ]);
  return { svg, pngDataUrl };
}
