import t from 'tap';
import { SecretBoxError, generateKey, open, parseKeyring, seal } from '../../src/lib/secret-box.js';
import type { Test } from 'tap';
import type { Keyring, SecretBoxErrorReason } from '../../src/lib/secret-box.js';

const AAD = 'mfa_factor:5f0c6d1e';

function keyringOf(...ids: string[]): Keyring {
  return parseKeyring(ids.map((id) => `${id}:${generateKey()}`).join(','));
}

t.test('generateKey', async (t) => {
  const key = generateKey();
  t.equal(Buffer.from(key, 'base64').length, 32);
  t.not(generateKey(), key);
});

t.test('round trip', async (t) => {
  const keyring = keyringOf('k1');
  const sealed = seal(keyring, 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ', AAD);
  t.equal(sealed.keyId, 'k1');
  t.match(sealed.ciphertext, /^[A-Za-z0-9_-]+$/, 'base64url');
  t.equal(Buffer.from(sealed.ciphertext, 'base64url').length, 12 + 32 + 16, 'nonce | ct | tag');
  t.notMatch(sealed.ciphertext, /GEZDGNBV/);
  t.equal(open(keyring, sealed, AAD), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
  t.equal(open(keyring, seal(keyring, 'ünïcødé ✓', AAD), AAD), 'ünïcødé ✓');
  t.equal(open(keyring, seal(keyring, '', AAD), AAD), '');
  t.not(seal(keyring, 'same', AAD).ciphertext, seal(keyring, 'same', AAD).ciphertext, 'fresh nonce each time');
});

function rejects(t: Test, fn: () => unknown, reason: SecretBoxErrorReason, message: string) {
  try {
    fn();
    t.fail(`${message}: did not throw`);
  } catch (err) {
    t.ok(err instanceof SecretBoxError && err.reason === reason, message);
  }
}

t.test('wrong aad fails', async (t) => {
  const keyring = keyringOf('k1');
  const sealed = seal(keyring, 'secret', AAD);
  rejects(t, () => open(keyring, sealed, 'mfa_factor:other'), 'authentication_failed', 'other record');
  rejects(t, () => open(keyring, sealed, ''), 'authentication_failed', 'empty aad');
});

t.test('tampered ciphertext fails', async (t) => {
  const keyring = keyringOf('k1');
  const sealed = seal(keyring, 'secret value', AAD);
  const raw = Buffer.from(sealed.ciphertext, 'base64url');
  for (const index of [0, 12, raw.length - 1]) {
    const copy = Buffer.from(raw);
    copy[index]! ^= 0x01;
    rejects(t, () => open(keyring, { ...sealed, ciphertext: copy.toString('base64url') }, AAD), 'authentication_failed', `byte ${index} flipped`);
  }
  const truncatedTag = raw.subarray(0, raw.length - 4).toString('base64url');
  rejects(t, () => open(keyring, { ...sealed, ciphertext: truncatedTag }, AAD), 'authentication_failed', 'truncated tag');
  rejects(t, () => open(keyring, { ...sealed, ciphertext: raw.subarray(0, 20).toString('base64url') }, AAD), 'malformed', 'too short');
  rejects(t, () => open(keyring, { ...sealed, ciphertext: `${sealed.ciphertext}!` }, AAD), 'malformed', 'not base64url');
  rejects(t, () => open(keyring, { ...sealed, ciphertext: '' }, AAD), 'malformed', 'empty');
});

t.test('unknown key id fails', async (t) => {
  const keyring = keyringOf('k1');
  const sealed = seal(keyring, 'secret', AAD);
  rejects(t, () => open(keyring, { ...sealed, keyId: 'k9' }, AAD), 'unknown_key_id', 'unknown id');
  rejects(t, () => open(keyringOf('k2'), sealed, AAD), 'unknown_key_id', 'key removed from the ring');
  const sameIdOtherKey = keyringOf('k1');
  rejects(t, () => open(sameIdOtherKey, sealed, AAD), 'authentication_failed', 'same id, different key');
});

t.test('rotation', async (t) => {
  const oldKey = generateKey();
  const before = parseKeyring(`2024-01:${oldKey}`);
  const sealed = seal(before, 'totp secret', AAD);
  t.equal(sealed.keyId, '2024-01');

  const after = parseKeyring(`2024-01:${oldKey}, 2025-06:${generateKey()}`);
  t.equal(after.currentKeyId, '2025-06', 'last listed key is current');
  t.equal(open(after, sealed, AAD), 'totp secret', 'old ciphertext still opens');

  const resealed = seal(after, open(after, sealed, AAD), AAD);
  t.equal(resealed.keyId, '2025-06');
  t.equal(open(after, resealed, AAD), 'totp secret');

  const retired = parseKeyring(`2025-06:${Buffer.from(after.keys.get('2025-06')!).toString('base64')}`);
  t.equal(open(retired, resealed, AAD), 'totp secret', 'old key can be dropped after re-sealing');
  rejects(t, () => open(retired, sealed, AAD), 'unknown_key_id', 'not re-sealed → unreadable without the old key');

  const pinned = parseKeyring(`2024-01:${oldKey},2025-06:${generateKey()}`, '2024-01');
  t.equal(seal(pinned, 'x', AAD).keyId, '2024-01', 'explicit current key id wins');
});

t.test('parseKeyring messages', async (t) => {
  const good = generateKey();
  const short = Buffer.alloc(16, 1).toString('base64');
  t.same([...parseKeyring(`a:${good}`).keys.keys()], ['a']);
  t.equal(parseKeyring(`a:${Buffer.from(good, 'base64').toString('base64url')}`).keys.get('a')!.length, 32, 'base64url accepted');
  t.throws(() => parseKeyring(''), /keyring is empty/);
  t.throws(() => parseKeyring(' , '), /keyring is empty/);
  t.throws(() => parseKeyring(`a:${good},b:${short}`), /key "b" must be 32 bytes, got 16/);
  t.throws(() => parseKeyring(`a:${Buffer.alloc(64).toString('base64')}`), /key "a" must be 32 bytes, got 64/);
  t.throws(() => parseKeyring(`a:${good}${good}`), /key "a" is not valid base64/, 'padding in the middle');
  t.throws(() => parseKeyring('a:not*base64'), /key "a" is not valid base64/);
  t.throws(() => parseKeyring('a:'), /key "a" is not valid base64/);
  t.throws(() => parseKeyring(good), /keyring entry 1: expected "kid:base64key"/, 'missing kid');
  t.throws(() => parseKeyring(`a:${good},:${good}`), /keyring entry 2/, 'empty kid');
  t.throws(() => parseKeyring(`a:${good},a:${good}`), /key id "a" is listed twice/);
  t.throws(() => parseKeyring(`a:${good}`, 'b'), /current key id "b" is not in the keyring/);
  try {
    parseKeyring(`a:${good},b:${short}`);
  } catch (err) {
    t.notMatch((err as Error).message, short, 'key material never appears in the message');
  }
});
