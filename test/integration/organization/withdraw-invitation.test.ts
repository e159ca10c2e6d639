import { setTimeout } from 'node:timers/promises';
import t from 'tap';
import { deliverMail, tokenFromLink } from '../../helpers/accounts.js';
import { adminWorld, auditOf, mailsTo, type AdminWorld } from './helpers.js';

const PASSWORD = 'quiet meadow lantern 4821';

async function invite(w: AdminWorld, token: string, email: string, name = 'Invited Person') {
  const res = await w.request({ method: 'POST', url: '/v1/organization/users', token, body: { email, name } });
  if (res.status !== 201) throw new Error(`invite: ${res.status} ${res.raw}`);
  const [mail] = await mailsTo(w.app, email);
  return { id: res.body.id as string, token: tokenFromLink(mail!.textBody, '/activate') };
}

const withdraw = (w: AdminWorld, token: string, id: string) => w.request({ method: 'DELETE', url: `/v1/organization/users/${id}`, token });

t.test('an administrator withdraws an invitation: account, link and unsent mail go; the address is free again', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const typo = await invite(w, adminA.token, 'jon.doe@exmaple.test', 'Jon Doe');

  const res = await withdraw(w, adminA.token, typo.id);
  t.equal(res.status, 204);
  t.equal(res.raw, '');
  const repeated = await withdraw(w, adminA.token, typo.id);
  t.equal(repeated.status, 404, 'repeated: as for any id that does not exist');
  t.equal(repeated.body.code, 'user_not_found');
  t.equal(await app.ctx.db.user.count({ where: { id: typo.id } }), 0, 'the account is deleted');
  t.equal((await request({ url: `/v1/organization/users/${typo.id}`, token: adminA.token })).body.code, 'user_not_found');
  t.same(await mailsTo(app, 'jon.doe@exmaple.test'), [], 'the activation mail still in the outbox is not sent');

  const inspect = await request({ url: '/v1/activation/inspect', body: { token: typo.token } });
  t.equal(inspect.status, 400);
  t.equal(inspect.body.code, 'link_invalid', 'the link no longer works');
  const activate = await request({ url: '/v1/activation', body: { token: typo.token, password: PASSWORD } });
  t.equal(activate.body.code, 'link_invalid');

  const [audit] = await auditOf(app, 'user.invitation_withdrawn', typo.id);
  t.match(audit, { actorUserId: adminA.user.id, organizationId: w.orgA.id });
  t.match(audit?.details, { by: 'admin', email: 'jon.doe@exmaple.test', name: 'Jon Doe', roles: ['USER'], status: 'INVITED', mailsCancelled: 1 });
  const events = await request({ url: '/v1/organization/audit-events?type=user.invitation_withdrawn', token: adminA.token });
  t.equal(events.status, 200);
  t.match(events.body.items, [{ subject: { id: typo.id }, details: { email: 'jon.doe@exmaple.test' } }], 'administrators see whom it was for');

  const again = await request({ method: 'POST', url: '/v1/organization/users', token: w.adminB.token, body: { email: 'Jon.Doe@Exmaple.test', name: 'Jon' } });
  t.equal(again.status, 201, 'the address can be invited again, by any organisation');
});

t.test('a mail already sent, or being sent right now, is left alone', async (t) => {
  const w = await adminWorld(t);
  const { adminA, app, clock } = w;
  const sent = await invite(w, adminA.token, 'sent@alpha.test');
  await deliverMail(app);
  t.equal((await withdraw(w, adminA.token, sent.id)).status, 204);
  const [row] = await app.ctx.db.mailOutbox.findMany({ where: { toAddress: 'sent@alpha.test' } });
  t.ok(row?.sentAt, 'the record of the sent mail stays');
  t.match((await auditOf(app, 'user.invitation_withdrawn', sent.id))[0]?.details, { mailsCancelled: 0 });

  const inFlight = await invite(w, adminA.token, 'in-flight@alpha.test');
  // A worker's live claim on the row (mail.worker.ts): it is handing the mail to SMTP.
  await app.ctx.db.mailOutbox.updateMany({ where: { toAddress: 'in-flight@alpha.test' }, data: { lockedUntil: new Date(clock.now().getTime() + 60_000) } });
  const retrying = await invite(w, adminA.token, 'retrying@alpha.test');
  // Released after a failed attempt (lease cleared, next try later): nobody holds it.
  await app.ctx.db.mailOutbox.updateMany({ where: { toAddress: 'retrying@alpha.test' }, data: { attempts: 1, lockedUntil: null, nextAttemptAt: new Date(clock.now().getTime() + 30_000) } });
  t.equal((await withdraw(w, adminA.token, inFlight.id)).status, 204);
  t.equal((await withdraw(w, adminA.token, retrying.id)).status, 204);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: 'in-flight@alpha.test' } }), 1, 'the claimed mail is the worker\'s');
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: 'retrying@alpha.test' } }), 0, 'a mail waiting for its retry is not sent');
});

t.test('only accounts that were never activated; own organisation only; the policy\'s refusals', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const active = await w.member(w.orgA.id, { name: 'Active' });
  const blockedActivated = await w.member(w.orgA.id, { name: 'Blocked After Use', status: 'BLOCKED' });
  const otherOrg = await w.member(w.orgB.id, { name: 'Other Org Invitee', status: 'INVITED' });
  const invitedStaff = await w.member(null, { roles: ['SUPPORT'], status: 'INVITED', name: 'New Support' });
  const plain = await w.member(w.orgA.id, { name: 'Plain User' });

  for (const [who, id, status, code] of [
    ['an active account', active.user.id, 409, 'already_activated'],
    ['a blocked account that was activated', blockedActivated.user.id, 409, 'already_activated'],
    ['oneself', adminA.user.id, 409, 'self_action_not_allowed'],
    ['another organisation\'s invitee', otherOrg.user.id, 404, 'user_not_found'],
    ['an id that does not exist', '0190f5e4-0000-7000-8000-000000000000', 404, 'user_not_found'],
  ] as const) {
    const res = await withdraw(w, adminA.token, id);
    t.equal(res.status, status, who);
    t.equal(res.body.code, code, who);
  }
  t.equal(await app.ctx.db.user.count({ where: { id: { in: [active.user.id, blockedActivated.user.id, otherOrg.user.id, adminA.user.id] } } }), 4, 'nothing was deleted');
  t.same(await auditOf(app, 'user.invitation_withdrawn'), [], 'nor audited');

  const asUser = await withdraw(w, await w.tokenFor(plain.user), otherOrg.user.id);
  t.equal(asUser.status, 403);
  t.equal(asUser.body.code, 'forbidden');
  const bad = await withdraw(w, adminA.token, 'not-a-uuid');
  t.equal(bad.status, 400);
  t.equal(bad.body.code, 'validation_failed');

  const staff = await request({ method: 'DELETE', url: `/v1/support/users/${invitedStaff.user.id}`, token: w.support.token });
  t.equal(staff.status, 403);
  t.equal(staff.body.code, 'support_staff_protected', 'support accounts are the operator\'s (CLI)');

  // Blocked before it was ever used: still an invitation nobody took up (`passwordSet` tells them apart).
  const blockedInvitee = await invite(w, adminA.token, 'blocked-invitee@alpha.test');
  const blockedView = await request({ method: 'POST', url: `/v1/organization/users/${blockedInvitee.id}/block`, token: adminA.token });
  t.equal(blockedView.status, 200);
  t.match(blockedView.body, { status: 'BLOCKED', passwordSet: false });
  t.match((await request({ url: `/v1/organization/users/${blockedActivated.user.id}`, token: adminA.token })).body, { status: 'BLOCKED', passwordSet: true });
  t.equal((await withdraw(w, adminA.token, blockedInvitee.id)).status, 204);
  t.match((await auditOf(app, 'user.invitation_withdrawn', blockedInvitee.id))[0]?.details, { status: 'BLOCKED' });
});

t.test('support withdraws an invitation in any organisation; administrators cannot use the support route', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const invitee = await invite(w, w.adminB.token, 'typo@beta.test');
  const asAdmin = await request({ method: 'DELETE', url: `/v1/support/users/${invitee.id}`, token: w.adminA.token });
  t.equal(asAdmin.status, 403);
  t.equal(asAdmin.body.code, 'forbidden');

  const res = await request({ method: 'DELETE', url: `/v1/support/users/${invitee.id}`, token: w.support.token });
  t.equal(res.status, 204);
  t.equal(await app.ctx.db.user.count({ where: { id: invitee.id } }), 0);
  t.match((await auditOf(app, 'user.invitation_withdrawn', invitee.id))[0], { actorUserId: w.support.user.id, organizationId: w.orgB.id, details: { by: 'support' } });
  const active = await request({ method: 'DELETE', url: `/v1/support/users/${w.adminB.user.id}`, token: w.support.token });
  t.equal(active.status, 409);
  t.equal(active.body.code, 'already_activated');
});

t.test('withdrawal and activation at the same moment: exactly one of them happens', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  // The withdrawal starts later and later: before the activation's hash, during it, during its
  // transaction, after it. Whichever order the database sees, the outcome is consistent.
  for (const [i, delayMs] of [0, 2, 5, 10, 20, 40].entries()) {
    const invitee = await invite(w, adminA.token, `race${i}@alpha.test`);
    const [activation, withdrawal] = await Promise.all([
      request({ url: '/v1/activation', body: { token: invitee.token, password: PASSWORD } }),
      setTimeout(delayMs).then(() => withdraw(w, adminA.token, invitee.id)),
    ]);
    const user = await app.ctx.db.user.findUnique({ where: { id: invitee.id }, select: { status: true } });
    if (withdrawal.status === 204) {
      t.equal(user, null, 'withdrawn: the account is gone');
      t.equal(activation.status, 400, 'and the activation was refused');
      t.equal(activation.body.code, 'link_invalid');
    } else {
      t.equal(withdrawal.status, 409);
      t.equal(withdrawal.body.code, 'already_activated');
      t.equal(activation.status, 200, 'activated: the account stays');
      t.equal(user?.status, 'ACTIVE');
    }
  }
});

t.test('the last administrator is not withdrawn, invited or not: support appoints the successor first', async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  // Support replaces organisation B's only administrator by an invitee (at a mistyped address).
  const replaced = await request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgB.id}/administrators`,
    token: support.token,
    body: { email: 'successor@bta.test', name: 'Successor', replacing: w.adminB.user.id },
  });
  t.equal(replaced.status, 201);
  const successorId = replaced.body.id as string;

  const refused = await request({ method: 'DELETE', url: `/v1/support/users/${successorId}`, token: support.token });
  t.equal(refused.status, 409);
  t.equal(refused.body.code, 'last_administrator');
  t.equal(await app.ctx.db.user.count({ where: { id: successorId } }), 1, 'the invitee stays');

  // With another administrator appointed (the address typed right this time), the mistyped one goes.
  const appointed = await request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgB.id}/administrators`,
    token: support.token,
    body: { email: 'successor@beta.test', name: 'Successor' },
  });
  t.equal(appointed.status, 201);
  t.equal((await request({ method: 'DELETE', url: `/v1/support/users/${successorId}`, token: support.token })).status, 204);
});

t.test("a withdrawal cancels the invitation's mail only, not another account's mail to the same address (mutation review, session 21)", async (t) => {
  const w = await adminWorld(t);
  const invitee = await invite(w, w.adminB.token, 'wanted@beta.test');
  // A user of organisation A asks to move to that address: the confirmation mail waits in the outbox.
  const jon = await w.member(w.orgA.id, { email: 'jon@alpha.test' });
  const asked = await w.request({ url: '/v1/me/email', token: await w.tokenFor(jon.user), body: { email: 'wanted@beta.test', password: jon.password } });
  t.equal(asked.status, 202);
  t.equal((await withdraw(w, w.adminB.token, invitee.id)).status, 204);
  t.same((await mailsTo(w.app, 'wanted@beta.test')).map((m) => m.template), ['email_change_confirm'], "the invitation's mail went, Jon's stays");
});
