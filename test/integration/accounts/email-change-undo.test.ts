import t from 'tap';
import { createSupportUser } from '../../../src/modules/support/bootstrap.service.js';
import { cliOrigin } from '../../../src/modules/support/cli-origin.js';
import { tokenFromLink } from '../../helpers/accounts.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';
import { lastLink, moveTo, signedInMember, undo, undoLink } from './email-change-helpers.js';

/**
 * Someone with a user's session and password moves the account to an address they read, then
 * resets the password there. The notice to the old address carries a link that undoes the move:
 * the address comes back, every session ends, the links sent to the other address stop working,
 * and a link to choose a new password comes with the confirmation.
 */

const ATTACKER_PASSWORD = 'attacker chose this passphrase 41';





t.test('a taken-over account: the old address undoes the move; the address is back, every session ends, the links sent elsewhere die, and a reset link comes', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);

  // The attacker moves the account and sets a password of their own through the new address.
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  await request({ url: '/v1/password/forgot', body: { email: 'evil@attacker.test' } });
  const attackerReset = await lastLink(w, 'evil@attacker.test', 'password_reset', '/reset-password');
  t.equal((await request({ url: '/v1/password/reset', body: { token: attackerReset, password: ATTACKER_PASSWORD } })).status, 204);
  const attackerToken = await w.tokenFor(jon.user);
  const attackerSecond = await w.tokenFor(jon.user);
  // A second reset link waits in the attacker's mailbox, and a change to yet another address is pending.
  await request({ url: '/v1/password/forgot', body: { email: 'evil@attacker.test' } });
  const pendingReset = await lastLink(w, 'evil@attacker.test', 'password_reset', '/reset-password');

  const notice = (await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'email_changed');
  t.equal(notice.length, 1);
  t.match(notice[0]?.textBody, /https:\/\/shop\.example\.test\/undo-email-change\?token=[^&\s]+&lang=en/, 'the notice carries the undo link');
  t.match(notice[0]?.textBody, /expires on/, 'and says until when it works');

  const done = await undo(w, await undoLink(w, 'jon@alpha.test'));
  t.equal(done.status, 200);
  t.same(done.body, { status: 'email_restored', email: 'jon@alpha.test', blocked: null });
  t.equal(done.headers['cache-control'], 'no-store');

  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test', 'the address is back');
  for (const [label, token] of [['one session', attackerToken], ['another', attackerSecond]] as const) {
    t.equal((await request({ url: '/v1/me', token })).status, 401, `${label}: signed out`);
  }
  const intruder = await request({ url: '/v1/auth/login', body: { email: 'jon@alpha.test', password: ATTACKER_PASSWORD } });
  t.same([intruder.status, intruder.body.code], [401, 'invalid_credentials'], 'the password of before signs in no more: only the reset link sets one');
  const stale = await request({ url: '/v1/password/reset', body: { token: pendingReset, password: 'another long passphrase 99' } });
  t.same([stale.status, stale.body.code], [410, 'link_used'], 'the reset link in the other mailbox no longer works');
  t.same(
    [(await request({ url: '/v1/auth/login', body: { email: 'evil@attacker.test', password: ATTACKER_PASSWORD } })).status],
    [401],
    'the other address signs in no more',
  );

  // The confirmation goes to the restored address with a link to choose a new password.
  const confirmation = (await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'email_change_undone');
  t.equal(confirmation.length, 1);
  t.match(confirmation[0]?.textBody, /evil@attacker\.test/, 'names the address the account was moved to');
  const fresh = tokenFromLink(confirmation[0]!.textBody, '/reset-password');
  t.equal((await request({ url: '/v1/password/reset', body: { token: fresh, password: 'silver harbour compass 7731' } })).status, 204);
  const login = await request({ url: '/v1/auth/login', body: { email: 'jon@alpha.test', password: 'silver harbour compass 7731' } });
  t.same([login.status, login.body.next], [200, 'mfa'], 'the owner signs in again, with their authenticator');
  t.same((await mailsTo(app, 'evil@attacker.test')).filter((m) => m.template === 'email_change_undone'), [], 'the reset link goes to the restored address only');
  const left = (await mailsTo(app, 'evil@attacker.test')).filter((m) => m.template === 'email_change_reverted');
  t.equal(left.length, 1, 'the address the undo left is told (should a mailbox the account had left undo a move the owner made)');
  t.match(left[0]?.textBody, 'jon@alpha.test');
  t.notMatch(left[0]?.textBody, /token=/, 'with no link');

  const rows = await auditOf(app, 'user.email_changed', jon.user.id);
  t.equal(rows.length, 2, 'the move and its undoing');
  t.match(rows.find((r) => (r.details as { undone?: boolean }).undone), { actorUserId: null, details: { from: 'evil@attacker.test', to: 'jon@alpha.test', undone: true, sessionsRevoked: 2 } });
  const events = await request({ url: '/v1/me/security-events', token: await w.tokenFor(jon.user) });
  t.match(events.body.items.find((e: { type: string }) => e.type === 'user.email_changed'), { details: { from: 'evil@attacker.test', to: 'jon@alpha.test', undone: true } });

  const again = await undo(w, await undoLink(w, 'jon@alpha.test'));
  t.same([again.status, again.body.code], [410, 'link_used'], 'single use');
});

t.test('the takeover runbook: support blocks at once; the owner\'s undo works on the blocked account, which stays blocked until support lifts it; the intruder does not get back in (operations review, session 28)', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await signedInMember(w);
  // The intruder moves the account and sets a password of their own through the new address.
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  await request({ url: '/v1/password/forgot', body: { email: 'evil@attacker.test' } });
  const reset = await lastLink(w, 'evil@attacker.test', 'password_reset', '/reset-password');
  t.equal((await request({ url: '/v1/password/reset', body: { token: reset, password: ATTACKER_PASSWORD } })).status, 204);

  // The owner calls support, who blocks at once (README).
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/block`, token: w.support.token })).status, 200);
  const done = await undo(w, await undoLink(w, 'jon@alpha.test'));
  t.equal(done.status, 200, 'the undo works on the blocked account');
  t.match(done.body, { status: 'email_restored', email: 'jon@alpha.test', blocked: { contact: { administrators: [] } } }, 'and says whom to ask (support, who blocked it)');
  t.ok(done.body.blocked.contact.support);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } });
  t.same([row.email, row.status], ['jon@alpha.test', 'BLOCKED'], 'the address is back; the block stays');
  const undone = (await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'email_change_undone').at(-1);
  t.match(undone?.textBody, /still blocked, so the link works only once the block is lifted: ask the e-business team \(ebusiness@webshop\.localhost\) to lift it\./, 'the mail says the reset link waits for the unblock, and whom to ask (support, who blocked it)');
  const blockedReset = await request({ url: '/v1/password/reset', body: { token: tokenFromLink(undone!.textBody, '/reset-password'), password: 'owner picks this phrase 5521' } });
  t.same([blockedReset.status, blockedReset.body.code], [403, 'account_blocked'], 'as it does');

  // Support lifts the block now that the intruder's address, password and sessions are gone.
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/unblock`, token: w.support.token })).status, 200);
  t.same((await mailsTo(app, 'evil@attacker.test')).filter((m) => m.template === 'account_unblocked'), [], 'the intruder is not told of the unblock');
  t.equal((await mailsTo(app, 'jon@alpha.test')).filter((m) => m.template === 'account_unblocked').length, 1, 'the owner is');
  const intruder = await request({ url: '/v1/auth/login', body: { email: 'evil@attacker.test', password: ATTACKER_PASSWORD } });
  t.equal(intruder.status, 401, 'the intruder does not sign in again');
  const viaOwnerAddress = await request({ url: '/v1/auth/login', body: { email: 'jon@alpha.test', password: ATTACKER_PASSWORD } });
  t.same([viaOwnerAddress.status, viaOwnerAddress.body.code], [401, 'invalid_credentials'], 'nor with their password at the restored address');

  // An administrator's block: the answer names the administrators.
  const kim = await signedInMember(w, 'kim@alpha.test');
  await moveTo(w, kim.token, kim.password!, 'kim@elsewhere.test');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${kim.user.id}/block`, token: w.adminA.token })).status, 200);
  const kims = await undo(w, await undoLink(w, 'kim@alpha.test'));
  t.equal(kims.status, 200);
  t.match(kims.body.blocked.contact.administrators, [{ email: w.adminA.user.email }]);
  const kimsMail = (await mailsTo(app, 'kim@alpha.test')).filter((m) => m.template === 'email_change_undone').at(-1);
  t.match(kimsMail?.textBody, /still blocked, so the link works only once the block is lifted: ask your organisation's administrator or the e-business team \(ebusiness@webshop\.localhost\) to lift it\./, "an administrator's block: the administrator too");
  const notBlocked = await signedInMember(w, 'lea@alpha.test');
  await moveTo(w, notBlocked.token, notBlocked.password!, 'lea@elsewhere.test');
  t.equal((await undo(w, await undoLink(w, 'lea@alpha.test'))).status, 200);
  const leasMail = (await mailsTo(app, 'lea@alpha.test')).filter((m) => m.template === 'email_change_undone').at(-1);
  t.notMatch(leasMail?.textBody, /blocked/, 'an account that is not blocked: not a word of it');
  const unblocked = await undo(w, await undoLink(w, 'jon@alpha.test'));
  t.same([unblocked.status, unblocked.body.code], [410, 'link_used'], 'single use, blocked or not');
});

t.test('undo: the link lasts 7 days, waits while the address is taken (an older release gave it away), and refuses bad input', async (t) => {
  const w = await adminWorld(t);
  const { request, app, clock } = w;
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'jon@new.test');
  const link = await undoLink(w, 'jon@alpha.test');

  // Meanwhile the old address was given to a new account: the API refuses that while the link lasts
  // (the next tests), but an instance of a release before the hold, during a rolling upgrade, did not.
  const other = { body: await app.ctx.db.user.create({ data: { email: 'jon@alpha.test', name: 'New Jon', organizationId: w.orgA.id }, select: { id: true } }) };
  const taken = await undo(w, link);
  t.same([taken.status, taken.body.code], [409, 'email_taken']);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@new.test', 'nothing changed');
  t.equal((await request({ method: 'DELETE', url: `/v1/organization/users/${other.body.id}`, token: w.adminA.token })).status, 204);

  clock.advance(7 * 24 * 3600);
  const late = await undo(w, link);
  t.same([late.status, late.body.code], [410, 'link_expired']);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@new.test');

  t.same([(await undo(w, 'x'.repeat(43))).status, (await undo(w, 'x'.repeat(43))).body.code], [400, 'link_invalid']);
  const extra = await request({ url: '/v1/email-change/undo', body: { token: link, email: 'x@y.test' } });
  t.same([extra.status, extra.body.code], [400, 'validation_failed']);
  const inQuery = await request({ url: `/v1/email-change/undo?token=${link}`, body: { token: link } });
  t.same([inQuery.status, inQuery.body.code], [401, 'token_in_query']);
  // A link of another purpose is no undo link.
  await request({ url: '/v1/password/forgot', body: { email: 'jon@new.test' } });
  const reset = await lastLink(w, 'jon@new.test', 'password_reset', '/reset-password');
  t.same([(await undo(w, reset)).status], [400]);
});

t.test('undo within 7 days: until the last second', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'jon@new.test');
  w.clock.advance(7 * 24 * 3600 - 1);
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);
});

t.test('two moves: the first address undoes both and kills the second undo link; the second used first does not stop the first', async (t) => {
  const w = await adminWorld(t);
  const { app } = w;
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'b@new.test');
  await moveTo(w, jon.token, jon.password!, 'c@new.test');
  const backToA = await undoLink(w, 'jon@alpha.test');
  const backToB = await undoLink(w, 'b@new.test');

  // The holder of b@ undoes the second move first: the account is at b@ again.
  const first = await undo(w, backToB);
  t.same([first.status, first.body.email], [200, 'b@new.test']);
  // The owner of the first address still undoes the first move.
  const owner = await undo(w, backToA);
  t.same([owner.status, owner.body.email], [200, 'jon@alpha.test']);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');

  // Again, in the other order: undoing the first move kills the undo link of the later one.
  const kim = await signedInMember(w, 'kim@alpha.test');
  await moveTo(w, kim.token, kim.password!, 'kb@new.test');
  await moveTo(w, kim.token, kim.password!, 'kc@new.test');
  t.equal((await undo(w, await undoLink(w, 'kim@alpha.test'))).status, 200);
  const later = await undo(w, await undoLink(w, 'kb@new.test'));
  t.same([later.status, later.body.code], [410, 'link_used'], 'the later move\'s undo link died with the earlier undo');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: kim.user.id } })).email, 'kim@alpha.test');
});

t.test('two undos at once: exactly one restores the address', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'race@new.test');
  const link = await undoLink(w, 'jon@alpha.test');
  const answers = await Promise.all([undo(w, link), undo(w, link), undo(w, link)]);
  t.same(answers.map((a) => a.status).sort(), [200, 410, 410]);
  t.equal((await mailsTo(w.app, 'jon@alpha.test')).filter((m) => m.template === 'email_change_undone').length, 1);
});

t.test('after the undo the intruder does not sign straight back in with the password and a recovery code they minted, and cannot kill the owner\'s reset link (review: undo)', async (t) => {
  const w = await adminWorld(t);
  const { request } = w;
  const jon = await signedInMember(w);
  // With the session and the password: fresh recovery codes (the owner's authenticator keeps working), then the move.
  const codes = await request({ url: '/v1/me/mfa/recovery-codes', token: jon.token, body: { password: jon.password } });
  t.equal(codes.status, 200);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);

  // The intruder knows the restored address (it was the account's) and the password.
  const login = await request({ url: '/v1/auth/login', body: { email: 'jon@alpha.test', password: jon.password } });
  const signedIn = login.status === 200 && login.body.next === 'mfa'
    ? await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login.body.challengeToken, recoveryCode: codes.body.recoveryCodes[0] } })
    : login;
  t.not(signedIn.status, 200, 'the password the intruder knew no longer signs in after the undo');
  t.equal(await w.app.ctx.db.recoveryCode.count({ where: { userId: jon.user.id } }), 0, 'the recovery codes the intruder may have made are gone');
  if (signedIn.status === 200) {
    const changed = await request({ method: 'PUT', url: '/v1/me/password', token: signedIn.body.accessToken, body: { currentPassword: jon.password, newPassword: 'attacker new phrase 8871 zz' } });
    t.equal(changed.status, 204, 'the intruder changed the password');
  }
  const fresh = await lastLink(w, 'jon@alpha.test', 'email_change_undone', '/reset-password');
  const reset = await request({ url: '/v1/password/reset', body: { token: fresh, password: 'silver harbour compass 7731' } });
  t.equal(reset.status, 204, 'the reset link mailed with the confirmation still works');
});

t.test('while its undo link lasts, the address left stays the account\'s: nobody is invited with it or moves to it, so an intruder cannot take it to stop the undo', async (t) => {
  const w = await adminWorld(t);
  const { request, clock } = w;
  // An intruder holding an administrator's session and password moves that account away...
  const admin = { ...w.adminA, password: w.adminA.password! };
  await moveTo(w, admin.token, admin.password, 'evil@attacker.test');
  const held = admin.user.email;
  // ...and tries to make the address another account's, so that the undo answers email_taken.
  const intruder = admin.token; // an e-mail move keeps the sessions
  const invited = await request({ url: '/v1/organization/users', token: intruder, body: { email: held, name: 'Decoy' } });
  t.same([invited.status, invited.body.code], [409, 'email_taken'], 'an invitation');
  const inUse = await request({ url: '/v1/organization/users', token: intruder, body: { email: w.adminB.user.email, name: 'Decoy' } });
  t.same(invited.body.detail, inUse.body.detail, 'answered as an address in use: nothing told of a move (attacker review, session 28)');
  const upper = await request({ url: '/v1/organization/users', token: intruder, body: { email: held.toUpperCase(), name: 'Decoy' } });
  t.same([upper.status, upper.body.code], [409, 'email_taken'], 'in any letter case');
  const org = await request({
    url: '/v1/support/organizations',
    token: w.support.token,
    body: { customerNumber: 'DE-HOLD', name: 'Hold GmbH', administrator: { email: held, name: 'Decoy' } },
  });
  t.same([org.status, org.body.code], [409, 'email_taken'], "a new organisation's administrator");
  await t.rejects(createSupportUser(w.app.ctx, { email: held, name: 'Decoy' }, cliOrigin({})), { code: 'email_taken' }, 'a support account');
  const other = await w.member(w.orgB.id, { email: 'bea@beta.test', name: 'Bea' });
  const otherToken = await w.tokenFor(other.user);
  t.equal((await request({ url: '/v1/me/email', token: otherToken, body: { email: held, password: other.password } })).status, 202);
  const moved = await request({ url: '/v1/email-change/confirm', body: { token: await lastLink(w, held, 'email_change_confirm', '/confirm-email') } });
  t.same([moved.status, moved.body.code], [409, 'email_taken'], "another account's move to it");

  const done = await undo(w, await undoLink(w, held));
  t.same([done.status, done.body.email], [200, held], 'the undo brings it back');

  // Once no undo link holds it (used, or expired), it is an ordinary address again.
  const bea = await w.member(w.orgB.id, { email: 'ben@beta.test', name: 'Ben' });
  await moveTo(w, await w.tokenFor(bea.user), bea.password!, 'ben@new.test');
  clock.advance(7 * 24 * 3600 + 1);
  const later = await request({ url: '/v1/organization/users', token: await w.tokenFor(w.adminB.user), body: { email: 'ben@beta.test', name: 'New Ben' } });
  t.equal(later.status, 201, 'after the 7 days');
});

t.test("support finds an account by the address it left while the undo link lasts: the owner calling in knows only that one", async (t) => {
  const w = await adminWorld(t);
  const { request, clock } = w;
  const jon = await signedInMember(w);
  const bystander = await w.member(w.orgB.id, { email: 'jon@beta.test', name: 'Jon Beta' });
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  let supportToken = w.support.token;
  const byEmail = async (email: string) => {
    const found = await request({ method: 'GET', url: `/v1/support/users?email=${encodeURIComponent(email)}`, token: supportToken });
    t.equal(found.status, 200);
    return (found.body.items as { id: string; email: string }[]).map((u) => [u.id, u.email]);
  };
  t.same(await byEmail('jon@alpha.test'), [[jon.user.id, 'evil@attacker.test']], 'found by the address it left, showing where it is now');
  t.same(await byEmail('JON@Alpha.test'), [[jon.user.id, 'evil@attacker.test']], 'in any letter case');
  t.same(await byEmail('evil@attacker.test'), [[jon.user.id, 'evil@attacker.test']], 'and by the address it has now');
  t.same(await byEmail('jon@beta.test'), [[bystander.user.id, 'jon@beta.test']], 'another address finds only its own account');
  const filtered = await request({ method: 'GET', url: `/v1/support/users?email=jon%40alpha.test&organizationId=${w.orgB.id}`, token: w.support.token });
  t.same(filtered.body.items, [], "the other filters still apply (not in organisation B)");

  clock.advance(7 * 24 * 3600 + 1);
  supportToken = await w.tokenFor(w.support.user);
  t.same(await byEmail('jon@alpha.test'), [], 'once the undo link expired, the address is no longer the account\'s');

  const again = await signedInMember(w, 'ann@alpha.test');
  await moveTo(w, again.token, again.password!, 'ann@new.test');
  t.equal((await undo(w, await undoLink(w, 'ann@alpha.test'))).status, 200);
  t.same(await byEmail('ann@alpha.test'), [[again.user.id, 'ann@alpha.test']], 'after the undo: found once, at the address it has again');
  t.same(await byEmail('ann@new.test'), [], 'and not by the address the undo took it from');
});

t.test('the account that left an address may move back to it the ordinary way while its undo link lasts', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'jon@new.test');
  await moveTo(w, jon.token, jon.password!, 'jon@alpha.test');
  t.equal((await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');
});
