import type { Language } from '../../lib/languages.js';
import { de } from './locales/de.js';
import { en } from './locales/en.js';

/**
 * Mail templates: one typed data shape per template name, one catalogue per language, one layout.
 * A catalogue only says *what* a mail says (subject, paragraphs, an optional button); the layout
 * turns that into the text and the HTML part and escapes every value for HTML, so a language
 * added later cannot forget escaping and templates cannot inject markup.
 */

/**
 * What each template needs. Callers are type-checked against this map. Other people a mail names
 * are given with their ids (`actorId` beside `actorName`, `id` of each administrator): the mail
 * records them (`mentions`), and erasing one renders it again without them (erase-user.ts).
 */
export type MailTemplateData = {
  /**
   * A new account: create a password with the link (7 days). `username`: the account's e-mail
   * address as stored, which is what the user signs in with (the help page tells customers the mail
   * names it). `by`: who can send a new link, which the mail names — an administrator of the
   * organisation, or support / the operator (an organisation's first administrator, an organisation
   * without an active administrator, support staff).
   */
  activation: { name: string; link: string; expiresAt: Date; organizationName: string | null; username: string; by: 'admin' | 'support' | 'cli' };
  /**
   * A link to set a new password (30 min): asked for by the user ("forgot password") or sent by an
   * administrator or support (`actorName`: who). `mfaEnrolled`: whether the user has an active
   * authenticator, which the next sign-in then asks for; without one it asks to set one up.
   */
  password_reset: { name: string; link: string; expiresAt: Date; mfaEnrolled: boolean; by: 'self' | 'admin' | 'support'; actorName?: string; actorId?: string };
  /** `sessionsEnded`: every session (a reset, signed out everywhere) or every other one (a change, signed in here). */
  password_changed: { name: string; sessionsEnded: 'all' | 'others' };
  /**
   * `administrators`: the organisation's active administrators to ask (none for support staff and
   * for an organisation without another one); the mail names support (MailEnvironment) too.
   */
  account_blocked: { name: string; administrators: { id?: string; name: string; email: string }[] };
  account_unblocked: { name: string };
  mfa_enrolled: { name: string };
  /** `by: 'cli'`: the service's operators (support staff accounts are theirs to manage). */
  mfa_removed: { name: string; by: 'self' | 'admin' | 'support' | 'cli'; actorName?: string; actorId?: string };
  /** Support started a verified MFA reset: the user confirms it with the link (24 h). */
  mfa_reset_confirm: { name: string; link: string; expiresAt: Date };
  /** The support-verified MFA reset is done (support did it, at the user's confirmed request): a new authenticator at the next login. */
  mfa_reset_done: { name: string };
  /** The user asked to move the account to this (new) address: confirm with the link (24 h). */
  email_change_confirm: { name: string; link: string; expiresAt: Date; newEmail: string };
  /** To the old address, once the change is confirmed; `link` undoes the move (7 days). */
  email_changed: { name: string; newEmail: string; link: string; expiresAt: Date };
  /** To the restored address, once a move to `movedTo` was undone: `link` chooses a new password (30 min). */
  /** `stillBlocked`: the account is blocked (the reset link waits for the unblock), by whom it is lifted. */
  email_change_undone: { name: string; movedTo: string; link: string; expiresAt: Date; stillBlocked?: 'support' | 'organization' | null };
  /** To the address an undo moved the account away from (no link). */
  email_change_reverted: { name: string; restoredEmail: string };
  recovery_code_used: { name: string; remaining: number };
  recovery_codes_regenerated: { name: string };
};

export type MailTemplateName = keyof MailTemplateData;

export const MAIL_TEMPLATE_NAMES = [
  'activation',
  'password_reset',
  'password_changed',
  'account_blocked',
  'account_unblocked',
  'mfa_enrolled',
  'mfa_removed',
  'mfa_reset_confirm',
  'mfa_reset_done',
  'email_change_confirm',
  'email_changed',
  'email_change_undone',
  'email_change_reverted',
  'recovery_code_used',
  'recovery_codes_regenerated',
] as const satisfies readonly MailTemplateName[];

/**
 * Who reads the mail, for whom it names to ask when something was not theirs: an organisation's
 * member (its administrators or support), one of its administrators (support), or support staff
 * (no organisation; the service's operators manage their accounts).
 */
export type MailAudience = 'member' | 'administrator' | 'staff';

/** Values every template may use, taken from the configuration and the recipient's account (never from a request). */
export type MailEnvironment = { shopName: string; supportContact: string; audience: MailAudience; timeZone: string };

/** A moment as mails state it: date and time in MAIL_TIME_ZONE, with the zone's name ("CET", "MESZ", "UTC"). */
export function mailTime(locale: 'en-GB' | 'de-DE', at: Date, timeZone: string): string {
  const text = new Intl.DateTimeFormat(locale, { dateStyle: 'long', timeStyle: 'short', timeZone }).format(at);
  const zone = new Intl.DateTimeFormat(locale, { timeZone, timeZoneName: 'short' }).formatToParts(at).find((p) => p.type === 'timeZoneName')?.value;
  return zone ? `${text} ${zone}` : text;
}

/** The content of one mail, free of any markup. */
export type MailContent = {
  subject: string;
  greeting: string;
  /** Paragraphs before the button (plain text; the layout escapes them). */
  intro: string[];
  action?: { label: string; url: string };
  /** Paragraphs after the button. */
  outro?: string[];
  signature: string;
};

export type MailCatalogue = {
  [K in MailTemplateName]: (data: MailTemplateData[K], env: MailEnvironment) => MailContent;
};

/** One catalogue per language the service offers (src/lib/languages.ts). */
export const MAIL_LOCALES: Readonly<Record<Language, MailCatalogue>> = { en, de };

export type RenderedMail = { subject: string; text: string; html: string };

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

// Header injection: a subject is one line, whatever a name contains.
const oneLine = (s: string): string => s.replace(/[\r\n\t]+/g, ' ').trim();

function renderText(c: MailContent): string {
  const parts = [c.greeting, ...c.intro];
  if (c.action) parts.push(`${c.action.label}:\n${c.action.url}`);
  parts.push(...(c.outro ?? []), c.signature);
  return `${parts.join('\n\n')}\n`;
}

function renderHtml(c: MailContent, lang: string): string {
  const p = (s: string) => `<p style="margin:0 0 16px">${escapeHtml(s).replace(/\n/g, '<br>')}</p>`;
  const button = c.action
    ? `<p style="margin:24px 0"><a href="${escapeHtml(c.action.url)}" style="background:#0b5cad;color:#ffffff;padding:12px 20px;border-radius:4px;text-decoration:none;display:inline-block">${escapeHtml(c.action.label)}</a></p>` +
      `<p style="margin:0 0 16px;font-size:13px;color:#555">${escapeHtml(c.action.url)}</p>`
    : '';
  return [
    '<!doctype html>',
    `<html lang="${escapeHtml(lang)}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(oneLine(c.subject))}</title></head>`,
    '<body style="font-family:Arial,Helvetica,sans-serif;font-size:15px;line-height:1.5;color:#222;margin:0;padding:24px">',
    p(c.greeting),
    ...c.intro.map(p),
    button,
    ...(c.outro ?? []).map(p),
    p(c.signature),
    '</body></html>',
    '',
  ].join('\n');
}

export function renderMail<K extends MailTemplateName>(
  template: K,
  data: MailTemplateData[K],
  env: MailEnvironment,
  locale: Language,
): RenderedMail {
  const build = MAIL_LOCALES[locale][template] as (d: MailTemplateData[K], e: MailEnvironment) => MailContent;
  const content = build(data, env);
  return { subject: oneLine(content.subject), text: renderText(content), html: renderHtml(content, locale) };
}
