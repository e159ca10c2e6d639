import t from 'tap';
import { deliverMail } from '../../helpers/accounts.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';

/**
 * Mails in the user's language: each user may have one (their own choice, or what the invitation
 * named, or their organisation's at the time), otherwise DEFAULT_LANGUAGE; support is named as
 * SUPPORT_CONTACT / SUPPORT_CONTACT_DE say.
 */

const GERMAN_ACTIVATION = 'ALSO Webshop: Ihr Konto aktivieren';
const ENGLISH_ACTIVATION = 'ALSO Webshop: activate your account';

t.test('support gives an organisation a language: its invitations go out in it unless one names another; existing users keep theirs', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const subjectsTo = async (address: string) => (await mailsTo(app, address)).map((m) => m.subject);

  const created = await request({
    method: 'POST',
    url: '/v1/support/organizations',
    token: support.token,
    body: { customerNumber: 'DE-100', name: 'Gamma GmbH', language: 'de', administrator: { email: 'chef@gamma.test', name: 'Greta Gamma' } },
  });
  t.equal(created.status, 201);
  t.match(created.body, { organization: { language: 'de' }, administrator: { language: 'de' } });
  t.same(await subjectsTo('chef@gamma.test'), [GERMAN_ACTIVATION], "the first administrator gets the organisation's language");
  const [mail] = await mailsTo(app, 'chef@gamma.test');
  t.match(mail!.textBody, /^Guten Tag Greta Gamma,/);
  t.match(mail!.htmlBody, '<html lang="de">');
  t.match(mail!.textBody, 'Gamma GmbH');
  const gammaId = created.body.organization.id as string;

  const appoint = await request({
    method: 'POST',
    url: `/v1/support/organizations/${gammaId}/administrators`,
    token: support.token,
    body: { email: 'deputy@gamma.test', name: 'Dan Deputy', language: 'en' },
  });
  t.equal(appoint.status, 201, JSON.stringify(appoint.body));
  t.same(await subjectsTo('deputy@gamma.test'), [ENGLISH_ACTIVATION], 'an invitation that names a language wins');

  // Alpha has no language: the service default (en), until support sets one.
  const invite = (body: object) => request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body });
  t.equal((await invite({ email: 'one@alpha.test', name: 'One' })).body.language, null);
  t.equal((await invite({ email: 'zwei@alpha.test', name: 'Zwei', language: 'de' })).body.language, 'de');
  t.same(await subjectsTo('one@alpha.test'), [ENGLISH_ACTIVATION]);
  t.same(await subjectsTo('zwei@alpha.test'), [GERMAN_ACTIVATION]);

  const update = (body: object) => request({ method: 'PATCH', url: `/v1/support/organizations/${w.orgA.id}`, token: support.token, body });
  const german = await update({ language: 'de' });
  t.equal(german.status, 200);
  t.equal(german.body.language, 'de');
  t.same((await auditOf(app, 'organization.updated')).map((e) => e.details), [{ language: { from: null, to: 'de' } }]);
  t.equal((await invite({ email: 'drei@alpha.test', name: 'Drei' })).body.language, 'de');
  t.same(await subjectsTo('drei@alpha.test'), [GERMAN_ACTIVATION], 'invited after the change');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: w.adminA.user.id } })).language, null, 'an existing user keeps theirs');
  t.equal((await invite({ email: 'four@alpha.test', name: 'Four', language: 'en' })).body.language, 'en');

  const cleared = await update({ language: null });
  t.equal(cleared.body.language, null, 'null: back to the service default');
  t.equal((await invite({ email: 'five@alpha.test', name: 'Five' })).body.language, null);
  t.same(await subjectsTo('five@alpha.test'), [ENGLISH_ACTIVATION]);
  t.equal((await auditOf(app, 'organization.updated')).length, 2);
  t.equal((await update({ language: null })).status, 200);
  t.equal((await auditOf(app, 'organization.updated')).length, 2, 'the same value again audits nothing');

  const listed = await request({ url: `/v1/organization/users?q=alpha.test`, token: w.adminA.token });
  t.same(
    Object.fromEntries(listed.body.items.map((u: { email: string; language: string | null }) => [u.email, u.language])),
    { 'one@alpha.test': null, 'zwei@alpha.test': 'de', 'drei@alpha.test': 'de', 'four@alpha.test': 'en', 'five@alpha.test': null },
    'administrators see each language',
  );

  for (const [label, res] of [
    ['an unknown language', await invite({ email: 'x1@alpha.test', name: 'X', language: 'fr' })],
    ['a language in capitals', await invite({ email: 'x2@alpha.test', name: 'X', language: 'DE' })],
    ['null on an invitation', await invite({ email: 'x3@alpha.test', name: 'X', language: null })],
    ['an unknown organisation language', await update({ language: 'de-DE' })],
    [
      "an unknown first administrator's language",
      await request({
        method: 'POST',
        url: '/v1/support/organizations',
        token: support.token,
        body: { customerNumber: 'DE-101', name: 'Delta GmbH', administrator: { email: 'chef@delta.test', name: 'D', language: 'xx' } },
      }),
    ],
  ] as const) {
    t.equal(res.status, 400, label);
    t.equal(res.body.code, 'validation_failed', label);
  }
  t.equal(await app.ctx.db.user.count({ where: { email: { in: ['x1@alpha.test', 'x2@alpha.test', 'x3@alpha.test', 'chef@delta.test'] } } }), 0, 'nothing created');
  t.equal((await app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgA.id } })).language, null);
});

t.test('DEFAULT_LANGUAGE=de: users without a language get German mails through SMTP, umlauts intact; choosing English switches them', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url, DEFAULT_LANGUAGE: 'de', SUPPORT_CONTACT: 'the e-business team', SUPPORT_CONTACT_DE: 'unser E-Business-Team' });
  const { request, app } = w;
  const member = await w.member(w.orgA.id, { name: 'Mia Member', email: 'mia@alpha.test', termsAccepted: true, preferencesSet: true });
  const token = await w.tokenFor(member.user);

  const me = await request({ url: '/v1/me', token });
  t.match(me.body.preferences, { language: 'de' }, '/me shows the language mails go out in');

  await request({ url: '/v1/password/forgot', body: { email: 'mia@alpha.test' } });
  await deliverMail(app);
  const [german] = await sink.waitFor(1);
  t.equal(german!.subject, 'ALSO Webshop: Ihr Passwort zurücksetzen', 'the subject arrives with its umlaut');
  t.match(german!.text, 'Neues Passwort festlegen');
  t.match(german!.text, /gilt bis zum \d{1,2}\. \p{L}+ \d{4} um \d{2}:\d{2} MES?Z/u, 'a German date, in German time (MAIL_TIME_ZONE)');
  t.match(german!.html, '<html lang="de"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>ALSO Webshop: Ihr Passwort zurücksetzen</title>');

  const english = await request({ method: 'PATCH', url: '/v1/me/preferences', body: { language: 'en' }, token });
  t.match(english.body.preferences, { language: 'en' });
  w.clock.advance(120); // past the minimum interval between reset links
  await request({ url: '/v1/password/forgot', body: { email: 'mia@alpha.test' } });
  await deliverMail(app);
  const received = await sink.waitFor(2);
  t.equal(received[1]!.subject, 'ALSO Webshop: reset your password');

  // Blocking: the mail names the organisation's administrators and support, as each language says.
  await request({ method: 'PATCH', url: '/v1/me/preferences', body: { language: 'de' }, token });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: w.adminA.token })).status, 200);
  const [blocked] = (await mailsTo(app, 'mia@alpha.test')).filter((m) => m.template === 'account_blocked');
  t.equal(blocked!.subject, 'ALSO Webshop: Ihr Konto wurde gesperrt');
  t.match(blocked!.textBody, `an den Administrator Ihrer Organisation (Alice Admin <${w.adminA.user.email}>) oder an unser E-Business-Team.`);

  const other = await w.member(w.orgA.id, { name: 'Ed English', email: 'ed@alpha.test', language: 'en' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${other.user.id}/block`, token: w.adminA.token })).status, 200);
  const [blockedEnglish] = (await mailsTo(app, 'ed@alpha.test')).filter((m) => m.template === 'account_blocked');
  t.equal(blockedEnglish!.subject, 'ALSO Webshop: your account was blocked');
  t.match(blockedEnglish!.textBody, `contact your organisation's administrator (Alice Admin <${w.adminA.user.email}>) or the e-business team.`);
});

t.test("an administrator corrects an invited user's language, then sends the invitation again in it; once activated, the user chooses", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support, app } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'klaus@alpha.test', name: 'Klaus' } });
  t.equal(invited.body.language, null);
  const correct = (id: string, body: object, token = adminA.token, base = '/v1/organization/users') => request({ method: 'PATCH', url: `${base}/${id}`, token, body });

  const german = await correct(invited.body.id, { language: 'de' });
  t.equal(german.status, 200);
  t.match(german.body, { language: 'de', name: 'Klaus' });
  t.match(await auditOf(app, 'user.preferences_changed', invited.body.id), [
    { actorUserId: adminA.user.id, details: { by: 'admin', language: { from: null, to: 'de' } } },
  ]);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: adminA.token })).status, 200);
  t.same((await mailsTo(app, 'klaus@alpha.test')).map((m) => m.subject), [ENGLISH_ACTIVATION, GERMAN_ACTIVATION], 'the new invitation in German');
  t.equal((await correct(invited.body.id, { language: 'en' }, support.token, '/v1/support/users')).body.language, 'en', 'support too');

  const active = await w.member(w.orgA.id, { name: 'Ada Active', language: 'en' });
  const refused = await correct(active.user.id, { name: 'Ada Renamed', language: 'de' });
  t.equal(refused.status, 409);
  t.equal(refused.body.code, 'already_activated');
  t.match(await app.ctx.db.user.findUniqueOrThrow({ where: { id: active.user.id } }), { name: 'Ada Active', language: 'en' }, 'nothing changed');
  t.equal((await correct(active.user.id, { name: 'Ada Renamed', language: 'en' })).status, 200, 'the same language again is no change');
  for (const body of [{}, { language: 'fr' }, { language: null }]) {
    const res = await correct(invited.body.id, body);
    t.equal(res.status, 400, JSON.stringify(body));
  }
});
