import t, { type Test } from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { inviteUser } from '../helpers/accounts.js';

/**
 * Security review: request strings that reach SQL must be a 400, never a database error (500):
 * U+0000 (PostgreSQL text cannot hold it) and crafted pagination cursors whose id part is compared
 * with a uuid column. security.md item 28.
 */

const cursorOf = (parts: string[]) => Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');

/** An app with an organisation, its signed-in administrator and a signed-in support user. */
async function adminAndSupport(t: Test) {
  const { app } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user: admin } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const { user: support } = await createUser(app.ctx.db, app, { roles: ['SUPPORT'] });
  return { app, request: api(app), org, adminToken: (await signIn(app, admin)).accessToken, supportToken: (await signIn(app, support)).accessToken };
}

t.test('NUL characters in request fields answer 400 validation_failed, never 500', async (t) => {
  const { app, request, org, adminToken, supportToken } = await adminAndSupport(t);
  const { user: known } = await createUser(app.ctx.db, app, { organizationId: org.id });

  const cases: [string, Parameters<typeof request>[0]][] = [
    ['login, unknown e-mail', { url: '/v1/auth/login', body: { email: 'a\u0000b@example.test', password: 'whatever whatever' } }],
    ['login, known e-mail + NUL', { url: '/v1/auth/login', body: { email: `${known.email}\u0000`, password: 'whatever whatever' } }],
    ['forgot password', { url: '/v1/password/forgot', body: { email: 'a\u0000b@example.test' } }],
    ['invite: name', { url: '/v1/organization/users', token: adminToken, body: { email: 'new-person@example.test', name: 'Eve\u0000' } }],
    ['list users: q', { url: '/v1/organization/users?q=%00', token: adminToken }],
    ['support search: email', { url: '/v1/support/users?email=a%00b%40example.test', token: supportToken }],
    ['support search: q', { url: '/v1/support/organizations?q=x%00', token: supportToken }],
    ['create organisation: name', {
      url: '/v1/support/organizations',
      token: supportToken,
      body: { customerNumber: 'C-NUL-1', name: 'Acme\u0000', administrator: { email: 'first-admin@example.test', name: 'First' } },
    }],
  ];
  for (const [label, options] of cases) {
    const res = await request(options);
    t.equal(res.status, 400, `${label}: 400`);
    t.equal(res.body.code, 'validation_failed', `${label}: validation_failed`);
  }
  // Nothing was created by the rejected writes.
  t.equal(await app.ctx.db.user.count({ where: { email: 'new-person@example.test' } }), 0);
  t.equal(await app.ctx.db.organization.count({ where: { customerNumber: 'C-NUL-1' } }), 0);
});

t.test('lone surrogates answer 400 validation_failed: the policy would check one string while argon2 hashes another (U+FFFD)', async (t) => {
  const { app, request, adminToken } = await adminAndSupport(t);
  const lone = [3, 71, 12, 250, 99, 5, 180, 42, 17, 201, 66, 130].map((n) => String.fromCharCode(0xd800 + n)).join('');
  const { token, user } = await inviteUser(app);
  const cases: [string, Parameters<typeof request>[0]][] = [
    ['activation password', { url: '/v1/activation', body: { token, password: lone } }],
    ['login password', { url: '/v1/auth/login', body: { email: 'someone@example.test', password: `Velvet orbit ${lone}` } }],
    ['reset password', { url: '/v1/password/reset', body: { token: 'x'.repeat(43), password: `password${'\udfff'.repeat(4)}` } }],
    ['invite: name', { url: '/v1/organization/users', token: adminToken, body: { email: 'new-person@example.test', name: 'Eve \ud83d' } }],
    ['a key', { url: '/v1/auth/login', body: { ['email\ud800']: 'x', email: 'someone@example.test', password: 'whatever whatever' } }],
  ];
  for (const [label, options] of cases) {
    const res = await request(options);
    t.same([res.status, res.body.code], [400, 'validation_failed'], label);
    t.match(res.body.errors?.[0]?.message, /well-formed Unicode/, `${label}: says why`);
  }
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).status, 'INVITED', 'not activated');
  // Characters outside the BMP come as surrogate pairs, and are fine.
  const emoji = await request({ url: '/v1/activation', body: { token, password: 'Velvet orbit lantern 🦊🦊' } });
  t.equal(emoji.status, 200, 'a password with emoji is accepted');
});

t.test('a JSON body that is not UTF-8 answers 400 malformed_json: nothing stored as U+FFFD, no two byte strings one password', async (t) => {
  const { app, adminToken } = await adminAndSupport(t);
  const { token, user } = await inviteUser(app);
  const send = (url: string, parts: (string | number[])[], bearer?: string) =>
    app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      payload: Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))),
    });
  const cases: [string, Awaited<ReturnType<typeof send>>][] = [
    ['Latin-1 "René" in an invitation', await send('/v1/organization/users', ['{"email":"rene@example.test","name":"Ren', [0xe9], '"}'], adminToken)],
    ['stray bytes in an activation password', await send('/v1/activation', [`{"token":"${token}","password":"Velvet orbit lantern `, [0x80, 0x81], '"}'])],
    ['an overlong encoding', await send('/v1/auth/login', ['{"email":"a@example.test","password":"Velvet orbit ', [0xc0, 0xaf], '"}'])],
    ['an encoded surrogate', await send('/v1/auth/login', ['{"email":"a@example.test","password":"Velvet orbit ', [0xed, 0xa0, 0x80], '"}'])],
    ['a truncated sequence at the end', await send('/v1/auth/login', ['{"email":"a@example.test","password":"x"}', [0xe2, 0x82]])],
  ];
  for (const [label, res] of cases) {
    t.same([res.statusCode, res.json().code], [400, 'malformed_json'], label);
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${label}: problem+json`);
  }
  t.equal(await app.ctx.db.user.count({ where: { email: 'rene@example.test' } }), 0, 'nobody invited');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).status, 'INVITED', 'not activated');
  // Real UTF-8 passes, multi-byte characters included.
  const good = await send('/v1/organization/users', ['{"email":"rene@example.test","name":"Ren', [0xc3, 0xa9], '"}'], adminToken);
  t.equal(good.statusCode, 201);
  t.equal((await app.ctx.db.user.findFirstOrThrow({ where: { email: 'rene@example.test' } })).name, 'René');
});

t.test('crafted pagination cursors answer 400 invalid_cursor, never 500', async (t) => {
  const { app, request, org, adminToken, supportToken } = await adminAndSupport(t);
  const at = new Date().toISOString();

  const cases: [string, string, string][] = [
    ['users: id not a uuid', `/v1/organization/users?cursor=${cursorOf(['a', 'not-a-uuid'])}`, adminToken],
    ['users: NUL in the name', `/v1/organization/users?cursor=${cursorOf(['\u0000', crypto.randomUUID()])}`, adminToken],
    ['audit: id not a uuid', `/v1/organization/audit-events?cursor=${cursorOf([at, "1' OR '1'='1"])}`, adminToken],
    ['support audit: id not a uuid', `/v1/support/audit-events?cursor=${cursorOf([at, 'x'])}`, supportToken],
    ['support users: id not a uuid', `/v1/support/users?cursor=${cursorOf(['a', 'x'])}`, supportToken],
    ['support organisations: id not a uuid', `/v1/support/organizations?cursor=${cursorOf(['a', 'x'])}`, supportToken],
  ];
  for (const [label, url, token] of cases) {
    const res = await request({ url, token });
    t.equal(res.status, 400, `${label}: 400`);
    t.equal(res.body.code, 'invalid_cursor', `${label}: invalid_cursor`);
  }

  // A genuine cursor still pages.
  for (let i = 0; i < 3; i++) await createUser(app.ctx.db, app, { organizationId: org.id });
  const first = await request({ url: '/v1/organization/users?limit=2', token: adminToken });
  t.equal(first.status, 200);
  t.type(first.body.nextCursor, 'string');
  const second = await request({ url: `/v1/organization/users?limit=2&cursor=${first.body.nextCursor}`, token: adminToken });
  t.equal(second.status, 200);
  t.equal(second.body.items.length, 2);
});

t.test('names of people and organisations are one line of visible text: line breaks, bidi overrides and zero-width spaces answer 400 and nothing is written or mailed; joiners some scripts need are kept', async (t) => {
  const { app, request, adminToken, supportToken } = await adminAndSupport(t);
  const mailsBefore = await app.ctx.db.mailOutbox.count();

  // What a name must not smuggle into an official mail's text (the review's reproduction).
  const bad = {
    'line break': 'Dora\r\n\r\nPlease reply with your password to verify.',
    tab: 'Dora\tDoe',
    'bidi override': 'Dora \u202Eetirw\u202C',
    'zero-width space': 'Do\u200Bra',
    'line separator': 'Dora\u2028Doe',
    'private use': 'Dora \uE000',
    'no letter or digit': '---',
    'only Hangul fillers': '\u3164\u3164\u3164',
    'a run of ideographic spaces': `Dora${'\u3000'.repeat(40)}Please reply with your password`,
    // Stacked combining marks ("zalgo") spill over the lines above and below in a mail or a list.
    'stacked combining marks': `D${'\u0301\u0300\u0308'.repeat(10)}ora`,
    'five combining marks on one letter (none composes with it)': 'Dorax\u0300\u0301\u0302\u0303\u0304',
    // Review (undo): a joiner the rule keeps for Persian and Indic names does not end the letter's cluster; the marks still stack on it.
    'stacked marks split by zero-width joiners': `Dorax${'\u0300\u0301\u0302\u0303\u200D'.repeat(8)}`,
    'stacked marks split by zero-width non-joiners': `Dorax${'\u0300\u0301\u0302\u0303\u200C'.repeat(8)}`,
  };
  for (const [label, name] of Object.entries(bad)) {
    const invite = await request({ url: '/v1/organization/users', token: adminToken, body: { email: 'new-person@example.test', name } });
    t.equal(invite.status, 400, `invite, ${label}`);
    t.equal(invite.body.code, 'validation_failed', `invite, ${label}`);
    const orgName = await request({
      url: '/v1/support/organizations',
      token: supportToken,
      body: { customerNumber: 'C-NAME-1', name, administrator: { email: 'first-admin@example.test', name: 'First Admin' } },
    });
    t.equal(orgName.status, 400, `organisation name, ${label}`);
    t.equal(orgName.body.code, 'validation_failed', `organisation name, ${label}`);
    const adminName = await request({
      url: '/v1/support/organizations',
      token: supportToken,
      body: { customerNumber: 'C-NAME-2', name: 'Acme', administrator: { email: 'second-admin@example.test', name } },
    });
    t.equal(adminName.status, 400, `first administrator's name, ${label}`);
  }
  t.equal(await app.ctx.db.user.count({ where: { email: { in: ['new-person@example.test', 'first-admin@example.test', 'second-admin@example.test'] } } }), 0, 'no account');
  t.equal(await app.ctx.db.organization.count({ where: { customerNumber: { in: ['C-NAME-1', 'C-NAME-2'] } } }), 0, 'no organisation');
  t.equal(await app.ctx.db.mailOutbox.count(), mailsBefore, 'no mail');

  // A Persian name written with the zero-width non-joiner, and a name with accents: accepted as typed.
  // A Japanese name with one ideographic space, a Hebrew one pasted with a right-to-left mark, an apostrophe.
  // Marks that stay marks after composition: Hindi (virama, vowel signs), Tibetan (subjoined letters and a vowel sign, three in a row).
  const names = ['مهر\u200Cنوش رضایی', 'Zoë Ångström-Nuñez', '山田\u3000太郎', '\u200Fדנה כהן', "Seán O'Brien", 'क्षितिज शर्मा', 'བསྒྲུབས'];
  for (const [i, name] of names.entries()) {
    const invite = await request({ url: '/v1/organization/users', token: adminToken, body: { email: `named-${i}@example.test`, name } });
    t.equal(invite.status, 201, name);
    t.equal(invite.body.name, name, 'stored as typed');
  }
});

t.test("a person's name carries no web or e-mail address (it is read in official mails); real names with dots and apostrophes pass", async (t) => {
  const { app, request, adminToken, supportToken } = await adminAndSupport(t);
  const mailsBefore = await app.ctx.db.mailOutbox.count();
  const bad = [
    'Dora. Your account is on hold: pay the open invoice at https://evil.example/pay',
    'Dora, see evil-shop.com for your invoice',
    'Dora www.evil.example',
    'Dora (billing@evil.example)',
    'Dora hxxp://evil.example',
    'Support: t.me/ShopSupport',
    'see x.com/shop_help',
    'Hans evil\uFF0Ede',
    'Hans evil\u3002de',
    // Top-level domains missing from linkify-it's default list (session 25's mail review): every IANA one counts.
    'Login at also-webshop.app',
    'Verify at secure-also.support',
    'Anna microsoft-login.online',
    // Behind an ideographic or fullwidth full stop, which becomes a dot glued to the domain (second read, session 25).
    'Hans \u3002evil.com',
    'Hans \uFF0Ealso-login.app',
    'Dr.med.\u3002login.support',
  ];
  for (const name of bad) {
    const invite = await request({ url: '/v1/organization/users', token: adminToken, body: { email: 'new-person@example.test', name } });
    t.same([invite.status, invite.body.code], [400, 'validation_failed'], `invite: ${name}`);
    const firstAdmin = await request({
      url: '/v1/support/organizations',
      token: supportToken,
      body: { customerNumber: 'C-NAME-3', name: 'Acme', administrator: { email: 'first-admin@example.test', name } },
    });
    t.equal(firstAdmin.status, 400, `first administrator: ${name}`);
  }
  t.equal(await app.ctx.db.mailOutbox.count(), mailsBefore, 'no mail');

  const names = ['Dr. med. Anna Müller', 'J.R.R. Tolkien', "Anne-Marie O'Neill", 'Zoë St. John', 'A. B. Smith Jr.', 'Jennifer St.Clair', 'Ma.Teresa Santos', 'Dr.med. Hans Müller', 'Dipl.Ing. Franz Huber', 'B.Sc. Lena Vogel', 'Mag.art. Eva Gruber', 'Dr.med.vet. Jan Brandt'];
  for (const [i, name] of names.entries()) {
    const invite = await request({ url: '/v1/organization/users', token: adminToken, body: { email: `dotted-${i}@example.test`, name } });
    t.equal(invite.status, 201, name);
  }
  const organization = await request({
    url: '/v1/support/organizations',
    token: supportToken,
    body: { customerNumber: 'C-NAME-4', name: 'Shop24.de GmbH', administrator: { email: 'shop-admin@example.test', name: 'Sam Shop' } },
  });
  t.equal(organization.status, 201, 'an organisation name may name a domain');
});

/** input-guard.ts walks the whole body: a nested field is stored as it was checked only if it is checked too. */
t.test("a lone surrogate nested in a body (the first administrator's name) answers 400 too: nothing stored as U+FFFD (mutation review, session 21)", async (t) => {
  const { app, request, supportToken } = await adminAndSupport(t);
  const res = await request({
    url: '/v1/support/organizations',
    token: supportToken,
    body: { customerNumber: 'C-NEST-1', name: 'Acme', administrator: { email: 'first-admin@example.test', name: 'First \ud83d' } },
  });
  t.same([res.status, res.body.code], [400, 'validation_failed']);
  t.same(res.body.errors, [{ path: 'body.administrator.name', message: 'must be well-formed Unicode (no lone surrogates)', code: 'invalid_format' }], 'names the nested field');
  t.equal(await app.ctx.db.organization.count({ where: { customerNumber: 'C-NEST-1' } }), 0, 'no organisation');
  t.equal(await app.ctx.db.user.count({ where: { email: 'first-admin@example.test' } }), 0, 'no administrator');
});
