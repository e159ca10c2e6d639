import type { AppContext } from '../../context.js';
import type { Config } from '../../config.js';
import type { Tx } from '../../db/client.js';
import { newId } from '../../db/sql.js';
import { sealMailBody } from './mail-body.js';
import { mentionsOf } from './mentions.js';
import type { Language } from '../../lib/languages.js';
import { renderMail, type MailAudience, type MailTemplateData, type MailTemplateName, type RenderedMail } from './mail.templates.js';

export type { MailTemplateData, MailTemplateName } from './mail.templates.js';

/** The frontend paths that e-mail links point to (APP_BASE_URL + path + ?token=...). */
export const LINK_PATHS = {
  activation: '/activate',
  passwordReset: '/reset-password',
  mfaResetConfirm: '/confirm-mfa-reset',
  emailChangeConfirm: '/confirm-email',
  emailChangeUndo: '/undo-email-change',
} as const;

/**
 * The only way to build a link for an e-mail: from the configured APP_BASE_URL, never from the
 * request (a spoofed Host header must not be able to send users' tokens elsewhere).
 */
export function buildLink(config: Pick<Config, 'appBaseUrl'>, path: string, token: string): string {
  const base = config.appBaseUrl.replace(/\/+$/, '');
  const p = path.startsWith('/') ? path : `/${path}`;
  return `${base}${p}?token=${encodeURIComponent(token)}`;
}

/**
 * Whom a mail goes to, in which language (null: the deployment's DEFAULT_LANGUAGE), and the id of
 * the account it is about (erasing the account deletes it, whatever the address; null: none).
 */
export type MailRecipient = { email: string; language: Language | null; id: string | null };

export type EnqueueMailInput<K extends MailTemplateName> = {
  to: MailRecipient;
  template: K;
  data: MailTemplateData[K];
  /** Not sent before this moment (the address's mail budget has room then; status-mail.ts). Unset: now. */
  notBefore?: Date;
};

/**
 * The page a mail's link opens learns the mail's language (`&lang=de`) before it calls the API, so
 * it speaks as the mail did whatever the browser's language. The token stays the first parameter.
 */
function linkInLanguage<K extends MailTemplateName>(data: MailTemplateData[K], language: Language): MailTemplateData[K] {
  const link = (data as { link?: unknown }).link;
  return typeof link === 'string' ? { ...data, link: `${link}&lang=${language}` } : data;
}

/** A mail as `to` reads it: in their language (else DEFAULT_LANGUAGE), naming support as that language does. */
export function renderMailFor<K extends MailTemplateName>(
  config: Pick<Config, 'shopName' | 'supportContactIn' | 'defaultLanguage' | 'mailTimeZone'>,
  to: MailRecipient,
  template: K,
  data: MailTemplateData[K],
  audience: MailAudience = 'member',
): RenderedMail {
  const language = to.language ?? config.defaultLanguage;
  return renderMail(template, linkInLanguage(data, language), { shopName: config.shopName, supportContact: config.supportContactIn[language], audience, timeZone: config.mailTimeZone }, language);
}

/** Who the account `to` names reads the mail as (MailAudience), from its roles as of the caller's transaction. */
export async function audienceOf(tx: Tx, to: MailRecipient): Promise<MailAudience> {
  if (!to.id) return 'member';
  const user = await tx.user.findUnique({ where: { id: to.id }, select: { roles: true } });
  if (user?.roles.includes('SUPPORT')) return 'staff';
  return user?.roles.includes('CUSTOMER_ADMIN') ? 'administrator' : 'member';
}

/**
 * Writes a mail to the outbox in the caller's transaction: it is sent (by the delivery worker)
 * only if the change that causes it commits, and it survives restarts and SMTP outages.
 * The mail is rendered now, so what is sent is what was true when it was written.
 *
 * The body carries the raw link token of activation, reset and MFA-reset mails, so it is stored
 * only sealed with the keyring (`sealMailBody`, bound to the row's id, which is therefore made
 * here); recipient, template and subject stay readable for operations (no subject holds a link).
 */
export async function enqueueMail<K extends MailTemplateName>(
  tx: Tx,
  ctx: Pick<AppContext, 'config' | 'clock' | 'keyring'>,
  input: EnqueueMailInput<K>,
): Promise<{ id: string }> {
  const rendered = renderMailFor(ctx.config, input.to, input.template, input.data, await audienceOf(tx, input.to));
  const now = ctx.clock.now();
  const id = newId();
  const mentions = mentionsOf(input.data);
  const row = await tx.mailOutbox.create({
    data: {
      id,
      toAddress: input.to.email,
      userId: input.to.id,
      template: input.template,
      subject: rendered.subject,
      mentions,
      ...sealMailBody(ctx.keyring, id, { text: rendered.text, html: rendered.html, ...(mentions.length ? { data: input.data } : {}) }),
      nextAttemptAt: input.notBefore ?? now,
      createdAt: now,
    },
    select: { id: true },
  });
  return row;
}
