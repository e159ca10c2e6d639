import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { sha256Hex } from '../../../src/lib/tokens.js';

// Integrator review (session 26, "integ"): a service-client secret as `openssl rand -base64 32` makes
// it (with '+', '/' and '='), hashed as .env.example says (`printf %s "$SECRET" | sha256sum`), must
// work with plain HTTP Basic (RFC 7617: curl -u, fetch, Spring's setBasicAuth), as README and
// .env.example promise ("HTTP Basic credentials of a SERVICE_CLIENTS entry"), not only with the
// RFC 6749 §2.3.1 form-urlencoded variant. Today the server form-decodes every secret: '+' turns
// into a space and the client gets 401 invalid_client on introspection and on the event feed.
const SECRET = 'Ab+cd/ef=gh+ij/kl0123456789ABCDEFGHij+=';
const env = { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}`, EVENT_FEED_CLIENTS: 'cso' };
const raw = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const formEncoded = (id: string, secret: string) =>
  raw(new URLSearchParams({ a: id }).toString().slice(2), new URLSearchParams({ a: secret }).toString().slice(2));

t.test('a base64 service-client secret works with plain HTTP Basic (RFC 7617) and with the RFC 6749 encoding', async (t) => {
  const { app } = await buildTestApp(t, env);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const body = { token: (await signIn(app, user)).accessToken };

  for (const [label, authorization] of [
    ['form-urlencoded (RFC 6749 §2.3.1)', formEncoded('cso', SECRET)],
    ['plain Basic (RFC 7617, curl -u)', raw('cso', SECRET)],
  ] as const) {
    const res = await request({ url: '/v1/tokens/introspect', body, headers: { authorization } });
    t.same([res.status, res.body.active], [200, true], `introspection, ${label}`);
    const feed = await request({ method: 'GET', url: '/v1/events', headers: { authorization } });
    t.equal(feed.status, 200, `event feed, ${label}`);
  }
});

t.test('a secret with "%" works as sent; a wrong secret fails in either form; an encoded id is read too', async (t) => {
  const percent = 'pc%zz-and-100%-sure_0123456789abcdef';
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)},shop:${sha256Hex(percent)}:webshop` });
  const request = api(app);
  const introspect = async (authorization: string) => (await request({ url: '/v1/tokens/introspect', body: { token: 'x' }, headers: { authorization } })).status;
  t.equal(await introspect(raw('shop', percent)), 200, 'not percent-encoding: taken as sent');
  t.equal(await introspect(formEncoded('shop', percent)), 200, 'form-urlencoded');
  t.equal(await introspect(raw('cso', SECRET.replaceAll('+', ' '))), 401, 'the form-decoded secret is not the secret');
  t.equal(await introspect(raw('cso', `${SECRET}x`)), 401);
  t.equal(await introspect(formEncoded('cso', `${SECRET}x`)), 401);
  t.equal(await introspect(raw('sh%6Fp', encodeURIComponent(percent))), 200, 'an id form-urlencoded as well ("sh%6Fp" is shop)');
});
