import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../src/context.js';
import type { MailOutbox, Prisma } from '../../src/generated/prisma/client.js';
import type { Keyring } from '../../src/lib/secret-box.js';
import { readMailBody } from '../../src/modules/mail/mail-body.js';
import type { MailTransport } from '../../src/modules/mail/mail.transport.js';

/**
 * The one way tests read mail from the outbox (`mail_outbox`): the rows as stored, with the bodies as
 * the worker would send them in `textBody` / `htmlBody` — opened with the app's keyring (the body is
 * stored sealed; a row written before bodies were sealed has it in plain text). A seal that does not
 * open with the app's keyring throws, as the worker would give that mail up.
 *
 * A mail that was sent or given up has no body any more: reading `textBody` / `htmlBody` of such a
 * row throws (read what arrived from the SMTP sink instead). Template, subject, recipient, timestamps
 * and the other columns stay readable.
 */
export type OutboxMail = Omit<MailOutbox, 'textBody' | 'htmlBody'> & { textBody: string; htmlBody: string };

type OutboxCtx = Pick<AppContext, 'db' | 'keyring'>;
type Query = { where?: Prisma.MailOutboxWhereInput; orderBy?: Prisma.MailOutboxOrderByWithRelationInput | Prisma.MailOutboxOrderByWithRelationInput[] };

const ctxOf = (appOrCtx: FastifyInstance | OutboxCtx): OutboxCtx => ('ctx' in appOrCtx ? (appOrCtx as FastifyInstance).ctx : (appOrCtx as OutboxCtx));

/** Outbox rows matching `where`, oldest first unless `orderBy` says otherwise, bodies readable. */
export async function outboxMails(appOrCtx: FastifyInstance | OutboxCtx, query: Query = {}): Promise<OutboxMail[]> {
  const ctx = ctxOf(appOrCtx);
  const rows = await ctx.db.mailOutbox.findMany({ where: query.where ?? {}, orderBy: query.orderBy ?? [{ createdAt: 'asc' }, { id: 'asc' }] });
  return rows.map((row) => withBody(ctx.keyring, row));
}

/** The newest outbox row matching `where` (throws when there is none). */
export async function lastMail(appOrCtx: FastifyInstance | OutboxCtx, where: Prisma.MailOutboxWhereInput = {}): Promise<OutboxMail> {
  const [mail] = await outboxMails(appOrCtx, { where, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] });
  if (!mail) throw new Error(`no outbox mail matching ${JSON.stringify(where)}`);
  return mail;
}

function withBody(keyring: Keyring, row: MailOutbox): OutboxMail {
  const { textBody, htmlBody, ...rest } = row;
  if (row.bodyCiphertext === null && row.encryptionKeyId === null && (textBody === null || htmlBody === null)) return bodyGone(rest);
  const body = readMailBody(keyring, row.id, row);
  return { ...rest, textBody: body.text, htmlBody: body.html };
}

/** A row without a body: textBody / htmlBody throw when read (not enumerable, so spreads and t.same skip them). */
function bodyGone(rest: Omit<MailOutbox, 'textBody' | 'htmlBody'>): OutboxMail {
  const gone = (): never => {
    const state = rest.sentAt ? 'it was sent' : rest.failedAt ? 'it was given up' : 'it has none';
    throw new Error(`outbox mail ${rest.id} (${rest.template} to ${rest.toAddress}) has no body: ${state}; read the delivered mail from the SMTP sink`);
  };
  const mail = { ...rest } as OutboxMail;
  Object.defineProperty(mail, 'textBody', { get: gone, enumerable: false });
  Object.defineProperty(mail, 'htmlBody', { get: gone, enumerable: false });
  return mail;
}

/** A transport whose send never ends (a worker holding its claim for good); `claimed` resolves at its first send. */
export function hangingTransport(): { transport: MailTransport; claimed: Promise<void> } {
  let claim!: () => void;
  const claimed = new Promise<void>((resolve) => (claim = resolve));
  return { transport: { kind: 'hang', send: () => (claim(), new Promise<void>(() => undefined)), close: async () => {} }, claimed };
}
