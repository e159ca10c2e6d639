import t from 'tap';
import { deliverMail } from '../../helpers/accounts.js';
import { signIn } from '../../helpers/factories.js';
import { adminWorld, auditOf, mailsTo } from './helpers.js';

/**
 * Erasing a former employee (GDPR Art. 17): a blocked account and everything it holds are deleted;
 * the audit trail keeps its rows, and the erasure's own row names nobody.
 */

t.test('an administrator erases a blocked former employee: account, secrets, sessions, links and mails go; nothing of them answers any more', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const db = app.ctx.db;
  const leaver = await w.member(w.orgA.id, { name: 'Lena Leaver', email: 'Lena.Leaver@alpha.test', recoveryCodes: 4, language: 'de' });
  const signedIn = await signIn(app, leaver.user);
  const session = await db.session.findFirstOrThrow({ where: { userId: leaver.user.id } });

  // A mail already sent to the address, then the block (its notice is queued).
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/password-reset`, token: adminA.token })).status, 200);
  await deliverMail(app);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: adminA.token })).status, 200);
  t.same((await mailsTo(app, 'lena.leaver@alpha.test')).map((m) => [m.template, m.sentAt !== null]), [
    ['password_reset', true],
    ['account_blocked', false],
  ]);

  const erase = (id = leaver.user.id, token = adminA.token) => request({ method: 'POST', url: `/v1/organization/users/${id}/erase`, token });
  const res = await erase();
  t.equal(res.status, 204);
  t.equal(res.raw, '');

  t.equal(await db.user.count({ where: { id: leaver.user.id } }), 0, 'the account is gone');
  for (const [table, count] of [
    ['totp_factors', await db.totpFactor.count({ where: { userId: leaver.user.id } })],
    ['recovery_codes', await db.recoveryCode.count({ where: { userId: leaver.user.id } })],
    ['sessions', await db.session.count({ where: { userId: leaver.user.id } })],
    ['refresh_tokens', await db.refreshToken.count({ where: { sessionId: session.id } })],
    ['flow_tokens', await db.flowToken.count({ where: { userId: leaver.user.id } })],
    ['mail_outbox', (await mailsTo(app, 'lena.leaver@alpha.test')).length],
  ] as const) {
    t.equal(count, 0, `nothing of theirs left in ${table}`);
  }

  const [audit] = await auditOf(app, 'user.erased', leaver.user.id);
  t.match(audit, { actorUserId: adminA.user.id, organizationId: w.orgA.id, details: { by: 'admin', roles: ['USER'], mailsDeleted: 2 } });
  t.notMatch(JSON.stringify(audit), /lena|leaver/i, 'the erasure names nobody');

  t.equal((await request({ url: '/v1/me', token: signedIn.accessToken })).status, 401, 'an access token of theirs is refused');
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: signedIn.refreshToken } });
  t.equal(refreshed.status, 401, 'a refresh token of theirs is dead');
  const again = await erase();
  t.equal(again.status, 404, 'repeated: as for any id that does not exist');
  t.equal(again.body.code, 'user_not_found');
  t.equal((await request({ url: `/v1/organization/users/${leaver.user.id}`, token: adminA.token })).body.code, 'user_not_found');

  // The same password for the erased address and for an address nobody has: the same answer.
  const erasedLogin = await request({ url: '/v1/auth/login', body: { email: 'lena.leaver@alpha.test', password: leaver.password } });
  const unknownLogin = await request({ url: '/v1/auth/login', body: { email: 'nobody-here@alpha.test', password: leaver.password } });
  t.equal(erasedLogin.status, unknownLogin.status);
  t.equal(erasedLogin.body.code, unknownLogin.body.code);

  // The address is free: the person may come back as a new account.
  const reinvited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'lena.leaver@alpha.test', name: 'Lena Leaver' } });
  t.equal(reinvited.status, 201);
  t.not(reinvited.body.id, leaver.user.id);
});

t.test('erasure refusals: not blocked, blocked by support (support may), another organisation, support staff; nothing changes', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support, app } = w;
  const erase = (id: string, token: string, base = '/v1/organization/users') => request({ method: 'POST', url: `${base}/${id}/erase`, token });

  const active = await w.member(w.orgA.id);
  const invited = await w.member(w.orgA.id, { status: 'INVITED' });
  const foreign = await w.member(w.orgB.id, { status: 'BLOCKED' });
  const staff = await w.member(null, { roles: ['SUPPORT'], status: 'BLOCKED' });
  const fraud = await w.member(w.orgA.id);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${fraud.user.id}/block`, token: support.token })).status, 200);

  for (const [label, res, status, code] of [
    ['an active user', await erase(active.user.id, adminA.token), 409, 'not_blocked'],
    ['an invited user (withdraw it instead)', await erase(invited.user.id, adminA.token), 409, 'not_blocked'],
    ['a user support blocked', await erase(fraud.user.id, adminA.token), 409, 'blocked_by_support'],
    ["another organisation's user", await erase(foreign.user.id, adminA.token), 404, 'user_not_found'],
    ['support staff, by support', await erase(staff.user.id, support.token, '/v1/support/users'), 403, 'support_staff_protected'],
    ['an id nobody has', await erase('0190a0a0-0000-7000-8000-000000000000', support.token, '/v1/support/users'), 404, 'user_not_found'],
  ] as const) {
    t.equal(res.status, status, label);
    t.equal(res.body.code, code, label);
  }
  t.equal(await app.ctx.db.user.count({ where: { id: { in: [active.user.id, invited.user.id, foreign.user.id, staff.user.id, fraud.user.id] } } }), 5, 'nobody was erased');
  t.equal((await auditOf(app, 'user.erased')).length, 0);

  const bySupport = await erase(fraud.user.id, support.token, '/v1/support/users');
  t.equal(bySupport.status, 204, 'support erases the user it blocked');
  const [audit] = await auditOf(app, 'user.erased', fraud.user.id);
  t.match(audit, { actorUserId: support.user.id, organizationId: w.orgA.id, details: { by: 'support' } });
});

t.test('the mails about the account go, also one a worker is handing to SMTP right now (should that attempt fail, nothing is left to retry)', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, clock } = w;
  const leaver = await w.member(w.orgA.id, { email: 'busy@alpha.test' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: adminA.token })).status, 200);
  const [blocked] = await mailsTo(app, 'busy@alpha.test');
  await app.ctx.db.mailOutbox.update({ where: { id: blocked!.id }, data: { lockedUntil: new Date(clock.now().getTime() + 60_000), claimToken: '0190a0a0-0000-7000-8000-0000000000bb' } });
  await app.ctx.db.mailOutbox.create({
    data: { id: '0190a0a0-0000-7000-8000-0000000000aa', toAddress: 'BUSY@alpha.test', template: 'password_changed', subject: 's', textBody: 't', htmlBody: 'h', nextAttemptAt: clock.now(), createdAt: clock.now() },
  });

  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/erase`, token: adminA.token })).status, 204);
  t.same(await mailsTo(app, 'busy@alpha.test'), [], 'the claimed one too');
  t.match((await auditOf(app, 'user.erased'))[0]?.details, { mailsDeleted: 2 });
});

t.test("erasure takes the mails about the account to any address it had or asked for, and nobody else's (an address with '_' matches only itself)", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, adminB, app } = w;
  const lena = await w.member(w.orgA.id, { name: 'Lena Leaver', email: 'lena_b@alpha.test' });
  const token = await w.tokenFor(lena.user);
  // Look-alikes in another organisation, each with a mail waiting.
  for (const email of ['lena.b@alpha.test', 'lenaxb@alpha.test']) {
    const other = await w.member(w.orgB.id, { email });
    t.equal((await request({ method: 'POST', url: `/v1/organization/users/${other.user.id}/password-reset`, token: adminB.token })).status, 200);
  }
  // Lena asks to move to a private address (a confirmation mail there; then blocked before she confirms).
  const moved = await request({ method: 'POST', url: '/v1/me/email', token, body: { email: 'lena.private@home.test', password: lena.password } });
  t.equal(moved.status, 202, JSON.stringify(moved.body));
  t.equal((await mailsTo(app, 'lena.private@home.test')).length, 1);

  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${lena.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${lena.user.id}/erase`, token: adminA.token })).status, 204);

  t.same(await mailsTo(app, 'lena.private@home.test'), [], 'the mail to the address she asked for is gone');
  t.same(await mailsTo(app, 'lena_b@alpha.test'), [], 'and the block notice to hers');
  t.equal((await mailsTo(app, 'lena.b@alpha.test')).length, 1, "a look-alike's mail stays");
  t.equal((await mailsTo(app, 'lenaxb@alpha.test')).length, 1, "another look-alike's too");
  t.match((await auditOf(app, 'user.erased'))[0]?.details, { mailsDeleted: 2 });
});

t.test("erasure leaves another account's mails to an address it had before: user_id names that account (privacy review, session 25)", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, adminB, app } = w;
  const db = app.ctx.db;
  // Bob's mail waits at his old address (SMTP down); he moves away (as a confirmed e-mail change does).
  const bob = await w.member(w.orgB.id, { name: 'Bob Mover', email: 'bob.old@beta.test' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${bob.user.id}/password-reset`, token: adminB.token })).status, 200);
  await db.user.update({ where: { id: bob.user.id }, data: { email: 'bob.new@beta.test' } });
  // The freed address is given to a newcomer, who is blocked and erased.
  const dave = await w.member(w.orgA.id, { name: 'Dave Newcomer', email: 'bob.old@beta.test' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${dave.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${dave.user.id}/erase`, token: adminA.token })).status, 204);
  const bobs = await db.mailOutbox.findMany({ where: { userId: bob.user.id } });
  t.same(bobs.map((m) => m.template), ['password_reset'], "Bob's mail is not Dave's: it stays");
});
