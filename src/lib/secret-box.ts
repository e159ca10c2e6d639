import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/_-]+={0,2}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/;

export type Keyring = { currentKeyId: string; keys: ReadonlyMap<string, Buffer> };
export type SealedSecret = { ciphertext: string; keyId: string };
export type SecretBoxErrorReason = 'unknown_key_id' | 'malformed' | 'authentication_failed';

export class SecretBoxError extends Error {
  override readonly name = 'SecretBoxError';
  constructor(
    readonly reason: SecretBoxErrorReason,
    message: string,
  ) {
    super(message);
  }
}

export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

export function seal(keyring: Keyring, plaintext: string, aad: string): SealedSecret {
  const keyId = keyring.currentKeyId;
  const key = keyFor(keyring, keyId);
  // Random 96-bit nonces stay far below the GCM collision bound for the few secrets per key we seal.
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  const ciphertext = Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
  return { ciphertext, keyId };
}

export function open(keyring: Keyring, sealed: SealedSecret, aad: string): string {
  const key = keyFor(keyring, sealed.keyId);
  if (!BASE64URL_PATTERN.test(sealed.ciphertext)) {
    throw new SecretBoxError('malformed', 'ciphertext is not base64url');
  }
  const raw = Buffer.from(sealed.ciphertext, 'base64url');
  if (raw.length < NONCE_BYTES + TAG_BYTES) throw new SecretBoxError('malformed', 'ciphertext is too short');
  const nonce = raw.subarray(0, NONCE_BYTES);
  const body = raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES);
  const tag = raw.subarray(raw.length - TAG_BYTES);
  // authTagLength pins the tag size; without it Node accepts truncated tags.
  const decipher = createDecipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
  } catch {
    // Wrong key, wrong aad and tampering are indistinguishable by design.
    throw new SecretBoxError('authentication_failed', `decryption with key "${sealed.keyId}" failed`);
  }
}

/**
 * Parses "kid1:base64key,kid2:base64key". The last key listed seals new data unless
 * `currentKeyId` says otherwise, so rotation is "append a key, restart".
 */
export function parseKeyring(spec: string, currentKeyId?: string): Keyring {
  const keys = new Map<string, Buffer>();
  const entries = spec
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (entries.length === 0) throw new Error('keyring is empty: expected "kid:base64key[,kid:base64key...]"');

  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(':');
    const keyId = colon === -1 ? '' : entry.slice(0, colon).trim();
    // Messages never echo key material; the entry position helps when the id itself is broken.
    if (!KEY_ID_PATTERN.test(keyId)) {
      throw new Error(`keyring entry ${index + 1}: expected "kid:base64key" with kid of [A-Za-z0-9._-]{1,64}`);
    }
    if (keys.has(keyId)) throw new Error(`keyring: key id "${keyId}" is listed twice`);
    const encoded = entry.slice(colon + 1).trim();
    if (!BASE64_PATTERN.test(encoded)) throw new Error(`keyring: key "${keyId}" is not valid base64`);
    const key = Buffer.from(encoded, 'base64');
    if (key.length !== KEY_BYTES) {
      throw new Error(`keyring: key "${keyId}" must be ${KEY_BYTES} bytes, got ${key.length}`);
    }
    keys.set(keyId, key);
  }

  const current = currentKeyId ?? [...keys.keys()].at(-1)!;
  if (!keys.has(current)) throw new Error(`keyring: current key id "${current}" is not in the keyring`);
  return { currentKeyId: current, keys };
}

function keyFor(keyring: Keyring, keyId: string): Buffer {
  const key = keyring.keys.get(keyId);
  if (key === undefined) throw new SecretBoxError('unknown_key_id', `unknown key id "${keyId}"`);
  if (key.length !== KEY_BYTES) throw new SecretBoxError('malformed', `key "${keyId}" is not ${KEY_BYTES} bytes`);
  return key;
}
