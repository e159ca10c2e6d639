import t, { type Test } from 'tap';
import { tokenFromLink } from '../helpers/accounts.js';
import { createOrganization } from '../helpers/factories.js';
import { adminWorld, mailsTo, type AdminWorld } from '../integration/organization/helpers.js';

/**
 * "An organisation never loses its last admin" (security.md item 25; docs/security.md 25.2): an
 * INVITED administrator counts as another administrator only while they can still activate, i.e.
 * while their invitation link is pending and unexpired. Found in session 23's attacker review: an
 * invitee whose link had been withdrawn (its sender demoted) or had expired still counted, so
 * support could block the only administrator who could act, and the organisation was left with
 * none (activeAdministratorCount 0, nobody for its users to contact).
 */

const DAY = 24 * 3600;
const ACTIVATION_LINK_SECONDS = 7 * DAY;

/**
 * An organisation whose only ACTIVE administrator is the member `admin`, appointed by support after
 * support had invited `invitee` as administrator (a link support sent, so no block or demotion in
 * the organisation withdraws it).
 */
async function organizationWithInvitee(t: Test, w: AdminWorld) {
  const organization = await createOrganization(w.app.ctx.db, { name: 'Gamma Reseller' });
  const appoint = async (body: object) =>
    w.request({ method: 'POST', url: `/v1/support/organizations/${organization.id}/administrators`, token: await w.tokenFor(w.support.user), body });
  const invited = await appoint({ email: 'invitee@gamma.test', name: 'Ivy Invitee' });
  t.equal(invited.status, 201, 'support invites the first administrator');
  const link = tokenFromLink((await mailsTo(w.app, 'invitee@gamma.test')).at(-1)!.textBody, '/activate');
  const admin = await w.member(organization.id, { name: 'Max Member' });
  t.equal((await appoint({ userId: admin.user.id })).status, 200, 'no ACTIVE administrator yet: support appoints a member too');
  return { organization, appoint, inviteeId: invited.body.id as string, link, admin };
}

const supportBlocks = async (w: AdminWorld, userId: string) => {
  const res = await w.request({ method: 'POST', url: `/v1/support/users/${userId}/block`, token: await w.tokenFor(w.support.user) });
  return [res.status, res.body.code] as const;
};

t.test('an invited administrator whose invitation was withdrawn does not make the only active administrator blockable', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const deputy = await w.member(w.orgA.id, { name: 'Dora Deputy', roles: ['USER', 'CUSTOMER_ADMIN'] });
  const invited = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: await w.tokenFor(deputy.user),
    body: { email: 'coadmin@alpha.test', name: 'Cora Coadmin', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  t.equal(invited.status, 201);
  const link = tokenFromLink((await mailsTo(w.app, 'coadmin@alpha.test')).at(-1)!.textBody, '/activate');

  // The deputy loses the administrator role: the invitation they sent is withdrawn.
  const demoted = await request({ method: 'PUT', url: `/v1/organization/users/${deputy.user.id}/roles`, token: adminA.token, body: { roles: ['USER'] } });
  t.equal(demoted.status, 200);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: link } })).body.code, 'link_used', 'the invitation no longer works');

  t.same(await supportBlocks(w, adminA.user.id), [409, 'last_administrator'], 'nobody else can administer the organisation');
  const organization = await request({ url: `/v1/support/organizations/${w.orgA.id}`, token: support.token });
  t.equal(organization.body.activeAdministratorCount, 1, 'the organisation keeps an administrator who can act');
});

t.test('an invited administrator counts until the second their invitation expires', async (t) => {
  for (const [secondsLater, expected] of [
    [ACTIVATION_LINK_SECONDS - 1, [200, undefined]],
    [ACTIVATION_LINK_SECONDS, [409, 'last_administrator']],
  ] as const) {
    const w = await adminWorld(t);
    const { link, admin } = await organizationWithInvitee(t, w);
    w.clock.advance(secondsLater);
    const inspected = await w.request({ url: '/v1/activation/inspect', body: { token: link } });
    t.equal(inspected.status === 200, secondsLater < ACTIVATION_LINK_SECONDS, `after ${secondsLater} s the link is ${inspected.body.code ?? 'usable'}`);
    t.same(await supportBlocks(w, admin.user.id), expected, `blocking the only active administrator ${secondsLater} s after the invitation`);
    const stored = await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: admin.user.id } });
    t.equal(stored.status, expected[0] === 200 ? 'BLOCKED' : 'ACTIVE');
  }
});

t.test('an invitation whose sender no longer exists (requested_by_id NULL) still counts while usable', async (t) => {
  const w = await adminWorld(t);
  const { inviteeId, admin } = await organizationWithInvitee(t, w);
  await w.app.ctx.db.flowToken.updateMany({ where: { userId: inviteeId, state: 'PENDING' }, data: { requestedById: null } });
  t.same(await supportBlocks(w, admin.user.id), [200, undefined], 'the invitee can still activate: the organisation keeps an administrator');
});

t.test('withdrawing an invited administrator: one whose invitation expired is no other administrator', async (t) => {
  const w = await adminWorld(t);
  const { appoint, admin } = await organizationWithInvitee(t, w);
  // The member appointed above is blocked while the first invitee can still activate...
  t.same(await supportBlocks(w, admin.user.id), [200, undefined]);
  // ...then that invitation expires, and support invites a second administrator.
  w.clock.advance(ACTIVATION_LINK_SECONDS);
  const second = await appoint({ email: 'second@gamma.test', name: 'Sid Second' });
  t.equal(second.status, 201);
  const withdraw = await w.request({
    method: 'DELETE',
    url: `/v1/support/users/${second.body.id}`,
    token: await w.tokenFor(w.support.user),
  });
  t.same([withdraw.status, withdraw.body.code], [409, 'last_administrator'], 'the expired invitee cannot take over: support appoints a successor first');
  t.ok(await w.app.ctx.db.user.findUnique({ where: { id: second.body.id } }), 'the second invitation stays');
});
