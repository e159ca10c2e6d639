import { createHash } from 'node:crypto';
import t from 'tap';
import { randomToken, safeEqual, sha256Hex } from '../../src/lib/tokens.js';

t.test('randomToken', async (t) => {
  const token = randomToken();
  t.match(token, /^[A-Za-z0-9_-]{43}$/, '32 bytes → 43 base64url chars, no padding');
  t.equal(Buffer.from(token, 'base64url').length, 32);
  t.equal(Buffer.from(randomToken(16), 'base64url').length, 16);
  t.not(randomToken(), randomToken());
  t.throws(() => randomToken(8), RangeError, 'below 128 bits is refused');
  t.throws(() => randomToken(1.5), RangeError);
});

t.test('sha256Hex', async (t) => {
  t.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  t.equal(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  const utf8 = createHash('sha256').update(Buffer.from([0xc3, 0xa4])).digest('hex');
  t.equal(sha256Hex('\u00e4'), utf8, 'hashes the UTF-8 bytes (as the hashes already stored were made)');
});

t.test('safeEqual', async (t) => {
  t.equal(safeEqual('abc', 'abc'), true);
  t.equal(safeEqual('abc', 'abd'), false);
  t.equal(safeEqual('abc', 'abcd'), false, 'length mismatch is false, not a throw');
  t.equal(safeEqual('', ''), true);
  t.equal(safeEqual('ä', 'aa'), false, 'compares bytes, not UTF-16 units');
});
