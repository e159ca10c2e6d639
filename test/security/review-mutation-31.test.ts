import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config.js';
import { tokenFromLink } from '../helpers/accounts.js';
import { PRODUCTION_ENV } from '../helpers/production-env.js';
import { adminWorld, mailsTo, type AdminWorld } from '../integration/organization/helpers.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { lastMail } from '../helpers/outbox.js';

/** Mutation review of session 31: survivors killed here (test-only). */

t.test('MAIL_FROM: two senders stop the start (one sender with an address)', async (t) => {
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, MAIL_FROM: 'a@shop.example.com, b@shop.example.com' }), ConfigError);
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, MAIL_FROM: 'Shop <a@shop.example.com>, Other <b@shop.example.com>' }), /MAIL_FROM/);
});

t.test('APP_BASE_URL: a password without a user name stops the start too', async (t) => {
  t.throws(() => loadConfig({ ...PRODUCTION_ENV, APP_BASE_URL: 'https://:pw@shop.example.com' }), /APP_BASE_URL/);
});

t.test('a web address split or followed by a kept format character is refused (both readings: marks removed, marks as spaces)', async (t) => {
  const w = await adminWorld(t);
  // Removed: "evil.c" ZWJ "om" and "evil" LRM ".com" read as evil.com. As spaces: "evil.com" LRM "bar" reads "evil.com bar".
  const names = ['Eve evil.c\u200Dom', 'Eve evil\u200E.com', 'Eve evil.com\u200Ebar'];
  for (const [i, name] of names.entries()) {
    const res = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: `m31n${i}@alpha.test`, name } });
    t.equal(res.status, 400, `${JSON.stringify(name)} refused`);
    t.equal(res.body.errors?.[0]?.reason, 'contains_address', JSON.stringify(name));
  }
});

const lastLink = async (w: AdminWorld, address: string, path: string) => tokenFromLink((await mailsTo(w.app, address)).at(-1)!.textBody, path);
const inspect = (w: AdminWorld, token: string) => w.request({ method: 'POST', url: '/v1/activation/inspect', body: { token } });

t.test("a newer link replaces only its holder's withdrawn link of the same kind; other withdrawn links still say withdrawn", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA } = w;
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Second Admin' });
  const secondToken = await w.tokenFor(second.user);
  const member = await w.member(w.orgA.id, { email: 'm31member@alpha.test' });
  const memberToken = await w.tokenFor(member.user);

  const mallory = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'm31mallory@alpha.test', name: 'Mallory' } });
  t.equal(mallory.status, 201);
  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'm31nina@alpha.test', name: 'Nina' } })).status, 201);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: adminA.token })).status, 200);
  const ninaLink = await lastLink(w, 'm31nina@alpha.test', '/activate');
  const resetLink = await lastLink(w, 'm31member@alpha.test', '/reset-password');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/block`, token: secondToken })).status, 200);
  t.equal((await inspect(w, ninaLink)).body.linkState, 'withdrawn');

  // A new invitation for Mallory only, and an e-mail change (another kind of link) for the member.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${mallory.body.id}/activation-email`, token: secondToken })).status, 200);
  t.equal((await request({ url: '/v1/me/email', token: memberToken, body: { email: 'm31moved@alpha.test', password: member.password } })).status, 202);

  t.equal((await inspect(w, ninaLink)).body.linkState, 'withdrawn', "Nina got no newer invitation: hers still says withdrawn (ask for a new one)");
  const reset = await request({ method: 'POST', url: '/v1/password/reset', body: { token: resetLink, password: 'a fresh and long passphrase 42' } });
  t.same([reset.status, reset.body.linkState], [410, 'withdrawn'], 'an e-mail change link is no newer reset link: the reset link still says withdrawn');
});

t.test("the English block notice names the administrators' internationalised addresses as they read them", async (t) => {
  const { app } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const admin = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Grete Müller', email: 'grete@xn--mller-shne-kcb9d.de' });
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, language: 'en', name: 'Kate Hall' });
  const { accessToken } = await signIn(app, admin.user);
  t.equal((await api(app)({ method: 'POST', url: `/v1/organization/users/${user.id}/block`, token: accessToken })).status, 200);
  const mail = await lastMail(app, { userId: user.id, template: 'account_blocked' });
  t.match(mail.textBody, 'Grete Müller <grete@müller-söhne.de> (grete@xn--mller-shne-kcb9d.de)');
});
