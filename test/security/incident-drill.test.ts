import t from 'tap';
import { GOOD_PASSWORD, tokenFromLink } from '../helpers/accounts.js';
import { currentTotp } from '../helpers/factories.js';
import { adminWorld, mailsTo } from '../integration/organization/helpers.js';

/**
 * Incident drill (session 26: a customer administrator's or a support employee's account taken over).
 */

t.test('a taken-over administrator cannot mail arbitrary addresses at volume: invitations are limited per administrator well below 100 a minute', async (t) => {
  // The per-IP ceiling (1000 a minute) is the only limit today: 100 invitations to 100 addresses
  // all answer 201, each an activation mail from the shop's domain and an address taken globally.
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true' });
  const statuses: number[] = [];
  for (let i = 0; i < 100; i++) {
    const r = await w.request({
      method: 'POST',
      url: '/v1/organization/users',
      token: w.adminA.token,
      body: { email: `stranger${i}@spam-target.example`, name: `Stranger ${i}` },
    });
    statuses.push(r.status);
  }
  t.ok(statuses.includes(429), `some invitations refused with 429 (got ${statuses.filter((s) => s === 201).length} x 201)`);
  const mails = await w.app.ctx.db.mailOutbox.count({ where: { template: 'activation' } });
  t.ok(mails < 100, `fewer than 100 activation mails queued (got ${mails})`);
});

t.test('replacing a compromised administrator while an accomplice administrator exists: the 409 does not tell support to send `replacing`, which it did', async (t) => {
  const w = await adminWorld(t);
  const accomplice = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Eve Accomplice' });
  const successor = await w.member(w.orgA.id, { name: 'Real Successor' });
  const r = await w.request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgA.id}/administrators`,
    token: w.support.token,
    body: { userId: successor.user.id, replacing: w.adminA.user.id },
  });
  t.equal(r.status, 409);
  t.equal(r.body.code, 'administrator_exists');
  t.notMatch(String(r.body.detail), /send `replacing`/, `detail: ${r.body.detail}`);
  t.match(String(r.body.detail), /1 other active administrator remain.*Block each one who must go/, 'it says what to do instead');
  // Doing what it says: the accomplice blocked, the replacement goes through.
  const block = await w.request({ method: 'POST', url: `/v1/support/users/${accomplice.user.id}/block`, token: w.support.token });
  t.equal(block.status, 200);
  const again = await w.request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgA.id}/administrators`,
    token: w.support.token,
    body: { userId: successor.user.id, replacing: w.adminA.user.id },
  });
  t.equal(again.status, 200, 'with the accomplice blocked, support replaces the administrator');
});

t.test('per-actor budgets: mails and other changes counted apart, per signed-in user, reads free; over budget nothing changes', async (t) => {
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_MAILS_PER_HOUR: '3', ADMIN_CHANGES_PER_HOUR: '2' });
  const invite = (token: string, i: number) =>
    w.request({ method: 'POST', url: '/v1/organization/users', token, body: { email: `new${i}@alpha.test`, name: `New ${i}` } });
  for (let i = 0; i < 3; i++) t.equal((await invite(w.adminA.token, i)).status, 201);
  const over = await invite(w.adminA.token, 3);
  t.same([over.status, over.body.code], [429, 'rate_limited'], 'the fourth mail within the hour');
  t.ok(Number(over.headers['retry-after']) > 0, 'Retry-After');
  t.equal(await w.app.ctx.db.user.count({ where: { email: 'new3@alpha.test' } }), 0, 'nothing written');
  t.equal((await invite(w.adminB.token, 9)).status, 201, "another organisation's administrators have a mail budget of their own");
  for (let i = 0; i < 5; i++) t.equal((await w.request({ url: '/v1/organization/users', token: w.adminA.token })).status, 200, 'reads are not counted');

  const members = await Promise.all([0, 1, 2].map((i) => w.member(w.orgA.id, { name: `Member ${i}` })));
  const block = (token: string, id: string) => w.request({ method: 'POST', url: `/v1/organization/users/${id}/block`, token });
  t.equal((await block(w.adminA.token, members[0]!.user.id)).status, 200, 'changes have their own budget');
  t.equal((await block(w.adminA.token, members[1]!.user.id)).status, 200);
  const tooMany = await block(w.adminA.token, members[2]!.user.id);
  t.same([tooMany.status, tooMany.body.code], [429, 'rate_limited']);
  t.equal((await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: members[2]!.user.id } })).status, 'ACTIVE', 'not blocked');

  // Support's writes count the same way: a taken-over support account cannot erase users by the hundred.
  const s1 = await w.request({ method: 'POST', url: `/v1/support/users/${members[2]!.user.id}/block`, token: w.support.token });
  const s2 = await w.request({ method: 'POST', url: `/v1/support/users/${members[0]!.user.id}/erase`, token: w.support.token });
  const s3 = await w.request({ method: 'POST', url: `/v1/support/users/${members[1]!.user.id}/erase`, token: w.support.token });
  t.same([s1.status, s2.status, s3.status], [200, 204, 429]);
});

t.test("erasing an accomplice does not erase the trail: the invitation's audit row keeps the address and name it was sent to", async (t) => {
  const w = await adminWorld(t);
  const invited = await w.request({
    method: 'POST',
    url: '/v1/organization/users',
    token: w.adminA.token,
    body: { email: 'zed@evil.example', name: 'Zed Accomplice', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  t.equal(invited.status, 201);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/block`, token: w.adminA.token })).status, 200);
  t.equal((await w.request({ method: 'DELETE', url: `/v1/organization/users/${invited.body.id}`, token: w.adminA.token })).status, 204, 'withdrawn');
  const log = await w.request({ url: `/v1/support/audit-events?type=user.invited&userId=${w.adminA.user.id}`, token: w.support.token });
  t.match(log.body.items, [{ subject: { id: invited.body.id }, details: { email: 'zed@evil.example', name: 'Zed Accomplice', roles: ['USER', 'CUSTOMER_ADMIN'] } }]);
});

// Second read of session 26: a budget keyed on the actor's user id let a taken-over administrator
// invite accomplice administrators (addresses the attacker reads), each with a fresh budget of its
// own. An organisation's administrators share the mail budget (ADMIN_MAILS_PER_HOUR).
t.test('a taken-over administrator cannot multiply the hourly mail budget by inviting accomplice administrators: they share it', async (t) => {
  const MAILS = 3;
  const w = await adminWorld(t, { RATE_LIMIT_ENABLED: 'true', ADMIN_MAILS_PER_HOUR: String(MAILS) });
  const tokens: string[] = [];
  // Two of admin A's three mails: two accomplice administrators at addresses the attacker reads.
  for (let i = 0; i < MAILS - 1; i++) {
    const email = `eve${i}@attacker.example`;
    const invited = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: `Eve ${i}`, roles: ['USER', 'CUSTOMER_ADMIN'] } });
    t.equal(invited.status, 201);
    const token = tokenFromLink((await mailsTo(w.app, email))[0]!.textBody, '/activate');
    const activated = await w.request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } });
    t.equal(activated.status, 200, 'activated');
    const challengeToken = activated.body.challengeToken as string;
    const started = await w.request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
    const verified = await w.request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken, code: currentTotp(w.app, String(started.body.secret)) } });
    t.equal(verified.status, 200, 'authenticator set up, signed in');
    tokens.push(verified.body.accessToken as string);
  }
  // Every accomplice mails at will, each with a full budget: the actor behind them all is one.
  let sent = MAILS - 1;
  for (const [k, token] of tokens.entries()) {
    for (let i = 0; i < MAILS; i++) {
      const r = await w.request({ method: 'POST', url: '/v1/organization/users', token, body: { email: `victim${k}-${i}@spam-target.example`, name: `Victim ${i}` } });
      if (r.status === 201) sent++;
    }
  }
  t.ok(sent <= MAILS, `the administrator taken over sent at most ADMIN_MAILS_PER_HOUR (${MAILS}) mails through the accounts it made within the hour (got ${sent})`);
});
