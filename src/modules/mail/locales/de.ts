import { mailTime, type MailCatalogue, type MailContent, type MailEnvironment } from '../mail.templates.js';
import { namedAddress, readableAddress } from '../../../lib/email-address.js';

/**
 * German texts (formal "Sie"), template by template as in en.ts. Terms: "2-Schritt-Anmeldung"
 * (2-step login), "Authenticator-App", "Wiederherstellungscodes" (recovery codes).
 * `env.supportContact` is always used where German needs the accusative ("an …", "bitten Sie …",
 * "informieren Sie …"), so a bare name/address or one accusative phrase fits everywhere.
 */

// "2. Januar 2026 um 04:04 MEZ"
const when = (d: Date, env: MailEnvironment): string => mailTime('de-DE', d, env.timeZone);

// Not "Ihr ${shopName}-Team": a name of several words would need hyphens throughout ("ALSO-Webshop-Team").
const signature = (env: MailEnvironment): string => `Mit freundlichen Grüßen\nIhr Team von ${env.shopName}`;

const greeting = (name: string): string => `Guten Tag ${name},`;

const linkOnce = (expiresAt: Date, env: MailEnvironment): string => `Der Link ist nur einmal verwendbar und gilt bis zum ${when(expiresAt, env)}.`;

/** Who can act on the reader's account, in the accusative after "an" (see en.ts). */
const whomToAsk = (env: MailEnvironment, byAdministrator = false): string => {
  if (env.audience === 'staff') return 'unser Betriebsteam';
  if (env.audience === 'administrator' || byAdministrator) return env.supportContact;
  return `den Administrator Ihrer Organisation oder an ${env.supportContact}`;
};

const notYou = (env: MailEnvironment): string => `Falls Sie das nicht waren, wenden Sie sich bitte umgehend an ${whomToAsk(env)}.`;

/** For a change someone else made, whom the mail names. */
const unexpected = (env: MailEnvironment, byAdministrator = false): string =>
  `Falls Sie damit nicht gerechnet haben, wenden Sie sich bitte umgehend an ${whomToAsk(env, byAdministrator)}.`;

const setUpMfa = 'richten Sie die 2-Schritt-Anmeldung mit einer Authenticator-App auf Ihrem Smartphone oder der Authenticator-Browsererweiterung ein';

const notice = (env: MailEnvironment, name: string, subject: string, intro: string[], outro: string[] = []): MailContent => ({
  subject: `${env.shopName}: ${subject}`,
  greeting: greeting(name),
  intro,
  outro,
  signature: signature(env),
});

export const de: MailCatalogue = {
  activation: (d, env) => {
    // Whoever sent the link sends a new one (see en.ts).
    const newLink =
      d.by === 'admin'
        ? 'bitten Sie den Administrator Ihrer Organisation, Ihnen einen neuen zu senden.'
        : `bitten Sie ${env.audience === 'staff' ? 'unser Betriebsteam' : env.supportContact}, Ihnen einen neuen zu senden.`;
    return {
      subject: `${env.shopName}: Ihr Konto aktivieren`,
      greeting: greeting(d.name),
      intro: [
        d.organizationName
          ? `für Sie wurde im ${env.shopName} ein Benutzerkonto für Ihre Organisation ${d.organizationName} angelegt.`
          : `für Sie wurde im ${env.shopName} ein Benutzerkonto angelegt.`,
        `Ihr Benutzername im ${env.shopName}: ${readableAddress(d.username)}`,
        `Über den Link unten legen Sie Ihr eigenes Passwort fest. Anschließend ${setUpMfa}.`,
      ],
      action: { label: 'Konto aktivieren', url: d.link },
      outro: [
        `${linkOnce(d.expiresAt, env)} Ist er abgelaufen, ${newLink}`,
        'Wir fragen Sie niemals per E-Mail nach Ihrem Passwort. Falls Sie diese E-Mail nicht erwartet haben, können Sie sie ignorieren.',
      ],
      signature: signature(env),
    };
  },

  password_reset: (d, env) => ({
    subject: `${env.shopName}: Ihr Passwort zurücksetzen`,
    greeting: greeting(d.name),
    intro: [
      {
        self: 'wir haben eine Anfrage erhalten, das Passwort Ihres Kontos zurückzusetzen.',
        admin: `der Administrator Ihrer Organisation${d.actorName ? `, ${d.actorName},` : ''} hat Ihnen diesen Link gesendet, damit Sie ein neues Passwort für Ihr Konto festlegen.`,
        support: `unser Support-Team${d.actorName ? ` (${d.actorName})` : ''} hat Ihnen diesen Link gesendet, damit Sie ein neues Passwort für Ihr Konto festlegen.`,
      }[d.by] + ' Über den Link unten legen Sie ein neues Passwort fest.',
    ],
    action: { label: 'Neues Passwort festlegen', url: d.link },
    outro: [
      `${linkOnce(d.expiresAt, env)} ` +
        (d.mfaEnrolled
          ? 'Ihre 2-Schritt-Anmeldung bleibt unverändert: Für die Anmeldung benötigen Sie weiterhin Ihre Authenticator-App.'
          : `Bei Ihrer nächsten Anmeldung ${setUpMfa}.`),
      d.by === 'self'
        ? 'Falls Sie das nicht angefordert haben, können Sie diese E-Mail ignorieren: Ihr Passwort bleibt unverändert.'
        : 'Falls Sie kein neues Passwort benötigen, können Sie diese E-Mail ignorieren: Ihr Passwort bleibt unverändert.',
    ],
    signature: signature(env),
  }),

  password_changed: (d, env) =>
    notice(env, d.name, 'Ihr Passwort wurde geändert', [
      d.sessionsEnded === 'all'
        ? 'das Passwort Ihres Kontos wurde soeben zurückgesetzt. Alle Sitzungen auf Ihren Geräten wurden beendet: Melden Sie sich mit dem neuen Passwort wieder an.'
        : 'das Passwort Ihres Kontos wurde soeben geändert. Alle anderen Sitzungen auf Ihren Geräten wurden beendet.',
      notYou(env),
    ]),

  account_blocked: (d, env) => {
    const admins = d.administrators.map((a) => namedAddress(a.name, a.email)).join(', ');
    const whom =
      d.administrators.length === 0
        ? ''
        : d.administrators.length === 1
          ? `den Administrator Ihrer Organisation (${admins}) oder an `
          : `einen der Administratoren Ihrer Organisation (${admins}) oder an `;
    return notice(env, d.name, 'Ihr Konto wurde gesperrt', [
      'Ihr Konto wurde gesperrt. Bis zur Entsperrung können Sie sich nicht anmelden.',
      `Falls Sie das für einen Irrtum halten, wenden Sie sich bitte an ${whom}${env.supportContact}.`,
    ]);
  },

  account_unblocked: (d, env) =>
    notice(env, d.name, 'Ihr Konto wurde entsperrt', ['Ihr Konto wurde entsperrt. Sie können sich wieder anmelden.', unexpected(env)]),

  mfa_enrolled: (d, env) =>
    notice(env, d.name, '2-Schritt-Anmeldung wurde eingerichtet', [
      'für die 2-Schritt-Anmeldung Ihres Kontos wurde eine neue Authenticator-App eingerichtet. Melden Sie sich ab sofort mit den Codes aus dieser App an.',
      notYou(env),
    ]),

  mfa_removed: (d, env) => {
    const who = {
      self: 'Sie haben die Authenticator-App Ihres Kontos entfernt.',
      admin: `der Administrator Ihrer Organisation${d.actorName ? `, ${d.actorName},` : ''} hat die 2-Schritt-Anmeldung Ihres Kontos zurückgesetzt.`,
      support: `unser Support-Team${d.actorName ? ` (${d.actorName})` : ''} hat die 2-Schritt-Anmeldung Ihres Kontos zurückgesetzt.`,
      cli: 'unser Betriebsteam hat die 2-Schritt-Anmeldung Ihres Kontos zurückgesetzt.',
    }[d.by];
    return notice(env, d.name, 'Ihre 2-Schritt-Anmeldung wurde zurückgesetzt', [
      who,
      'Bei Ihrer nächsten Anmeldung richten Sie eine neue Authenticator-App ein.',
      d.by === 'self' ? notYou(env) : unexpected(env, d.by === 'admin'),
    ]);
  },

  mfa_reset_confirm: (d, env) => ({
    subject: `${env.shopName}: Zurücksetzen Ihrer 2-Schritt-Anmeldung bestätigen`,
    greeting: greeting(d.name),
    intro: [
      'Sie haben unser Support-Team gebeten, die 2-Schritt-Anmeldung Ihres Kontos zurückzusetzen (etwa weil Sie ein neues Smartphone haben).',
      'Damit wir sicher sein können, dass die Anfrage wirklich von Ihnen stammt, bestätigen Sie das Zurücksetzen bitte über den Link unten. Ihre bisherige Authenticator-App funktioniert danach für dieses Konto nicht mehr.',
    ],
    action: { label: 'Zurücksetzen bestätigen', url: d.link },
    outro: [
      linkOnce(d.expiresAt, env),
      `Falls Sie das nicht angefordert haben, klicken Sie nicht auf den Link und informieren Sie ${env.supportContact}.`,
    ],
    signature: signature(env),
  }),

  mfa_reset_done: (d, env) =>
    notice(env, d.name, 'Sie können jetzt eine neue 2-Schritt-Anmeldung einrichten', [
      'unser Support-Team hat die 2-Schritt-Anmeldung Ihres Kontos auf Ihre Anfrage hin zurückgesetzt, die Sie über den zugesandten Link bestätigt haben. Bei Ihrer nächsten Anmeldung mit Ihrer E-Mail-Adresse und Ihrem Passwort richten Sie eine neue Authenticator-App ein.',
      notYou(env),
    ]),

  email_change_confirm: (d, env) => ({
    subject: `${env.shopName}: Ihre neue E-Mail-Adresse bestätigen`,
    greeting: greeting(d.name),
    intro: [
      `Sie möchten für Ihr Konto im ${env.shopName} künftig diese Adresse verwenden: ${readableAddress(d.newEmail)}. Bestätigen Sie sie über den Link unten; bis dahin melden Sie sich weiterhin mit Ihrer bisherigen Adresse an.`,
    ],
    action: { label: 'Neue Adresse bestätigen', url: d.link },
    outro: [
      `${linkOnce(d.expiresAt, env)} Ihr Passwort und Ihre 2-Schritt-Anmeldung bleiben unverändert.`,
      'Falls Sie das nicht angefordert haben, können Sie diese E-Mail ignorieren: Es ändert sich nichts.',
    ],
    signature: signature(env),
  }),

  email_changed: (d, env) => ({
    subject: `${env.shopName}: Ihre E-Mail-Adresse wurde geändert`,
    greeting: greeting(d.name),
    intro: [
      `die E-Mail-Adresse Ihres Kontos wurde soeben in ${readableAddress(d.newEmail)} geändert. Ab sofort melden Sie sich mit der neuen Adresse an; auch unsere E-Mails gehen künftig dorthin.`,
      'Falls Sie das nicht waren, hat möglicherweise jemand anderes Ihr Konto übernommen: Machen Sie die Änderung über den Link unten rückgängig. Ihre Adresse wird wiederhergestellt, alle Sitzungen Ihres Kontos werden beendet, und wir senden Ihnen einen Link, mit dem Sie ein neues Passwort festlegen.',
    ],
    action: { label: 'Änderung rückgängig machen', url: d.link },
    outro: [`${linkOnce(d.expiresAt, env)} Ist er abgelaufen, wenden Sie sich bitte umgehend an ${whomToAsk(env)}.`],
    signature: signature(env),
  }),

  email_change_undone: (d, env) => ({
    subject: `${env.shopName}: Ihre E-Mail-Adresse wurde wiederhergestellt`,
    greeting: greeting(d.name),
    intro: [
      `der Wechsel Ihres Kontos zu ${readableAddress(d.movedTo)} wurde rückgängig gemacht: Sie melden sich wieder mit der Adresse an, an die diese E-Mail geht, und alle Sitzungen Ihres Kontos wurden beendet.`,
      'Wer die Adresse geändert hat, kannte Ihr Passwort; es gilt daher nicht mehr, und auch Ihre Wiederherstellungscodes wurden gelöscht: Legen Sie jetzt über den Link unten ein neues Passwort fest und erstellen Sie nach der Anmeldung neue Wiederherstellungscodes.',
    ],
    action: { label: 'Neues Passwort festlegen', url: d.link },
    outro: [
      ...(d.stillBlocked
        ? [
            `Ihr Konto ist weiterhin gesperrt; der Link funktioniert daher erst, wenn die Sperre aufgehoben ist: Bitten Sie ${d.stillBlocked === 'organization' ? `den Administrator Ihrer Organisation oder ${env.supportContact}` : env.supportContact} darum.`,
          ]
        : []),
      `${linkOnce(d.expiresAt, env)} Ist er abgelaufen, nutzen Sie „Passwort vergessen“ auf der Anmeldeseite.`,
      `Falls Ihre Authenticator-App Sie nicht mehr anmeldet (möglicherweise hat jemand eine eigene eingerichtet), wenden Sie sich an ${whomToAsk(env)}: Die 2-Schritt-Anmeldung kann nach Prüfung dieser Adresse zurückgesetzt werden.`,
    ],
    signature: signature(env),
  }),

  email_change_reverted: (d, env) =>
    notice(env, d.name, 'Ihr Konto verwendet diese Adresse nicht mehr', [
      `die E-Mail-Adresse Ihres Kontos im ${env.shopName} wurde wieder auf ${readableAddress(d.restoredEmail)} zurückgesetzt, über den Link, den wir beim Wechsel von jener Adresse dorthin gesendet hatten. Mit der Adresse, an die diese E-Mail geht, melden Sie sich nicht mehr an, und alle Sitzungen des Kontos wurden beendet.`,
      unexpected(env),
    ]),

  recovery_code_used: (d, env) => {
    const left =
      d.remaining === 0
        ? 'Ihnen bleiben keine Wiederherstellungscodes mehr.'
        : d.remaining === 1
          ? 'Ihnen bleibt noch 1 Wiederherstellungscode.'
          : `Ihnen bleiben noch ${d.remaining} Wiederherstellungscodes.`;
    return notice(env, d.name, 'Ein Wiederherstellungscode wurde verwendet', [
      `bei Ihrem Konto erfolgte soeben eine Anmeldung mit einem Wiederherstellungscode. ${left}`,
      d.remaining <= 3
        ? 'Ihre Wiederherstellungscodes gehen zur Neige: Erstellen Sie in Ihren Kontoeinstellungen neue Wiederherstellungscodes, und richten Sie Ihre Authenticator-App neu ein, falls Sie Ihr Smartphone verloren haben.'
        : 'Falls Sie Ihr Smartphone verloren haben, richten Sie Ihre Authenticator-App in Ihren Kontoeinstellungen neu ein.',
      notYou(env),
    ]);
  },

  recovery_codes_regenerated: (d, env) =>
    notice(env, d.name, 'Neue Wiederherstellungscodes wurden erstellt', [
      'für Ihr Konto wurden neue Wiederherstellungscodes erstellt. Die bisherigen Codes sind nicht mehr gültig.',
      notYou(env),
    ]),
};
