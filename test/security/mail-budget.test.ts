import t from 'tap';
import { purgeEnded } from '../../src/modules/retention/retention.js';
import { adminWorld, mailsTo, type AdminWorld } from '../integration/organization/helpers.js';

/**
 * What administrators and support send to an address of their choosing is budgeted per address
 * and template: five an hour (429 rate_limited with Retry-After; the refused request
 * changes nothing). Found by session 19's reviews: 60 "resend activation" calls queued 60 mails to
 * one address, 60 "send a password reset" calls 60 resets, and invite → withdraw (or block and
 * erase) → invite, or block → unblock of an invited user, mailed the same address again and again.
 */

const MIN = 60;

/** Marks every queued mail sent, as the worker would (a withdrawal deletes only unsent ones). */
const deliverAll = (w: AdminWorld) => w.app.ctx.db.mailOutbox.updateMany({ where: { sentAt: null }, data: { sentAt: w.clock.now() } });

t.test('resend activation: at most five activation mails to an address within an hour', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'Victim@Example.org', name: 'Vic Tim' } });
  t.equal(invited.status, 201);
  const resend = () => request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: adminA.token });

  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    clock.advance(MIN);
    statuses.push((await resend()).status);
  }
  t.same(statuses, [200, 200, 200, 200, 429], 'the invitation and four resends make five within the hour');
  const refused = await resend();
  t.equal(refused.status, 429);
  t.equal(refused.body.code, 'rate_limited');
  t.equal((await mailsTo(w.app, 'victim@example.org')).length, 5, 'nothing more queued');
  // The oldest of the five (the invitation) was 5 minutes ago: it leaves the hour in 55 minutes.
  t.equal(refused.headers['retry-after'], String(55 * MIN));
  clock.advance(55 * MIN);
  adminA.token = await w.tokenFor(adminA.user); // the access token expired meanwhile
  const later = await resend();
  t.equal(later.status, 200, 'once the oldest is an hour old');
});

t.test('password reset by an administrator or support: five an hour, whoever of them sent them', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA, support } = w;
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test' });
  const byAdmin = () => request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: adminA.token });
  const bySupport = () => request({ method: 'POST', url: `/v1/support/users/${member.user.id}/password-reset`, token: support.token });

  // The user's own request is budgeted on its own (forgot-password.ts) and does not spend this one.
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'member@alpha.test' } })).status, 202);
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    clock.advance(MIN);
    statuses.push((await (i % 2 ? bySupport : byAdmin)()).status);
  }
  t.same(statuses, [200, 200, 200, 200, 200, 429], 'five within the hour, whoever sent them');
  const resets = (await mailsTo(w.app, 'member@alpha.test')).filter((m) => m.template === 'password_reset');
  t.equal(resets.length, 6, "the user's own and five others'");
});

t.test('invite, withdraw or erase, invite again: the address is counted, not the account, whatever its letter case', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  // One mailbox, spelt differently each time (addresses are kept as typed; found by session 20's mutation review).
  const spellings = ['victim+0@example.org', 'Victim+0@example.org', 'VICTIM+0@EXAMPLE.ORG', 'vIctim+0@Example.Org', 'victim+0@EXAMPLE.org', 'Victim+0@Example.ORG'];
  const statuses: number[] = [];
  for (const email of spellings) {
    const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email, name: 'Vic Tim' } });
    statuses.push(invited.status);
    if (invited.status !== 201) break;
    await deliverAll(w);
    // Withdrawn, or blocked and erased (which deletes the mails to the address): either way gone.
    if (statuses.length % 2 === 0) {
      t.equal((await request({ method: 'DELETE', url: `/v1/organization/users/${invited.body.id}`, token: adminA.token })).status, 204);
    } else {
      t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/block`, token: adminA.token })).status, 200);
      t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/erase`, token: adminA.token })).status, 204);
    }
    clock.advance(MIN);
  }
  t.same(statuses, [201, 201, 201, 201, 201, 429]);
  t.equal(await w.app.ctx.db.user.count({ where: { email: 'victim+0@example.org' } }), 0, 'the refused invitation created nobody');
  // Another address of the organisation's choosing is not held back by this one.
  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'other@example.org', name: 'Other' } })).status, 201);
  // The budget names addresses only by hash, and the sweep forgets them after the hour.
  const rows = await w.app.ctx.db.mailBudget.findMany();
  t.notMatch(JSON.stringify(rows), /example\.org/);
  clock.advance(3601);
  t.equal((await purgeEnded(w.app.ctx)).mail_budget, rows.length);
  t.equal(await w.app.ctx.db.mailBudget.count(), 0);
});

t.test('block and unblock an invited user: each unblock is a new invitation, budgeted like one', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'toggle@example.org', name: 'Tog Gle' } });
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    clock.advance(MIN);
    t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/block`, token: adminA.token })).status, 200, 'blocking is never refused');
    statuses.push((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/unblock`, token: adminA.token })).status);
  }
  t.same(statuses, [200, 200, 200, 200, 429], 'the invitation and four unblocks');
  t.equal((await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: invited.body.id } })).status, 'BLOCKED', 'the refused unblock changed nothing');
  t.equal((await mailsTo(w.app, 'toggle@example.org')).filter((m) => m.template === 'activation').length, 5);
});

t.test('the budget is per template: five password resets to an address leave an invitation to it alone (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const member = await w.member(w.orgA.id, { email: 'leaver@example.org' });
  const reset = () => request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: adminA.token });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    clock.advance(MIN);
    statuses.push((await reset()).status);
  }
  t.same(statuses, [200, 200, 200, 200, 200, 429], 'the password-reset mails are spent');
  // The account goes; the same address is invited again within the hour: its activation mails are a budget of their own.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/erase`, token: adminA.token })).status, 204);
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'leaver@example.org', name: 'Lee Ver' } });
  t.equal(invited.status, 201, 'the invitation is sent');
  t.equal((await mailsTo(w.app, 'leaver@example.org')).filter((m) => m.template === 'activation').length, 1);
});

t.test('block and unblock an active member in a loop: every change happens; five mails of each kind an hour go at once, and the last change is told when the budget has room, never dropped (abuse review, session 23; mail review, session 25)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const member = await w.member(w.orgA.id, { email: 'toggled@alpha.test' });
  const post = async (action: 'block' | 'unblock') =>
    (await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/${action}`, token: adminA.token })).status;
  const mails = async () => (await mailsTo(w.app, 'toggled@alpha.test')).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
  const statuses: number[] = [];
  let firstUnblock: Date | undefined;
  for (let i = 0; i < 8; i++) {
    clock.advance(MIN);
    statuses.push(await post('block'));
    firstUnblock ??= clock.now();
    statuses.push(await post('unblock'));
  }
  t.same(statuses, Array(16).fill(200), 'blocking and unblocking are never refused');
  t.equal((await w.app.ctx.db.auditEvent.count({ where: { type: 'user.blocked', subjectUserId: member.user.id } })), 8, 'each block audited');
  const now = clock.now();
  const queued = await mails();
  const atOnce = queued.filter((m) => m.nextAttemptAt <= now);
  const waiting = queued.filter((m) => m.nextAttemptAt > now);
  t.same(
    [atOnce.filter((m) => m.template === 'account_blocked').length, atOnce.filter((m) => m.template === 'account_unblocked').length],
    [5, 5],
    'five mails of each kind go at once within the hour, not eight',
  );
  t.same(waiting.map((m) => m.template), ['account_unblocked'], 'one mail waits: the last change (unblocked), each earlier waiting one replaced');
  t.equal(waiting[0]?.nextAttemptAt.getTime(), firstUnblock!.getTime() + 60 * MIN * 1000, 'due when the first unblock mail leaves the hour');

  // Blocked again before it went: the waiting "unblocked" would be wrong now, and is replaced by "blocked".
  clock.advance(MIN);
  t.equal(await post('block'), 200);
  const replaced = (await mails()).filter((m) => m.nextAttemptAt > clock.now());
  t.same(replaced.map((m) => m.template), ['account_blocked'], 'what the user is told last is what is true');

  // Never more than five of a kind within any hour, the waiting one counted when it is due.
  clock.advance(60 * MIN);
  adminA.token = await w.tokenFor(adminA.user); // the access token expired meanwhile
  t.equal(await post('unblock'), 200);
  const unblocks = (await mails()).filter((m) => m.template === 'account_unblocked').map((m) => m.nextAttemptAt.getTime());
  for (const at of unblocks) {
    t.ok(unblocks.filter((other) => other > at - 60 * MIN * 1000 && other <= at).length <= 5, 'at most five unblock mails in the hour up to each');
  }
  t.equal(unblocks.length, 6, 'an hour later the next unblock is mailed again');
});

t.test('a "blocked" mail still waiting for the budget is withdrawn when the account is erased, or when an unblock invites the user anew (the invitation tells where they stand) (mail review, session 25)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const post = async (id: string, action: 'block' | 'unblock' | 'erase') =>
    (await request({ method: 'POST', url: `/v1/organization/users/${id}/${action}`, token: adminA.token })).status;
  // The address's block mails are spent on a former holder (the budget counts the address, not the account).
  const former = await w.member(w.orgA.id, { email: 'returning@alpha.test' });
  for (let i = 0; i < 6; i++) {
    clock.advance(MIN);
    t.equal(await post(former.user.id, 'block'), 200);
    if (i < 5) t.equal(await post(former.user.id, 'unblock'), 200);
  }
  const ahead = () => w.app.ctx.db.mailBudget.count({ where: { template: 'account_blocked', createdAt: { gt: clock.now() } } });
  t.equal(await ahead(), 1, 'the sixth block mail waits, its place in the budget dated when it is due');
  // Erased with it: the waiting mail is deleted and counted, and its place in the budget given back.
  t.equal(await post(former.user.id, 'erase'), 204);
  t.equal(await ahead(), 0);
  const erased = await w.app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'user.erased', subjectUserId: former.user.id } });
  t.match(erased.details, { mailsDeleted: 11 }, 'six block and five unblock mails');
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'returning@alpha.test', name: 'Rita Return' } });
  t.equal(invited.status, 201);
  t.equal(await post(invited.body.id, 'block'), 200);
  const waiting = () => w.app.ctx.db.mailOutbox.findMany({ where: { userId: invited.body.id, nextAttemptAt: { gt: clock.now() } } });
  t.same((await waiting()).map((m) => m.template), ['account_blocked'], 'the block mail waits for the budget');
  t.equal(await post(invited.body.id, 'unblock'), 200);
  t.same((await waiting()).map((m) => m.template), [], 'withdrawn: the new invitation went instead');
  t.equal(await ahead(), 0, 'and its place in the budget is given back');
});

t.test('a status mail waiting for the budget is withdrawn with a withdrawn invitation (the address may belong to someone else next) and by a suspension (it blocks without mail) (second read, session 25)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA, support } = w;
  const post = async (id: string, action: 'block' | 'unblock') =>
    (await request({ method: 'POST', url: `/v1/organization/users/${id}/${action}`, token: adminA.token })).status;
  const waitingFor = (address: string) => w.app.ctx.db.mailOutbox.findMany({ where: { toAddress: address, sentAt: null, nextAttemptAt: { gt: clock.now() } } });

  // Five block mails spent on the address; an invitee there is blocked (its mail waits), then withdrawn.
  const former = await w.member(w.orgA.id, { email: 'passed-on@alpha.test' });
  for (let i = 0; i < 5; i++) {
    clock.advance(MIN);
    t.equal(await post(former.user.id, 'block'), 200);
    if (i < 4) t.equal(await post(former.user.id, 'unblock'), 200);
  }
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${former.user.id}/erase`, token: adminA.token })).status, 204);
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'passed-on@alpha.test', name: 'Vic Tim' } });
  t.equal(invited.status, 201);
  t.equal(await post(invited.body.id, 'block'), 200);
  t.same((await waitingFor('passed-on@alpha.test')).map((m) => m.template), ['account_blocked'], 'the block mail waits');
  t.equal((await request({ method: 'DELETE', url: `/v1/organization/users/${invited.body.id}`, token: adminA.token })).status, 204);
  t.same(await waitingFor('passed-on@alpha.test'), [], 'withdrawn with the invitation: the next holder of the address is not told they were blocked');

  // An unblock mail waits; support suspends the organisation, which blocks without mail.
  adminA.token = await w.tokenFor(adminA.user); // the access tokens expired meanwhile
  const member = await w.member(w.orgA.id, { email: 'suspended@alpha.test' });
  for (let i = 0; i < 6; i++) {
    clock.advance(MIN);
    t.equal(await post(member.user.id, 'block'), 200);
    t.equal(await post(member.user.id, 'unblock'), 200);
  }
  t.same((await waitingFor('suspended@alpha.test')).map((m) => m.template), ['account_unblocked'], 'the unblock mail waits');
  const suspended = await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/suspend`, token: await w.tokenFor(support.user), body: { reason: 'credit stop' } });
  t.equal(suspended.status, 200);
  t.same(await waitingFor('suspended@alpha.test'), [], 'no "you can sign in again" for a blocked account');
});

t.test('support MFA-reset requests: five confirmation links an hour to an address (abuse review, session 23)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, support } = w;
  const member = await w.member(w.orgA.id, { email: 'phoneless@alpha.test' });
  const ask = () => request({ method: 'POST', url: `/v1/support/users/${member.user.id}/mfa-reset-request`, token: support.token });
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) {
    clock.advance(MIN);
    statuses.push((await ask()).status);
  }
  t.same(statuses, [202, 202, 202, 202, 202, 429], 'the sixth within the hour is refused');
  const refused = await ask();
  t.same([refused.status, refused.body.code], [429, 'rate_limited']);
  const links = (await mailsTo(w.app, 'phoneless@alpha.test')).filter((m) => m.template === 'mfa_reset_confirm');
  t.equal(links.length, 5);
  const pending = await w.app.ctx.db.flowToken.count({ where: { userId: member.user.id, purpose: 'MFA_RESET', state: 'PENDING' } });
  t.equal(pending, 1, 'the refused request left the newest link alone');
});
