import t from 'tap';
import { adminWorld } from '../integration/organization/helpers.js';

/**
 * Failed authorisation is logged with who tried (ASVS 5.0 16.3.2, 16.2.1; found by the ASVS review,
 * session 29): a signed-in caller answered 403, or 404 for what lies outside their reach (another
 * organisation's user), leaves a warn line naming user, session, organisation and the problem code.
 * The audit log is for what happened, not for what was refused: these go to the log only.
 */

type Line = { level: number; msg: string; code?: string; userId?: string; sessionId?: string; organizationId?: string | null; reqId?: string };

t.test('a refused request of a signed-in caller is logged with who it was', async (t) => {
  const w = await adminWorld(t);
  const member = await w.member(w.orgA.id, { name: 'Max Member' });
  const memberToken = await w.tokenFor(member.user);
  const other = await w.member(w.orgB.id, { name: 'Olga Other' });
  const refusals = (since: number) => w.logs.slice(since).map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'access refused');

  const cases = [
    { label: 'a user on an administrator route (403)', url: '/v1/organization/users', token: memberToken, user: member.user.id, org: w.orgA.id, status: 403, code: 'forbidden' },
    { label: "another organisation's user (404)", url: `/v1/organization/users/${other.user.id}`, token: w.adminA.token, user: w.adminA.user.id, org: w.orgA.id, status: 404, code: 'user_not_found' },
    { label: 'an administrator on a support route (403)', url: `/v1/support/users/${other.user.id}/block`, method: 'POST' as const, body: {}, token: w.adminA.token, user: w.adminA.user.id, org: w.orgA.id, status: 403, code: 'forbidden' },
  ];
  for (const c of cases) {
    const before = w.logs.length;
    const answer = await w.request({ method: c.method ?? 'GET', url: c.url, token: c.token, ...(c.body ? { body: c.body } : {}) });
    t.same([answer.status, answer.body.code], [c.status, c.code], c.label);
    const [line, ...more] = refusals(before);
    t.equal(more.length, 0, `${c.label}: one line`);
    t.match(line, { level: 40, code: c.code, userId: c.user, organizationId: c.org, reqId: answer.headers['x-request-id'] }, `${c.label}: logged with who`);
    t.match(line?.sessionId, /^[0-9a-f-]{36}$/, `${c.label}: and the session`);
  }
  const before = w.logs.length;
  const own = await w.request({ method: 'GET', url: '/v1/me', token: memberToken });
  t.equal(own.status, 200);
  const missing = await w.request({ method: 'GET', url: '/v1/organization/users', token: 'not a token' });
  t.equal(missing.status, 401);
  t.same(refusals(before), [], 'nothing for an allowed request or one without a signed-in caller');
});
