import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { cliOrigin } from '../../src/modules/support/cli-origin.js';
import { withdrawFlowsRequestedBy } from '../../src/modules/flows/flow-tokens.js';
import { blockSupportUser } from '../../src/modules/support/support-staff.service.js';
import { tokenFromLink } from '../helpers/accounts.js';
import { lockWaiterCount, openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { adminWorld, auditOf, mailsTo, type AdminWorld } from '../integration/organization/helpers.js';

/**
 * Blocking a user withdraws the links that user had sent to others and that are still pending:
 * invitations (activation), password-reset mails an administrator triggered, and support's
 * MFA-reset requests. A compromised administrator's invitation of an address they control can no
 * longer be turned into an account once the administrator is blocked, whoever blocks them (another
 * administrator, support, support replacing a sole administrator, the operator for support staff).
 * The holder of such a link gets 410 `link_used` saying the link was withdrawn; a new one can be sent.
 */

const NEW_PASSWORD = 'a fresh and long passphrase 42';

const lastLink = async (w: AdminWorld, address: string, path: string) => {
  const mails = await mailsTo(w.app, address);
  return tokenFromLink(mails.at(-1)!.textBody, path);
};
const inspect = (w: AdminWorld, token: string) => w.request({ method: 'POST', url: '/v1/activation/inspect', body: { token } });
const withdrawn = (res: { status: number; body: { code?: string; detail?: string; linkState?: string } }) => ({
  status: res.status,
  code: res.body.code,
  withdrawn: /withdrawn/.test(res.body.detail ?? '') && res.body.linkState === 'withdrawn',
});
const WITHDRAWN = { status: 410, code: 'link_used', withdrawn: true };
const resetPath = (id: string) => `/v1/support/users/${id}/mfa-reset-request`;
const byUser = (a: { userId: string }, b: { userId: string }) => a.userId.localeCompare(b.userId);
/** The withdrawn links an audit row of a block lists, in a stable order. */
const withdrawnLinks = (audit: { details: unknown } | undefined) =>
  [...((audit?.details as { linksWithdrawn?: { userId: string; purpose: string }[] } | undefined)?.linksWithdrawn ?? [])].sort(byUser);

t.test('blocking an administrator withdraws the invitations and reset links they sent; links of others stay', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA } = w;
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Second Admin' });
  const secondToken = await w.tokenFor(second.user);
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test' });

  // Alice (to be blocked) invites an address and has a reset mail sent to a member.
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'mallory@evil.test', name: 'Mallory', roles: ['USER', 'CUSTOMER_ADMIN'] } });
  t.equal(invited.status, 201);
  // …and re-sends it once: the first link counts as replaced, not withdrawn, after the block.
  const firstInvitation = await lastLink(w, 'mallory@evil.test', '/activate');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: adminA.token })).status, 200);
  // The second administrator invites someone else: not Alice's link.
  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: secondToken, body: { email: 'olivia@alpha.test', name: 'Olivia' } })).status, 201);
  const invitation = await lastLink(w, 'mallory@evil.test', '/activate');
  const resetLink = await lastLink(w, 'member@alpha.test', '/reset-password');
  const othersInvitation = await lastLink(w, 'olivia@alpha.test', '/activate');
  t.equal((await inspect(w, invitation)).status, 200, 'valid before the block');

  const blocked = await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/block`, token: secondToken });
  t.equal(blocked.status, 200);

  t.same(withdrawn(await inspect(w, invitation)), WITHDRAWN);
  t.notOk((await inspect(w, invitation)).body.contact, "the blocked administrator's invitee learns no administrator's address");
  const replaced = await inspect(w, firstInvitation);
  t.equal(replaced.body.linkState, 'replaced');
  t.notOk(replaced.body.contact, '… not through an earlier link the blocked administrator sent either (session 15 reread)');
  // Erasing that administrator empties the links' sender (as for the operator's invitations, which name contacts).
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/erase`, token: secondToken })).status, 204);
  const afterErasure = await inspect(w, firstInvitation);
  t.equal(afterErasure.body.linkState, 'replaced');
  t.notOk(afterErasure.body.contact, '… nor once the administrator who sent it is erased (session 18 reread)');
  t.same(withdrawn(await request({ method: 'POST', url: '/v1/activation', body: { token: invitation, password: NEW_PASSWORD } })), WITHDRAWN);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { email: 'mallory@evil.test' } })).status, 'INVITED', 'the invitation was not accepted');
  t.same(withdrawn(await request({ method: 'POST', url: '/v1/password/reset', body: { token: resetLink, password: NEW_PASSWORD } })), WITHDRAWN);
  t.equal((await inspect(w, othersInvitation)).status, 200, "another administrator's invitation stays valid");

  const [audit] = await auditOf(app, 'user.blocked', adminA.user.id);
  t.match(audit, { actorUserId: second.user.id, details: { by: 'admin' } });
  t.same(withdrawnLinks(audit), [
    { userId: invited.body.id, purpose: 'ACTIVATION' },
    { userId: member.user.id, purpose: 'PASSWORD_RESET' },
  ].sort(byUser), 'the audit row names the holders of the withdrawn links');

  // The remaining administrator decides: a new invitation works.
  const resent = await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: secondToken });
  t.equal(resent.status, 200);
  t.equal((await inspect(w, await lastLink(w, 'mallory@evil.test', '/activate'))).status, 200, 'a link sent after the block works');
  // It stays dead, and now says so as a link a newer one replaced: its holder has that one in the
  // inbox (support walkthrough, session 31: "ask for a new one" sent them to support for nothing).
  const superseded = await inspect(w, invitation);
  t.same([superseded.status, superseded.body.code, superseded.body.linkState], [410, 'link_used', 'replaced'], 'the withdrawn one stays unusable, replaced by the newer one');
  t.same(withdrawn(await request({ method: 'POST', url: '/v1/activation', body: { token: invitation, password: NEW_PASSWORD } })).status, 410);
});

/**
 * The same for a demotion (found by session 10's review): an administrator whose CUSTOMER_ADMIN role
 * is taken away no longer has the right by which they sent invitations and reset mails, so a demoted
 * (possibly compromised) administrator's invitation of an address they control, maybe as another
 * administrator, cannot be accepted any more either. A change that keeps the role withdraws nothing.
 */
t.test('demoting an administrator withdraws the invitations and reset links they sent; other role changes do not', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA } = w;
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Second Admin' });
  const secondToken = await w.tokenFor(second.user);
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test' });

  // The second administrator (to be demoted) invites an address as administrator and has a reset mail sent to a member.
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: secondToken, body: { email: 'mallory@evil.test', name: 'Mallory', roles: ['USER', 'CUSTOMER_ADMIN'] } });
  t.equal(invited.status, 201);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: secondToken })).status, 200);
  // Alice invites someone else: not the demoted administrator's link.
  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'olivia@alpha.test', name: 'Olivia' } })).status, 201);
  const invitation = await lastLink(w, 'mallory@evil.test', '/activate');
  const resetLink = await lastLink(w, 'member@alpha.test', '/reset-password');
  const othersInvitation = await lastLink(w, 'olivia@alpha.test', '/activate');

  // A role change that keeps CUSTOMER_ADMIN is no demotion: nothing is withdrawn.
  const rolesOf = (id: string) => `/v1/organization/users/${id}/roles`;
  t.equal((await request({ method: 'PUT', url: rolesOf(member.user.id), token: adminA.token, body: { roles: ['USER', 'CUSTOMER_ADMIN'] } })).status, 200);
  t.equal((await request({ method: 'PUT', url: rolesOf(member.user.id), token: adminA.token, body: { roles: ['USER'] } })).status, 200);
  t.equal((await inspect(w, invitation)).status, 200, 'a demotion of someone who sent nothing leaves the links alone');

  const demoted = await request({ method: 'PUT', url: rolesOf(second.user.id), token: adminA.token, body: { roles: ['USER'] } });
  t.equal(demoted.status, 200);
  t.same(demoted.body.roles, ['USER']);

  t.same(withdrawn(await inspect(w, invitation)), WITHDRAWN);
  t.same(withdrawn(await request({ method: 'POST', url: '/v1/activation', body: { token: invitation, password: NEW_PASSWORD } })), WITHDRAWN);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { email: 'mallory@evil.test' } })).status, 'INVITED', 'the invitation was not accepted');
  t.same(withdrawn(await request({ method: 'POST', url: '/v1/password/reset', body: { token: resetLink, password: NEW_PASSWORD } })), WITHDRAWN);
  t.equal((await inspect(w, othersInvitation)).status, 200, "another administrator's invitation stays valid");

  const changes = await auditOf(app, 'user.roles_changed', second.user.id);
  t.equal(changes.length, 1);
  t.match(changes[0], { actorUserId: adminA.user.id, details: { from: ['USER', 'CUSTOMER_ADMIN'], to: ['USER'] } });
  t.same(withdrawnLinks(changes[0]), [
    { userId: invited.body.id, purpose: 'ACTIVATION' },
    { userId: member.user.id, purpose: 'PASSWORD_RESET' },
  ].sort(byUser), 'the audit row names the holders of the withdrawn links');
  const memberChanges = await auditOf(app, 'user.roles_changed', member.user.id);
  t.same(memberChanges.map((a) => withdrawnLinks(a)), [[], []], 'nothing withdrawn by the changes of a user who sent nothing');

  // The remaining administrator decides: a new invitation works.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: adminA.token })).status, 200);
  t.equal((await inspect(w, await lastLink(w, 'mallory@evil.test', '/activate'))).status, 200, 'a link sent after the demotion works');
});

t.test('support replacing a sole administrator withdraws the invitations that administrator sent, not its own', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, support } = w;
  const accomplice = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'accomplice@evil.test', name: 'Accomplice', roles: ['USER', 'CUSTOMER_ADMIN'] } });
  t.equal(accomplice.status, 201);
  const invitation = await lastLink(w, 'accomplice@evil.test', '/activate');

  const replaced = await request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgA.id}/administrators`,
    token: support.token,
    body: { email: 'successor@alpha.test', name: 'Sue Successor', replacing: adminA.user.id },
  });
  t.equal(replaced.status, 201);

  t.same(withdrawn(await inspect(w, invitation)), WITHDRAWN);
  t.equal((await inspect(w, await lastLink(w, 'successor@alpha.test', '/activate'))).status, 200, "support's invitation of the successor is valid");
  const [audit] = await auditOf(app, 'user.blocked', adminA.user.id);
  t.match(audit, { details: { via: 'administrator_replaced' } });
  t.same(withdrawnLinks(audit), [{ userId: accomplice.body.id, purpose: 'ACTIVATION' }]);
});

t.test('blocking a user who sent nothing withdraws nothing; a link already expired is voided but not listed', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, clock } = w;
  const member = await w.member(w.orgA.id);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: adminA.token })).status, 200);
  t.same(withdrawnLinks((await auditOf(app, 'user.blocked', member.user.id))[0]), []);

  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  const other = await w.member(w.orgA.id);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${other.user.id}/password-reset`, token: adminA.token })).status, 200);
  clock.advance(31 * 60); // the 30-minute reset link has expired by this instance's clock
  const secondToken = await w.tokenFor(second.user);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/block`, token: secondToken })).status, 200);
  t.same(withdrawnLinks((await auditOf(app, 'user.blocked', adminA.user.id))[0]), [], 'only links that still worked are listed');
  t.equal(await app.ctx.db.flowToken.count({ where: { requestedById: adminA.user.id, state: 'PENDING' } }), 0, 'but none stays pending');
});

for (const earlier of ['another support user', 'the same support user'] as const) {
  t.test(`the operator blocking a support user withdraws the MFA resets that user started; a request racing the block is withdrawn too (earlier request by ${earlier})`, async (t) => {
    const w = await adminWorld(t);
    const { request, app, support } = w;
    const other = await w.member(null, { roles: ['SUPPORT'], name: 'Other Support' });
    const earlierToken = earlier === 'the same support user' ? support.token : await w.tokenFor(other.user);
    const paula = await w.member(w.orgA.id, { email: 'paula@alpha.test' });
    const peter = await w.member(w.orgA.id, { email: 'peter@alpha.test' });

    t.equal((await request({ method: 'POST', url: resetPath(paula.user.id), token: support.token })).status, 202);
    const confirmation = await lastLink(w, 'paula@alpha.test', '/confirm-mfa-reset');
    // A pending request for Peter: the row Sam's next request for Peter must void first. When it is
    // Sam's own, the block wants it too (a lock cycle, were Sam's row taken after it).
    t.equal((await request({ method: 'POST', url: resetPath(peter.user.id), token: earlierToken })).status, 202);

    // Hold that row, so Sam's new request for Peter waits in the middle of its transaction, after it
    // has checked that Sam is active; the operator's block then runs (the CLI's service call, in
    // process: the CLI's start-up would outlast the request's transaction).
    const holder = await openClient(t, w.databaseUrl);
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM flow_tokens WHERE user_id = $1 AND purpose = 'MFA_RESET' AND state = 'PENDING' FOR UPDATE`, [peter.user.id]);
    const racing = request({ method: 'POST', url: resetPath(peter.user.id), token: support.token });
    await waitForLockWaiters(holder, 1);
    let blockDone = false;
    const block = blockSupportUser(app.ctx, support.user.email, { allowLast: false }, cliOrigin({})).finally(() => (blockDone = true));
    while (!blockDone && (await lockWaiterCount(holder)) < 2) await sleep(5);
    t.notOk(blockDone, 'the block waits for the request that holds Sam');
    await holder.query('COMMIT');
    const [raced, blocked] = await Promise.all([racing, block]);
    t.equal(raced.status, 202, 'the request committed first');
    t.equal(await app.ctx.db.flowToken.count({ where: { requestedById: support.user.id, state: 'PENDING' } }), 0, 'and the block withdrew its link');
    t.same(blocked.linksWithdrawn.map((l) => l.email).sort(), ['paula@alpha.test', 'peter@alpha.test'], 'the operator learns whose links went');

    const confirmed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: confirmation } });
    t.same(withdrawn(confirmed), WITHDRAWN);
    t.equal(await app.ctx.db.totpFactor.count({ where: { userId: paula.user.id, status: 'ACTIVE' } }), 1, "Paula's authenticator stays");
    const [audit] = await auditOf(app, 'user.blocked', support.user.id);
    t.match(audit, { actorUserId: null, details: { by: 'cli' } });
    t.same(withdrawnLinks(audit), [
      { userId: paula.user.id, purpose: 'MFA_RESET' },
      { userId: peter.user.id, purpose: 'MFA_RESET' },
    ].sort(byUser));
  });
}

t.test('a link requested by someone whose block commits while the request waits for them is refused', async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  const peter = await w.member(w.orgA.id, { email: 'peter@alpha.test' });
  // The block in progress: Sam's row changed and locked, not yet committed.
  const holder = await openClient(t, w.databaseUrl);
  await holder.query('BEGIN');
  await holder.query(`UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1`, [support.user.id]);
  const racing = request({ method: 'POST', url: resetPath(peter.user.id), token: support.token });
  await waitForLockWaiters(holder, 1);
  await holder.query('COMMIT');
  const refused = await racing;
  t.equal(refused.status, 401);
  t.equal(refused.body.code, 'unauthenticated');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: peter.user.id, purpose: 'MFA_RESET' } }), 0, 'no link was issued');
  t.same(await mailsTo(app, 'peter@alpha.test'), [], 'nor mailed');
});

t.test('a link withdrawn while its holder\'s new password is being hashed: link_used, saying withdrawn', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'newbie@alpha.test', name: 'Newbie' } });
  t.equal(invited.status, 201);
  const token = await lastLink(w, 'newbie@alpha.test', '/activate');
  const watcher = await openClient(t, w.databaseUrl);
  // The block's withdrawal, uncommitted while the activation checks the link, hashes and tries to consume it.
  let activating: Promise<{ status: number; body: { code?: string; detail?: string } }> | undefined;
  await app.ctx.db.$transaction(async (tx) => {
    t.equal((await withdrawFlowsRequestedBy(tx, app.ctx.clock, adminA.user.id)).length, 1);
    activating = request({ method: 'POST', url: '/v1/activation', body: { token, password: NEW_PASSWORD } });
    await waitForLockWaiters(watcher, 1);
  });
  t.same(withdrawn(await activating!), WITHDRAWN);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: invited.body.id } })).status, 'INVITED');
});

t.test("an earlier, replaced invitation of a demoted administrator names no administrator to its holder (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA } = w;
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Second Admin' });
  const secondToken = await w.tokenFor(second.user);
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: secondToken, body: { email: 'mallory@evil.test', name: 'Mallory' } });
  t.equal(invited.status, 201);
  const firstInvitation = await lastLink(w, 'mallory@evil.test', '/activate');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: secondToken })).status, 200);
  const before = await inspect(w, firstInvitation);
  t.equal(before.body.linkState, 'replaced');
  t.ok(before.body.contact, 'while its sender is an administrator, the replaced link names whom to ask');

  t.equal((await request({ method: 'PUT', url: `/v1/organization/users/${second.user.id}/roles`, token: adminA.token, body: { roles: ['USER'] } })).status, 200);
  const after = await inspect(w, firstInvitation);
  t.equal(after.body.linkState, 'replaced', 'replaced, not withdrawn: it was void before the demotion');
  t.notOk(after.body.contact, "the demoted administrator's invitee learns no administrator's address");
  t.notMatch(after.body.detail, adminA.user.email);
});
