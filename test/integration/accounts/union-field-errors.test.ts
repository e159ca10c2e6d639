import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';

// Review sec28 (session 28, validation errors): a union of strict bodies answers with the key
// another alternative knows as `unrecognized_keys` whenever the other alternative also has a
// missing field or a wrong type (zod 4 then returns the one "non-aborted" alternative's issues,
// no invalid_union reaches validationErrors), and `only_one_of` lists fields of one alternative
// (email and name) as excluding each other.
t.test('union bodies: a field another alternative knows is never called unrecognized; only_one_of names alternatives, not fields of one', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const errorsOf = async (options: Parameters<typeof request>[0]) => {
    const res = await request(options);
    t.equal(res.status, 400, JSON.stringify(options.body));
    return res.body.errors as { path: string; code: string; keys?: string[] }[];
  };
  const unrecognized = (errors: { code: string; keys?: string[] }[]) => errors.filter((e) => e.code === 'unrecognized_keys').flatMap((e) => e.keys ?? []);

  // code and recoveryCode sent together, one of them of the wrong type.
  const both = await errorsOf({ url: '/v1/auth/login/mfa', body: { challengeToken: 'A'.repeat(43), code: '123456', recoveryCode: 12345 } });
  t.notOk(unrecognized(both).includes('recoveryCode'), `recoveryCode is a field of this operation: ${JSON.stringify(both)}`);
  t.ok(both.some((e) => e.code === 'only_one_of'), 'code and recoveryCode are named as "send only one of"');

  const support = await createUser(app.ctx.db, app, { roles: ['SUPPORT'], organizationId: null });
  const { accessToken } = await signIn(app, support.user);
  const org = await createOrganization(app.ctx.db);
  const member = await createUser(app.ctx.db, app, { organizationId: org.id });
  const url = `/v1/support/organizations/${org.id}/administrators`;

  const userIdAndName = await errorsOf({ url, token: accessToken, body: { userId: member.user.id, name: 'Zed Zed' } });
  t.notOk(unrecognized(userIdAndName).includes('name'), `name is a field of this operation (with email): ${JSON.stringify(userIdAndName)}`);

  const all = await errorsOf({ url, token: accessToken, body: { userId: member.user.id, email: 'zed@example.test', name: 'Zed Zed' } });
  for (const e of all.filter((x) => x.code === 'only_one_of')) {
    t.notOk(e.keys?.includes('email') && e.keys?.includes('name'), `email and name go together, they do not exclude each other: ${JSON.stringify(e)}`);
  }
});
