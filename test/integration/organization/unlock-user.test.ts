import t from 'tap';
import { currentTotp, wrongCode } from '../../helpers/factories.js';
import { challengeFor } from '../mfa/helpers.js';
import { adminWorld, auditOf } from './helpers.js';

type World = Awaited<ReturnType<typeof adminWorld>>;
type Member = Awaited<ReturnType<World['member']>>;

/** `count` wrong passwords for `who`, each different (`tag` keeps them apart from another run's). */
async function wrongPasswords(w: World, who: Member, count: number, tag: string): Promise<void> {
  for (let i = 1; i <= count; i++) await w.request({ url: '/v1/auth/login', body: { email: who.user.email, password: `wrong password ${i} ${tag}` } });
}

/** Ten wrong codes over two login challenges (five each, a challenge's cap): code entry locks. */
async function lockCodeEntry(w: World, who: Member): Promise<void> {
  for (let round = 0; round < 2; round++) {
    const challengeToken = await challengeFor(w.app, who.user.id, 'mfa');
    for (let i = 0; i < 5; i++) await w.request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrongCode(w.app, who.totpSecret!) } });
  }
}

t.test('“I cannot sign in”: the administrator sees the password lock, lifts it, and the user signs in at once', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, clock } = w;
  const jon = await w.member(w.orgA.id);
  const view = async () => (await request({ url: `/v1/organization/users/${jon.user.id}`, token: adminA.token })).body;
  t.same((await view()).signInLock, { failedPasswordAttempts: 0, passwordLockedUntil: null, failedCodeAttempts: 0, codeLockedUntil: null });

  await wrongPasswords(w, jon, 10, 'x');
  const locked = await request({ url: '/v1/auth/login', body: { email: jon.user.email, password: jon.password } });
  t.equal(locked.body.code, 'account_locked', 'the right password meets the lock');
  const lockView = (await view()).signInLock;
  t.equal(lockView.failedPasswordAttempts, 10);
  t.equal(lockView.passwordLockedUntil, new Date(clock.now().getTime() + 15 * 60_000).toISOString(), 'the administrator sees until when');

  const unlocked = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unlock`, token: adminA.token });
  t.equal(unlocked.status, 200);
  t.same(unlocked.body.signInLock, { failedPasswordAttempts: 0, passwordLockedUntil: null, failedCodeAttempts: 0, codeLockedUntil: null });
  t.match((await auditOf(app, 'user.unlocked', jon.user.id))[0], {
    actorUserId: adminA.user.id,
    organizationId: w.orgA.id,
    details: { by: 'admin', password: { until: lockView.passwordLockedUntil }, code: null },
  });
  // Nothing locked now: 409 not_locked, nothing audited.
  const again = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unlock`, token: adminA.token });
  t.same([again.status, again.body.code], [409, 'not_locked']);
  t.equal((await auditOf(app, 'user.unlocked', jon.user.id)).length, 1);

  // Someone keeps guessing before the user is back: the next lock lasts twice as long (the number of locks was kept).
  await wrongPasswords(w, jon, 10, 'y');
  t.equal((await view()).signInLock.passwordLockedUntil, new Date(clock.now().getTime() + 30 * 60_000).toISOString(), 'the second lock: 30 min');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unlock`, token: adminA.token })).status, 200);
  const step = await request({ url: '/v1/auth/login', body: { email: jon.user.email, password: jon.password } });
  t.equal(step.body.next, 'mfa', 'the user signs in at once');
});

t.test('support lifts a code-entry lock; the refusals', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, support } = w;
  const ann = await w.member(w.orgB.id);
  await lockCodeEntry(w, ann);
  const refusedCode = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, ann.user.id, 'mfa'), code: currentTotp(app, ann.totpSecret!) } });
  t.equal(refusedCode.status, 423, 'code entry is locked');
  const lookedUp = await request({ url: `/v1/support/users?email=${encodeURIComponent(ann.user.email)}`, token: support.token });
  t.ok(lookedUp.body.items[0].signInLock.codeLockedUntil, 'support sees the code lock in the look-up');

  for (const [who, url, token, status, code] of [
    ["another organisation's user", `/v1/organization/users/${ann.user.id}/unlock`, adminA.token, 404, 'user_not_found'],
    ['oneself', `/v1/organization/users/${adminA.user.id}/unlock`, adminA.token, 409, 'self_action_not_allowed'],
    ['a plain user', `/v1/organization/users/${ann.user.id}/unlock`, await w.tokenFor((await w.member(w.orgB.id)).user), 403, 'forbidden'],
  ] as const) {
    const res = await request({ method: 'POST', url, token });
    t.same([res.status, res.body.code], [status, code], who);
  }
  const staff = await w.member(null, { roles: ['SUPPORT'] });
  const protectedStaff = await request({ method: 'POST', url: `/v1/support/users/${staff.user.id}/unlock`, token: support.token });
  t.same([protectedStaff.status, protectedStaff.body.code], [403, 'support_staff_protected']);
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'user.unlocked' } }), 0, 'no refusal unlocked anything');

  const res = await request({ method: 'POST', url: `/v1/support/users/${ann.user.id}/unlock`, token: support.token });
  t.equal(res.status, 200);
  t.match((await auditOf(app, 'user.unlocked', ann.user.id))[0], { actorUserId: support.user.id, details: { by: 'support', password: null, code: { until: String } } });
  const tokens = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, ann.user.id, 'mfa'), code: currentTotp(app, ann.totpSecret!) } });
  t.equal(tokens.status, 200, 'the code is taken at once');
});

t.test('locks that have run out are no locks any more: 409 not_locked, nothing audited (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const { request, app, clock } = w;
  const jon = await w.member(w.orgA.id);
  await wrongPasswords(w, jon, 10, 'z');
  await lockCodeEntry(w, jon);
  const view = (await request({ url: `/v1/organization/users/${jon.user.id}`, token: w.adminA.token })).body.signInLock;
  t.ok(view.passwordLockedUntil && view.codeLockedUntil, 'both locks run');
  clock.advance(15 * 60);
  const res = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unlock`, token: await w.tokenFor(w.adminA.user) });
  t.same([res.status, res.body.code], [409, 'not_locked']);
  t.same(await auditOf(app, 'user.unlocked', jon.user.id), []);
});

t.test('lifting the code-entry lock leaves the count of wrong passwords alone (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const { request, support } = w;
  const ann = await w.member(w.orgB.id);
  await wrongPasswords(w, ann, 5, 'q');
  await lockCodeEntry(w, ann);
  const res = await request({ method: 'POST', url: `/v1/support/users/${ann.user.id}/unlock`, token: support.token });
  t.equal(res.status, 200);
  t.match(res.body.signInLock, { failedPasswordAttempts: 5, passwordLockedUntil: null, codeLockedUntil: null }, 'only the running lock is lifted');
});
