import t from 'tap';
import type pg from 'pg';
import { asciiOnlyLocaleWarning } from '../../src/db/locale-check.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { createSupportUser } from '../../src/modules/support/bootstrap.service.js';
import { cliOrigin } from '../../src/modules/support/cli-origin.js';
import { lastMail } from '../helpers/outbox.js';
import { GOOD_PASSWORD } from '../helpers/accounts.js';
import { challengeFor } from '../integration/mfa/helpers.js';
import { adminWorld } from '../integration/organization/helpers.js';

/**
 * Mutation review of session 26's changes: what the per-actor budgets (README, ADMIN_MAILS_PER_HOUR /
 * ADMIN_CHANGES_PER_HOUR; docs/security.md 7.3) and the directory (GET /v1/service/users/{id}:
 * "mfaEnrolled: An authenticator app is set up and confirmed") promise, each pinned by a test that
 * fails when the promise is broken in src.
 */

const invite = (w: Awaited<ReturnType<typeof adminWorld>>, token: string, email: string) =>
  w.request({ method: 'POST', url: '/v1/organization/users', token, body: { email, name: `Person ${email.split('@')[0]}` } });

t.test('the budgets are hourly: over one, Retry-After says the wait within the hour, in seconds', async (t) => {
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_MAILS_PER_HOUR: '1' });
  t.equal((await invite(w, w.adminA.token, 'first@alpha.test')).status, 201);
  const over = await invite(w, w.adminA.token, 'second@alpha.test');
  t.same([over.status, over.body.code], [429, 'rate_limited']);
  const retryAfter = Number(over.headers['retry-after']);
  // The first mail was counted seconds ago: the window it opened ends about an hour from now.
  t.ok(retryAfter > 3000 && retryAfter <= 3600, `Retry-After within the hour's window, in seconds (got ${over.headers['retry-after']})`);
  t.equal(over.body.retryAfter, retryAfter, 'the body says the same');
});

t.test("changes are each person's own: an administrator who spent theirs leaves the other administrators' alone", async (t) => {
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_CHANGES_PER_HOUR: '1' });
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Second Admin' });
  const secondToken = await w.tokenFor(second.user);
  const [m0, m1] = await Promise.all([0, 1].map((i) => w.member(w.orgA.id, { name: `Member ${i}` })));
  const block = (token: string, id: string) => w.request({ method: 'POST', url: `/v1/organization/users/${id}/block`, token });
  t.equal((await block(w.adminA.token, m0!.user.id)).status, 200);
  t.equal((await block(w.adminA.token, m1!.user.id)).status, 429, "the first administrator's one change is spent");
  // README: "every other administrative write (…; each person's own)"; a shared budget would let one
  // taken-over administrator use up the changes the others need to lock them out.
  t.equal((await block(secondToken, m1!.user.id)).status, 200, 'the other administrator of the organisation still can');
});

t.test('a withdrawn invitation mails nobody: it spends the changes budget, not the mails', async (t) => {
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_MAILS_PER_HOUR: '1', ADMIN_CHANGES_PER_HOUR: '10' });
  const invited = await invite(w, w.adminA.token, 'typo@exmaple.test');
  t.equal(invited.status, 201, 'the one mail of the hour');
  const withdrawn = await w.request({ method: 'DELETE', url: `/v1/organization/users/${invited.body.id}`, token: w.adminA.token });
  t.equal(withdrawn.status, 204, `withdrawing the typo is a change, not a mail (got ${withdrawn.status} ${withdrawn.body?.code ?? ''})`);
  t.equal(await w.app.ctx.db.user.count({ where: { id: invited.body.id } }), 0);
});

t.test("password-reset links an administrator sends spend the organisation's mail budget", async (t) => {
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_MAILS_PER_HOUR: '1', ADMIN_CHANGES_PER_HOUR: '10' });
  const [m0, m1] = await Promise.all([0, 1].map((i) => w.member(w.orgA.id, { name: `Member ${i}` })));
  const reset = (id: string) => w.request({ method: 'POST', url: `/v1/organization/users/${id}/password-reset`, token: w.adminA.token });
  t.equal((await reset(m0!.user.id)).status, 200);
  const over = await reset(m1!.user.id);
  // README: ADMIN_MAILS_PER_HOUR counts "invitations, resent links, password-reset links, …".
  t.same([over.status, over.body.code], [429, 'rate_limited'], 'the second link of the hour');
  t.equal(await w.app.ctx.db.flowToken.count({ where: { userId: m1!.user.id, purpose: 'PASSWORD_RESET' } }), 0, 'no link made');
});

t.test('the directory says mfaEnrolled only for a confirmed authenticator, not for one being set up', async (t) => {
  const SECRET = 'directory-client-secret-for-tests';
  const w = await adminWorld(t, { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}`, EVENT_FEED_CLIENTS: 'cso' });
  const authorization = `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}`;
  const member = await w.member(w.orgA.id, { name: 'Pia Pending', withTotp: false });
  const challengeToken = await challengeFor(w.app, member.user.id, 'mfa_enrollment');
  const started = await w.request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(started.status, 200, 'set-up started: a pending authenticator, no code typed yet');
  const read = await w.request<{ mfaEnrolled?: boolean }>({ url: `/v1/service/users/${member.user.id}`, headers: { authorization } });
  t.equal(read.status, 200);
  t.equal(read.body.mfaEnrolled, false, 'openapi: "An authenticator app is set up and confirmed"');
});

t.test('a search typed or pasted in decomposed form finds the composed name, for administrators and support, users and organisations', async (t) => {
  const w = await adminWorld(t);
  const { user } = await w.member(w.orgA.id, { name: 'Bernd Müller' });
  await w.app.ctx.db.organization.update({ where: { id: w.orgB.id }, data: { name: 'Müller Großhandel' } });
  // "Mu" + U+0308 (a name copied from a PDF or a macOS file name into the search box).
  const q = encodeURIComponent('Mu\u0308ller');
  const ids = (body: { items: { id: string }[] }) => body.items.map((u) => u.id);
  t.same(ids((await w.request({ url: `/v1/organization/users?q=${q}`, token: w.adminA.token })).body), [user.id], 'administrator: users');
  t.same(ids((await w.request({ url: `/v1/support/users?q=${q}`, token: w.support.token })).body), [user.id], 'support: users');
  t.same(ids((await w.request({ url: `/v1/support/organizations?q=${q}`, token: w.support.token })).body), [w.orgB.id], 'support: organisations');
});

t.test('accepting the terms by typing the address: an internationalised domain as written is the account address', async (t) => {
  const w = await adminWorld(t, { TERMS_VERSION: '2026-03' });
  const { user } = await w.member(w.orgA.id, { email: 'joerg@xn--mller-gmbh-9db.de' });
  const token = await w.tokenFor(user);
  const accepted = await w.request({ url: '/v1/me/terms', body: { version: '2026-03', email: 'Joerg@Müller-GmbH.de' }, token });
  t.equal(accepted.status, 200, `the form on the business card is the address (got ${accepted.status} ${accepted.body?.code ?? ''})`);
});

t.test("create-support-user's invitation keeps the address and name it was sent to, as every user.invited does (docs/audit-events.md)", async (t) => {
  const w = await adminWorld(t);
  const { userId } = await createSupportUser(w.app.ctx, { email: 'olga.ops@shop.test', name: 'Olga Ops' }, cliOrigin({}));
  const row = await w.app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'user.invited', subjectUserId: userId } });
  t.match(row.details, { via: 'cli', roles: ['SUPPORT'], email: 'olga.ops@shop.test', name: 'Olga Ops' });
});

t.test('the mail after a password change says every other session ended (this one stays), not that the password was reset', async (t) => {
  const w = await adminWorld(t);
  const { user, password } = await w.member(w.orgA.id, { name: 'Cora Change' });
  const token = await w.tokenFor(user);
  const changed = await w.request({ method: 'PUT', url: '/v1/me/password', token, body: { currentPassword: password!, newPassword: GOOD_PASSWORD } });
  t.equal(changed.status, 204);
  const mail = await lastMail(w.app, { userId: user.id, template: 'password_changed' });
  // PUT /v1/me/password: "Ends all other sessions of the user (this one stays)".
  t.match(mail.textBody, 'All other sign-ins on your devices have been ended.');
  t.notMatch(mail.textBody, /just reset|Every sign-in/, 'not the text of a reset');
});

t.test('a database in the POSIX locale (the C locale under its other name) is warned about too', async (t) => {
  const pool = (ctype: string) => ({ query: async () => ({ rows: [{ ctype }] }) }) as unknown as pg.Pool;
  t.match(await asciiOnlyLocaleWarning(pool('POSIX')), /LC_CTYPE is POSIX/);
  t.match(await asciiOnlyLocaleWarning(pool('C')), /LC_CTYPE is C:/);
  t.equal(await asciiOnlyLocaleWarning(pool('de_DE.UTF-8')), null);
  t.equal(await asciiOnlyLocaleWarning(pool('C.UTF-8')), null, 'C.UTF-8 knows every letter\'s case');
});
