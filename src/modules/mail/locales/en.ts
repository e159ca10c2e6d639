import { mailTime, type MailCatalogue, type MailContent, type MailEnvironment } from '../mail.templates.js';
import { namedAddress, readableAddress } from '../../../lib/email-address.js';

/** English texts. Another language is a file like this one, added to MAIL_LOCALES. */

// "8 December 2026 at 03:55 CET"
const when = (d: Date, env: MailEnvironment): string => mailTime('en-GB', d, env.timeZone);

const signature = (env: MailEnvironment): string => `Kind regards,\nyour ${env.shopName} team`;

const operations = (env: MailEnvironment): string => `the ${env.shopName} operations team`;

/** Who can act on the reader's account (mail.templates.ts, MailAudience); support when an administrator acted. */
const whomToAsk = (env: MailEnvironment, byAdministrator = false): string => {
  if (env.audience === 'staff') return operations(env);
  if (env.audience === 'administrator' || byAdministrator) return env.supportContact;
  return `your organisation's administrator or ${env.supportContact}`;
};

const notYou = (env: MailEnvironment): string => `If this was not you, contact ${whomToAsk(env)} right away.`;

/** For a change someone else made, whom the mail names. */
const unexpected = (env: MailEnvironment, byAdministrator = false): string =>
  `If you did not expect this, contact ${whomToAsk(env, byAdministrator)} right away.`;

const setUpMfa = 'set up the 2-step login with an authenticator app on your smartphone or the authenticator browser extension';

const notice = (env: MailEnvironment, name: string, subject: string, intro: string[], outro: string[] = []): MailContent => ({
  subject: `${env.shopName}: ${subject}`,
  greeting: `Hello ${name},`,
  intro,
  outro,
  signature: signature(env),
});

export const en: MailCatalogue = {
  activation: (d, env) => {
    // Whoever sent the link sends a new one: an organisation's first administrator and support
    // staff were invited by support or the operator, and have no administrator to ask.
    const newLink =
      d.by === 'admin' ? "ask your organisation's administrator" : `ask ${env.audience === 'staff' ? operations(env) : env.supportContact}`;
    return {
      subject: `${env.shopName}: activate your account`,
      greeting: `Hello ${d.name},`,
      intro: [
        d.organizationName
          ? `an account for the ${env.shopName} has been created for you at ${d.organizationName}.`
          : `an account for the ${env.shopName} has been created for you.`,
        `Your ${env.shopName} username: ${readableAddress(d.username)}`,
        `Use the link below to choose your own password. After that you ${setUpMfa}.`,
      ],
      action: { label: 'Activate your account', url: d.link },
      outro: [
        `The link works once and expires on ${when(d.expiresAt, env)}. If it has expired, ${newLink} to send a new one.`,
        `We will never ask you for your password by e-mail. If you did not expect this mail, you can ignore it.`,
      ],
      signature: signature(env),
    };
  },

  password_reset: (d, env) => ({
    subject: `${env.shopName}: reset your password`,
    greeting: `Hello ${d.name},`,
    intro: [
      {
        self: 'we received a request to reset the password of your account.',
        admin: `your organisation's administrator${d.actorName ? ` ${d.actorName}` : ''} sent you this link to choose a new password for your account.`,
        support: `the ${env.shopName} support team${d.actorName ? ` (${d.actorName})` : ''} sent you this link to choose a new password for your account.`,
      }[d.by] + ' Use the link below to choose a new one.',
    ],
    action: { label: 'Choose a new password', url: d.link },
    outro: [
      `The link works once and expires on ${when(d.expiresAt, env)}. ` +
        (d.mfaEnrolled
          ? 'Your 2-step login stays as it is: you still need your authenticator app to sign in.'
          : `At your next sign-in you ${setUpMfa}.`),
      d.by === 'self'
        ? 'If you did not ask for this, you can ignore this mail: your password stays unchanged.'
        : 'If you do not need a new password, you can ignore this mail: your password stays unchanged.',
    ],
    signature: signature(env),
  }),

  password_changed: (d, env) =>
    notice(env, d.name, 'your password was changed', [
      d.sessionsEnded === 'all'
        ? 'the password of your account was just reset. Every sign-in on your devices has been ended: sign in again with the new password.'
        : 'the password of your account was just changed. All other sign-ins on your devices have been ended.',
      notYou(env),
    ]),

  account_blocked: (d, env) =>
    notice(env, d.name, 'your account was blocked', [
      'your account has been blocked. You cannot sign in until it is unblocked.',
      d.administrators.length
        ? `If you think this is a mistake, contact your organisation's administrator (${d.administrators.map((a) => namedAddress(a.name, a.email)).join(', ')}) or ${env.supportContact}.`
        : `If you think this is a mistake, contact ${env.supportContact}.`,
    ]),

  account_unblocked: (d, env) =>
    notice(env, d.name, 'your account was unblocked', ['your account has been unblocked. You can sign in again.', unexpected(env)]),

  mfa_enrolled: (d, env) =>
    notice(env, d.name, '2-step login was set up', [
      'a new authenticator app was set up for the 2-step login of your account. From now on, sign in with the codes from that app.',
      notYou(env),
    ]),

  mfa_removed: (d, env) => {
    const who = {
      self: 'You removed the authenticator app of your account.',
      admin: `Your organisation's administrator${d.actorName ? ` ${d.actorName}` : ''} reset the 2-step login of your account.`,
      support: `The ${env.shopName} support team${d.actorName ? ` (${d.actorName})` : ''} reset the 2-step login of your account.`,
      cli: `The ${env.shopName} operations team reset the 2-step login of your account.`,
    }[d.by];
    return notice(env, d.name, '2-step login was removed', [
      who,
      'At your next sign-in you will set up a new authenticator app.',
      d.by === 'self' ? notYou(env) : unexpected(env, d.by === 'admin'),
    ]);
  },

  mfa_reset_confirm: (d, env) => ({
    subject: `${env.shopName}: confirm the reset of your 2-step login`,
    greeting: `Hello ${d.name},`,
    intro: [
      `you asked the ${env.shopName} support team to reset the 2-step login of your account (for example because you have a new phone).`,
      'To make sure it is really you, confirm the reset with the link below. Your current authenticator app then stops working for this account.',
    ],
    action: { label: 'Confirm the reset', url: d.link },
    outro: [
      `The link works once and expires on ${when(d.expiresAt, env)}.`,
      `If you did not ask for this, do not click the link and tell ${env.supportContact}.`,
    ],
    signature: signature(env),
  }),

  mfa_reset_done: (d, env) =>
    notice(env, d.name, 'you can now set up a new 2-step login', [
      `the ${env.shopName} support team reset the 2-step login of your account at your request, which you confirmed with the link we sent you. At your next sign-in with your e-mail address and password, you will set up a new authenticator app.`,
      notYou(env),
    ]),

  email_change_confirm: (d, env) => ({
    subject: `${env.shopName}: confirm your new e-mail address`,
    greeting: `Hello ${d.name},`,
    intro: [
      `you asked to use this address, ${readableAddress(d.newEmail)}, for your ${env.shopName} account from now on. Confirm it with the link below; until then you sign in with your current address.`,
    ],
    action: { label: 'Confirm the new address', url: d.link },
    outro: [
      `The link works once and expires on ${when(d.expiresAt, env)}. Your password and 2-step login stay as they are.`,
      'If you did not ask for this, you can ignore this mail: nothing changes.',
    ],
    signature: signature(env),
  }),

  email_changed: (d, env) => ({
    subject: `${env.shopName}: your e-mail address was changed`,
    greeting: `Hello ${d.name},`,
    intro: [
      `the e-mail address of your account was just changed to ${readableAddress(d.newEmail)}. From now on you sign in with the new address, and our mails go there.`,
      'If this was not you, someone else may have taken over your account: undo the change with the link below. Your address comes back, every session of your account ends, and we send you a link to choose a new password.',
    ],
    action: { label: 'Undo the change', url: d.link },
    outro: [`The link works once and expires on ${when(d.expiresAt, env)}. If it has expired, contact ${whomToAsk(env)} right away.`],
    signature: signature(env),
  }),

  email_change_undone: (d, env) => ({
    subject: `${env.shopName}: your e-mail address is back`,
    greeting: `Hello ${d.name},`,
    intro: [
      `the move of your account to ${readableAddress(d.movedTo)} was undone: you sign in again with the address this mail was sent to, and every session of your account was ended.`,
      'Whoever moved it knew your password, so it no longer works, and your recovery codes were deleted as well: choose a new password now with the link below, and create new recovery codes once you are signed in.',
    ],
    action: { label: 'Choose a new password', url: d.link },
    outro: [
      ...(d.stillBlocked
        ? [
            `Your account is still blocked, so the link works only once the block is lifted: ask ${d.stillBlocked === 'organization' ? `your organisation's administrator or ${env.supportContact}` : env.supportContact} to lift it.`,
          ]
        : []),
      `The link works once and expires on ${when(d.expiresAt, env)}. If it has expired, use "Forgot password" on the sign-in page.`,
      `If your authenticator app no longer signs you in (someone may have set up their own), contact ${whomToAsk(env)}: the 2-step login can be reset after this address has been checked.`,
    ],
    signature: signature(env),
  }),

  email_change_reverted: (d, env) =>
    notice(env, d.name, 'your account no longer uses this address', [
      `the e-mail address of your ${env.shopName} account was changed back to ${readableAddress(d.restoredEmail)}, with the link we sent there when the account moved away from it. You no longer sign in with the address this mail was sent to, and every session of the account was ended.`,
      unexpected(env),
    ]),

  recovery_code_used: (d, env) =>
    notice(env, d.name, 'a recovery code was used', [
      `a recovery code was just used to sign in to your account. You have ${d.remaining} recovery ${d.remaining === 1 ? 'code' : 'codes'} left.`,
      d.remaining <= 3
        ? 'You are running low: create new recovery codes in your account settings, and set up your authenticator app again if you lost your phone.'
        : 'If you lost your phone, set up your authenticator app again in your account settings.',
      notYou(env),
    ]),

  recovery_codes_regenerated: (d, env) =>
    notice(env, d.name, 'new recovery codes were created', [
      'new recovery codes were created for your account. The old ones no longer work.',
      notYou(env),
    ]),
};
