import t, { type Test } from 'tap';
import { decodeTotpSecret } from '../../src/lib/totp.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp, signIn } from '../helpers/factories.js';
import { challengeFor } from '../integration/mfa/helpers.js';

/**
 * security.md items 8 and 12 through the HTTP API:
 *  8. both enrolment endpoints hand out 20 random bytes (160 bits), base32 without padding, for
 *     SHA-1 / 6 digits / 30 s;
 * 12. a factor is inactive until one valid code was entered: a pending (unconfirmed) factor
 *     neither completes a login nor makes a session a full sign-in.
 */

const CLIENT_SECRET = 'bar-totp-client-secret-0123';

function assertSecret(t: Test, body: { secret: string; otpauthUri: string }, label: string) {
  t.match(body.secret, /^[A-Z2-7]+$/, `${label}: base32 alphabet, no padding`);
  t.equal(body.secret.length, 32, `${label}: 32 base32 characters`);
  t.equal(decodeTotpSecret(body.secret).length, 20, `${label}: 20 bytes (160 bits)`);
  const uri = new URL(body.otpauthUri);
  t.equal(uri.searchParams.get('secret'), body.secret, `${label}: the URI carries the same secret`);
  t.equal(uri.searchParams.get('algorithm'), 'SHA1', `${label}: SHA-1`);
  t.equal(uri.searchParams.get('digits'), '6', `${label}: 6 digits`);
  t.equal(uri.searchParams.get('period'), '30', `${label}: 30 s`);
}

t.test('enrolment secrets through the API: 20 random bytes, base32 without padding, SHA-1 / 6 digits / 30 s', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const secrets = new Set<string>();

  // First-login enrolment: asking again replaces the pending secret with a fresh one.
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');
  for (let i = 0; i < 8; i++) {
    const res = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
    t.equal(res.status, 200, `login enrolment ${i + 1}`);
    assertSecret(t, res.body, `login enrolment ${i + 1}`);
    secrets.add(res.body.secret);
  }

  // Self-service enrolment (a user without a factor, signed in).
  const { user: other } = await createUser(app.ctx.db, app, { withTotp: false });
  const { accessToken } = await signIn(app, other);
  for (let i = 0; i < 8; i++) {
    const res = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: accessToken });
    t.equal(res.status, 200, `self-service enrolment ${i + 1}`);
    assertSecret(t, res.body, `self-service enrolment ${i + 1}`);
    secrets.add(res.body.secret);
  }
  t.equal(secrets.size, 16, 'every secret is new');
  // 16 × 160 bits: every byte value should turn up; a constant or low-entropy source would not.
  const bytes = new Set([...secrets].flatMap((s) => [...decodeTotpSecret(s)]));
  t.ok(bytes.size > 128, `${bytes.size} distinct byte values over 320 bytes`);
});

t.test('a pending factor is not a factor: no login, no full session, until one valid code confirms it', async (t) => {
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS: `bar:${sha256Hex(CLIENT_SECRET)}:cso` });
  const request = api(app);
  const basic = `Basic ${Buffer.from(`bar:${CLIENT_SECRET}`).toString('base64')}`;

  // First login: the pending secret's code cannot complete a password login.
  const { user, password } = await createUser(app.ctx.db, app, { withTotp: false });
  const first = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(first.body.next, 'mfa_enrollment');
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: first.body.challengeToken } });
  t.equal(started.status, 200);
  const pendingSecret = started.body.secret as string;
  const again = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(again.status, 200);
  t.equal(again.body.next, 'mfa_enrollment', 'with only a pending factor the next login still asks for enrolment');
  const viaCodeStep = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: again.body.challengeToken, code: currentTotp(app, pendingSecret) } });
  t.equal(viaCodeStep.status, 409, 'the code step is not open to a pending factor');
  t.equal(viaCodeStep.body.code, 'challenge_step_mismatch');
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 0, 'no session');

  // Self-service: after removal, a started but unconfirmed enrolment leaves the session restricted.
  const { user: u2, password: p2 } = await createUser(app.ctx.db, app);
  const session = await signIn(app, u2);
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: session.accessToken, body: { password: p2 } })).status, 204);
  const pending = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken });
  t.equal(pending.status, 200);
  const restricted = await request({ url: '/v1/me/sessions', token: session.accessToken });
  t.equal(restricted.status, 403, 'pending: still restricted');
  t.equal(restricted.body.code, 'mfa_enrollment_required');
  const inactive = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: session.accessToken } });
  t.equal(inactive.raw, '{"active":false}', 'pending: not a sign-in for other services');
  const wrong = await request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, pending.body.secret, 5) } });
  t.equal(wrong.status, 400, 'a code of the wrong time does not confirm it');
  t.equal(wrong.body.code, 'mfa_code_invalid');
  t.equal((await request({ url: '/v1/me/sessions', token: session.accessToken })).status, 403, 'still pending');

  const confirmed = await request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, pending.body.secret) } });
  t.equal(confirmed.status, 200, 'one valid code activates it');
  t.equal((await request({ url: '/v1/me/sessions', token: session.accessToken })).status, 200, 'active: the session is whole');
  const active = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: session.accessToken } });
  t.equal(active.body.active, true);
});
