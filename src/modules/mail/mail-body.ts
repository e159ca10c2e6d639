import { open, seal, SecretBoxError, type Keyring } from '../../lib/secret-box.js';

/**
 * Mail bodies at rest (security.md item 14: e-mail link tokens are stored only as a SHA-256 hash).
 * The rendered text and HTML carry the raw link token, so an outbox row holds them only sealed: one
 * JSON `{ text, html }`, AES-256-GCM under the keyring's current key, the key id stored beside the
 * ciphertext, bound to its row through the AAD (`mail_outbox:<id>`), so a ciphertext copied onto
 * another row does not open. The worker opens it right before sending and removes it (with any
 * plaintext of a row written before bodies were sealed) once the mail is sent or given up.
 * Everything that writes or reads an outbox body (enqueueMail, the worker, key rotation, tests) goes
 * through these functions.
 */

/**
 * `data`: what a mail naming other people was rendered from (`mentions`), sealed with it, so erasing
 * one of them can render it again without them (erase-user.ts); absent for every other mail.
 */
export type MailBody = { text: string; html: string; data?: unknown };

/** The column pair of a MailOutbox row that holds the sealed body. */
export type SealedMailBody = { bodyCiphertext: string; encryptionKeyId: string };

/** The body columns of a MailOutbox row: sealed, or (rows written before bodies were sealed) plain. */
export type StoredMailBody = {
  bodyCiphertext: string | null;
  encryptionKeyId: string | null;
  textBody: string | null;
  htmlBody: string | null;
};

/** Written with "sent" and "given up": the row keeps no body, sealed or plain. */
export const NO_MAIL_BODY = { bodyCiphertext: null, encryptionKeyId: null, textBody: null, htmlBody: null } as const;

export function mailBodyAad(mailId: string): string {
  return `mail_outbox:${mailId}`;
}

/** Seals a body for the outbox row `mailId` under the current key; spread the result into the row. */
export function sealMailBody(keyring: Keyring, mailId: string, body: MailBody): SealedMailBody {
  const sealed = { text: body.text, html: body.html, ...(body.data !== undefined ? { data: body.data } : {}) };
  const { ciphertext, keyId } = seal(keyring, JSON.stringify(sealed), mailBodyAad(mailId));
  return { bodyCiphertext: ciphertext, encryptionKeyId: keyId };
}

/** Opens a sealed body; throws SecretBoxError when the key is unknown or the row was tampered with. */
export function openMailBody(keyring: Keyring, mailId: string, sealed: SealedMailBody): MailBody {
  const json = open(keyring, { ciphertext: sealed.bodyCiphertext, keyId: sealed.encryptionKeyId }, mailBodyAad(mailId));
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch {
    throw new SecretBoxError('malformed', 'the sealed mail body is not JSON');
  }
  const { text, html, data } = (body ?? {}) as Partial<MailBody>;
  if (typeof text !== 'string' || typeof html !== 'string') throw new SecretBoxError('malformed', 'the sealed mail body is not { text, html }');
  return data === undefined ? { text, html } : { text, html, data };
}

/**
 * The body of a row as it is to be sent: opened when sealed, as stored when the row predates sealing.
 * Throws SecretBoxError when the seal does not open, or when the row holds no body at all (a sent or
 * given-up row, or one whose body columns were emptied by hand).
 */
export function readMailBody(keyring: Keyring, mailId: string, row: StoredMailBody): MailBody {
  if (row.bodyCiphertext !== null || row.encryptionKeyId !== null) {
    if (row.bodyCiphertext === null || row.encryptionKeyId === null) {
      throw new SecretBoxError('malformed', 'the sealed mail body lacks its ciphertext or key id');
    }
    return openMailBody(keyring, mailId, { bodyCiphertext: row.bodyCiphertext, encryptionKeyId: row.encryptionKeyId });
  }
  if (row.textBody !== null && row.htmlBody !== null) return { text: row.textBody, html: row.htmlBody };
  throw new SecretBoxError('malformed', 'the row holds no mail body');
}
