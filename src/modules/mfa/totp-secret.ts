import { open, seal, type Keyring } from '../../lib/secret-box.js';

/**
 * TOTP secrets at rest: AES-256-GCM under the keyring's current key, the key id stored beside the
 * ciphertext, and the ciphertext bound to its user through the AAD (`totp:<userId>`), so a row
 * copied onto another user does not decrypt. Everything that writes or reads a TotpFactor secret
 * (the MFA module, key rotation, test factories) goes through these two functions.
 */

/** The column pair of a TotpFactor row that holds the sealed secret. */
export type SealedTotpSecret = { secretCiphertext: string; encryptionKeyId: string };

export function totpSecretAad(userId: string): string {
  return `totp:${userId}`;
}

/** Seals a base32 secret for `userId` under the current key; spread the result into a TotpFactor row. */
export function sealTotpSecret(keyring: Keyring, userId: string, secretBase32: string): SealedTotpSecret {
  const { ciphertext, keyId } = seal(keyring, secretBase32, totpSecretAad(userId));
  return { secretCiphertext: ciphertext, encryptionKeyId: keyId };
}

/** Opens a factor's secret; throws SecretBoxError when the key is unknown or the row was tampered with. */
export function openTotpSecret(keyring: Keyring, userId: string, factor: SealedTotpSecret): string {
  return open(keyring, { ciphertext: factor.secretCiphertext, keyId: factor.encryptionKeyId }, totpSecretAad(userId));
}
