import t, { type Test } from 'tap';
import { decodeJwt } from 'jose';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { computeRequiredActions } from '../../../src/modules/me/required-actions.js';
import { GOOD_PASSWORD, tokenFromLink } from '../../helpers/accounts.js';
import { lastMail } from '../../helpers/outbox.js';
import { enrolAtLogin } from '../mfa/helpers.js';

t.test('computeRequiredActions: order and conditions', async (t) => {
  const none = { termsVersion: null, preferencesUpdatedAt: null };
  const done = { termsVersion: '2026-01', preferencesUpdatedAt: new Date() };
  t.same(computeRequiredActions(none, { mfaEnrolled: false, termsVersion: '2026-01' }), ['mfa_enrollment', 'accept_terms', 'set_preferences']);
  t.same(computeRequiredActions(done, { mfaEnrolled: true, termsVersion: '2026-01' }), []);
  t.same(computeRequiredActions(done, { mfaEnrolled: true, termsVersion: '2026-07' }), ['accept_terms'], 'a new version asks again');
  t.same(computeRequiredActions({ ...done, preferencesUpdatedAt: null }, { mfaEnrolled: false, termsVersion: '2026-01' }), [
    'mfa_enrollment',
    'set_preferences',
  ]);
});

t.test('GET /v1/me for each role', async (t) => {
  const { app, config } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Muster GmbH', customerNumber: '100200' });

  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, name: 'Uma User', recoveryCodes: 10 });
  const used = await app.ctx.db.recoveryCode.findMany({ where: { userId: user.id }, take: 3 });
  await app.ctx.db.recoveryCode.updateMany({ where: { id: { in: used.map((c) => c.id) } }, data: { usedAt: app.ctx.clock.now() } });
  const tokens = await signIn(app, user);
  const me = await request({ url: '/v1/me', token: tokens.accessToken });
  t.equal(me.status, 200);
  t.equal(me.headers['cache-control'], 'no-store');
  t.match(me.body, {
    id: user.id,
    email: user.email,
    name: 'Uma User',
    roles: ['USER'],
    organization: { id: org.id, name: 'Muster GmbH', customerNumber: '100200' },
    mfa: { enrolled: true, recoveryCodesLeft: 7 },
    terms: { currentVersion: config.termsVersion, acceptedVersion: null, acceptedAt: null, accepted: false },
    preferences: { newsletterOptIn: false, updatedAt: null },
    session: { id: decodeJwt(tokens.accessToken).sid, amr: ['pwd', 'otp'] },
    requiredActions: ['accept_terms', 'set_preferences'],
  });
  const factor = await app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId: user.id, status: 'ACTIVE' } });
  const stored = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(me.body.mfa.enrolledAt, (factor.activatedAt ?? factor.createdAt).toISOString(), 'enrolled since the factor was activated');
  t.equal(me.body.lastLoginAt, stored.lastLoginAt?.toISOString());

  t.notOk(JSON.stringify(me.body).match(/password|secret|hash/i), 'nothing secret in the profile');

  const { user: admin } = await createUser(app.ctx.db, app.ctx, {
    organizationId: org.id,
    roles: ['USER', 'CUSTOMER_ADMIN'],
    termsAccepted: true,
    preferencesSet: true,
    newsletterOptIn: true,
  });
  const adminMe = (await request({ url: '/v1/me', token: (await signIn(app, admin)).accessToken })).body;
  t.same(adminMe.roles, ['USER', 'CUSTOMER_ADMIN']);
  t.match(adminMe, { terms: { accepted: true, acceptedVersion: config.termsVersion }, preferences: { newsletterOptIn: true } });
  t.same(adminMe.requiredActions, []);

  const { user: support } = await createUser(app.ctx.db, app.ctx, { organizationId: null, roles: ['SUPPORT'] });
  const supportMe = (await request({ url: '/v1/me', token: (await signIn(app, support)).accessToken })).body;
  t.same(supportMe.roles, ['SUPPORT']);
  t.equal(supportMe.organization, null);
});

t.test('a user invited, activated and enrolled over HTTP has not opted in to the newsletter and is asked to set preferences', async (t) => {
  // The factory sets newsletterOptIn itself; this is the path real users take.
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user: admin } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const adminToken = (await signIn(app, admin)).accessToken;

  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminToken, body: { email: 'nina.new@example.test', name: 'Nina New' } });
  t.equal(invited.status, 201);
  const token = tokenFromLink((await lastMail(app, { template: 'activation', toAddress: 'nina.new@example.test' })).textBody, '/activate');
  const activated = await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } });
  t.equal(activated.status, 200);
  const { tokens } = await enrolAtLogin(t, app, request, activated.body.challengeToken);

  const me = await request({ url: '/v1/me', token: tokens.accessToken });
  t.equal(me.status, 200);
  t.same(me.body.preferences, { newsletterOptIn: false, language: 'en', updatedAt: null }, 'no opt-in until the user chooses');
  t.ok(me.body.requiredActions.includes('set_preferences'));
});

t.test('without an active MFA factor only /me, MFA enrolment and logout pass', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, withTotp: false });
  const tokens = await signIn(app, user);
  t.same(tokens.requiredActions, ['mfa_enrollment', 'accept_terms', 'set_preferences']);
  // An enrolment that was started but not verified is no factor yet.
  await app.ctx.db.totpFactor.create({ data: { userId: user.id, status: 'PENDING', secretCiphertext: 'x', encryptionKeyId: 'k' } });

  const me = await request({ url: '/v1/me', token: tokens.accessToken });
  t.equal(me.status, 200);
  t.match(me.body.mfa, { enrolled: false, enrolledAt: null, recoveryCodesLeft: 0 });
  t.equal(me.body.requiredActions[0], 'mfa_enrollment');

  for (const [method, url, body] of [
    ['GET', '/v1/me/sessions', undefined],
    ['GET', '/v1/me/organization/administrators', undefined],
    // My sign-ins with their IP addresses (mutation review, session 22: it was open with me:read).
    ['GET', '/v1/me/security-events', undefined],
    ['PATCH', '/v1/me/preferences', { newsletterOptIn: true }],
    ['POST', '/v1/me/terms', { version: '2026-01', email: user.email }],
  ] as const) {
    const res = await request({ method, url, body, token: tokens.accessToken });
    t.equal(res.status, 403, `${method} ${url}`);
    t.equal(res.body.code, 'mfa_enrollment_required', `${method} ${url}`);
  }
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST', token: tokens.accessToken })).status, 204);
});

t.test('POST /v1/me/terms: current version, own e-mail typed (case-insensitive), audited', async (t) => {
  const { app, config, clock } = await buildTestApp(t, { TERMS_VERSION: '2026-03' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, email: 'Anna.Berg@Example.test' });
  const tokens = await signIn(app, user);
  const accept = (body: object) => request({ url: '/v1/me/terms', body, token: tokens.accessToken });

  const old = await accept({ version: '2025-01', email: user.email });
  t.equal(old.status, 422);
  t.equal(old.body.code, 'terms_version_mismatch');
  t.equal(old.body.currentVersion, '2026-03');

  const wrong = await accept({ version: '2026-03', email: 'someone@example.test' });
  t.equal(wrong.status, 422);
  t.equal(wrong.body.code, 'terms_email_mismatch');
  // The whole address, not a part of it (session 20's mutation review: a prefix match went unnoticed).
  for (const email of ['a', 'anna.berg@example.tes', 'anna.berg@example.test.evil', 'berg@example.test']) {
    t.equal((await accept({ version: '2026-03', email })).body.code, 'terms_email_mismatch', `${email}: a part is not the address`);
  }
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).termsVersion, null, 'nothing accepted so far');
  t.equal((await accept({ version: '2026-03' })).status, 400, 'e-mail is required');
  t.equal((await accept({ version: '2026-03', email: user.email, acceptedAt: '2020-01-01' })).status, 400, 'no extra fields');

  const ok = await accept({ version: '2026-03', email: '  anna.berg@EXAMPLE.test ' });
  t.equal(ok.status, 200);
  t.match(ok.body.terms, { accepted: true, acceptedVersion: '2026-03', acceptedAt: clock.now().toISOString(), currentVersion: config.termsVersion });
  t.same(ok.body.requiredActions, ['set_preferences']);

  const stored = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(stored.termsVersion, '2026-03');
  t.equal(stored.termsAcceptedAt?.getTime(), clock.now().getTime());
  const event = await app.ctx.db.auditEvent.findFirst({ where: { type: 'user.terms_accepted' } });
  t.match(event, { actorUserId: user.id, subjectUserId: user.id, organizationId: org.id });
  t.match(event?.details, { version: '2026-03' });

  // Accepting the same version again (a double submit, the page shown again later) changes nothing:
  // the record keeps when this version was accepted, and there is one audit row.
  const acceptedAt = clock.now().toISOString();
  clock.advance(300);
  const again = await accept({ version: '2026-03', email: user.email });
  t.equal(again.status, 200);
  t.equal(again.body.terms.acceptedAt, acceptedAt, 'the time of the first acceptance');
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'user.terms_accepted' } }), 1, 'no second audit row');

  // After a refresh, the access token carries the accepted version.
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  t.equal(decodeJwt(refreshed.body.accessToken).terms, '2026-03');
});

t.test('a new terms version makes accept_terms required again', async (t) => {
  const { app } = await buildTestApp(t, { TERMS_VERSION: '2026-09' });
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: '2026-01', preferencesSet: true });
  const tokens = await signIn(app, user);
  t.same(tokens.requiredActions, ['accept_terms']);
  const me = await api(app)({ url: '/v1/me', token: tokens.accessToken });
  t.match(me.body.terms, { accepted: false, acceptedVersion: '2026-01', currentVersion: '2026-09' });
});

/** A signed-in user who accepted the terms and has not answered the newsletter question yet. */
async function askedForPreferences(t: Test) {
  const { app, clock } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: true });
  const tokens = await signIn(app, user);
  t.same(tokens.requiredActions, ['set_preferences']);
  return { app, clock, request: api(app), user, tokens };
}

t.test('PATCH /v1/me/preferences', async (t) => {
  const { app, clock, request, user, tokens } = await askedForPreferences(t);

  // A language switch (e.g. in the page header) does not answer the newsletter question.
  const switched = await request({ method: 'PATCH', url: '/v1/me/preferences', body: { language: 'en' }, token: tokens.accessToken });
  t.equal(switched.status, 200);
  t.same(switched.body.preferences, { newsletterOptIn: false, language: 'en', updatedAt: null });
  t.same(switched.body.requiredActions, ['set_preferences'], 'still asked');

  const on = await request({ method: 'PATCH', url: '/v1/me/preferences', body: { newsletterOptIn: true }, token: tokens.accessToken });
  t.equal(on.status, 200);
  t.same(on.body.preferences, { newsletterOptIn: true, language: 'en', updatedAt: clock.now().toISOString() });
  t.same(on.body.requiredActions, []);

  clock.advance(60);
  const off = await request({ method: 'PATCH', url: '/v1/me/preferences', body: { newsletterOptIn: false }, token: tokens.accessToken });
  t.same(off.body.preferences, { newsletterOptIn: false, language: 'en', updatedAt: clock.now().toISOString() });

  clock.advance(60);
  const german = await request({ method: 'PATCH', url: '/v1/me/preferences', body: { language: 'de' }, token: tokens.accessToken });
  t.equal(german.status, 200);
  t.same(german.body.preferences, { newsletterOptIn: false, language: 'de', updatedAt: clock.now().toISOString() }, 'the opt-in stays');

  for (const body of [
    {},
    { newsletterOptIn: 'yes' },
    { newsletterOptIn: true, roles: ['SUPPORT'] },
    { language: 'fr' },
    { language: 'DE' },
    { language: null },
    { newsletterOptIn: null },
  ]) {
    const res = await request({ method: 'PATCH', url: '/v1/me/preferences', body, token: tokens.accessToken });
    t.equal(res.status, 400, JSON.stringify(body));
  }
  t.same((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).roles, ['USER']);
  const events = await app.ctx.db.auditEvent.findMany({ where: { type: 'user.preferences_changed' }, orderBy: { createdAt: 'asc' } });
  t.same(events.map((e) => e.details), [
    { language: { from: null, to: 'en' } },
    { newsletterOptIn: { from: false, to: true } },
    { newsletterOptIn: { from: true, to: false } },
    { language: { from: 'en', to: 'de' } },
  ]);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).language, 'de');
});

t.test('the longest terms version the configuration allows can be accepted', async (t) => {
  const version = `2026-03 AGB Webshop, Fassung vom 1. Maerz 2026 (${'x'.repeat(15)})`;
  t.equal(version.length, 64);
  const { app } = await buildTestApp(t, { TERMS_VERSION: version });
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, preferencesSet: true });
  const tokens = await signIn(app, user);
  const res = await api(app)({ url: '/v1/me/terms', body: { version, email: user.email }, token: tokens.accessToken });
  t.equal(res.status, 200);
  t.match(res.body.terms, { accepted: true, acceptedVersion: version });
  t.same(res.body.requiredActions, []);
});

t.test('two preference saves at once: the first changes and is audited (false → true), the second finds nothing to change and writes nothing', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  for (let i = 0; i < 5; i++) {
    const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: true });
    const { accessToken } = await signIn(app, user);
    const saves = await Promise.all([1, 2].map(() => request({ method: 'PATCH', url: '/v1/me/preferences', body: { newsletterOptIn: true }, token: accessToken })));
    t.same(saves.map((r) => r.status), [200, 200]);
    const events = await app.ctx.db.auditEvent.findMany({ where: { type: 'user.preferences_changed', subjectUserId: user.id }, orderBy: { createdAt: 'asc' } });
    t.same(events.map((e) => e.details), [{ newsletterOptIn: { from: false, to: true } }], `user ${i + 1}`);
  }
});

t.test('GET /v1/me/organization/administrators: names and e-mails of my organisation admins, nothing else', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const otherOrg = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Bea Admin', email: 'bea@example.test' });
  await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['CUSTOMER_ADMIN'], name: 'Al Admin', email: 'al@example.test' });
  await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Blocked Admin', status: 'BLOCKED' });
  await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Invited Admin', status: 'INVITED' });
  await createUser(app.ctx.db, app.ctx, { organizationId: org.id, name: 'Colleague' });
  await createUser(app.ctx.db, app.ctx, { organizationId: otherOrg.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Foreign Admin' });
  await createUser(app.ctx.db, app.ctx, { organizationId: null, roles: ['SUPPORT'], name: 'Support' });
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  const res = await request({ url: '/v1/me/organization/administrators', token: (await signIn(app, user)).accessToken });
  t.equal(res.status, 200);
  t.same(res.body, {
    administrators: [
      { name: 'Al Admin', email: 'al@example.test' },
      { name: 'Bea Admin', email: 'bea@example.test' },
    ],
  });

  const { user: support } = await createUser(app.ctx.db, app.ctx, { organizationId: null, roles: ['SUPPORT'] });
  const none = await request({ url: '/v1/me/organization/administrators', token: (await signIn(app, support)).accessToken });
  t.same(none.body, { administrators: [] }, 'no organisation, no administrators');
});

t.test('saving the newsletter answer unchanged ("no", the default) answers set_preferences once, audited once (mutation review, session 22)', async (t) => {
  const { app, clock, request, user, tokens } = await askedForPreferences(t);
  const save = () => request({ method: 'PATCH', url: '/v1/me/preferences', body: { newsletterOptIn: false }, token: tokens.accessToken });

  const answered = await save();
  t.equal(answered.status, 200);
  const savedAt = clock.now().toISOString();
  t.same(answered.body.preferences, { newsletterOptIn: false, language: 'en', updatedAt: savedAt }, 'the answer is recorded');
  t.same(answered.body.requiredActions, [], 'the user who says no is not asked again');
  clock.advance(60);
  const again = await save();
  t.equal(again.body.preferences.updatedAt, savedAt, 'saving it again changes nothing');
  const events = await app.ctx.db.auditEvent.findMany({ where: { type: 'user.preferences_changed', subjectUserId: user.id } });
  t.same(events.map((e) => e.details), [{ newsletterOptIn: { from: false, to: false } }], 'the first answer is audited, the repeat is not');
});
