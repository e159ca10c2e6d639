import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp } from '../helpers/factories.js';
import { normalizeRecoveryCode } from '../../src/lib/recovery-codes.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { challengeFor, enrolAtLogin } from '../integration/mfa/helpers.js';

/**
 * Security review, secrets at rest: recovery codes (~119 bits each; ~59 before session 30) are the one second factor a
 * database dump alone could yield (TOTP secrets are sealed with a key outside the database). Their
 * stored hash must be bound to the owner, so a dumped table cannot be brute-forced for every user
 * in one pass (bare SHA-256 of the code, globally unique, allowed exactly that).
 */
t.test('recovery codes issued at enrolment are stored bound to their owner, not as a bare SHA-256', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const { tokens, secret } = await enrolAtLogin(t, app, request, await challengeFor(app, user.id, 'mfa_enrollment'));
  const codes = tokens.recoveryCodes as string[];
  t.equal(codes.length, 10);

  const stored = new Set((await app.ctx.db.recoveryCode.findMany({ where: { userId: user.id } })).map((r) => r.codeHash));
  t.equal(stored.size, 10);
  for (const code of codes) {
    t.notOk(stored.has(sha256Hex(normalizeRecoveryCode(code)!)), 'not the bare SHA-256 of the code');
  }

  // Still usable (once) at login.
  t.ok(secret);
  const used = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: codes[0] } });
  t.equal(used.status, 200);
  const again = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: codes[0] } });
  t.equal(again.body.code, 'recovery_code_invalid');
  t.ok(currentTotp(app, secret));
});
