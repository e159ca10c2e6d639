import t from 'tap';
import { currentTotp, wrongCode } from '../helpers/factories.js';
import type { ApiResponse } from '../helpers/http.js';
import { tokenFromLink } from '../helpers/accounts.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { secretOf } from '../integration/mfa/helpers.js';
import { lastMail } from '../helpers/outbox.js';

/**
 * security.md item 26: every login attempt (success/failure, factor), lockout, MFA change, reset,
 * role change, block/unblock and token-family revocation is an audit event with actor, subject,
 * organisation, IP, user agent and UTC time.
 *
 * Every event is caused through the HTTP API by a request with its own client address
 * (X-Forwarded-For, TRUST_PROXY=loopback) and User-Agent, at a known instant of the fake clock, and then
 * read back through the support audit API (GET /v1/support/audit-events), field by field.
 */

type Who = { ip: string; userAgent: string };
const USER: Who = { ip: '203.0.113.77', userAgent: 'bar-audit-user/1.0' };
const ADMIN: Who = { ip: '198.51.100.10', userAgent: 'bar-audit-admin/1.0' };
const SUPPORT: Who = { ip: '192.0.2.50', userAgent: 'bar-audit-support/1.0' };
const headers = (who: Who) => ({ 'user-agent': who.userAgent, 'x-forwarded-for': who.ip });

type Expected = { type: string; subject: string; actor: string | null; from: Who; at: string; details?: Record<string, unknown> };

t.test('each audited kind of event records actor, subject, organisation, IP, user agent and UTC time', async (t) => {
  const w = await adminWorld(t, { TRUST_PROXY: 'loopback' });
  const { app, clock, orgA } = w;
  const u = await w.member(orgA.id, { email: 'audit.user@alpha.test', name: 'Audit User', recoveryCodes: 10 });
  const v = await w.member(orgA.id, { email: 'audit.locks@alpha.test', name: 'Lock Victim' });
  const U = u.user.id;
  const admin = w.adminA.user.id;
  const support = w.support.user.id;
  const expected: Expected[] = [];

  /** One request at a fresh instant, asserted on status (and code); returns the answer and the instant. */
  const call = async (label: string, who: Who, options: Parameters<typeof w.request>[0], status: number, code?: string) => {
    clock.advance(1);
    const at = clock.now().toISOString();
    const res: ApiResponse = await w.request({ ...options, headers: { ...headers(who), ...options.headers } });
    t.equal(res.status, status, `${label}: ${status} (got ${res.status} ${res.body?.code ?? ''})`);
    if (code) t.equal(res.body.code, code, `${label}: ${code}`);
    return { res, at };
  };
  const expect = (type: string, subject: string, actor: string | null, from: Who, at: string, details?: Record<string, unknown>) =>
    expected.push({ type, subject, actor, from, at, ...(details ? { details } : {}) });
  const login = (password: string, status = 200, code?: string) =>
    call('password step', USER, { url: '/v1/auth/login', body: { email: u.user.email, password } }, status, code);

  // Login attempts: password failure and success, code failure and success (factor totp).
  const f1 = await login('not the password 1', 401, 'invalid_credentials');
  expect('login.password_failed', U, null, USER, f1.at, { reason: 'wrong_password' });
  const s1 = await login(u.password!);
  expect('login.password_succeeded', U, U, USER, s1.at);
  const challenge1 = s1.res.body.challengeToken as string;
  const c1 = await call('wrong code', USER, { url: '/v1/auth/login/mfa', body: { challengeToken: challenge1, code: wrongCode(app, u.totpSecret!) } }, 400, 'mfa_code_invalid');
  expect('login.mfa_failed', U, U, USER, c1.at, { factor: 'totp' });
  const c2 = await call('right code', USER, { url: '/v1/auth/login/mfa', body: { challengeToken: challenge1, code: currentTotp(app, u.totpSecret!) } }, 200);
  expect('login.mfa_succeeded', U, U, USER, c2.at, { factor: 'totp' });
  const t1 = c2.res.body as { accessToken: string; refreshToken: string };

  // Token-family revocation: a rotated refresh token presented again after the grace period.
  await call('refresh', USER, { url: '/v1/auth/refresh', body: { refreshToken: t1.refreshToken } }, 200);
  clock.advance(11);
  const reuse = await call('refresh token reuse', USER, { url: '/v1/auth/refresh', body: { refreshToken: t1.refreshToken } }, 401, 'refresh_token_reused');
  expect('session.family_revoked', U, null, USER, reuse.at, { reason: 'refresh_token_reuse' });

  // Login with a recovery code (factor recovery_code, MFA change: a code used up).
  const s2 = await login(u.password!);
  const rc = await call('recovery code', USER, { url: '/v1/auth/login/mfa', body: { challengeToken: s2.res.body.challengeToken, recoveryCode: u.recoveryCodes![0] } }, 200);
  expect('login.mfa_succeeded', U, U, USER, rc.at, { factor: 'recovery_code' });
  expect('mfa.recovery_code_used', U, U, USER, rc.at);
  const access = rc.res.body.accessToken as string;

  // Self-service: password change, recovery codes, MFA removal and enrolment.
  const newPassword = 'Amber falcon meadow 4711?';
  const pc = await call('change password', USER, { method: 'PUT', url: '/v1/me/password', token: access, body: { currentPassword: u.password!, newPassword } }, 204);
  expect('password.changed', U, U, USER, pc.at);
  const rg = await call('regenerate recovery codes', USER, { url: '/v1/me/mfa/recovery-codes', token: access, body: { password: newPassword } }, 200);
  expect('mfa.recovery_codes_regenerated', U, U, USER, rg.at);
  const rm = await call('remove MFA', USER, { method: 'DELETE', url: '/v1/me/mfa', token: access, body: { password: newPassword } }, 204);
  expect('mfa.removed', U, U, USER, rm.at);
  const st = await call('start enrolment', USER, { method: 'POST', url: '/v1/me/mfa/totp', token: access }, 200);
  const en = await call('confirm enrolment', USER, { url: '/v1/me/mfa/totp/verify', token: access, body: { code: currentTotp(app, secretOf(st.res.body.otpauthUri)) } }, 200);
  expect('mfa.enrolled', U, U, USER, en.at, { via: 'self_service' });

  // Password reset: requested by the user (anonymous actor), completed with the link.
  const fg = await call('forgot password', USER, { url: '/v1/password/forgot', body: { email: u.user.email } }, 202);
  expect('password.reset_requested', U, null, USER, fg.at, { by: 'self' });
  const resetMail = await lastMail(app, { toAddress: u.user.email, template: 'password_reset' });
  const thirdPassword = 'Quiet harbour pickle 58?';
  const rs = await call('reset password', USER, { url: '/v1/password/reset', body: { token: tokenFromLink(resetMail.textBody, '/reset-password'), password: thirdPassword } }, 204);
  expect('password.reset_completed', U, U, USER, rs.at);

  // The administrator: reset mail, role changes, block / unblock, MFA reset.
  const adminCall = (label: string, method: 'POST' | 'PUT', path: string, status: number, body?: object) =>
    call(label, ADMIN, { method, url: `/v1/organization/users/${U}${path}`, token: w.adminA.token, ...(body ? { body } : {}) }, status);
  const ar = await adminCall('admin reset mail', 'POST', '/password-reset', 200);
  expect('password.reset_requested', U, admin, ADMIN, ar.at, { by: 'admin' });
  const up = await adminCall('promote', 'PUT', '/roles', 200, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  expect('user.roles_changed', U, admin, ADMIN, up.at, { to: ['USER', 'CUSTOMER_ADMIN'] });
  const down = await adminCall('demote', 'PUT', '/roles', 200, { roles: ['USER'] });
  expect('user.roles_changed', U, admin, ADMIN, down.at, { to: ['USER'] });
  const bl = await adminCall('block', 'POST', '/block', 200);
  expect('user.blocked', U, admin, ADMIN, bl.at);
  const ba = await login(thirdPassword, 403, 'account_blocked');
  expect('login.blocked_attempt', U, null, USER, ba.at);
  const ub = await adminCall('unblock', 'POST', '/unblock', 200);
  expect('user.unblocked', U, admin, ADMIN, ub.at);
  const mr = await adminCall('admin MFA reset', 'POST', '/mfa-reset', 200);
  expect('mfa.reset_by_admin', U, admin, ADMIN, mr.at);

  // Enrolment at the next login.
  const s3 = await login(thirdPassword);
  t.equal(s3.res.body.next, 'mfa_enrollment');
  const le = await call('login enrolment', USER, { url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: s3.res.body.challengeToken } }, 200);
  const lv = await call('login enrolment verify', USER, {
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: s3.res.body.challengeToken, code: currentTotp(app, le.res.body.secret) },
  }, 200);
  expect('mfa.enrolled', U, U, USER, lv.at, { via: 'login' });

  // Support-verified MFA reset: requested by support, confirmed by the user from the mail.
  const sr = await call('support MFA-reset request', SUPPORT, { method: 'POST', url: `/v1/support/users/${U}/mfa-reset-request`, token: w.support.token }, 202);
  expect('mfa.reset_requested', U, support, SUPPORT, sr.at);
  const confirmMail = await lastMail(app, { toAddress: u.user.email, template: 'mfa_reset_confirm' });
  const cf = await call('confirm MFA reset', USER, { url: '/v1/mfa-reset/confirm', body: { token: tokenFromLink(confirmMail.textBody, '/confirm-mfa-reset') } }, 200);
  expect('mfa.reset_confirmed', U, U, USER, cf.at);

  // Lockouts: 10 wrong passwords, then (15 min later) 10 wrong codes.
  const V = v.user.id;
  let last = { at: '' };
  for (let i = 1; i <= 10; i++) {
    last = await call(`wrong password ${i}`, USER, { url: '/v1/auth/login', body: { email: v.user.email, password: `wrong ${i} password` } }, 401, 'invalid_credentials');
  }
  expect('login.locked', V, null, USER, last.at);
  clock.advance(15 * 60);
  let challenge = '';
  for (let i = 1; i <= 10; i++) {
    if (i === 1 || i === 6) {
      challenge = (await call('password step', USER, { url: '/v1/auth/login', body: { email: v.user.email, password: v.password! } }, 200)).res.body.challengeToken;
    }
    last = await call(`wrong code ${i}`, USER, { url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: wrongCode(app, v.totpSecret!) } }, i < 10 ? 400 : 423, i < 10 ? 'mfa_code_invalid' : 'mfa_locked');
  }
  expect('mfa.locked', V, V, USER, last.at);

  // Read every expected event back through the support audit API.
  const token = await w.tokenFor(w.support.user);
  for (const e of expected) {
    const page = await w.request({ url: `/v1/support/audit-events?type=${e.type}&userId=${e.subject}&limit=100`, token });
    t.equal(page.status, 200);
    const items = (page.body.items as { occurredAt: string; subject: { id: string } | null }[]).filter((i) => i.subject?.id === e.subject && i.occurredAt === e.at);
    t.equal(items.length, 1, `${e.type} at ${e.at}: recorded once`);
    const item = items[0] as Record<string, any> | undefined;
    if (!item) continue;
    t.match(item.occurredAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, `${e.type}: UTC time`);
    t.equal(item.actor?.id ?? null, e.actor, `${e.type}: actor ${e.actor ?? '(anonymous)'}`);
    t.equal(item.subject.id, e.subject, `${e.type}: subject`);
    t.equal(item.organizationId, orgA.id, `${e.type}: organisation`);
    t.equal(item.ip, e.from.ip, `${e.type}: IP`);
    t.equal(item.userAgent, e.from.userAgent, `${e.type}: user agent`);
    if (e.details) t.match(item.details, e.details, `${e.type}: details`);
  }
  const kinds = new Set(expected.map((e) => e.type));
  t.ok(kinds.size >= 20, `${kinds.size} kinds of event checked`);
});
