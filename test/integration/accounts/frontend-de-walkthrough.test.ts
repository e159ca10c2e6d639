import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser } from '../../helpers/factories.js';
import { GOOD_PASSWORD, inviteUser, tokenFromLink } from '../../helpers/accounts.js';
import { lastMail } from '../../helpers/outbox.js';

/**
 * What a frontend that shows German pages (and translates by `code`, as the README asks) needs
 * from the API, found walking the help page's screens as a German user (frontend review).
 */

const STANDARD_MEMBERS = new Set(['type', 'title', 'status', 'code', 'detail', 'requestId']);

t.test('password_contains_context says which word (and from where) outside the English detail', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Müller GmbH' });
  const { token } = await inviteUser(app, { organizationId: org.id, email: 'anna@mueller.test', name: 'Anna Müller', language: 'de' });

  // "Savannah" holds "anna": without the word the German page cannot tell the user what to leave out.
  const res = await request({ url: '/v1/activation', body: { token, password: 'Savannah liegt in Georgia' } });
  t.equal(res.status, 422);
  t.equal(res.body.code, 'password_contains_context');
  const machineReadable = Object.entries(res.body as Record<string, unknown>).filter(([k]) => !STANDARD_MEMBERS.has(k));
  t.ok(
    machineReadable.some(([, v]) => JSON.stringify(v).includes('anna')),
    `the offending word is a member of its own, not only in the English detail: ${JSON.stringify(res.body)}`,
  );
  t.same(res.body.contextWord, { word: 'anna', source: 'email' }, 'the word and where it comes from');
});

t.test('the activation page learns the language the invitation named', async (t) => {
  const { app } = await buildTestApp(t, { DEFAULT_LANGUAGE: 'en' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, token } = await inviteUser(app, { organizationId: org.id, language: 'de' });
  const info = await request({ url: '/v1/activation/inspect', body: { token } });
  t.equal(info.status, 200);
  // The mail was German; contact.support in this link's errors is German too; the page has only the browser's language.
  t.equal((info.body as { language?: string }).language, 'de', `inspect names the language: ${JSON.stringify(info.body)}`);
  // Every page a mail links to learns it from the link itself, before any call (reset, MFA reset, new address too).
  const mail = await lastMail(app, { userId: user.id, template: 'activation' });
  t.match(mail.textBody, `/activate?token=${token}&lang=de`, 'the link names the language');
});

t.test('an address on an internationalised domain signs in as the user knows it', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  // Stored as invitations store it today (the Unicode form is refused there as "Invalid email address").
  await createUser(app.ctx.db, app, { organizationId: org.id, email: 'joerg@xn--mller-gmbh-9db.de', password: GOOD_PASSWORD });
  const ascii = await request({ url: '/v1/auth/login', body: { email: 'joerg@xn--mller-gmbh-9db.de', password: GOOD_PASSWORD } });
  t.equal(ascii.status, 200, 'the A-label form signs in');
  const unicode = await request({ url: '/v1/auth/login', body: { email: 'joerg@müller-gmbh.de', password: GOOD_PASSWORD } });
  t.equal(unicode.status, 200, `the form on the user's business card signs in too: ${JSON.stringify(unicode.body)}`);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'joerg@MÜLLER-gmbh.de' } })).status, 202);
  t.ok(await lastMail(app, { template: 'password_reset', toAddress: 'joerg@xn--mller-gmbh-9db.de' }), 'the reset mail goes to the stored address');
});

t.test('an administrator invites an address on an internationalised domain as it is written; it is stored as DNS knows it', async (t) => {
  const { adminWorld } = await import('../organization/helpers.js');
  const { request, adminA, support } = await adminWorld(t);
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'joerg@Müller-GmbH.de', name: 'Jörg Müller' } });
  t.equal(invited.status, 201, JSON.stringify(invited.body));
  t.equal(invited.body.email, 'joerg@xn--mller-gmbh-9db.de', 'the domain in ASCII, the local part untouched');
  const found = await request({ url: `/v1/support/users?email=${encodeURIComponent('joerg@MÜLLER-gmbh.de')}`, token: support.token });
  t.same(found.body.items.map((u: { id: string }) => u.id), [invited.body.id], 'support finds it by either form');
  const again = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'JOERG@xn--mller-gmbh-9db.de', name: 'Jörg Zwei' } });
  t.same([again.status, again.body.code], [409, 'email_taken'], 'one account per address, whichever form');
});

t.test('the document says which way offsetSeconds points', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = app.swagger() as unknown as { components: { schemas: Record<string, { properties?: Record<string, { description?: string }> }> } };
  const description = doc.components.schemas.Problem?.properties?.offsetSeconds?.description ?? '';
  t.match(description, /ahead|behind|positive|negative|device (clock )?(minus|-) server|server (clock )?(minus|-) device/i, `sign stated: "${description}"`);
});

t.test('the mail after a password reset does not say that other sessions were ended', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, language: 'de' });
  t.equal((await request({ url: '/v1/password/forgot', body: { email: user.email } })).status, 202);
  const token = tokenFromLink((await lastMail(app, { userId: user.id, template: 'password_reset' })).textBody, '/reset-password');
  t.equal((await request({ url: '/v1/password/reset', body: { token, password: 'Haferflocken mit Apfelmus' } })).status, 204);
  const mail = await lastMail(app, { userId: user.id, template: 'password_changed' });
  // A reset ends every session (POST /v1/password/reset: "Ends every session of the account").
  t.notMatch(mail.textBody, /Alle anderen Sitzungen/, mail.textBody);
});

t.test('a name typed or pasted in decomposed form is found by the search box', async (t) => {
  const { adminWorld } = await import('../organization/helpers.js');
  const { request, orgA, adminA, member } = await adminWorld(t);
  const { user } = await member(orgA.id, { name: 'Bernd Beispiel' });
  // "Mu" + U+0308: what macOS file names and some PDFs hand over when a name is copied from them.
  const renamed = await request({ method: 'PATCH', url: `/v1/organization/users/${user.id}`, token: adminA.token, body: { name: 'Bernd Mu\u0308ller' } });
  t.equal(renamed.status, 200);
  const found = await request({ url: `/v1/organization/users?q=${encodeURIComponent('Müller')}`, token: adminA.token });
  t.equal(found.status, 200);
  t.ok(
    (found.body.items as { id: string }[]).some((u) => u.id === user.id),
    `searching "Müller" (as every keyboard types it) finds the user: ${JSON.stringify((found.body.items as { name: string }[]).map((u) => u.name))}`,
  );
});

t.test('internationalised domains: invalid punycode is refused, a decomposed spelling is the same account, IDN top-level domains are accepted (Unicode review, session 26)', async (t) => {
  const { adminWorld } = await import('../organization/helpers.js');
  const { request, adminA } = await adminWorld(t);
  const invite = (email: string, name = 'Ida Idn') => request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email, name } });
  for (const email of ['x@xn--.de', 'x@xn--abc.de']) {
    const res = await invite(email);
    t.same([res.status, res.body.code], [400, 'validation_failed'], `${email}: IDNA refuses it`);
  }
  const first = await invite('admin@xn--mller-gmbh-9db.de');
  t.equal(first.status, 201);
  // The punycode of "mu" + U+0308 + "ller-gmbh": the same domain, decomposed.
  const decomposed = await invite('admin@xn--muller-gmbh-img.de');
  t.ok([400, 409].includes(decomposed.status), `not a second account for the same address (got ${decomposed.status} ${decomposed.body.code})`);
  const russian = await invite('x@пример.рф');
  t.equal(russian.status, 201, JSON.stringify(russian.body));
  t.equal(russian.body.email, 'x@xn--e1afmkfd.xn--p1ai');
  t.equal((await invite('y@xn--e1afmkfd.xn--p1ai')).status, 201, 'the ASCII form of an IDN top-level domain too');
});

t.test('the search box finds an address on an internationalised domain typed as written (Unicode review, session 26)', async (t) => {
  const { adminWorld } = await import('../organization/helpers.js');
  const { request, adminA, support } = await adminWorld(t);
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'joerg@müller-gmbh.de', name: 'Jörg M' } });
  t.equal(invited.status, 201);
  for (const q of ['müller-gmbh.de', 'MÜLLER-GMBH', 'joerg@müller-gmbh.de', 'xn--mller-gmbh-9db']) {
    const admin = await request({ url: `/v1/organization/users?q=${encodeURIComponent(q)}`, token: adminA.token });
    t.same(admin.body.items.map((u: { id: string }) => u.id), [invited.body.id], `administrator: ${q}`);
    const desk = await request({ url: `/v1/support/users?q=${encodeURIComponent(q)}`, token: support.token });
    t.same(desk.body.items.map((u: { id: string }) => u.id), [invited.body.id], `support: ${q}`);
  }
});
