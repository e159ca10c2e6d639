import t from 'tap';
import { adminWorld } from './helpers.js';

t.test("a block by support is support's to lift; an administrator's block either may lift", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const jon = await w.member(w.orgA.id, { name: 'Jon Member' });
  const ann = await w.member(w.orgA.id, { name: 'Ann Member' });
  const view = async (id: string) => (await request({ url: `/v1/organization/users/${id}`, token: adminA.token })).body;
  t.equal((await view(jon.user.id)).blockedBySupport, false);

  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/block`, token: support.token })).status, 200);
  t.match(await view(jon.user.id), { status: 'BLOCKED', blockedBySupport: true }, 'the administrator sees who blocked');
  const refused = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unblock`, token: adminA.token });
  t.same([refused.status, refused.body.code], [409, 'blocked_by_support']);
  t.equal((await view(jon.user.id)).status, 'BLOCKED', 'still blocked');
  const lifted = await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/unblock`, token: support.token });
  t.match(lifted.body, { status: 'ACTIVE', blockedBySupport: false }, 'support lifts it');

  // Blocked again by the administrator: the administrator (or support) lifts it.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await view(jon.user.id)).blockedBySupport, false);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unblock`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${ann.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${ann.user.id}/unblock`, token: support.token })).status, 200, 'support may lift an administrator\'s block');
});

t.test('an invitation support blocked is not withdrawn and sent afresh by the administrator', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'fraud@evil.test', name: 'Fred Fraud' } });
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${invited.body.id}/block`, token: support.token })).status, 200);
  const withdrawn = await request({ method: 'DELETE', url: `/v1/organization/users/${invited.body.id}`, token: adminA.token });
  t.same([withdrawn.status, withdrawn.body.code], [409, 'blocked_by_support']);
  const again = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'fraud@evil.test', name: 'Fred Fraud' } });
  t.same([again.status, again.body.code], [409, 'email_taken'], 'the address stays taken');
  t.equal((await request({ method: 'DELETE', url: `/v1/support/users/${invited.body.id}`, token: support.token })).status, 204, 'support may withdraw it');
});
