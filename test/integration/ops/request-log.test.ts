import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { sha256Hex } from '../../../src/lib/tokens.js';

/** Each log line of a request carries its id (the X-Request-Id answered), once; other lines none. */
t.test('request log lines carry the request id', async (t) => {
  const { app, logs } = await buildTestApp(t);
  const request = api(app);
  const before = logs.length;
  const ids: string[] = [];
  for (const url of ['/healthz', '/v1/me', '/v1/nothing-here']) {
    ids.push(String((await request({ url })).headers['x-request-id']));
  }
  t.equal(new Set(ids).size, 3, 'one id per request');

  const lines = logs.slice(before);
  for (const id of ids) {
    const own = lines.filter((l) => l.includes(id)).map((l) => ({ raw: l, line: JSON.parse(l) as { reqId?: string; msg?: string } }));
    t.same(own.map((l) => l.line.msg), ['incoming request', 'request completed'], `${id}: both lines`);
    for (const { raw, line } of own) {
      t.equal(line.reqId, id, `${line.msg}: reqId`);
      t.equal(raw.split('"reqId"').length, 2, `${line.msg}: reqId once`);
    }
  }

  app.log.info('not about a request');
  const outside = JSON.parse(logs.at(-1)!) as { msg: string; reqId?: string };
  t.equal(outside.msg, 'not about a request');
  t.notOk('reqId' in outside, 'a line outside any request has no reqId');
});

t.test("a rejected request's log line names its problem code (only a TOTP code in a body is redacted)", async (t) => {
  const { app, logs } = await buildTestApp(t);
  const before = logs.length;
  await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'application/json' }, payload: '{"email":' });
  const line = logs
    .slice(before)
    .map((l) => JSON.parse(l) as { msg?: string; code?: string })
    .find((l) => l.msg === 'request rejected');
  t.equal(line?.code, 'malformed_json');
  app.log.info({ body: { code: '123456' }, err: { code: '57P01' } }, 'shapes');
  const shapes = JSON.parse(logs.at(-1)!) as { body: { code: string }; err: { code: string } };
  t.same([shapes.body.code, shapes.err.code], ['[REDACTED]', '57P01'], "a body's code is redacted, an error's is not");
});

t.test('the lines of a signed-in request name the user, session and organisation; a service client\'s its client id; reads too (DPO review, session 30)', async (t) => {
  const secret = 'cso-secret-0123456789abcdef';
  const { app, logs } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(secret)}` });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  const sessionId = (JSON.parse(Buffer.from(tokens.accessToken.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;
  const linesOf = (id: string) => logs.filter((l) => l.includes(id)).map((l) => JSON.parse(l) as Record<string, unknown>);

  const me = await request({ url: '/v1/me', token: tokens.accessToken });
  t.equal(me.status, 200);
  const [, completed] = linesOf(String(me.headers['x-request-id']));
  t.match(completed, { msg: 'request completed', userId: user.id, sessionId, organizationId: org.id });

  const introspected = await request({
    url: '/v1/tokens/introspect',
    headers: { authorization: `Basic ${Buffer.from(`cso:${secret}`).toString('base64')}` },
    body: { token: tokens.accessToken },
  });
  t.equal(introspected.body.active, true);
  const lines = linesOf(String(introspected.headers['x-request-id']));
  t.match(lines.at(-1), { msg: 'request completed', clientId: 'cso' });
  t.notOk('userId' in lines.at(-1)!, 'the client, not the user whose token it checked');

  // Not before authentication ("incoming request"), nor for anyone unauthenticated.
  const [incoming] = linesOf(String(me.headers['x-request-id']));
  t.notOk('userId' in incoming!, 'incoming request: not yet known');
  const anonymous = await request({ url: '/v1/me' });
  t.notOk(linesOf(String(anonymous.headers['x-request-id'])).some((l) => 'userId' in l || 'clientId' in l));
});

t.test('a request line holds at most 512 characters of the user agent and of the path (DoS review, session 32)', async (t) => {
  const { app, logs } = await buildTestApp(t);
  const before = logs.length;
  // 15 KB of user agent on /healthz (no limit counts it) wrote 15 KB of log per request.
  const res = await app.inject({ method: 'GET', url: `/healthz`, headers: { 'user-agent': `agent-${'u'.repeat(15_000)}` } });
  t.equal(res.statusCode, 200);
  const long = await app.inject({ method: 'GET', url: `/v1/${'p'.repeat(15_000)}` });
  t.equal(long.statusCode, 404);
  const lines = logs.slice(before).map((l) => JSON.parse(l) as { msg?: string; req?: { userAgent?: string; path?: string } });
  const incoming = lines.filter((l) => l.msg === 'incoming request');
  t.equal(incoming.length, 2);
  t.equal(incoming[0]?.req?.userAgent, `agent-${'u'.repeat(506)}`, 'the first 512 characters');
  t.equal(incoming[1]?.req?.path, `/v1/${'p'.repeat(508)}`);
  t.ok(logs.slice(before).every((l) => l.length < 3000), 'no line carries the 15 KB');
});
