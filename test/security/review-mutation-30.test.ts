import t from 'tap';
import pg from 'pg';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn, timeStep } from '../helpers/factories.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { renderMail, type MailTemplateData } from '../../src/modules/mail/mail.templates.js';
import { LANGUAGES } from '../../src/lib/languages.js';
import { challengeFor } from '../integration/mfa/helpers.js';

/** Mutation review of session 30's changes (helper mutation30): what the existing tests let through. */

t.test('a hinted step stays refused while it is inside the window, even when a newer hint prunes the list', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const guess = currentTotp(app, totpSecret!, 3);
  const hinted = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(hinted.body.hint, 'clock_drift');
  // Four steps on, the guessed step is the previous one: still inside the accepted window (-1..+1).
  clock.advance(4 * 30);
  const other = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, 5) } });
  t.equal(other.body.hint, 'clock_drift', 'a second hint: the list is pruned now');
  const again = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(again.status, 400, 'the first hinted code, one step old, is still refused');
  t.equal(again.body.code, 'mfa_code_reused');
});

t.test('a hinted code sent again before its time is refused without a second hint (refusedSteps: spent, not only inside the window)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const guess = currentTotp(app, totpSecret!, 4);
  const first = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(first.body.hint, 'clock_drift');
  const again = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(again.body.code, 'mfa_code_reused');
  t.notOk(again.body.hint, 'a refused step: no hint again');
});

t.test('a hint committed while the code step waits for the factor row is honoured by the one-statement path', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const step = timeStep(Math.floor(app.ctx.clock.now().getTime() / 1000));
  const other = new pg.Client({ connectionString: databaseUrl });
  await other.connect();
  t.teardown(() => other.end());
  // A concurrent request that hints this very step (at its time, the step was still to come) holds the row.
  await other.query('BEGIN');
  await other.query(`SELECT id FROM totp_factors WHERE user_id = $1 AND status = 'ACTIVE' FOR UPDATE`, [user.id]);
  await other.query(`UPDATE totp_factors SET hinted_steps = ARRAY[$2::int] WHERE user_id = $1 AND status = 'ACTIVE'`, [user.id, step]);
  const pending = request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  // Wait until the code step blocks on the factor row, then commit the hint.
  for (let i = 0; i < 200; i++) {
    const { rows } = await other.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (rows[0].n > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  await other.query('COMMIT');
  const res = await pending;
  t.equal(res.status, 400, 'the code of a step refused with the hint is not accepted');
  t.equal(res.body.code, 'mfa_code_reused');
});

t.test('afterLastAttempt comes with every kind of wrong code: a replayed one, a clock-drift hint, a recovery code', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const ok = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!) } });
  t.equal(ok.status, 200);
  // The code just accepted, sent again on a new challenge, is a replay.
  const replay = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!) } });
  t.equal(replay.body.code, 'mfa_code_reused');
  t.equal(replay.body.afterLastAttempt, 'sign_in_again');
  clock.advance(90);
  const drift = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, 5) } });
  t.equal(drift.body.hint, 'clock_drift');
  t.equal(drift.body.afterLastAttempt, 'sign_in_again');
  const recovery = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: 'aaaa-bbbb-cccc-dddd-eeee-ffff' } });
  t.equal(recovery.body.code, 'recovery_code_invalid');
  t.equal(recovery.body.afterLastAttempt, 'sign_in_again');
});

t.test('every mail naming an address shows an internationalised domain in Unicode beside its ASCII form, in every language', async (t) => {
  const env = { shopName: 'ALSO Webshop', supportContact: 'support', audience: 'member', timeZone: 'UTC' } as const;
  const idn = 'joerg@xn--mller-handel-dlb.de';
  const shown = 'joerg@müller-handel.de (joerg@xn--mller-handel-dlb.de)';
  const link = 'https://shop.example.test/x?token=abc';
  const expiresAt = new Date(Date.UTC(2026, 0, 2));
  const samples: Partial<{ [K in keyof MailTemplateData]: MailTemplateData[K] }> = {
    activation: { name: 'Jörg', link, expiresAt, organizationName: 'Müller', username: idn, by: 'admin' },
    email_change_confirm: { name: 'Jörg', link, expiresAt, newEmail: idn },
    email_changed: { name: 'Jörg', newEmail: idn, link, expiresAt },
    email_change_undone: { name: 'Jörg', movedTo: idn, link, expiresAt, stillBlocked: 'organization' },
    email_change_reverted: { name: 'Jörg', restoredEmail: idn },
  };
  for (const locale of LANGUAGES) {
    for (const [name, data] of Object.entries(samples)) {
      t.match(renderMail(name as keyof MailTemplateData, data as never, env, locale).text, shown, `${locale}/${name}`);
    }
  }
});

t.test('contact.language is the default language for an account without one', async (t) => {
  const { app } = await buildTestApp(t, { DEFAULT_LANGUAGE: 'de', SUPPORT_CONTACT: 'the e-business team', SUPPORT_CONTACT_DE: 'unser E-Business-Team' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { password } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'nolang@blocked.test', status: 'BLOCKED' });
  const res = await request({ url: '/v1/auth/login', body: { email: 'nolang@blocked.test', password } });
  t.equal(res.body.code, 'account_blocked');
  t.same([res.body.contact.support, res.body.contact.language], ['unser E-Business-Team', 'de']);
});

t.test('log lines name who made the request also when refused for lack of a role, and the service client when the rate limiter authenticated it', async (t) => {
  const secret = 'cso-secret-0123456789abcdef';
  const { app, logs } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(secret)}`, RATE_LIMIT_ENABLED: 'true' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER'] });
  const tokens = await signIn(app, user);
  const linesOf = (id: string) => logs.filter((l) => l.includes(id)).map((l) => JSON.parse(l) as Record<string, unknown>);

  const forbidden = await request({ url: '/v1/organization/users', method: 'GET', token: tokens.accessToken });
  t.equal(forbidden.status, 403);
  t.match(linesOf(String(forbidden.headers['x-request-id'])).at(-1), { msg: 'request completed', userId: user.id });

  const introspected = await request({
    url: '/v1/tokens/introspect',
    headers: { authorization: `Basic ${Buffer.from(`cso:${secret}`).toString('base64')}` },
    body: { token: tokens.accessToken },
  });
  t.equal(introspected.body.active, true);
  t.match(linesOf(String(introspected.headers['x-request-id'])).at(-1), { msg: 'request completed', clientId: 'cso' });
});
