import t from 'tap';
import { inviteUser, tokenFromLink } from '../../helpers/accounts.js';
import { createOrganization } from '../../helpers/factories.js';
import { pagedIds, type CursorPage } from '../../helpers/http.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';

t.test('support finds users across organisations by e-mail or name', async (t) => {
  const w = await adminWorld(t);
  const { request, support } = w;
  await w.member(w.orgA.id, { name: 'Hanna Huber', email: 'hanna@alpha.test' });
  await w.member(w.orgB.id, { name: 'Hans Meier', email: 'hans@beta.test' });
  const find = (q: string) => request({ url: `/v1/support/users${q}`, token: support.token });

  const exact = await find('?email=HANNA@Alpha.TEST');
  t.equal(exact.status, 200);
  t.same(exact.body.items.map((u: { email: string }) => u.email), ['hanna@alpha.test'], 'exact, case-insensitive');
  t.match(exact.body.items[0].organization, { id: w.orgA.id, name: 'Alpha Reseller' });
  t.same((await find('?email=hanna@alpha')).body.items, [], 'email= is exact, not a prefix');
  t.same((await find('?q=han')).body.items.map((u: { name: string }) => u.name), ['Hanna Huber', 'Hans Meier'], 'across organisations');
  t.same((await find(`?q=han&organizationId=${w.orgB.id}`)).body.items.map((u: { name: string }) => u.name), ['Hans Meier']);
  t.same((await find('?role=SUPPORT')).body.items.map((u: { name: string }) => u.name), ['Sam Support']);
  t.equal((await find('?role=SUPPORT')).body.items[0].organization, null);
  t.notMatch((await find('')).raw, /passwordHash|\$argon2|secretCiphertext/);
  t.equal((await request({ url: '/v1/support/users?email=hanna@alpha.test', token: w.adminA.token })).status, 403);
});

t.test('support blocks, unblocks and sends reset mails in any organisation; audited as the support user', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const u = await w.member(w.orgB.id, { email: 'someone@beta.test' });
  const post = (path: string) => request({ method: 'POST', url: `/v1/support/users/${u.user.id}/${path}`, token: support.token });

  const blocked = await post('block');
  t.equal(blocked.status, 200);
  t.equal(blocked.body.status, 'BLOCKED');
  t.match((await auditOf(app, 'user.blocked', u.user.id))[0], { actorUserId: support.user.id, organizationId: w.orgB.id, details: { by: 'support' } });
  const [mail] = await mailsTo(app, 'someone@beta.test');
  t.equal(mail?.template, 'account_blocked');
  t.notMatch(mail?.textBody, 'Bob Admin', 'contact: support alone, who alone can lift a block support imposed');

  t.equal((await post('password-reset')).body.code, 'user_blocked');
  t.equal((await post('unblock')).body.status, 'ACTIVE');
  t.match((await auditOf(app, 'user.unblocked', u.user.id))[0], { actorUserId: support.user.id });

  const reset = await post('password-reset');
  t.equal(reset.status, 200);
  t.same((await mailsTo(app, 'someone@beta.test')).map((m) => m.template), ['account_blocked', 'account_unblocked', 'password_reset']);
  t.match((await auditOf(app, 'password.reset_requested', u.user.id))[0], { actorUserId: support.user.id, details: { by: 'support' } });
  t.notMatch(reset.raw, /token|reset-password/);
});

t.test('a user support blocked is sent to support alone, who alone can lift it: in the mail, at sign-in and on a voided link', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const jon = await w.member(w.orgA.id, { name: 'Jon Member', email: 'jon@alpha.test' });
  const signInAnswer = async () => {
    const res = await request({ method: 'POST', url: '/v1/auth/login', body: { email: jon.user.email, password: jon.password } });
    t.same([res.status, res.body.code], [403, 'account_blocked']);
    return res.body;
  };
  t.equal((await request({ method: 'POST', url: '/v1/password/forgot', body: { email: jon.user.email } })).status, 202);
  const resetLink = tokenFromLink((await mailsTo(w.app, jon.user.email)).at(-1)!.textBody, '/reset-password');

  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/block`, token: support.token })).status, 200);
  const unblock = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/unblock`, token: adminA.token });
  t.same([unblock.status, unblock.body.code], [409, 'blocked_by_support'], 'the administrator cannot lift it');
  const mail = (await mailsTo(w.app, jon.user.email)).at(-1)!;
  t.match(mail.textBody, /blocked/);
  t.notMatch(mail.textBody, /Alice Admin/, 'the block mail does not send the user to the administrator');
  const bySupport = await signInAnswer();
  t.same(bySupport.contact.administrators, [], 'nor does the answer to the correct password');
  t.notMatch(bySupport.detail, /Alice Admin/);
  t.match(bySupport.detail, bySupport.contact.support);
  const reset = await request({ method: 'POST', url: '/v1/password/reset', body: { token: resetLink, password: 'a brand new passphrase 42' } });
  t.same([reset.status, reset.body.code, reset.body.contact?.administrators], [403, 'account_blocked', []], 'nor the reset link the block voided');

  // The same user blocked by their administrator is sent to the administrator, who can lift it.
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/unblock`, token: support.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/block`, token: adminA.token })).status, 200);
  t.match((await mailsTo(w.app, jon.user.email)).at(-1)!.textBody, /Alice Admin/);
  const byAdministrator = await signInAnswer();
  t.same(byAdministrator.contact.administrators.map((a: { name: string }) => a.name), ['Alice Admin']);
  t.match(byAdministrator.detail, /Alice Admin/);
});

t.test('support cannot block the last administrator, nor support staff, nor themselves', async (t) => {
  const w = await adminWorld(t);
  const { request, support } = w;
  const block = (id: string) => request({ method: 'POST', url: `/v1/support/users/${id}/block`, token: support.token });

  const last = await block(w.adminB.user.id);
  t.equal(last.status, 409);
  t.equal(last.body.code, 'last_administrator');

  const deputy = await w.member(w.orgB.id, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  t.equal((await block(w.adminB.user.id)).status, 200, 'with a second administrator, the first can be blocked');
  t.equal((await block(deputy.user.id)).body.code, 'last_administrator');

  const colleague = await w.member(null, { roles: ['SUPPORT'] });
  const staff = await block(colleague.user.id);
  t.equal(staff.status, 403);
  t.equal(staff.body.code, 'support_staff_protected');
  t.equal((await block(support.user.id)).body.code, 'self_action_not_allowed');
});

t.test('an administrator invited by the only active one does not make that one blockable: the block would withdraw the invitation', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const invited = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'deputy@alpha.test', name: 'Dana Deputy', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  t.equal(invited.status, 201);
  const link = tokenFromLink((await mailsTo(w.app, 'deputy@alpha.test')).at(-1)!.textBody, '/activate');

  const block = await request({ method: 'POST', url: `/v1/support/users/${adminA.user.id}/block`, token: support.token });
  t.same([block.status, block.body.code], [409, 'last_administrator'], 'support must replace them instead');
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: link } })).status, 200, 'the invitation still works');
  const organization = await request({ url: `/v1/support/organizations/${w.orgA.id}`, token: support.token });
  t.equal(organization.body.activeAdministratorCount, 1);

  // An invited administrator someone else invited still counts: the block withdraws only the blocked user's links.
  const other = await inviteUser(w.app, { organizationId: w.orgA.id, name: 'Otto Other', roles: ['USER', 'CUSTOMER_ADMIN'] });
  const blocked = await request({ method: 'POST', url: `/v1/support/users/${adminA.user.id}/block`, token: support.token });
  t.equal(blocked.status, 200, 'with an administrator still able to activate, the block goes ahead');
  t.equal((await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: other.user.id } })).status, 'INVITED');
});

t.test('support pages through users of every organisation: each user exactly once, in name order (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { request, support } = w;
  await w.member(w.orgA.id, { name: 'Pat Same', email: 'pat1@alpha.test' });
  await w.member(w.orgB.id, { name: 'Pat Same', email: 'pat2@beta.test' });
  await w.member(w.orgA.id, { name: 'Quinn Other', email: 'quinn@alpha.test' });
  const all = (await request({ url: '/v1/support/users?limit=100', token: support.token })).body.items.map((u: { id: string }) => u.id);
  t.equal(all.length, 6, 'two administrators, support, three members');
  const { ids } = await pagedIds(async (query) => (await request<CursorPage>({ url: `/v1/support/users?${query}`, token: support.token })).body, 2);
  t.same(ids, all, 'the pages together are the list, without repeats or gaps');
});

t.test('refusals an administrator or support can act on: the detail says what to do instead (desk review, session 23)', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const active = await w.member(w.orgA.id, { name: 'Active Member' });
  const invited = await w.member(w.orgA.id, { status: 'INVITED', name: 'Invited Member' });
  for (const [what, method, url, token, body, code, remedy] of [
    ['withdraw an activated account', 'DELETE', `/v1/organization/users/${active.user.id}`, adminA.token, undefined, 'already_activated', /block it instead/],
    ['erase before the block', 'POST', `/v1/organization/users/${active.user.id}/erase`, adminA.token, undefined, 'not_blocked', /^Only a blocked account can be erased: block it first\.$/],
    // One code, two actions: each answer speaks of its own (frontend review, session 28).
    ['unblock an account that is not blocked', 'POST', `/v1/organization/users/${active.user.id}/unblock`, adminA.token, undefined, 'not_blocked', /^Nothing to do: the account is not blocked\.$/],
    ['reset mail to an invited user', 'POST', `/v1/organization/users/${invited.user.id}/password-reset`, adminA.token, undefined, 'user_not_activated', /invitation again/],
    ['appoint while an administrator is active', 'POST', `/v1/support/organizations/${w.orgA.id}/administrators`, support.token, { userId: active.user.id }, 'administrator_exists', /`replacing`/],
    ['block the last administrator', 'POST', `/v1/support/users/${adminA.user.id}/block`, support.token, undefined, 'last_administrator', /another member an administrator first.*`replacing`/],
  ] as const) {
    const res = await request({ method, url, token, ...(body ? { body } : {}) });
    t.same([res.status, res.body.code], [409, code], what);
    t.match(res.body.detail, remedy, `${what}: the detail says what to do instead`);
  }
});

t.test("support's unblock of an invited user renews the invitation naming whoever can send another: the administrator, or support where none is active (desk review, session 23)", async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  const supportContact = app.ctx.config.supportContact;
  const cycle = async (id: string, email: string) => {
    for (const action of ['block', 'unblock']) {
      t.equal((await request({ method: 'POST', url: `/v1/support/users/${id}/${action}`, token: support.token })).status, 200, action);
    }
    const renewed = (await mailsTo(app, email)).at(-1)!;
    t.equal(renewed.template, 'activation');
    return renewed.textBody;
  };
  const member = await inviteUser(app, { organizationId: w.orgA.id, name: 'Mia Member', email: 'mia@alpha.test' });
  const memberMail = await cycle(member.user.id, 'mia@alpha.test');
  t.match(memberMail, "ask your organisation's administrator to send a new one", 'Alpha has an active administrator');
  t.notMatch(memberMail, supportContact);

  // Gamma's only administrator has not activated yet.
  const gamma = await createOrganization(app.ctx.db, { name: 'Gamma Reseller' });
  await inviteUser(app, { organizationId: gamma.id, name: 'Fay First', email: 'fay@gamma.test', roles: ['USER', 'CUSTOMER_ADMIN'] });
  const max = await inviteUser(app, { organizationId: gamma.id, name: 'Max Member', email: 'max@gamma.test' });
  const maxMail = await cycle(max.user.id, 'max@gamma.test');
  t.match(maxMail, `ask ${supportContact} to send a new one`, 'Gamma has no active administrator: support sends the next link');
});
