import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser } from '../helpers/factories.js';
import { GOOD_PASSWORD, tokenFromLink } from '../helpers/accounts.js';
import { lastMail, outboxMails } from '../helpers/outbox.js';

t.test("an attacker's five requests leave the owner without a usable link, and the owner's own request sends none", async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const forgot = (ip: string) => app.inject({ method: 'POST', url: '/v1/password/forgot', payload: { email: user.email }, remoteAddress: ip });
  const resetMails = async () => (await outboxMails(app, { where: { toAddress: user.email, template: 'password_reset' } })).length;

  // Attacker, one IP, five requests a minute apart (no per-IP limit comes near).
  for (let i = 0; i < 5; i++) {
    t.equal((await forgot('203.0.113.9')).statusCode, 202);
    clock.advance(61);
  }
  t.equal(await resetMails(), 5);
  const newest = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody, '/reset-password');

  clock.advance(35 * 60); // ~40 min after the first: the newest link (30-min life) has expired
  const owner = await forgot('198.51.100.7');
  t.equal(owner.statusCode, 202, 'the owner is told a link is on its way');
  t.equal(await resetMails(), 6, "the owner's own request sends a link");
  t.equal((await request({ url: '/v1/password/reset', body: { token: newest, password: GOOD_PASSWORD } })).status, 204, 'or the owner still holds a usable link');
});
