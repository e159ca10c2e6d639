import type { Db } from '../../db/client.js';
import type { Clock } from '../../lib/clock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { open, seal, SecretBoxError, type Keyring } from '../../lib/secret-box.js';
import { openMailBody, sealMailBody } from '../mail/mail-body.js';
import { signingKeyAad } from '../sessions/signing-keys.js';
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

type Kind = 'totpFactors' | 'signingKeys' | 'mailBodies';
const TABLE_OF: Record<Kind, ResealReport['failures'][number]['table']> = {
  totpFactors: 'totp_factors',
  signingKeys: 'signing_keys',
  mailBodies: 'mail_outbox',
};

/**
 * Re-seals one row: `openRow` decrypts it (a row that does not open is counted as a failure, by id
 * and reason), `writeSealed` writes it sealed under the current key only while the row is as read
 * (count 1: re-sealed; 0: changed meanwhile, skipped).
 */
async function resealRow<T>(
  report: ResealReport,
  kind: Kind,
  id: string,
  openRow: () => T,
  writeSealed: (plaintext: T) => Promise<{ count: number }>,
): Promise<void> {
  let plaintext: T;
  try {
    plaintext = openRow();
  } catch (err) {
    report[kind].failed++;
    report.failures.push({ table: TABLE_OF[kind], id, reason: failureReason(err) });
    return;
  }
  const { count } = await writeSealed(plaintext);
  if (count === 1) report[kind].resealed++;
  else report[kind].skipped++;
}

/** The rows `page` returns, BATCH at a time in id order, each page after the last id of the one before. */
async function* byIdPages<R extends { id: string }>(page: (after: { id: { gt: string } } | object) => Promise<R[]>): AsyncGenerator<R> {
  let cursor: string | undefined;
  for (;;) {
    const rows = await page(cursor ? { id: { gt: cursor } } : {});
    if (rows.length === 0) return;
    cursor = rows.at(-1)!.id;
    yield* rows;
  }
}

/**
 * Re-seals every TOTP secret, signing key and queued mail body under the keyring's current key,
 * row by row (each a conditional update: a row changed meanwhile is skipped, and a second run is
 * safe). The run is audited (`encryption_key.rotated`, support's audit log) when it is done, with
 * its counts and `meta`: the operator CLI's origin.
 */
export async function resealSecrets(
  db: Db,
  keyring: Keyring,
  audit: { clock: Clock; meta: RequestMeta; /** --force: how many running instances lacked the key. */ forced?: number },
): Promise<ResealReport> {
  const current = keyring.currentKeyId;
  const report: ResealReport = {
    currentKeyId: current,
    totpFactors: { resealed: 0, skipped: 0, failed: 0 },
    signingKeys: { resealed: 0, skipped: 0, failed: 0 },
    mailBodies: { resealed: 0, skipped: 0, failed: 0 },
    failures: [],
  };

  const factors = byIdPages((after) =>
    db.totpFactor.findMany({
      where: { encryptionKeyId: { not: current }, ...after },
      orderBy: { id: 'asc' },
      take: BATCH,
      select: { id: true, userId: true, secretCiphertext: true, encryptionKeyId: true },
    }),
  );
  for await (const row of factors) {
    await resealRow(
      report,
      'totpFactors',
      row.id,
      () => openTotpSecret(keyring, row.userId, row),
      (secret) =>
        db.totpFactor.updateMany({
          where: { id: row.id, secretCiphertext: row.secretCiphertext, encryptionKeyId: row.encryptionKeyId },
          data: sealTotpSecret(keyring, row.userId, secret),
        }),
    );
  }

  const keys = await db.signingKey.findMany({
    where: { encryptionKeyId: { not: current } },
    select: { kid: true, privateKeyCiphertext: true, encryptionKeyId: true },
  });
  for (const key of keys) {
    await resealRow(
      report,
      'signingKeys',
      key.kid,
      () => open(keyring, { ciphertext: key.privateKeyCiphertext, keyId: key.encryptionKeyId }, signingKeyAad(key.kid)),
      (plaintext) => {
        const sealed = seal(keyring, plaintext, signingKeyAad(key.kid));
        return db.signingKey.updateMany({
          where: { kid: key.kid, privateKeyCiphertext: key.privateKeyCiphertext, encryptionKeyId: key.encryptionKeyId },
          data: { privateKeyCiphertext: sealed.ciphertext, encryptionKeyId: sealed.keyId },
        });
      },
    );
  }

  // Queued mails: the worker may send (and so empty) a row at any moment; the update then misses it.
  const mails = byIdPages((after) =>
    db.mailOutbox.findMany({
      where: { sentAt: null, failedAt: null, bodyCiphertext: { not: null }, encryptionKeyId: { not: current }, ...after },
      orderBy: { id: 'asc' },
      take: BATCH,
      select: { id: true, bodyCiphertext: true, encryptionKeyId: true },
    }),
  );
  for await (const row of mails) {
    await resealRow(
      report,
      'mailBodies',
      row.id,
      () => openMailBody(keyring, row.id, { bodyCiphertext: row.bodyCiphertext ?? '', encryptionKeyId: row.encryptionKeyId ?? '' }),
      (body) =>
        db.mailOutbox.updateMany({
          where: { id: row.id, sentAt: null, failedAt: null, bodyCiphertext: row.bodyCiphertext, encryptionKeyId: row.encryptionKeyId },
          data: sealMailBody(keyring, row.id, body),
        }),
    );
  }

  const { failures, ...counts } = report;
  await recordAudit(db, audit.clock, {
    type: 'encryption_key.rotated',
    meta: audit.meta,
    details: { ...counts, failures: failures.length, ...(audit.forced === undefined ? {} : { forcedPastInstances: audit.forced }) },
  });
  return report;
}
