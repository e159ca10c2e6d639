import t from 'tap';
import { RESET_LINK_MIN_INTERVAL_SECONDS } from '../../../src/modules/password/forgot-password.js';
import { tokenFromLink } from '../../helpers/accounts.js';
import { openClient, waitForLockWaiters } from '../../helpers/row-locks.js';
import { adminWorld, auditOf, mailsTo, type AdminWorld } from '../organization/helpers.js';

const NEW_PASSWORD = 'silver harbour compass 7730';

/** A signed-in member of organisation A, with their password and access token. */
async function signedInMember(w: AdminWorld, email = 'jon@alpha.test') {
  const member = await w.member(w.orgA.id, { email, name: 'Jon Doe' });
  return { ...member, token: await w.tokenFor(member.user) };
}

const ask = (w: AdminWorld, token: string, body: object) => w.request({ url: '/v1/me/email', token, body });
const confirm = (w: AdminWorld, token: string) => w.request({ url: '/v1/email-change/confirm', body: { token } });

async function linkTo(w: AdminWorld, address: string): Promise<string> {
  const mails = (await mailsTo(w.app, address)).filter((m) => m.template === 'email_change_confirm');
  return tokenFromLink(mails.at(-1)!.textBody, '/confirm-email');
}

t.test('change of address: a link to the new address, nothing changes until it is opened; then sign in with the new one', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);

  const asked = await ask(w, jon.token, { email: 'Jon.Doe@Newmail.test', password: jon.password });
  t.equal(asked.status, 202);
  t.match(asked.body, { status: 'verification_sent', email: 'Jon.Doe@Newmail.test' });
  t.ok(Date.parse(asked.body.expiresAt) > Date.now() + 23 * 3600_000, '24 hours');
  const [mail] = await mailsTo(app, 'jon.doe@newmail.test');
  t.equal(mail?.template, 'email_change_confirm');
  t.match(mail?.textBody, 'https://shop.example.test/confirm-email?token=');
  t.equal((await request({ url: '/v1/me', token: jon.token })).body.email, 'jon@alpha.test', 'the old address holds until confirmed');
  const pending = await request({ url: '/v1/me/email', token: jon.token });
  t.same(pending.body, { pending: { email: 'Jon.Doe@Newmail.test', expiresAt: asked.body.expiresAt } }, 'the change waiting for its confirmation');
  t.match((await auditOf(app, 'user.email_change_requested', jon.user.id))[0]?.details, { from: 'jon@alpha.test', to: 'Jon.Doe@Newmail.test' });

  const token = await linkTo(w, 'jon.doe@newmail.test');
  const done = await confirm(w, token);
  t.equal(done.status, 200);
  t.same(done.body, { status: 'email_changed', email: 'Jon.Doe@Newmail.test' });
  t.equal(done.headers['cache-control'], 'no-store');
  t.equal((await request({ url: '/v1/me', token: jon.token })).body.email, 'Jon.Doe@Newmail.test', 'sessions stay');
  t.same((await request({ url: '/v1/me/email', token: jon.token })).body, { pending: null }, 'nothing waits any more');
  const told = (await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'email_changed');
  t.equal(told.length, 1, 'the old address is told');
  t.match(told[0]?.textBody, 'Jon.Doe@Newmail.test');
  t.match((await auditOf(app, 'user.email_changed', jon.user.id))[0], { actorUserId: jon.user.id, details: { from: 'jon@alpha.test', to: 'Jon.Doe@Newmail.test' } });

  const viaNew = await request({ url: '/v1/auth/login', body: { email: 'jon.doe@newmail.test', password: jon.password } });
  t.equal(viaNew.status, 200, 'the new address signs in');
  t.equal(viaNew.body.next, 'mfa');
  const viaOld = await request({ url: '/v1/auth/login', body: { email: 'jon@alpha.test', password: jon.password } });
  t.equal(viaOld.status, 401);
  t.equal(viaOld.body.code, 'invalid_credentials', 'the old one does not');

  const again = await confirm(w, token);
  t.equal(again.status, 410);
  t.equal(again.body.code, 'link_used', 'single use');
  const held = await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'jon@alpha.test', name: 'New Jon' } });
  t.same([held.status, held.body.code], [409, 'email_taken'], 'the old address stays the account\'s while the undo link in its notice lasts');
  w.clock.advance(7 * 24 * 3600 + 1);
  const freed = await request({ method: 'POST', url: '/v1/organization/users', token: await w.tokenFor(w.adminA.user), body: { email: 'jon@alpha.test', name: 'New Jon' } });
  t.equal(freed.status, 201, 'then it is free');
});

t.test('refusals: wrong password, the same address, bad input, no session, bad links', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);

  const wrong = await ask(w, jon.token, { email: 'new@alpha.test', password: 'not the password at all' });
  t.equal(wrong.status, 403);
  t.equal(wrong.body.code, 'reauthentication_failed');
  for (const email of ['jon@alpha.test', 'JON@Alpha.test']) {
    const same = await ask(w, jon.token, { email, password: jon.password });
    t.equal(same.status, 409, email);
    t.equal(same.body.code, 'email_unchanged', 'the same address in any letter case');
  }
  for (const body of [{ email: 'not-an-address', password: jon.password }, { email: 'new@alpha.test' }, { email: 'new@alpha.test', password: jon.password, name: 'X' }]) {
    const bad = await ask(w, jon.token, body);
    t.equal(bad.status, 400, JSON.stringify(body).slice(0, 50));
    t.equal(bad.body.code, 'validation_failed');
  }
  t.equal((await request({ url: '/v1/me/email', body: { email: 'new@alpha.test', password: 'x'.repeat(12) } })).status, 401, 'signed in only');
  t.same(await mailsTo(app, 'new@alpha.test'), [], 'no mail for a refused request');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: jon.user.id, purpose: 'EMAIL_CHANGE' } }), 0);
  t.equal(await app.ctx.db.user.count({ where: { id: jon.user.id, failedPasswordCount: 1 } }), 1, 'the wrong password counts towards the lockout');

  const invalid = await confirm(w, 'x'.repeat(43));
  t.equal(invalid.status, 400);
  t.equal(invalid.body.code, 'link_invalid');
  const inQuery = await request({ url: `/v1/email-change/confirm?token=${'x'.repeat(43)}`, body: { token: 'x'.repeat(43) } });
  t.equal(inQuery.status, 401);
  t.equal(inQuery.body.code, 'token_in_query');
});

t.test('an address another account uses: the same answer to the requester; the link holder is told, and the link waits', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);
  const other = await request({ method: 'POST', url: '/v1/organization/users', token: w.adminB.token, body: { email: 'taken@beta.test', name: 'Taken' } });

  const asked = await ask(w, jon.token, { email: 'taken@beta.test', password: jon.password });
  t.equal(asked.status, 202, 'nothing tells the requester that the address is taken');
  t.same(Object.keys(asked.body).sort(), ['email', 'expiresAt', 'status']);

  const token = await linkTo(w, 'taken@beta.test');
  const taken = await confirm(w, token);
  t.equal(taken.status, 409);
  t.equal(taken.body.code, 'email_taken');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test', 'nothing changed');
  t.same((await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'email_changed'), []);

  // The invitation that held the address is withdrawn: the same link now works.
  t.equal((await request({ method: 'DELETE', url: `/v1/organization/users/${other.body.id}`, token: w.adminB.token })).status, 204);
  t.equal((await confirm(w, token)).status, 200);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'taken@beta.test');
});

t.test('a password change voids a pending e-mail change and a pending reset link (mutation review, session 20: only the reset was tested)', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  // Whoever asked for the change knew the old password; the user changing it must end that request.
  const jon = await signedInMember(w);
  t.equal((await ask(w, jon.token, { email: 'attacker@new.test', password: jon.password })).status, 202);
  const change = await linkTo(w, 'attacker@new.test');
  // A reset link asked for before the change, on its own (a confirmed e-mail change would void it anyway).
  const ann = await signedInMember(w, 'ann@alpha.test');
  await request({ url: '/v1/password/forgot', body: { email: 'ann@alpha.test' } });
  const reset = tokenFromLink((await mailsTo(app, 'ann@alpha.test')).filter((m) => m.template === 'password_reset').at(-1)!.textBody, '/reset-password');

  for (const member of [jon, ann]) {
    const changed = await request({ method: 'PUT', url: '/v1/me/password', token: member.token, body: { currentPassword: member.password, newPassword: NEW_PASSWORD } });
    t.equal(changed.status, 204);
  }
  t.equal((await confirm(w, change)).status, 410, 'the e-mail change asked for with the old password is void');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');
  const late = await request({ url: '/v1/password/reset', body: { token: reset, password: 'another long passphrase 99' } });
  t.equal(late.status, 410, 'the reset link asked for before the change is void');
});

t.test('links that stop working: a newer request, a password reset, a block; old-address links end with the change', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);

  await ask(w, jon.token, { email: 'first@new.test', password: jon.password });
  const first = await linkTo(w, 'first@new.test');
  await ask(w, jon.token, { email: 'second@new.test', password: jon.password });
  const replaced = await confirm(w, first);
  t.equal(replaced.status, 410);
  t.match(replaced.body, { code: 'link_used', linkState: 'replaced' }, 'only the newest address can be confirmed');

  // A password reset: whoever asked for the change knew the old password.
  const second = await linkTo(w, 'second@new.test');
  await request({ url: '/v1/password/forgot', body: { email: 'jon@alpha.test' } });
  const resetToken = tokenFromLink((await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'password_reset').at(-1)!.textBody, '/reset-password');
  t.equal((await request({ url: '/v1/password/reset', body: { token: resetToken, password: NEW_PASSWORD } })).status, 204);
  t.equal((await confirm(w, second)).status, 410, 'a password reset voids a pending change');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');

  // Confirmed: a reset link still in the old mailbox stops working.
  w.clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS + 1);
  await request({ url: '/v1/password/forgot', body: { email: 'jon@alpha.test' } });
  const resets = (await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'password_reset');
  t.equal(resets.length, 2, 'a second reset link went to the old address');
  const staleReset = tokenFromLink(resets[1]!.textBody, '/reset-password');
  const token = await w.tokenFor(jon.user);
  await ask(w, token, { email: 'third@new.test', password: NEW_PASSWORD });
  t.equal((await confirm(w, await linkTo(w, 'third@new.test'))).status, 200);
  const stale = await request({ url: '/v1/password/reset', body: { token: staleReset, password: 'another long passphrase 99' } });
  t.equal(stale.status, 410);
  t.equal(stale.body.code, 'link_used', 'the reset link sent to the old address no longer works');

  // A block voids a pending change; its holder is told the account is blocked.
  const kim = await signedInMember(w, 'kim@alpha.test');
  await ask(w, kim.token, { email: 'kim@new.test', password: kim.password });
  const kimLink = await linkTo(w, 'kim@new.test');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${kim.user.id}/block`, token: w.adminA.token })).status, 200);
  const blocked = await confirm(w, kimLink);
  t.equal(blocked.status, 410);
  t.match(blocked.body, { code: 'link_used', linkState: 'replaced' });
  t.notMatch(blocked.raw, /administrators|contact|Alice/, 'the unverified new address learns nothing about the organisation');
});

t.test('at most three requests an hour per account: the fourth answers 429 with Retry-After and mails nothing', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  for (const n of [1, 2, 3]) t.equal((await ask(w, jon.token, { email: `try${n}@new.test`, password: jon.password })).status, 202);
  w.clock.advance(600);
  const fourth = await ask(w, jon.token, { email: 'victim@elsewhere.test', password: jon.password });
  t.equal(fourth.status, 429);
  t.equal(fourth.body.code, 'rate_limited');
  t.equal(fourth.headers['retry-after'], String(3600 - 600), 'until the first of the hour ages out');
  t.same(await mailsTo(w.app, 'victim@elsewhere.test'), []);
  w.clock.advance(3000);
  const fresh = await w.tokenFor(jon.user); // the first access token has expired by now
  t.equal((await ask(w, fresh, { email: 'victim@elsewhere.test', password: jon.password })).status, 202, 'an hour after the first');
});

t.test('"forgot password" for the old address racing the confirmation sends no link to the mailbox the account left', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);
  await ask(w, jon.token, { email: 'jon@new.test', password: jon.password });
  const token = await linkTo(w, 'jon@new.test');

  // The "forgot password" request has looked the account up and waits for its address lock.
  const holder = await openClient(t, w.databaseUrl);
  await holder.query('BEGIN');
  await holder.query("SELECT pg_advisory_xact_lock(x'50575246'::int, hashtext(lower('jon@alpha.test')))");
  const forgot = request({ url: '/v1/password/forgot', body: { email: 'jon@alpha.test' } });
  await waitForLockWaiters(holder);
  t.equal((await confirm(w, token)).status, 200);
  await holder.query('COMMIT');
  t.equal((await forgot).status, 202);
  t.same((await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'password_reset'), [], 'no reset link to the old address');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: jon.user.id, purpose: 'PASSWORD_RESET' } }), 0);
  t.match((await auditOf(app, 'password.reset_requested'))[0]?.details, { mailSent: false, reason: 'unknown_email' });
});

t.test('two confirmations at once: exactly one changes the address', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await ask(w, jon.token, { email: 'race@new.test', password: jon.password });
  const token = await linkTo(w, 'race@new.test');
  const answers = await Promise.all([confirm(w, token), confirm(w, token), confirm(w, token)]);
  t.same(answers.map((a) => a.status).sort(), [200, 410, 410]);
  t.equal((await auditOf(w.app, 'user.email_changed', jon.user.id)).length, 1);
  t.equal((await mailsTo(w.app, 'jon@alpha.test')).filter((m) => m.template === 'email_changed').length, 1);
});

t.test('the link works for 24 hours: after that link_expired, nothing changes, and no change is pending any more (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const { app, clock } = w;
  const jon = await signedInMember(w);
  t.equal((await ask(w, jon.token, { email: 'late@new.test', password: jon.password })).status, 202);
  const token = await linkTo(w, 'late@new.test');
  clock.advance(24 * 3600 - 1);
  const before = await w.request({ url: '/v1/me/email', token: await w.tokenFor(jon.user) });
  t.equal(before.body.pending?.email, 'late@new.test', 'pending until the last second');
  clock.advance(1);
  t.same((await w.request({ url: '/v1/me/email', token: await w.tokenFor(jon.user) })).body, { pending: null }, 'an expired change is not pending');
  const late = await confirm(w, token);
  t.same([late.status, late.body.code], [410, 'link_expired']);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');
});

t.test('a link opened a second time answers link_used with linkState used: the address was changed with it (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await ask(w, jon.token, { email: 'twice@new.test', password: jon.password });
  const token = await linkTo(w, 'twice@new.test');
  t.equal((await confirm(w, token)).status, 200);
  const again = await confirm(w, token);
  t.equal(again.status, 410);
  t.match(again.body, { code: 'link_used', linkState: 'used' }, 'not "replaced": the page tells the holder to sign in with the new address');
});

t.test('the request budget is a full hour: a fourth request 59:59 after the first is still refused (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  for (const n of [1, 2, 3]) t.equal((await ask(w, jon.token, { email: `hour${n}@new.test`, password: jon.password })).status, 202);
  w.clock.advance(3599);
  const fourth = await ask(w, await w.tokenFor(jon.user), { email: 'hour4@new.test', password: jon.password });
  t.equal(fourth.status, 429);
  t.equal(fourth.headers['retry-after'], '1');
  t.same(await mailsTo(w.app, 'hour4@new.test'), []);
});

t.test('a confirmed change voids the MFA reset link support sent to the old address (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  const jon = await signedInMember(w);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/mfa-reset-request`, token: support.token })).status, 202);
  const mfaReset = tokenFromLink((await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'mfa_reset_confirm').at(-1)!.textBody, '/confirm-mfa-reset');
  await ask(w, jon.token, { email: 'jon@moved.test', password: jon.password });
  t.equal((await confirm(w, await linkTo(w, 'jon@moved.test'))).status, 200);
  const stale = await request({ url: '/v1/mfa-reset/confirm', body: { token: mfaReset } });
  t.equal(stale.status, 410, 'the link in the mailbox the account left no longer works');
  t.equal(stale.body.code, 'link_used');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: jon.user.id, status: 'ACTIVE' } }), 1, 'the authenticator stays');
});
