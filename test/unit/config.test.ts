import { createHash, randomBytes } from 'node:crypto';
import t from 'tap';
import { ConfigError, defaultHashConcurrency, developmentModeWarning, loadConfig, startupWarnings } from '../../src/config.js';
import { PRODUCTION_ENV } from '../helpers/production-env.js';

const prodBase = PRODUCTION_ENV;

t.test('defaults give a working development configuration', async (t) => {
  const config = loadConfig({});
  t.equal(config.env, 'development');
  t.equal(config.port, 3000);
  t.equal(config.databaseUrl, undefined, 'no DATABASE_URL means the embedded database');
  t.same(config.argon2, { memoryCost: 19456, timeCost: 2, parallelism: 1 });
  t.ok(config.jwt.accessTtlSeconds <= 900);
  t.equal(config.jwt.clientId, 'webshop', "tokens' client_id: the shop frontend");
  t.match(config, { retentionDays: 30, retentionSweepIntervalSeconds: 3600 }, 'ended records go after 30 days, swept hourly');
  t.equal(config.databaseQueryTimeoutMs, 10_000, 'a silent database costs a request 10 s, not forever');
  t.ok(Object.isFrozen(config));
});

t.test('development defaults work together: the frontend at APP_BASE_URL may call the API (CORS), tokens name this instance as issuer', async (t) => {
  t.same(loadConfig({}).corsOrigins, ['http://localhost:5173'], "APP_BASE_URL's default origin");
  t.same(loadConfig({ APP_BASE_URL: 'http://127.0.0.1:8080/shop/' }).corsOrigins, ['http://127.0.0.1:8080'], 'its origin, not its path');
  t.same(loadConfig({ CORS_ORIGINS: 'https://a.example' }).corsOrigins, ['https://a.example'], 'an explicit list wins');
  t.same(loadConfig({ CORS_ORIGINS: '' }).corsOrigins, ['http://localhost:5173'], 'empty counts as unset, as for every variable');
  t.same(
    loadConfig({ CORS_ORIGINS: 'https://shop.example.com/, HTTPS://CSO.example.com:8443' }).corsOrigins,
    ['https://shop.example.com', 'https://cso.example.com:8443'],
    'each entry as the browser sends it in Origin: no trailing slash, lower-case host (matching is exact)',
  );
  t.same(loadConfig({ NODE_ENV: 'test' }).corsOrigins, [], 'outside development: none unless configured');
  t.same(loadConfig(prodBase).corsOrigins, prodBase.CORS_ORIGINS ? prodBase.CORS_ORIGINS.split(',') : [], 'production: only what is configured');
  t.equal(loadConfig({}).jwt.issuer, 'http://localhost:3000');
  t.equal(loadConfig({ PORT: '3917' }).jwt.issuer, 'http://localhost:3917', 'the port it listens on');
  t.equal(loadConfig({ PORT: '3917', JWT_ISSUER: 'https://auth.example.test' }).jwt.issuer, 'https://auth.example.test');
});

t.test('a bad value stops the start with a message naming the variable', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'eighty' }, /PORT/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL/],
    [{ ACCESS_TOKEN_TTL_SECONDS: '3600' }, /ACCESS_TOKEN_TTL_SECONDS/],
    [{ APP_BASE_URL: 'not a url' }, /APP_BASE_URL/],
    [{ SERVICE_CLIENTS: 'cso:not-a-hash' }, /SERVICE_CLIENTS/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ REFRESH_IDLE_TTL_SECONDS: '900000', REFRESH_ABSOLUTE_TTL_SECONDS: '3600' }, /REFRESH_IDLE_TTL_SECONDS/],
    // Found by session 14's token review: an active user was signed out after 5 minutes, while offline verifiers took the token 10 more.
    [{ REFRESH_IDLE_TTL_SECONDS: '300', ACCESS_TOKEN_TTL_SECONDS: '900' }, /REFRESH_IDLE_TTL_SECONDS: must be at least twice ACCESS_TOKEN_TTL_SECONDS/],
    [{ REFRESH_IDLE_TTL_SECONDS: '1199' }, /REFRESH_IDLE_TTL_SECONDS: must be at least twice/], // the default access tokens live 600 s
    [{ ENCRYPTION_KEYS: 'k1:not-a-32-byte-key' }, /ENCRYPTION_KEYS: keyring: key "k1" must be 32 bytes/],
    [{ ENCRYPTION_KEYS: `k1:${Buffer.alloc(32, 1).toString('base64')}`, ENCRYPTION_KEY_CURRENT: 'k2' }, /ENCRYPTION_KEY_CURRENT: keyring: current key id "k2"/],
    [{ ENCRYPTION_KEY_CURRENT: 'k2' }, /ENCRYPTION_KEY_CURRENT: names a key of ENCRYPTION_KEYS, which is not set/],
    [{ SHOP_NAME: 'ALSO Webshop: Schweiz' }, /SHOP_NAME \(the default TOTP_ISSUER\): must not contain ':'/],
    [{ TOTP_ISSUER: 'Shop:CH' }, /TOTP_ISSUER: must not contain ':'/],
    [{ TRUST_PROXY: 'true' }, /TRUST_PROXY: true would let clients choose their IP/],
    [{ TRUST_PROXY: '1' }, /TRUST_PROXY/],
    [{ TRUST_PROXY: '10.0.0.0/33' }, /TRUST_PROXY/],
    [{ TRUST_PROXY: '10.0.0.1,lb.internal' }, /TRUST_PROXY/],
    [{ MAIL_GIVE_UP_SECONDS: String(3 * 24 * 3600) }, /MAIL_GIVE_UP_SECONDS: must be at least 604800/],
    [{ RETENTION_DAYS: '0' }, /RETENTION_DAYS/],
    // Found by session 13's operator review: each of these started (or failed later with a stack trace).
    [{ DATABASE_URL: 'postgresql://postgres:S3c#ret@Pw@127.0.0.1:5432/db' }, /DATABASE_URL: not a valid URL \(percent-encode/],
    [{ DATABASE_URL: 'postgresql://auth:2024#Summer@db:5432/webshop_auth' }, /DATABASE_URL: not a valid URL/], // parses as host "auth", port 2024
    [{ CORS_ORIGINS: 'https://shop.example.com/cart' }, /CORS_ORIGINS: "https:\/\/shop.example.com\/cart" is not an origin/],
    [{ CORS_ORIGINS: '*' }, /CORS_ORIGINS: "\*" is not an origin/],
    [{ CORS_ORIGINS: 'shop.example.com' }, /CORS_ORIGINS/],
    [{ CORS_ORIGINS: 'ftp://shop.example.com' }, /CORS_ORIGINS/],
    [{ APP_BASE_URL: 'https://shop.example.com/?lang=de' }, /APP_BASE_URL: must not have a query or fragment/],
    [{ APP_BASE_URL: 'https://shop.example.com/#/' }, /APP_BASE_URL: must not have a query or fragment/],
    [{ RETENTION_SWEEP_INTERVAL_SECONDS: '-1' }, /RETENTION_SWEEP_INTERVAL_SECONDS/],
    [{ DATABASE_QUERY_TIMEOUT_MS: '0' }, /DATABASE_QUERY_TIMEOUT_MS/], // 0 would mean "wait forever"
    [{ DATABASE_QUERY_TIMEOUT_MS: '999' }, /DATABASE_QUERY_TIMEOUT_MS/],
    // This service's own audience is reserved for the restricted tokens (selfAudience).
    [{ JWT_ISSUER: 'https://auth.example.test', JWT_AUDIENCES: 'webshop,https://auth.example.test,cso' }, /JWT_AUDIENCES: must not contain JWT_ISSUER/],
    [{ JWT_AUDIENCES: 'webshop,http://localhost:3000' }, /JWT_AUDIENCES: must not contain JWT_ISSUER/],
    // Found by session 17's terms review: POST /v1/me/terms takes at most 64 characters back, so every user was stuck at accept_terms.
    [{ TERMS_VERSION: '2026-03 Allgemeine Geschäftsbedingungen Webshop (Fassung vom 1. März 2026)' }, /TERMS_VERSION/],
    [{ TERMS_VERSION: 'v'.repeat(65) }, /TERMS_VERSION/],
    [{ DEFAULT_LANGUAGE: 'fr' }, /DEFAULT_LANGUAGE/],
    [{ EVENT_FEED_CLIENTS: 'ghost' }, /EVENT_FEED_CLIENTS: "ghost" is none of SERVICE_CLIENTS/],
    [{ DEFAULT_LANGUAGE: 'DE' }, /DEFAULT_LANGUAGE/],
    [{ TERMS_VERSION: ' 2026-01' }, /TERMS_VERSION: printable ASCII/],
  ];
  for (const [env, pattern] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message: pattern }, JSON.stringify(env));
  }
});

t.test('TRUST_PROXY: false, or the addresses of the proxies in front', async (t) => {
  t.equal(loadConfig({}).trustProxy, false, 'off by default');
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  t.same(loadConfig({ TRUST_PROXY: ' 10.0.0.0/8, fd00::/8,192.0.2.7 ' }).trustProxy, ['10.0.0.0/8', 'fd00::/8', '192.0.2.7']);
  t.same(loadConfig({ TRUST_PROXY: 'loopback,uniquelocal' }).trustProxy, ['loopback', 'uniquelocal']);
  for (const catchAll of ['0.0.0.0/0', '::/0', '10.0.0.0/8,::/0']) {
    t.throws(() => loadConfig({ TRUST_PROXY: catchAll }), { message: /TRUST_PROXY/ }, `${catchAll}: refused at validation, not a crash at start`);
  }
});

t.test('production refuses missing or weak secrets and development defaults', async (t) => {
  t.ok(loadConfig(prodBase).isProduction, 'a complete production configuration loads');
  const missing: [string, RegExp][] = [
    ['DATABASE_URL', /DATABASE_URL/],
    ['ENCRYPTION_KEYS', /ENCRYPTION_KEYS/],
    ['SMTP_URL', /SMTP_URL/],
    ['APP_BASE_URL', /APP_BASE_URL/],
    ['JWT_ISSUER', /JWT_ISSUER/],
    ['METRICS_TOKEN', /METRICS_TOKEN/],
  ];
  for (const [name, pattern] of missing) {
    const env: Record<string, string> = { ...prodBase };
    delete env[name];
    t.throws(() => loadConfig(env), ConfigError, `without ${name}`);
    t.throws(() => loadConfig(env), { message: pattern });
  }
  t.throws(() => loadConfig({ ...prodBase, ARGON2_MEMORY_KIB: '4096' }), { message: /ARGON2/ });
  for (const url of ['http://shop.example.com', 'http://localhost.shop.example.com', 'http://127.0.0.1.nip.io', 'http://localhost:5173']) {
    t.throws(() => loadConfig({ ...prodBase, APP_BASE_URL: url }), { message: /APP_BASE_URL: must use https/ }, url);
  }
});

t.test('production refuses secrets that were typed, not generated: a placeholder metrics token, a key of few distinct bytes, a service client with an empty or common secret (operator review, session 15)', async (t) => {
  const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
  const weak: [string, Record<string, string>, RegExp][] = [
    ['a metrics token of one letter', { METRICS_TOKEN: 'aaaaaaaaaaaaaaaa' }, /METRICS_TOKEN: not a random token/],
    ['a metrics token of a few', { METRICS_TOKEN: 'abcabcabcabcabcabcabc' }, /METRICS_TOKEN/],
    ['an all-zero key', { ENCRYPTION_KEYS: `k1:${Buffer.alloc(32).toString('base64')}` }, /ENCRYPTION_KEYS: key "k1" is not random \(1 different/],
    ['a repeated pattern', { ENCRYPTION_KEYS: `k0:${randomBytes(32).toString('base64')},k1:${Buffer.from('0123456789'.repeat(4).slice(0, 32)).toString('base64')}` }, /key "k1" is not random/],
    ['an empty client secret', { SERVICE_CLIENTS: `cso:${sha256('')}` }, /SERVICE_CLIENTS: the secret of "cso" is empty or a common password/],
    ['a common client secret', { SERVICE_CLIENTS: `shop:${sha256(randomBytes(24).toString('base64'))}:webshop,cso:${sha256('password123')}` }, /the secret of "cso"/],
  ];
  for (const [label, change, message] of weak) {
    t.throws(() => loadConfig({ ...prodBase, ...change }), { message }, label);
  }
  // A random token of the minimum length with few different characters passes (a 16-character hex
  // token has 6 or fewer about one time in a hundred).
  t.ok(loadConfig({ ...prodBase, METRICS_TOKEN: '11bf5f461ee46411' }).isProduction, 'random hex of 16, 6 different characters');
  // Generated ones pass, and development takes whatever it is given.
  const generated = { METRICS_TOKEN: randomBytes(24).toString('base64'), ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`, SERVICE_CLIENTS: `cso:${sha256(randomBytes(24).toString('base64'))}` };
  t.ok(loadConfig({ ...prodBase, ...generated }).isProduction);
  t.equal(loadConfig({ NODE_ENV: 'development', METRICS_TOKEN: 'aaaaaaaaaaaaaaaa', SERVICE_CLIENTS: `cso:${sha256('')}` }).isProduction, false);
});

t.test('production refuses the placeholder metrics tokens the docs and the code comment name (operator review, session 23)', async (t) => {
  // README "Configuration": production refuses "a placeholder METRICS_TOKEN"; src/config.ts's
  // weakSecretProblems says it catches "changeme…"; docs/operations.md's docker run example uses
  // 'a-long-random-string-for-prometheus', which an operator may copy verbatim.
  for (const token of ['changemechangeme', 'changemechangemechangeme', 'a-long-random-string-for-prometheus', 'ChangeMe-0123456789', 'passwordpassword', '1qaz2wsx3edc4rfv']) {
    t.throws(() => loadConfig({ ...prodBase, METRICS_TOKEN: token }), { message: /METRICS_TOKEN: a placeholder or a common password/ }, token);
  }
  for (let i = 0; i < 20; i++) {
    const token = randomBytes(32).toString('base64');
    t.equal(loadConfig({ ...prodBase, METRICS_TOKEN: token }).metricsToken, token, 'a generated token passes');
  }
});

t.test('production: the database connection to another host is encrypted unless DATABASE_URL says otherwise (operator review, session 15)', async (t) => {
  // Read as pg reads it: a host= parameter wins over the URL's host, an empty sslmode is none.
  for (const url of [
    'postgresql://auth:pw@db.internal:5432/auth',
    'postgresql:///auth?host=db.remote.example',
    'postgresql://localhost/auth?host=db.remote.example',
    'postgresql://auth@db.internal/auth?sslmode=',
  ]) {
    t.throws(() => loadConfig({ ...prodBase, DATABASE_URL: url }), { message: /DATABASE_URL: to another host without sslmode/ }, url);
  }
  t.throws(() => loadConfig({ ...prodBase, DATABASE_URL: 'postgresql:///auth', PGHOST: 'db.remote.example' }), { message: /DATABASE_URL: to another host/ }, 'PGHOST fills in the host');
  t.ok(loadConfig({ ...prodBase, DATABASE_URL: 'postgresql://auth@db.internal/auth', PGSSLMODE: 'verify-full' }).isProduction, 'PGSSLMODE states it');
  for (const url of [
    'postgresql://auth@%2Fvar%2Frun%2Fpostgresql/auth',
    'postgresql://auth:pw@db.internal:5432/auth?sslmode=verify-full',
    'postgresql://auth:pw@db.internal:5432/auth?sslmode=require',
    'postgresql://auth:pw@db.internal:5432/auth?sslmode=disable',
    'postgresql://auth@127.0.0.1:5432/auth',
    'postgresql://auth@localhost/auth',
    'postgresql:///auth?host=/var/run/postgresql',
  ]) {
    t.ok(loadConfig({ ...prodBase, DATABASE_URL: url }).isProduction, url);
  }
});

t.test('a non-production mode on a real database says loudly what production would have refused; production and the embedded database say nothing here', async (t) => {
  const staging = developmentModeWarning(loadConfig({ NODE_ENV: 'test', DATABASE_URL: 'postgresql://db.internal/auth' }));
  t.match(staging, /^!!! NODE_ENV=test on the database of DATABASE_URL: production checks are off/);
  for (const part of ['/metrics answers without a token', 'mail, with its live links, goes to the log', 'development encryption keys', 'Set NODE_ENV=production']) {
    t.match(staging, part);
  }
  const closer = developmentModeWarning(loadConfig({ ...prodBase, NODE_ENV: 'development' }));
  t.notMatch(closer, /metrics|mail|encryption|argon2/, 'only what is actually relaxed');
  t.match(closer, /NODE_ENV=development/);
  t.equal(developmentModeWarning(loadConfig(prodBase)), null);
  t.equal(developmentModeWarning(loadConfig({ NODE_ENV: 'development' })), null, 'the embedded database warns on its own');
});

t.test('NODE_ENV unset: production once DATABASE_URL is set (a deployment that forgot it is checked), development on the embedded database', async (t) => {
  const { NODE_ENV: _set, ...withoutNodeEnv } = prodBase;
  t.ok(loadConfig(withoutNodeEnv).isProduction, 'a complete deployment without NODE_ENV is production');
  t.throws(
    () => loadConfig({ DATABASE_URL: 'postgresql://db.internal/auth' }),
    { message: /NODE_ENV is unset and DATABASE_URL is set: production; NODE_ENV=development for a development server[\s\S]*SMTP_URL/ },
    'a real database without NODE_ENV gets the production checks, and is told why',
  );
  t.equal(loadConfig({}).env, 'development', 'the embedded database: development');
  t.equal(loadConfig({ NODE_ENV: 'development', DATABASE_URL: 'postgresql://127.0.0.1/auth' }).env, 'development', 'an explicit NODE_ENV wins');
  for (const url of ['postgresql:///auth', 'postgresql:///auth?host=/var/run/postgresql', 'postgres://u:p%23w@db:5432/auth?sslmode=verify-full']) {
    t.doesNotThrow(() => loadConfig({ NODE_ENV: 'development', DATABASE_URL: url }), `${url}: pg's defaults and socket URLs still pass`);
  }
});

t.test('production: mail to another host travels encrypted unless SMTP_URL says otherwise; the certificate is always checked', async (t) => {
  const smtp = (url: string) => () => loadConfig({ ...prodBase, SMTP_URL: url });
  for (const url of ['smtp://mail.internal:25', 'smtp://user:pass@mail.internal:587', 'smtp://mail.internal:587?requireTLS=yes']) {
    t.throws(smtp(url), { message: /SMTP_URL: smtp:\/\/ to another host may send the links in clear text/ }, url);
  }
  t.throws(smtp('smtps://mail.internal:465?tls.rejectUnauthorized=false'), { message: /tls.rejectUnauthorized=false is refused/ });
  t.throws(smtp('smtps://mailer:pa#ss@mail.internal:465'), { message: /SMTP_URL: not a valid URL/ }, 'a malformed URL is named, not a crash');
  for (const url of ['smtps://mail.internal:465', 'smtp://mail.internal:587?requireTLS=true', 'smtp://relay.local:25?requireTLS=false', 'smtp://127.0.0.1:25', 'smtp://localhost:25', 'smtp://[::1]:25']) {
    t.doesNotThrow(smtp(url), url);
  }
  t.doesNotThrow(() => loadConfig({ NODE_ENV: 'development', SMTP_URL: 'smtp://mail.internal:25' }), 'development: any');
});

/**
 * A claimed mail is held for MAIL_LEASE_SECONDS (10 min); a send that outlasts it may be taken over
 * and sent twice. The transport's own timeouts keep a stalled relay well inside it (30 s); the URL
 * may change them (nodemailer reads its query string), only not to something near the lease.
 */
t.test('SMTP_URL may not stretch the transport timeouts past 60 s: a stalled relay must let go of a mail long before its lease ends (session 21)', async (t) => {
  for (const name of ['connectionTimeout', 'greetingTimeout', 'socketTimeout', 'dnsTimeout']) {
    t.throws(() => loadConfig({ NODE_ENV: 'development', SMTP_URL: `smtp://127.0.0.1:25?${name}=600000` }), { message: new RegExp(`SMTP_URL: ${name} must be a number of milliseconds up to 60000`) }, name);
    t.throws(() => loadConfig({ NODE_ENV: 'development', SMTP_URL: `smtp://127.0.0.1:25?${name}=soon` }), { message: new RegExp(`SMTP_URL: ${name} must be`) }, `${name}: not a number`);
    t.throws(() => loadConfig({ NODE_ENV: 'development', SMTP_URL: `smtp://127.0.0.1:25?${name}=5000&${name}=600000` }), { message: new RegExp(`SMTP_URL: ${name} must be`) }, `${name}: given twice`);
    t.doesNotThrow(() => loadConfig({ NODE_ENV: 'development', SMTP_URL: `smtp://127.0.0.1:25?${name}=60000` }), `${name}=60000`);
  }
  t.doesNotThrow(() => loadConfig({ ...prodBase, SMTP_URL: 'smtps://mail.internal:465?socketTimeout=5000' }), 'shorter: fine');
});

t.test('service clients are parsed from id:sha256 pairs', async (t) => {
  const hash = 'a'.repeat(64);
  const config = loadConfig({ SERVICE_CLIENTS: `cso:${hash}, shop:${'b'.repeat(64)}:webshop` });
  t.same(config.serviceClients.map((c) => c.id), ['cso', 'shop']);
  // An entry without `<id>:` may be a raw secret pasted in: named by position, never echoed.
  const secret = 'cso-Secr3t-pasted-raw';
  t.throws(() => loadConfig({ SERVICE_CLIENTS: `shop:${hash},${secret}` }), { message: /SERVICE_CLIENTS: entry 2 must be/ });
  try {
    loadConfig({ SERVICE_CLIENTS: `shop:${hash},${secret}` });
  } catch (err) {
    t.notOk((err as Error).message.includes(secret), 'the entry is not in the message');
  }
  t.throws(() => loadConfig({ SERVICE_CLIENTS: 'cso:not-a-hash' }), { message: /entry 1 \("cso"\)/ }, 'an id is named');

  // The audiences each client may introspect tokens for: named, or its own id.
  const withAudiences = loadConfig({
    JWT_AUDIENCES: 'webshop,cso,https://erp.example.com',
    SERVICE_CLIENTS: `cso:${hash},erp:${'b'.repeat(64)}:https://erp.example.com|webshop,cso:${'c'.repeat(64)}`,
  });
  t.same(withAudiences.serviceClients.map((c) => [c.id, c.audiences]), [['cso', ['cso']], ['erp', ['https://erp.example.com', 'webshop']], ['cso', ['cso']]]);
  for (const [label, value, message] of [
    ['an id that is no audience, naming none', `shop:${hash}`, /"shop" is none of JWT_AUDIENCES: name the audiences/],
    ['an audience not configured', `shop:${hash}:erp`, /"shop" names "erp", not in JWT_AUDIENCES/],
    ['an empty audience', `shop:${hash}:webshop|`, /entry 1 \("shop"\) must be/],
    ['two entries of one client with different audiences', `shop:${hash}:webshop,shop:${'b'.repeat(64)}:webshop|cso`, /the entries of "shop" name different audiences/],
  ] as const) {
    t.throws(() => loadConfig({ SERVICE_CLIENTS: value }), { message }, label);
  }
  const dbPassword = 'S3c#ret@Pw';
  try {
    loadConfig({ DATABASE_URL: `postgresql://postgres:${dbPassword}@127.0.0.1:5432/db` });
    t.fail('refused');
  } catch (err) {
    t.notOk((err as Error).message.includes(dbPassword), 'nor is a database password');
  }
});

t.test('hashes at once by default: cores + 1 while the libuv pool keeps a thread free, never fewer than the cores', async (t) => {
  t.equal(defaultHashConcurrency(2, 4), 3, 'two cores, default pool of 4');
  t.equal(defaultHashConcurrency(1, 4), 2);
  t.equal(defaultHashConcurrency(4, 4), 4, 'the pool is the limit: not more than before, not fewer than the cores');
  t.equal(defaultHashConcurrency(8, 10), 9);
  t.equal(loadConfig({ NODE_ENV: 'test', HASH_MAX_CONCURRENT: '5' }).hashQueue.maxConcurrent, 5, 'an explicit value wins');
});

t.test('the language of mails: DEFAULT_LANGUAGE, and how each language names support', async (t) => {
  const defaults = loadConfig({});
  t.equal(defaults.defaultLanguage, 'en');
  t.same(defaults.supportContactIn, { en: 'the e-business team (ebusiness@webshop.localhost)', de: 'das E-Business-Team (ebusiness@webshop.localhost)' }, "the default's German twin");
  t.equal(loadConfig({ DEFAULT_LANGUAGE: 'de' }).defaultLanguage, 'de');
  t.same(startupWarnings(defaults), [], 'the defaults have their German twin');
  t.match(startupWarnings(loadConfig({ SUPPORT_CONTACT: 'the support team (support@shop.example)' })), [/SUPPORT_CONTACT_DE is unset/]);
  t.same(startupWarnings(loadConfig({ SUPPORT_CONTACT: 'ebusiness@shop.example', SUPPORT_CONTACT_DE: 'ebusiness@shop.example' })), [], 'named for German too');
  t.same(loadConfig({ SUPPORT_CONTACT: 'ebusiness@shop.example' }).supportContactIn, { en: 'ebusiness@shop.example', de: 'ebusiness@shop.example' }, 'a configured contact serves both');
  t.same(
    loadConfig({ SUPPORT_CONTACT: 'our e-business team', SUPPORT_CONTACT_DE: 'unser E-Business-Team' }).supportContactIn,
    { en: 'our e-business team', de: 'unser E-Business-Team' },
  );
});

t.test('MAIL_TIME_ZONE: an IANA time zone, Europe/Berlin unless set; anything else is refused at start', async (t) => {
  t.equal(loadConfig({}).mailTimeZone, 'Europe/Berlin');
  t.equal(loadConfig({ MAIL_TIME_ZONE: 'UTC' }).mailTimeZone, 'UTC');
  t.throws(() => loadConfig({ MAIL_TIME_ZONE: 'Mars/Olympus' }), /MAIL_TIME_ZONE/);
});

t.test('REFRESH_MAX_PER_SESSION: by default 5,000 or twice the refreshes the absolute lifetime needs; never below those (review of session 32)', async (t) => {
  t.equal(loadConfig({}).refresh.maxPerSession, 5000, '7 days at 10-min access tokens need 1,008');
  t.equal(loadConfig({ ACCESS_TOKEN_TTL_SECONDS: '60' }).refresh.maxPerSession, 20_160, '1-min access tokens: 10,080 needed, twice that');
  t.equal(loadConfig({ REFRESH_MAX_PER_SESSION: '1008' }).refresh.maxPerSession, 1008, 'exactly what the lifetime needs');
  t.throws(() => loadConfig({ REFRESH_MAX_PER_SESSION: '1007' }), { message: /REFRESH_MAX_PER_SESSION: must be at least REFRESH_ABSOLUTE_TTL_SECONDS \/ ACCESS_TOKEN_TTL_SECONDS \(1008\)/ });
  t.throws(() => loadConfig({ ACCESS_TOKEN_TTL_SECONDS: '60', REFRESH_MAX_PER_SESSION: '5000' }), ConfigError);
});
