import type { Db } from '../../db/client.js';
import { open, seal, SecretBoxError, type Keyring } from '../../lib/secret-box.js';
import { openMailBody, sealMailBody, type MailBody } from '../mail/mail-body.js';
import { openTotpSecret, sealTotpSecret } from './totp-secret.js';

/**
 * Encryption-key rotation (security.md item 11): after a new key is appended to ENCRYPTION_KEYS
 * (it becomes the current key; the old ones stay listed so existing rows still decrypt),
 * `npm run cli -- rotate-encryption-key` re-seals every secret that is not yet under the current
 * key: TOTP secrets, the JWT signing keys' private keys, and the bodies of mails still waiting in
 * the outbox (not yet sent or given up; e.g. during an SMTP outage — sent and given-up rows hold no
 * body). When it reports nothing left, the old key can be removed from ENCRYPTION_KEYS.
 *
 * Each row is rewritten with a conditional update on its old ciphertext, so a row changed
 * concurrently (e.g. a re-enrolment) is left alone rather than overwritten with stale data; running
 * the command again picks up anything that was skipped (a mail sent or given up meanwhile has lost its
 * body and counts as skipped). Plaintexts stay in memory only.
 */

const BATCH = 200;

/** The signing-key AAD convention of src/modules/sessions/signing-keys.ts (sealed by the sessions module). */
const signingKeyAad = (kid: string) => `signing-key:${kid}`;

export type ResealCounts = { resealed: number; skipped: number; failed: number };
export type ResealReport = {
  currentKeyId: string;
  totpFactors: ResealCounts;
  signingKeys: ResealCounts;
  /** Bodies of queued mails (mail_outbox rows neither sent nor given up). */
  mailBodies: ResealCounts;
  /** Rows that could not be decrypted (unknown key id or authentication failure): ids only. */
  failures: { table: 'totp_factors' | 'signing_keys' | 'mail_outbox'; id: string; reason: string }[];
};

function failureReason(err: unknown): string {
  if (err instanceof SecretBoxError) return err.reason;
  throw err;
}

export async function resealSecrets(db: Db, keyring: Keyring): Promise<ResealReport> {
  const current = keyring.currentKeyId;
  const report: ResealReport = {
    currentKeyId: current,
    totpFactors: { resealed: 0, skipped: 0, failed: 0 },
    signingKeys: { resealed: 0, skipped: 0, failed: 0 },
    mailBodies: { resealed: 0, skipped: 0, failed: 0 },
    failures: [],
  };

  let cursor: string | undefined;
  for (;;) {
    const rows = await db.totpFactor.findMany({
      where: { encryptionKeyId: { not: current }, ...(cursor ? { id: { gt: cursor } } : {}) },
      orderBy: { id: 'asc' },
      take: BATCH,
      select: { id: true, userId: true, secretCiphertext: true, encryptionKeyId: true },
    });
    if (rows.length === 0) break;
    cursor = rows.at(-1)!.id;
    for (const row of rows) {
      let secret: string;
      try {
        secret = openTotpSecret(keyring, row.userId, row);
      } catch (err) {
        report.totpFactors.failed++;
        report.failures.push({ table: 'totp_factors', id: row.id, reason: failureReason(err) });
        continue;
      }
      const { count } = await db.totpFactor.updateMany({
        where: { id: row.id, secretCiphertext: row.secretCiphertext, encryptionKeyId: row.encryptionKeyId },
        data: sealTotpSecret(keyring, row.userId, secret),
      });
      if (count === 1) report.totpFactors.resealed++;
      else report.totpFactors.skipped++;
    }
  }

  const keys = await db.signingKey.findMany({
    where: { encryptionKeyId: { not: current } },
    select: { kid: true, privateKeyCiphertext: true, encryptionKeyId: true },
  });
  for (const key of keys) {
    let plaintext: string;
    try {
      plaintext = open(keyring, { ciphertext: key.privateKeyCiphertext, keyId: key.encryptionKeyId }, signingKeyAad(key.kid));
    } catch (err) {
      report.signingKeys.failed++;
      report.failures.push({ table: 'signing_keys', id: key.kid, reason: failureReason(err) });
      continue;
    }
    const sealed = seal(keyring, plaintext, signingKeyAad(key.kid));
    const { count } = await db.signingKey.updateMany({
      where: { kid: key.kid, privateKeyCiphertext: key.privateKeyCiphertext, encryptionKeyId: key.encryptionKeyId },
      data: { privateKeyCiphertext: sealed.ciphertext, encryptionKeyId: sealed.keyId },
    });
    if (count === 1) report.signingKeys.resealed++;
    else report.signingKeys.skipped++;
  }

  // Queued mails: the worker may send (and so empty) a row at any moment; the update then misses it.
  let mailCursor: string | undefined;
  for (;;) {
    const rows: { id: string; bodyCiphertext: string | null; encryptionKeyId: string | null }[] = await db.mailOutbox.findMany({
      where: {
        sentAt: null,
        failedAt: null,
        bodyCiphertext: { not: null },
        encryptionKeyId: { not: current },
        ...(mailCursor ? { id: { gt: mailCursor } } : {}),
      },
      orderBy: { id: 'asc' },
      take: BATCH,
      select: { id: true, bodyCiphertext: true, encryptionKeyId: true },
    });
    if (rows.length === 0) break;
    mailCursor = rows.at(-1)!.id;
    for (const row of rows) {
      let body: MailBody;
      try {
        body = openMailBody(keyring, row.id, { bodyCiphertext: row.bodyCiphertext ?? '', encryptionKeyId: row.encryptionKeyId ?? '' });
      } catch (err) {
        report.mailBodies.failed++;
        report.failures.push({ table: 'mail_outbox', id: row.id, reason: failureReason(err) });
        continue;
      }
      const { count } = await db.mailOutbox.updateMany({
        where: { id: row.id, sentAt: null, failedAt: null, bodyCiphertext: row.bodyCiphertext, encryptionKeyId: row.encryptionKeyId },
        data: sealMailBody(keyring, row.id, body),
      });
      if (count === 1) report.mailBodies.resealed++;
      else report.mailBodies.skipped++;
    }
  }

  return report;
}
