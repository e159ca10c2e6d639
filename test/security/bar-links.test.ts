import t from 'tap';
import { sha256Hex } from '../../src/lib/tokens.js';
import { tokenFromLink } from '../helpers/accounts.js';
import { adminWorld, mailsTo } from '../integration/organization/helpers.js';
import { outboxMails } from '../helpers/outbox.js';

/**
 * security.md items 14 and 15 through the HTTP API:
 *  - each link's lifetime on the fake clock, at both edges: still usable one second before it ends,
 *    refused (410 link_expired) from the moment it ends: reset 30 min, activation 7 days,
 *    MFA-reset confirmation 24 h;
 *  - the tokens are ≥ 128 bits and only their SHA-256 is stored;
 *  - every link in every mail comes from APP_BASE_URL, whatever Host / X-Forwarded-Host /
 *    Forwarded / Origin the request that caused the mail carried (TRUST_PROXY=loopback, so the app does
 *    believe the forwarded headers for the client address).
 */

const MIN = 60;
const HOUR = 3600;
const DAY = 24 * HOUR;

/** The token of the newest mail of `template` to `address` (mail is written with the change). */
async function linkToken(w: Awaited<ReturnType<typeof adminWorld>>, address: string, template: string, path: string) {
  const mails = (await mailsTo(w.app, address)).filter((m) => m.template === template);
  const mail = mails.at(-1);
  if (!mail) throw new Error(`no ${template} mail to ${address}`);
  return tokenFromLink(mail.textBody, path);
}

t.test('link lifetimes on the fake clock: reset 30 min, activation 7 days, MFA-reset confirmation 24 h', async (t) => {
  const w = await adminWorld(t);
  const { request, clock } = w;
  const fresh = async () => {
    w.adminA.token = await w.tokenFor(w.adminA.user);
    w.support.token = await w.tokenFor(w.support.user);
  };

  // Password reset: 30 minutes.
  const r = await w.member(w.orgA.id, { email: 'reset.edge@alpha.test' });
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'reset.edge@alpha.test' } })).status, 202);
  const expiring = await linkToken(w, 'reset.edge@alpha.test', 'password_reset', '/reset-password');
  clock.advance(30 * MIN);
  const late = await request({ url: '/v1/password/reset', body: { token: expiring, password: 'Amber falcon meadow 4711?' } });
  t.equal(late.status, 410, 'reset link at 30:00 → 410');
  t.equal(late.body.code, 'link_expired');
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'reset.edge@alpha.test' } })).status, 202);
  const inTime = await linkToken(w, 'reset.edge@alpha.test', 'password_reset', '/reset-password');
  clock.advance(30 * MIN - 1);
  const ok = await request({ url: '/v1/password/reset', body: { token: inTime, password: 'Amber falcon meadow 4711?' } });
  t.equal(ok.status, 204, 'reset link at 29:59 still works');
  t.ok(r);

  // Activation: 7 days (the link of an invitation through the API).
  await fresh();
  const invite = await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'new.edge@alpha.test', name: 'New Edge' } });
  t.equal(invite.status, 201);
  const activation = await linkToken(w, 'new.edge@alpha.test', 'activation', '/activate');
  clock.advance(7 * DAY - 1);
  const inspect = await request({ url: '/v1/activation/inspect', body: { token: activation } });
  t.equal(inspect.status, 200, 'activation link at 7 days minus 1 s still works');
  clock.advance(1);
  const expiredInspect = await request({ url: '/v1/activation/inspect', body: { token: activation } });
  t.equal(expiredInspect.status, 410, 'activation link at 7 days → 410');
  t.equal(expiredInspect.body.code, 'link_expired');
  const expiredActivate = await request({ url: '/v1/activation', body: { token: activation, password: 'Amber falcon meadow 4711?' } });
  t.equal(expiredActivate.body.code, 'link_expired');
  await fresh();
  const resent = await request({ method: 'POST', url: `/v1/organization/users/${invite.body.id}/activation-email`, token: w.adminA.token });
  t.equal(resent.status, 200);
  const second = await linkToken(w, 'new.edge@alpha.test', 'activation', '/activate');
  clock.advance(7 * DAY - 1);
  t.equal((await request({ url: '/v1/activation', body: { token: second, password: 'Amber falcon meadow 4711?' } })).status, 200, 'used at 7 days minus 1 s');

  // MFA-reset confirmation: 24 hours.
  await fresh();
  const m1 = await w.member(w.orgA.id, { email: 'mfa.late@alpha.test' });
  const m2 = await w.member(w.orgA.id, { email: 'mfa.ontime@alpha.test' });
  for (const m of [m1, m2]) {
    const res = await request({ method: 'POST', url: `/v1/support/users/${m.user.id}/mfa-reset-request`, token: w.support.token });
    t.equal(res.status, 202);
  }
  const lateToken = await linkToken(w, 'mfa.late@alpha.test', 'mfa_reset_confirm', '/confirm-mfa-reset');
  const onTimeToken = await linkToken(w, 'mfa.ontime@alpha.test', 'mfa_reset_confirm', '/confirm-mfa-reset');
  clock.advance(DAY - 1);
  const confirmed = await request({ url: '/v1/mfa-reset/confirm', body: { token: onTimeToken } });
  t.equal(confirmed.status, 200, 'MFA-reset link at 23:59:59 still works');
  clock.advance(1);
  const tooLate = await request({ url: '/v1/mfa-reset/confirm', body: { token: lateToken } });
  t.equal(tooLate.status, 410, 'MFA-reset link at 24:00:00 → 410');
  t.equal(tooLate.body.code, 'link_expired');
  t.equal(await w.app.ctx.db.totpFactor.count({ where: { userId: m1.user.id } }), 1, 'the expired link reset nothing');
});

t.test('a reset link an administrator or support sends lives 30 minutes too (mutation review, session 20: only "forgot password" was timed)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock } = w;
  for (const [label, sender, path] of [
    ['administrator', 'adminA', 'organization'],
    ['support', 'support', 'support'],
  ] as const) {
    const late = await w.member(w.orgA.id, { email: `late.${sender}@alpha.test` });
    const onTime = await w.member(w.orgA.id, { email: `ontime.${sender}@alpha.test` });
    w[sender].token = await w.tokenFor(w[sender].user);
    for (const m of [late, onTime]) {
      const sent = await request({ method: 'POST', url: `/v1/${path}/users/${m.user.id}/password-reset`, token: w[sender].token });
      t.equal(sent.status, 200, `${label} sends the reset mail`);
    }
    const lateToken = await linkToken(w, `late.${sender}@alpha.test`, 'password_reset', '/reset-password');
    const onTimeToken = await linkToken(w, `ontime.${sender}@alpha.test`, 'password_reset', '/reset-password');
    clock.advance(30 * MIN - 1);
    const ok = await request({ url: '/v1/password/reset', body: { token: onTimeToken, password: 'Amber falcon meadow 4711?' } });
    t.equal(ok.status, 204, `${label}'s link at 29:59 still works`);
    clock.advance(1);
    const expired = await request({ url: '/v1/password/reset', body: { token: lateToken, password: 'Amber falcon meadow 4711?' } });
    t.equal(expired.status, 410, `${label}'s link at 30:00 → 410`);
    t.equal(expired.body.code, 'link_expired');
  }
});

t.test('link tokens carry ≥ 128 bits and only their SHA-256 is stored', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const u = await w.member(w.orgA.id, { email: 'stored@alpha.test' });
  await request({ url: '/v1/password/forgot', body: { email: 'stored@alpha.test' } });
  await request({ method: 'POST', url: `/v1/support/users/${u.user.id}/mfa-reset-request`, token: w.support.token });
  await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'invitee@alpha.test', name: 'Invitee' } });
  const tokens = [
    await linkToken(w, 'stored@alpha.test', 'password_reset', '/reset-password'),
    await linkToken(w, 'stored@alpha.test', 'mfa_reset_confirm', '/confirm-mfa-reset'),
    await linkToken(w, 'invitee@alpha.test', 'activation', '/activate'),
  ];
  const rows = await app.ctx.db.flowToken.findMany();
  const dump = JSON.stringify(rows);
  for (const token of tokens) {
    t.ok(Buffer.from(token, 'base64url').length >= 16, `${Buffer.from(token, 'base64url').length * 8} bits`);
    t.equal(rows.filter((r) => r.tokenHash === sha256Hex(token)).length, 1, 'stored as its SHA-256');
    t.notOk(dump.includes(token), 'the token itself is in no column');
  }
  t.equal(new Set(tokens).size, 3);
});

t.test('every e-mail link is built from APP_BASE_URL, whatever Host and forwarding headers the request carried', async (t) => {
  const w = await adminWorld(t, { TRUST_PROXY: 'loopback', APP_BASE_URL: 'https://shop.example.test/b2b/' });
  const { request, app } = w;
  const spoofed = {
    host: 'evil.example',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-proto': 'http',
    'x-forwarded-for': '203.0.113.9',
    forwarded: 'for=203.0.113.9;host=evil.example;proto=http',
    origin: 'https://evil.example',
    referer: 'https://evil.example/activate',
  };
  const send = (options: Parameters<typeof request>[0]) => request({ ...options, headers: { ...spoofed, ...options.headers } });

  const u = await w.member(w.orgA.id, { email: 'target@alpha.test' });
  // One after the other (each thunk runs when its turn comes).
  const steps: [string, () => Promise<{ status: number }>, number][] = [
    ['forgot password', () => send({ url: '/v1/password/forgot', body: { email: 'target@alpha.test' } }), 202],
    ['admin: password-reset mail', () => send({ method: 'POST', url: `/v1/organization/users/${u.user.id}/password-reset`, token: w.adminA.token }), 200],
    ['support: MFA-reset request', () => send({ method: 'POST', url: `/v1/support/users/${u.user.id}/mfa-reset-request`, token: w.support.token }), 202],
    ['admin: invitation', () => send({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'invited@alpha.test', name: 'Invited' } }), 201],
    ['support: organisation with its first administrator', () => send({
      method: 'POST',
      url: '/v1/support/organizations',
      token: w.support.token,
      body: { customerNumber: 'K-9', name: 'Gamma GmbH', administrator: { email: 'boss@gamma.test', name: 'Boss' } },
    }), 201],
  ];
  for (const [label, step, status] of steps) t.equal((await step()).status, status, label);
  const invited = await app.ctx.db.user.findFirstOrThrow({ where: { email: 'invited@alpha.test' } });
  t.equal((await send({ method: 'POST', url: `/v1/organization/users/${invited.id}/activation-email`, token: w.adminA.token })).status, 200, 'admin: resent activation');

  const mails = await outboxMails(app, { where: { template: { in: ['password_reset', 'mfa_reset_confirm', 'activation'] } } });
  t.equal(mails.length, 6, 'every step queued its mail');
  const expectedPath: Record<string, string> = { password_reset: '/reset-password', mfa_reset_confirm: '/confirm-mfa-reset', activation: '/activate' };
  for (const mail of mails) {
    const body = `${mail.textBody}\n${mail.htmlBody}`;
    t.notMatch(body, /evil/i, `${mail.template}: nothing of the spoofed host`);
    const urls = [...mail.textBody.matchAll(/https?:\/\/[^\s"<>]+/g)].map((m) => m[0]);
    t.ok(urls.length > 0, `${mail.template}: has a link`);
    for (const url of urls) {
      t.ok(url.startsWith(`https://shop.example.test/b2b${expectedPath[mail.template]}?token=`), `${mail.template}: ${url.slice(0, 60)}…`);
    }
    const hrefs = [...mail.htmlBody.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
    for (const href of hrefs) t.ok(href.startsWith('https://shop.example.test/b2b/'), `${mail.template} (HTML): ${href.slice(0, 60)}…`);
  }
});
