import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { readMailBody, sealMailBody } from './mail-body.js';
import { audienceOf, renderMailFor } from './mail.service.js';
import { MAIL_TEMPLATE_NAMES, type MailTemplateData, type MailTemplateName } from './mail.templates.js';
import { withoutMention } from './mentions.js';

const isTemplate = (name: string): name is MailTemplateName => (MAIL_TEMPLATE_NAMES as readonly string[]).includes(name);

/** Template data read back from its sealed JSON: the moments it carries are Dates again. */
function revived(data: object): object {
  const { expiresAt } = data as { expiresAt?: unknown };
  return typeof expiresAt === 'string' ? { ...data, expiresAt: new Date(expiresAt) } : data;
}

/**
 * Mails still waiting for other people that name `personId` (mail/mentions.ts: who reset their
 * authenticator or sent them a reset link, an administrator a block notice lists), rendered again
 * without them, for an erasure: nothing of the person outlives it but the audit trail. One a worker
 * is handing to SMTP right now is rewritten too, its claim left alone: that attempt cannot be
 * called back, but a retry sends the new text (and a success marks it sent). One that cannot be
 * rendered again (its body does not open here, its recipient's account is gone) goes. Answers how
 * many mails changed.
 */
export async function renderWaitingMailWithout(tx: Tx, ctx: Pick<AppContext, 'config' | 'keyring'>, personId: string): Promise<number> {
  const unsent = { sentAt: null, failedAt: null };
  const rows = await tx.mailOutbox.findMany({
    where: { mentions: { has: personId }, ...unsent },
    select: { id: true, toAddress: true, userId: true, template: true, mentions: true, bodyCiphertext: true, encryptionKeyId: true, textBody: true, htmlBody: true },
  });
  for (const row of rows) {
    let data: unknown;
    try {
      data = readMailBody(ctx.keyring, row.id, row).data;
    } catch {
      data = undefined;
    }
    const recipient = row.userId ? await tx.user.findUnique({ where: { id: row.userId }, select: { language: true } }) : null;
    if (typeof data !== 'object' || data === null || !isTemplate(row.template) || !recipient) {
      await tx.mailOutbox.deleteMany({ where: { id: row.id, ...unsent } });
      continue;
    }
    const to = { email: row.toAddress, language: recipient.language, id: row.userId };
    const without = revived(withoutMention(data, personId)) as MailTemplateData[MailTemplateName];
    const rendered = renderMailFor(ctx.config, to, row.template, without, await audienceOf(tx, to));
    await tx.mailOutbox.updateMany({
      where: { id: row.id, ...unsent },
      data: {
        subject: rendered.subject,
        mentions: row.mentions.filter((id) => id !== personId),
        ...sealMailBody(ctx.keyring, row.id, { text: rendered.text, html: rendered.html, data: without }),
      },
    });
  }
  return rows.length;
}
