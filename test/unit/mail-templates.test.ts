import t from 'tap';
import { LANGUAGES, type Language } from '../../src/lib/languages.js';
import { escapeHtml, MAIL_LOCALES, MAIL_TEMPLATE_NAMES, renderMail, type MailTemplateData } from '../../src/modules/mail/mail.templates.js';
import { buildLink } from '../../src/modules/mail/mail.service.js';

const env = { shopName: 'ALSO Webshop', supportContact: 'the e-business team (ebusiness@example.test)', audience: 'member', timeZone: 'UTC' } as const;
const evil = 'Eve "<img src=x onerror=alert(1)>" & Co';
const expiresAt = new Date(Date.UTC(2026, 0, 2, 3, 4));
const link = 'https://shop.example.test/x?token=abc&y=1';

const samples: { [K in keyof MailTemplateData]: MailTemplateData[K] } = {
  activation: { name: evil, link, expiresAt, organizationName: evil, username: evil, by: 'admin' },
  password_reset: { name: evil, link, expiresAt, mfaEnrolled: true, by: 'admin', actorName: evil },
  password_changed: { name: evil, sessionsEnded: 'others' },
  account_blocked: { name: evil, administrators: [{ name: evil, email: 'admin@example.test' }] },
  account_unblocked: { name: evil },
  mfa_enrolled: { name: evil },
  mfa_removed: { name: evil, by: 'admin', actorName: evil },
  mfa_reset_confirm: { name: evil, link, expiresAt },
  mfa_reset_done: { name: evil },
  email_change_confirm: { name: evil, link, expiresAt, newEmail: evil },
  email_changed: { name: evil, newEmail: evil, link, expiresAt },
  email_change_undone: { name: evil, movedTo: evil, link, expiresAt, stillBlocked: 'organization' },
  email_change_reverted: { name: evil, restoredEmail: evil },
  recovery_code_used: { name: evil, remaining: 3 },
  recovery_codes_regenerated: { name: evil },
};

const greeting: Record<Language, string> = { en: 'Hello', de: 'Guten Tag' };
const date: Record<Language, string> = { en: '2 January 2026 at 03:04 UTC', de: '2. Januar 2026 um 03:04 UTC' };

t.test('every template renders a subject, a text and an HTML part in every language, escaping all data', async (t) => {
  t.same(Object.keys(MAIL_LOCALES).sort(), [...LANGUAGES].sort(), 'a catalogue for each language');
  for (const locale of LANGUAGES) {
    for (const name of MAIL_TEMPLATE_NAMES) {
      const mail = renderMail(name, samples[name] as never, env, locale);
      t.ok(mail.subject.startsWith('ALSO Webshop: '), `${locale}/${name} subject`);
      t.notMatch(mail.subject, /[\r\n]/);
      t.match(mail.text, `${greeting[locale]} ${evil},`, `${locale}/${name} text is plain`);
      t.notMatch(mail.html, '<img', `${locale}/${name} html escapes data`);
      t.match(mail.html, 'Eve &quot;&lt;img src=x onerror=alert(1)&gt;&quot; &amp; Co');
      if ('link' in samples[name]) {
        t.match(mail.text, link);
        t.match(mail.html, 'href="https://shop.example.test/x?token=abc&amp;y=1"');
        t.match(mail.text, date[locale]);
      }
    }
  }
});

t.test('a subject stays one line whatever the data holds', async (t) => {
  const mail = renderMail('password_changed', { name: 'x\r\nBcc: victim@example.test', sessionsEnded: 'others' }, { ...env, shopName: 'Shop\r\nX-Evil: 1' }, 'en');
  t.notMatch(mail.subject, /[\r\n]/);
});

t.test('mfa_removed and mfa_reset_done say who removed it', async (t) => {
  t.match(renderMail('mfa_removed', { name: 'A', by: 'self' }, env, 'en').text, 'You removed');
  t.match(renderMail('mfa_removed', { name: 'A', by: 'admin', actorName: 'Bob Admin' }, env, 'en').text, "administrator Bob Admin reset");
  t.match(renderMail('mfa_removed', { name: 'A', by: 'support' }, env, 'en').text, 'support team reset');
  t.match(renderMail('mfa_removed', { name: 'A', by: 'cli' }, env, 'en').text, 'The ALSO Webshop operations team reset');
  // The support-verified reset (the only sender of mfa_reset_done) names the support team too.
  t.match(renderMail('mfa_reset_done', { name: 'A' }, env, 'en').text, 'the ALSO Webshop support team reset the 2-step login of your account at your request');
});

t.test('password_reset says who sent it and whether the next sign-in asks for the authenticator or its set-up (desk review, session 23)', async (t) => {
  const reset = (data: Pick<MailTemplateData['password_reset'], 'mfaEnrolled' | 'by' | 'actorName'>, locale: Language = 'en') =>
    renderMail('password_reset', { name: 'A', link, expiresAt, ...data }, env, locale).text;
  t.match(reset({ mfaEnrolled: true, by: 'self' }), 'we received a request to reset the password');
  t.match(reset({ mfaEnrolled: true, by: 'self' }), 'If you did not ask for this, you can ignore this mail');
  const byAdmin = reset({ mfaEnrolled: true, by: 'admin', actorName: 'Bob Admin' });
  t.match(byAdmin, "your organisation's administrator Bob Admin sent you this link");
  t.notMatch(byAdmin, 'If you did not ask for this', 'the user did not ask: someone they know sent it');
  t.match(byAdmin, 'If you do not need a new password, you can ignore this mail');
  t.match(reset({ mfaEnrolled: true, by: 'support', actorName: 'Sam Support' }), 'the ALSO Webshop support team (Sam Support) sent you this link');
  t.match(reset({ mfaEnrolled: true, by: 'self' }), 'you still need your authenticator app to sign in');
  const withoutFactor = reset({ mfaEnrolled: false, by: 'admin' });
  t.notMatch(withoutFactor, 'still need your authenticator', 'no authenticator to keep');
  t.match(withoutFactor, 'At your next sign-in you set up the 2-step login');
  t.match(reset({ mfaEnrolled: false, by: 'admin', actorName: 'Bob Admin' }, 'de'), 'der Administrator Ihrer Organisation, Bob Admin, hat Ihnen diesen Link gesendet');
  t.match(reset({ mfaEnrolled: false, by: 'self' }, 'de'), 'Bei Ihrer nächsten Anmeldung richten Sie die 2-Schritt-Anmeldung');
  t.match(reset({ mfaEnrolled: true, by: 'support' }, 'de'), 'benötigen Sie weiterhin Ihre Authenticator-App');
});

t.test('German: the text after the greeting goes on in lower case; the signature suits a shop name of several words', async (t) => {
  const admin = renderMail('mfa_removed', { name: 'A', by: 'admin', actorName: 'Bob Admin' }, env, 'de').text;
  t.match(admin, 'Guten Tag A,\n\nder Administrator Ihrer Organisation, Bob Admin, hat die 2-Schritt-Anmeldung');
  t.match(renderMail('mfa_removed', { name: 'A', by: 'cli' }, env, 'de').text, 'Guten Tag A,\n\nunser Betriebsteam hat');
  t.match(admin, 'Mit freundlichen Grüßen\nIhr Team von ALSO Webshop\n');
});

t.test('buildLink uses only the configured base URL', async (t) => {
  t.equal(buildLink({ appBaseUrl: 'https://shop.example.test/' }, '/activate', 'a+b/c'), 'https://shop.example.test/activate?token=a%2Bb%2Fc');
  t.equal(buildLink({ appBaseUrl: 'https://shop.example.test/b2b' }, 'reset-password', 't'), 'https://shop.example.test/b2b/reset-password?token=t');
});

t.test('the HTML part says all the text part says: every paragraph, and the link as text below its button (mutation review, session 21)', async (t) => {
  for (const locale of LANGUAGES) {
    for (const name of MAIL_TEMPLATE_NAMES) {
      const mail = renderMail(name, samples[name] as never, env, locale);
      for (const paragraph of mail.text.trimEnd().split('\n\n')) {
        if (paragraph.endsWith(`:\n${link}`)) {
          t.match(mail.html, `>${escapeHtml(paragraph.slice(0, -link.length - 2))}</a>`, `${locale}/${name}: the button`);
          t.match(mail.html, `>${escapeHtml(link)}</p>`, `${locale}/${name}: the link as text`);
        } else {
          t.match(mail.html, `>${escapeHtml(paragraph).replace(/\n/g, '<br>')}</p>`, `${locale}/${name}: ${paragraph.slice(0, 40)}`);
        }
      }
    }
  }
});

t.test("whom a mail says to contact follows who reads it and who acted: staff ask operations, administrators and what an administrator did ask support (mail review, session 25)", async (t) => {
  const text = <K extends keyof MailTemplateData>(name: K, data: MailTemplateData[K], audience: 'member' | 'administrator' | 'staff', locale: Language = 'en') =>
    renderMail(name, data, { ...env, audience }, locale).text;
  const member = text('password_changed', { name: 'A', sessionsEnded: 'others' }, 'member');
  t.match(member, "If this was not you, contact your organisation's administrator or the e-business team (ebusiness@example.test) right away.");
  const administrator = text('password_changed', { name: 'A', sessionsEnded: 'others' }, 'administrator');
  t.match(administrator, 'If this was not you, contact the e-business team (ebusiness@example.test) right away.');
  t.notMatch(administrator, "organisation's administrator", 'an administrator is not sent to themselves');
  const staff = text('mfa_removed', { name: 'A', by: 'cli' }, 'staff');
  t.match(staff, 'contact the ALSO Webshop operations team right away');
  t.notMatch(staff, /organisation|e-business team/, 'support staff have no organisation, and support cannot act on them');
  t.match(text('mfa_removed', { name: 'A', by: 'cli' }, 'staff', 'de'), 'wenden Sie sich bitte umgehend an unser Betriebsteam.');
  t.notMatch(text('mfa_removed', { name: 'A', by: 'cli' }, 'staff', 'de'), /Organisation|E-Business/);

  // Done by someone the mail names: not "if this was not you", and not back to that administrator.
  const byAdmin = text('mfa_removed', { name: 'A', by: 'admin', actorName: 'Bob Admin' }, 'member');
  t.notMatch(byAdmin, 'If this was not you');
  t.match(byAdmin, 'If you did not expect this, contact the e-business team (ebusiness@example.test) right away.');
  const byAdminDe = text('mfa_removed', { name: 'A', by: 'admin', actorName: 'Bob Admin' }, 'member', 'de');
  t.notMatch(byAdminDe, 'Falls Sie das nicht waren');
  t.match(byAdminDe, 'Falls Sie damit nicht gerechnet haben, wenden Sie sich bitte umgehend an the e-business team (ebusiness@example.test).');
  t.match(text('mfa_removed', { name: 'A', by: 'support' }, 'member'), "If you did not expect this, contact your organisation's administrator or the e-business team");
  t.match(text('mfa_removed', { name: 'A', by: 'self' }, 'member'), 'If this was not you');
  t.match(text('account_unblocked', { name: 'A' }, 'member'), "If you did not expect this, contact your organisation's administrator or");
  t.notMatch(text('account_unblocked', { name: 'A' }, 'member'), 'If this was not you', 'nobody unblocks themselves');

  // An expired activation link of support staff: the operators send a new one (resend-support-activation).
  const activation = { name: 'A', link, expiresAt, organizationName: null, username: 'a@example.test', by: 'cli' } as const;
  t.match(text('activation', activation, 'staff'), 'If it has expired, ask the ALSO Webshop operations team to send a new one.');
  t.match(text('activation', activation, 'administrator'), 'If it has expired, ask the e-business team (ebusiness@example.test) to send a new one.');
  t.match(text('activation', activation, 'staff', 'de'), 'bitten Sie unser Betriebsteam, Ihnen einen neuen zu senden.');
});

t.test('the set-up of the 2-step login names the browser extension beside the phone app, as the help page does (mail review, session 25)', async (t) => {
  const activation = { name: 'A', link, expiresAt, organizationName: null, username: 'a@example.test', by: 'admin' } as const;
  const reset = { name: 'A', link, expiresAt, mfaEnrolled: false, by: 'self' } as const;
  t.match(renderMail('activation', activation, env, 'en').text, 'an authenticator app on your smartphone or the authenticator browser extension');
  t.match(renderMail('password_reset', reset, env, 'en').text, 'an authenticator app on your smartphone or the authenticator browser extension');
  t.match(renderMail('activation', activation, env, 'de').text, 'mit einer Authenticator-App auf Ihrem Smartphone oder der Authenticator-Browsererweiterung ein');
  t.match(renderMail('password_reset', reset, env, 'de').text, 'mit einer Authenticator-App auf Ihrem Smartphone oder der Authenticator-Browsererweiterung ein');
});

t.test('times in mails are in MAIL_TIME_ZONE with its name; the text part points to a link, not a button (frontend review, session 26)', async (t) => {
  const winter = new Date('2026-12-08T02:55:00Z');
  const summer = new Date('2026-07-08T02:55:00Z');
  const sample = (expiresAt: Date) => ({ name: 'A', link: 'https://shop.example.test/reset-password?token=x', expiresAt, mfaEnrolled: true, by: 'self' as const });
  const berlin = { ...env, timeZone: 'Europe/Berlin' };
  t.match(renderMail('password_reset', sample(winter), berlin, 'de').text, '8. Dezember 2026 um 03:55 MEZ');
  t.match(renderMail('password_reset', sample(summer), berlin, 'de').text, '8. Juli 2026 um 04:55 MESZ');
  t.match(renderMail('password_reset', sample(winter), berlin, 'en').text, '8 December 2026 at 03:55 CET');
  t.match(renderMail('password_reset', sample(winter), env, 'de').text, '8. Dezember 2026 um 02:55 UTC');
  for (const locale of LANGUAGES) {
    for (const name of MAIL_TEMPLATE_NAMES) {
      const { text } = renderMail(name, samples[name] as never, env, locale);
      t.notMatch(text, /button|Schaltfläche/i, `${locale} ${name}: the text part has no button`);
    }
  }
});

t.test('the password mail after a reset says every session ended; after a change, every other one (frontend review, session 26)', async (t) => {
  for (const locale of LANGUAGES) {
    const reset = renderMail('password_changed', { name: 'A', sessionsEnded: 'all' }, env, locale).text;
    const change = renderMail('password_changed', { name: 'A', sessionsEnded: 'others' }, env, locale).text;
    t.notMatch(reset, /other|anderen/, `${locale}: reset`);
    t.match(change, /other|anderen/, `${locale}: change`);
  }
});
