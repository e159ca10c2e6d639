import t from 'tap';
import { findActiveFactor, useTotpCode } from '../../src/modules/mfa/factors.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp } from '../helpers/factories.js';
import { challengeFor, parallelChallenges, secretOf } from '../integration/mfa/helpers.js';

/**
 * security.md item 10: each code once, also when 10 requests race with the same code.
 * Two layers hold this: the challenge (one session per challenge) and the factor's
 * lastUsedStep (conditional update). The second test takes the challenge out of the picture by
 * giving every request its own live challenge, so only the factor's conditional update decides.
 */

const N = 10;


t.test('10 concurrent requests with one valid code on one challenge: exactly one session', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const code = currentTotp(app, totpSecret!);
  const results = await Promise.all(
    Array.from({ length: N }, () => request({ url: '/v1/auth/login/mfa', body: { challengeToken, code } })),
  );
  t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one success');
  for (const r of results.filter((r) => r.status !== 200)) {
    t.ok(['mfa_code_reused', 'challenge_used', 'challenge_in_use', 'challenge_exhausted'].includes(r.body.code), r.body.code);
  }
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 1);
});

t.test('10 concurrent requests with one valid code on 10 live challenges: the factor lets one through', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challenges = await parallelChallenges(app, user.id, N);
  const code = currentTotp(app, totpSecret!);
  const results = await Promise.all(
    challenges.map((challengeToken) => request({ url: '/v1/auth/login/mfa', body: { challengeToken, code } })),
  );
  t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one success');
  t.same(
    results.filter((r) => r.status !== 200).map((r) => r.body.code),
    Array(N - 1).fill('mfa_code_reused'),
    'all others are told the code was used',
  );
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 1);
  const factor = await app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId: user.id } });
  t.equal(factor.lastUsedStep, Math.floor(app.ctx.clock.now().getTime() / 30_000));
  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(after.failedMfaCount, 0, 'replays of a valid code are not guesses: no step towards the account lock');
});

t.test('10 concurrent requests with one recovery code on 10 live challenges: one success', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  const challenges = await parallelChallenges(app, user.id, N);
  const results = await Promise.all(
    challenges.map((challengeToken) => request({ url: '/v1/auth/login/mfa', body: { challengeToken, recoveryCode: recoveryCodes![0] } })),
  );
  t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one success');
  t.same(
    results.filter((r) => r.status !== 200).map((r) => r.body.code),
    Array(N - 1).fill('recovery_code_invalid'),
  );
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id, usedAt: { not: null } } }), 1);
});

t.test('10 concurrent enrolment confirmations: one session, one active factor', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  const code = currentTotp(app, secretOf(started.body.otpauthUri));
  const results = await Promise.all(
    Array.from({ length: N }, () => request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken, code } })),
  );
  t.equal(results.filter((r) => r.status === 200).length, 1, 'exactly one success');
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 1);
  t.same(
    (await app.ctx.db.totpFactor.findMany({ where: { userId: user.id } })).map((f) => f.status),
    ['ACTIVE'],
  );
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id } }), 10);
});

t.test('concurrent wrong codes never evaluate more than 5 codes per challenge', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  let evaluated = 0;
  let exhausted = 0;
  for (let wave = 0; wave < 20 && exhausted === 0; wave++) {
    const codes = Array.from({ length: N }, (_, i) => String(100000 + wave * N + i));
    const results = await Promise.all(codes.map((code) => request({ url: '/v1/auth/login/mfa', body: { challengeToken, code } })));
    for (const r of results) {
      t.ok(['mfa_code_invalid', 'challenge_in_use', 'challenge_exhausted'].includes(r.body.code), r.body.code);
    }
    evaluated += results.filter((r) => r.body.code === 'mfa_code_invalid').length;
    exhausted += results.filter((r) => r.body.code === 'challenge_exhausted').length;
  }
  t.equal(evaluated, 5, 'exactly 5 codes were evaluated in all');
  t.ok(exhausted > 0, 'then the challenge is dead');
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id } });
  t.equal(flow.attempts, 5);
  t.equal(flow.state, 'VOIDED');
});

/**
 * The general path of the code step (completeMfaLogin → useTotpCode), taken when the one-statement
 * fast path does not go through (a row changed meanwhile): no HTTP request reaches it on purpose,
 * so it is driven directly here. Found by session 13's mutation audit: without the stored step it
 * would accept one code again and again, and no test noticed.
 */
t.test('the general code path stores the accepted step: the same code again is a replay, also 10 at once', async (t) => {
  const { app } = await buildTestApp(t);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const code = currentTotp(app, totpSecret!);
  const use = () => app.ctx.db.$transaction(async (tx) => useTotpCode(tx, app.ctx, (await findActiveFactor(tx, user.id))!, code));

  const first = await use();
  t.equal(first.ok, true, 'accepted once');
  const again = await use();
  t.same(again, { ok: false, reason: 'replayed' }, 'the same code again: a replay');

  const other = await createUser(app.ctx.db, app);
  const otherCode = currentTotp(app, other.totpSecret!);
  const results = await Promise.all(
    Array.from({ length: 10 }, () =>
      app.ctx.db.$transaction(async (tx) => useTotpCode(tx, app.ctx, (await findActiveFactor(tx, other.user.id))!, otherCode)),
    ),
  );
  t.equal(results.filter((r) => r.ok).length, 1, 'one of ten concurrent uses');
});
