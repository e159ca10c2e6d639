import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn, wrongCode } from '../../helpers/factories.js';
import { challengeFor } from '../mfa/helpers.js';

import { lastMail } from '../../helpers/outbox.js';

/** Second German frontend walkthrough (review frontendde): what a German page still cannot say. */

t.test('each rule a name breaks has its own machine-readable reason (not only the English message)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], language: 'de' });
  const { accessToken } = await signIn(app, user);
  const reasonOf = async (name: string) => {
    const res = await request({ method: 'PATCH', url: '/v1/me', token: accessToken, body: { name } });
    t.equal(res.status, 400, name);
    const [e] = res.body.errors as Record<string, unknown>[];
    const { message: _english, path: _path, ...machine } = e!;
    return JSON.stringify(machine);
  };
  const address = await reasonOf('Anna Schmidt (anna@example.de)');
  const spaces = await reasonOf('Anna  Schmidt');
  const blank = await reasonOf('Anna \u3164');
  t.not(address, spaces, `"keine E-Mail- oder Web-Adresse" and "keine doppelten Leerzeichen" must differ for the UI: ${address} vs ${spaces}`);
  t.not(address, blank, `address vs blank letters: ${address} vs ${blank}`);
  const rules: [string, Record<string, unknown>][] = [
    ['Anna Schmidt (anna@example.de)', { code: 'invalid', reason: 'contains_address' }],
    ['Anna  Schmidt', { code: 'invalid', reason: 'space_run' }],
    ['Anna \u3164', { code: 'invalid', reason: 'blank_characters' }],
    [`Aq${'\u0330'.repeat(5)}nna`, { code: 'invalid', reason: 'stacked_marks' }],
    ['Jörg\tMüller', { code: 'invalid_format', format: 'regex', reason: 'control_characters' }],
    ['!!!', { code: 'invalid_format', format: 'regex', reason: 'no_letter_or_digit' }],
  ];
  for (const [name, expected] of rules) t.same(JSON.parse(await reasonOf(name)), expected, JSON.stringify(name));
  // The same reasons where a name is given by an administrator (another schema built on it).
  const invited = await request({ url: '/v1/organization/users', token: accessToken, body: { email: 'new@example.test', name: 'Anna  Schmidt' } });
  t.equal(invited.status, 400);
  t.match(invited.body.errors, [{ path: 'body.name', code: 'invalid', reason: 'space_run' }]);
  // And an e-mail domain IDNA refuses.
  const badDomain = await request({ url: '/v1/organization/users', token: accessToken, body: { email: 'a@xn--abc.de', name: 'Anna Schmidt' } });
  t.equal(badDomain.status, 400);
  t.match(badDomain.body.errors, [{ path: 'body.email', code: 'invalid', reason: 'email_domain' }]);
});

t.test('the page knows in which language contact.support is written', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { password } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'anna@blocked.test', status: 'BLOCKED', language: 'de' });
  // The login page knows only the browser's language (English here); the account's is German.
  const res = await request({ url: '/v1/auth/login', headers: { 'accept-language': 'en' }, body: { email: 'anna@blocked.test', password } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.equal(res.body.contact.support, 'das E-Business-Team (ebusiness@webshop.localhost)', "the account's language names support");
  t.equal(res.body.contact.language, 'de', 'and the answer says which language that is, for the English page to build its sentence');
});

t.test('German mails show an internationalised domain as the user typed it, not as xn--', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id, language: 'de' });
  const { accessToken } = await signIn(app, user);
  const res = await request({ url: '/v1/me/email', token: accessToken, body: { email: 'joerg@müller-handel.de', password } });
  t.equal(res.status, 202);
  const mail = await lastMail(app, { userId: user.id, template: 'email_change_confirm' });
  t.match(mail.textBody, 'joerg@müller-handel.de (joerg@xn--mller-handel-dlb.de)', `the mail names the address as the user knows it: ${mail.textBody.split('\n')[2]}`);
  // The ASCII form stays beside it: a look-alike letter in a Unicode domain cannot pass for the owner's own domain.
});

t.test('the undo mails say which address the owner signs in with: not "this address" next to the intruder\'s', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'jon@alpha.test', language: 'de' });
  const { accessToken } = await signIn(app, user);
  t.equal((await request({ url: '/v1/me/email', token: accessToken, body: { email: 'evil@intruder.test', password } })).status, 202);
  const confirm = await lastMail(app, { userId: user.id, template: 'email_change_confirm' });
  const confirmToken = new URL(/https?:\/\/\S+/.exec(confirm.textBody)![0]).searchParams.get('token')!;
  t.equal((await request({ url: '/v1/email-change/confirm', body: { token: confirmToken } })).status, 200);
  const notice = await lastMail(app, { userId: user.id, template: 'email_changed' });
  const undoToken = new URL(/https?:\/\/\S+/.exec(notice.textBody)![0]).searchParams.get('token')!;
  t.equal((await request({ url: '/v1/email-change/undo', body: { token: undoToken } })).status, 200);

  const undone = await lastMail(app, { userId: user.id, template: 'email_change_undone' });
  t.equal(undone.toAddress, 'jon@alpha.test');
  t.match(undone.textBody, 'der Wechsel Ihres Kontos zu evil@intruder.test wurde rückgängig gemacht: Sie melden sich wieder mit der Adresse an, an die diese E-Mail geht');
  t.notMatch(undone.textBody, 'mit dieser Adresse an');
  const reverted = await lastMail(app, { userId: user.id, template: 'email_change_reverted' });
  t.equal(reverted.toAddress, 'evil@intruder.test');
  t.match(reverted.textBody, 'Mit der Adresse, an die diese E-Mail geht, melden Sie sich nicht mehr an');
});

t.test('attemptsRemaining says what follows the last attempt: a new sign-in, or the code lock', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const wrong = wrongCode(app, totpSecret!);
  const answers = async () => {
    const challengeToken = await challengeFor(app, user.id, 'mfa');
    const seen: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrong } });
      seen.push(res.status === 423 ? `423 ${res.body.code}` : `${res.body.attemptsRemaining} ${res.body.afterLastAttempt}`);
      if (res.status === 423) break;
    }
    return seen;
  };
  // Failures 1-5: the challenge runs out first.
  t.same(await answers(), ['4 sign_in_again', '3 sign_in_again', '2 sign_in_again', '1 sign_in_again', '0 sign_in_again']);
  // Failures 6-10: the account's code lock comes with the last of this challenge's attempts.
  t.same(await answers(), ['4 locked', '3 locked', '2 locked', '1 locked', '423 mfa_locked']);
});

t.test("a block notice names the administrators' addresses as they read them, not as xn-- (support walkthrough, session 31)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const admin = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Grete Müller', email: 'grete@xn--mller-shne-kcb9d.de' });
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id, language: 'de', name: 'Käthe Häußler' });
  const { accessToken } = await signIn(app, admin.user);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${user.id}/block`, token: accessToken })).status, 200);
  const readable = 'Grete Müller <grete@müller-söhne.de> (grete@xn--mller-shne-kcb9d.de)';
  const mail = await lastMail(app, { userId: user.id, template: 'account_blocked' });
  t.match(mail.textBody, readable, `the German mail: ${mail.textBody.split('\n').find((l) => l.includes('Grete')) ?? ''}`);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.body.code, 'account_blocked');
  t.match(login.body.detail, readable, "the problem's detail");
  t.equal(login.body.contact.administrators[0].email, 'grete@xn--mller-shne-kcb9d.de', 'the contact field keeps the stored address, for links and machines');
});
