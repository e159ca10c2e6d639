import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { renderQrCode } from '../../src/lib/qr.js';

const URI =
  'otpauth://totp/ACME%20Shop:jane.doe%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=ACME%20Shop&algorithm=SHA1&digits=6&period=30';
const PNG_PREFIX = 'data:image/png;base64,';

t.test('renders SVG and PNG data URL', async (t) => {
  const { svg, pngDataUrl } = await renderQrCode(URI);
  t.ok(svg.startsWith('<svg'), 'svg');
  t.match(svg, /<\/svg>\s*$/);
  t.notMatch(svg, /<script/i, 'safe to inline');
  t.ok(pngDataUrl.startsWith(PNG_PREFIX), 'png data url');
  const png = Buffer.from(pngDataUrl.slice(PNG_PREFIX.length), 'base64');
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
});

t.test('PNG decodes back to the input (zbarimg; CI installs it, missing tool is a failure)', async (t) => {
  const { pngDataUrl } = await renderQrCode(URI);
  const dir = mkdtempSync(join(tmpdir(), 'qr-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'code.png');
  writeFileSync(file, Buffer.from(pngDataUrl.slice(PNG_PREFIX.length), 'base64'));
  const decoded = execFileSync('zbarimg', ['--quiet', '--raw', file], { encoding: 'utf8' });
  t.equal(decoded.replace(/\n$/, ''), URI);
});

t.test('the SVG states its own size, the PNG\'s (interop review, session 32: inlined without one it was 0x0 in a flex row and as wide as the page elsewhere)', async (t) => {
  const { svg, pngDataUrl } = await renderQrCode(URI);
  const png = Buffer.from(pngDataUrl.slice(PNG_PREFIX.length), 'base64');
  const pngWidth = png.readUInt32BE(16);
  const root = /^<svg\b[^>]*>/.exec(svg)?.[0] ?? '';
  t.match(root, /\swidth="\d+"/, 'width attribute on the root element');
  t.match(root, /\sheight="\d+"/, 'height attribute on the root element');
  const width = Number(/\swidth="(\d+)"/.exec(root)?.[1]);
  t.equal(width, pngWidth, 'the size of the PNG: 5 px per module, the quiet zone included');
  t.match(root, new RegExp(`\\sheight="${pngWidth}"`), 'square');
});
