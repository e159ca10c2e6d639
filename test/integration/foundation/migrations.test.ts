import { setTimeout as sleep } from 'node:timers/promises';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, mkdir, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { MIGRATIONS_DIR, migrate, readMigrations } from '../../../src/db/migrate.js';
import { openDatabase } from '../../../src/db/client.js';
import { FEED_START, readFeedEvents } from '../../../src/modules/events/event-feed.js';
import { purgeEnded } from '../../../src/modules/retention/retention.js';
import { createEmptyDatabase } from '../../helpers/database.js';

const quiet = { info: () => undefined, warn: () => undefined };


/** A new database with every committed migration older than `name` applied (to test migration `name` on data). */
async function migratedUpTo(t: Test, name: string): Promise<string> {
  const url = await createEmptyDatabase(t);
  await migrateBefore(url, name);
  return url;
}

/** Applies the committed migrations whose names sort before `name` (those not applied yet). */
async function migrateBefore(url: string, name: string): Promise<void> {
  const before = await mkdtemp(join(tmpdir(), 'migs-'));
  for (const m of (await readMigrations()).filter((f) => f.name < name)) {
    await cp(join(MIGRATIONS_DIR, m.name), join(before, m.name), { recursive: true });
  }
  await migrate(url, quiet, before);
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

t.test('keeps Prisma bookkeeping exactly and applies each migration once, even when two instances start together', async (t) => {
  const url = await createEmptyDatabase(t);
  const [a, b] = await Promise.all([migrate(url, quiet), migrate(url, quiet)]);
  const files = await readMigrations();
  t.equal(a.applied.length + b.applied.length, files.length, 'each migration applied exactly once across both runners');
  const rows = await query<{ migration_name: string; checksum: string; finished_at: Date | null; applied_steps_count: number }>(
    url,
    'SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name',
  );
  t.same(rows.map((r) => r.migration_name), files.map((f) => f.name));
  for (const [i, row] of rows.entries()) {
    t.equal(row.checksum, files[i]!.checksum, 'checksum is the SHA-256 hex of the file, as Prisma computes it');
    t.ok(row.finished_at, 'finished');
    t.equal(row.applied_steps_count, 1);
  }
  const again = await migrate(url, quiet);
  t.same(again.applied, [], 'a second run applies nothing');

  // (mutation review, session 22) A migration edited after it was applied is not applied again, but
  // said: the schema may no longer be what the files describe.
  const edited = files[1]!.name;
  await query(url, 'UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2', ['0'.repeat(64), edited]);
  const warnings: string[] = [];
  const third = await migrate(url, { info: () => undefined, warn: (m) => warnings.push(m) });
  t.same(third.applied, [], 'nothing is applied again');
  t.same(warnings, [`migration ${edited} was modified after it was applied (checksum differs)`], 'the edited migration is named, the others are not');
});

t.test('a failing migration leaves no half-applied change, is recorded as rolled back, and the next run applies it once fixed', async (t) => {
  const url = await createEmptyDatabase(t);
  const dir = await mkdtemp(join(tmpdir(), 'migs-'));
  await cp(MIGRATIONS_DIR, dir, { recursive: true });
  await mkdir(join(dir, '29991231000000_broken'));
  const broken = 'CREATE TABLE "half_done" (id int);\nSELECT * FROM "no_such_table";\n';
  await writeFile(join(dir, '29991231000000_broken', 'migration.sql'), broken);
  await t.rejects(migrate(url, quiet, dir), { name: 'MigrationError', message: /29991231000000_broken/ });
  const tables = await query(url, `SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'`);
  t.equal(tables.length, 0, 'the failed migration was rolled back');
  const failed = await query<{ finished_at: Date | null; rolled_back_at: Date | null; checksum: string; logs: string }>(
    url,
    `SELECT finished_at, rolled_back_at, checksum, logs FROM "_prisma_migrations" WHERE migration_name = '29991231000000_broken'`,
  );
  t.equal(failed.length, 1);
  t.equal(failed[0]!.finished_at, null, 'recorded as started, not finished');
  t.ok(failed[0]!.rolled_back_at, 'and rolled back, which it was: nothing for an operator to repair by hand');
  t.match(failed[0]!.logs, /no_such_table/, 'the error is kept');
  t.equal(failed[0]!.checksum, createHash('sha256').update(broken).digest('hex'));
  await t.rejects(migrate(url, quiet, dir), { message: /29991231000000_broken failed: .*no_such_table/ }, 'the next start tries again, and says why it fails');

  // Fixed (a new release, or the data it tripped over cleaned up): applied without a manual step.
  await writeFile(join(dir, '29991231000000_broken', 'migration.sql'), 'CREATE TABLE "half_done" (id int);\n');
  const fixed = await migrate(url, quiet, dir);
  t.same(fixed.applied, ['29991231000000_broken']);
  t.equal((await query(url, `SELECT 1 FROM information_schema.tables WHERE table_name = 'half_done'`)).length, 1);
});

t.test('a failed row left outside this service (not rolled back) blocks, and the message names the repair', async (t) => {
  const url = await createEmptyDatabase(t);
  await migrate(url, quiet);
  await query(
    url,
    `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ('${randomUUID()}', 'x', '29991231000000_partial', now(), 0)`,
  );
  await t.rejects(migrate(url, quiet), {
    name: 'MigrationError',
    message: /29991231000000_partial failed earlier outside this service .*\(UPDATE "_prisma_migrations" SET rolled_back_at = now\(\) WHERE migration_name = '29991231000000_partial'/,
  });
  // The named repair works.
  await query(url, `UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '29991231000000_partial' AND finished_at IS NULL`);
  t.same((await migrate(url, quiet)).applied, [], 'unblocked');
});

t.test('every model round-trips through the generated client, and e-mail is unique case-insensitively', async (t) => {
  const url = await createEmptyDatabase(t);
  await migrate(url, quiet);
  const { db, close } = openDatabase(url);
  t.teardown(close);
  const now = new Date();
  const org = await db.organization.create({ data: { customerNumber: 'C-1', name: 'Acme' } });
  const user = await db.user.create({
    data: { organizationId: org.id, email: 'Jane.Doe@Example.com', name: 'Jane', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  t.same(user.roles, ['USER', 'CUSTOMER_ADMIN']);
  t.equal(user.status, 'INVITED');
  t.equal(user.newsletterOptIn, false, 'newsletter is off by default');
  await t.rejects(
    db.user.create({ data: { organizationId: org.id, email: 'jane.doe@example.COM', name: 'Other' } }),
    { code: 'P2002' },
    'a case variant of an existing e-mail is refused by the database',
  );
  const other = await db.organization.create({ data: { customerNumber: 'C-2', name: 'Other' } });
  await t.rejects(
    db.user.create({ data: { organizationId: other.id, email: 'JANE.DOE@EXAMPLE.COM', name: 'Other' } }),
    { code: 'P2002' },
    'also across organisations',
  );
  t.equal((await db.user.findUnique({ where: { email: 'JANE.doe@example.com' } }))?.id, user.id, 'look-ups are case-insensitive');

  const factor = await db.totpFactor.create({ data: { userId: user.id, secretCiphertext: 'x', encryptionKeyId: 'k1', lastUsedStep: 59_000_000 } });
  t.equal(factor.status, 'PENDING');
  await db.recoveryCode.create({ data: { userId: user.id, codeHash: 'h1' } });
  const flow = await db.flowToken.create({ data: { userId: user.id, purpose: 'ACTIVATION', tokenHash: 't1', expiresAt: now, data: { a: 1 } } });
  t.same(flow.data, { a: 1 });
  const session = await db.session.create({ data: { userId: user.id, amr: ['pwd', 'otp'], idleExpiresAt: now, expiresAt: now } });
  await db.refreshToken.create({ data: { sessionId: session.id, tokenHash: 'r1' } });
  const event = await db.auditEvent.create({ data: { type: 'user.invited', organizationId: org.id, details: { by: 'test' } } });
  await t.rejects(db.auditEvent.update({ where: { id: event.id }, data: { type: 'changed' } }), 'audit rows are append-only');
  await t.rejects(db.auditEvent.delete({ where: { id: event.id } }), 'audit rows cannot be deleted');
  await db.mailOutbox.create({ data: { toAddress: 'a@b.c', template: 'activation', subject: 's', textBody: 't', htmlBody: 'h' } });
  await db.signingKey.create({ data: { kid: 'k', algorithm: 'EdDSA', publicJwk: { kty: 'OKP' }, privateKeyCiphertext: 'c', encryptionKeyId: 'k1' } });
  const loaded = await db.user.findUniqueOrThrow({
    where: { id: user.id },
    include: { totpFactors: true, recoveryCodes: true, flowTokens: true, sessions: { include: { refreshTokens: true } }, organization: true },
  });
  t.equal(loaded.totpFactors.length, 1);
  t.equal(loaded.sessions[0]!.refreshTokens.length, 1);
  t.equal(loaded.organization?.customerNumber, 'C-1');
});

t.test('one live login challenge per user: the migration keeps each user\'s newest and the index holds from then on', async (t) => {
  const url = await migratedUpTo(t, '20261128170000');
  const [user] = await query<{ id: string }>(
    url,
    `INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), 'a@example.com', 'A', '{USER}', 'ACTIVE', now()) RETURNING id`,
  );
  const challenge = (hash: string, at: string) =>
    query(
      url,
      `INSERT INTO flow_tokens (id, user_id, purpose, token_hash, state, expires_at, created_at)
       VALUES (gen_random_uuid(), $1, 'LOGIN_CHALLENGE', $2, 'PENDING', now() + interval '5 minutes', $3)`,
      [user!.id, hash, at],
    );
  await challenge('older', '2026-11-28T10:00:00Z');
  await challenge('newest', '2026-11-28T10:00:01Z');

  await migrate(url, quiet);
  const rows = await query<{ token_hash: string; state: string }>(url, 'SELECT token_hash, state FROM flow_tokens ORDER BY created_at');
  t.same(rows, [{ token_hash: 'older', state: 'VOIDED' }, { token_hash: 'newest', state: 'PENDING' }]);
  await t.rejects(challenge('another', '2026-11-28T10:00:02Z'), { code: '23505', constraint: 'flow_tokens_one_pending_login_challenge' });
});

t.test('sealed mail bodies: the migration removes the plain bodies of mails already sent or given up, and keeps the queued ones', async (t) => {
  const url = await migratedUpTo(t, '20261128230000');
  const mail = (to: string, sentAt: string | null, failedAt: string | null) =>
    query(
      url,
      `INSERT INTO mail_outbox (id, to_address, template, subject, text_body, html_body, attempts, sent_at, failed_at, last_error)
       VALUES (gen_random_uuid(), $1, 'activation', 'Shop: activate your account', 'link ?token=secret-' || $1, '<a href="?token=secret-' || $1 || '">',
               1, $2, $3, CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE '550 no such mailbox' END)`,
      [to, sentAt, failedAt],
    );
  await mail('queued@example.test', null, null);
  await mail('sent@example.test', '2026-11-28T10:00:00Z', null);
  await mail('failed@example.test', null, '2026-11-28T10:00:00Z');

  await migrate(url, quiet);
  const rows = await query<Record<string, unknown>>(
    url,
    `SELECT to_address, subject, text_body, html_body, body_ciphertext, encryption_key_id, attempts, last_error,
            sent_at IS NOT NULL AS sent, failed_at IS NOT NULL AS failed
     FROM mail_outbox ORDER BY to_address`,
  );
  const gone = { text_body: null, html_body: null, body_ciphertext: null, encryption_key_id: null };
  const subject = 'Shop: activate your account';
  t.same(rows, [
    { to_address: 'failed@example.test', subject, ...gone, attempts: 1, last_error: '550 no such mailbox', sent: false, failed: true },
    {
      to_address: 'queued@example.test',
      subject,
      text_body: 'link ?token=secret-queued@example.test',
      html_body: '<a href="?token=secret-queued@example.test">',
      body_ciphertext: null,
      encryption_key_id: null,
      attempts: 1,
      last_error: null,
      sent: false,
      failed: false,
    },
    { to_address: 'sent@example.test', subject, ...gone, attempts: 1, last_error: null, sent: true, failed: false },
  ], 'sent and given-up mails lose their bodies; a queued one keeps it for delivery; the rest of each row stays');
  const nullable = await query<{ column_name: string; is_nullable: string }>(
    url,
    `SELECT column_name, is_nullable FROM information_schema.columns
     WHERE table_name = 'mail_outbox' AND column_name IN ('text_body', 'html_body', 'body_ciphertext', 'encryption_key_id') ORDER BY column_name`,
  );
  t.same(nullable.map((c) => [c.column_name, c.is_nullable]), [
    ['body_ciphertext', 'YES'],
    ['encryption_key_id', 'YES'],
    ['html_body', 'YES'],
    ['text_body', 'YES'],
  ]);
});

t.test('blocked by support: the migration marks the blocks support made before it, by the newest block audit row', async (t) => {
  const url = await migratedUpTo(t, '20261130020000');
  const user = async (email: string, status: string, bySuspension = false) =>
    (
      await query<{ id: string }>(
        url,
        `INSERT INTO users (id, email, name, roles, status, blocked_by_suspension, updated_at)
         VALUES (gen_random_uuid(), $1, 'X', '{USER}', $2::"UserStatus", $3, now()) RETURNING id`,
        [email, status, bySuspension],
      )
    )[0]!.id;
  const blockedAudit = (subject: string, by: string, at: string) =>
    query(
      url,
      `INSERT INTO audit_events (id, type, subject_user_id, details, created_at) VALUES (gen_random_uuid(), 'user.blocked', $1, $2::jsonb, $3)`,
      [subject, JSON.stringify({ by }), at],
    );
  const bySupport = await user('support@example.com', 'BLOCKED');
  await blockedAudit(bySupport, 'support', '2026-11-01T10:00:00Z');
  const laterByAdmin = await user('admin@example.com', 'BLOCKED');
  await blockedAudit(laterByAdmin, 'support', '2026-11-01T10:00:00Z');
  await blockedAudit(laterByAdmin, 'admin', '2026-11-02T10:00:00Z');
  const unblocked = await user('active@example.com', 'ACTIVE');
  await blockedAudit(unblocked, 'support', '2026-11-01T10:00:00Z');
  const suspended = await user('suspended@example.com', 'BLOCKED', true);
  await blockedAudit(suspended, 'support', '2026-11-01T10:00:00Z');

  await migrate(url, quiet);
  const rows = await query<{ email: string; blocked_by_support: boolean }>(url, 'SELECT email, blocked_by_support FROM users ORDER BY email');
  t.same(rows, [
    { email: 'active@example.com', blocked_by_support: false },
    { email: 'admin@example.com', blocked_by_support: false },
    { email: 'support@example.com', blocked_by_support: true },
    { email: 'suspended@example.com', blocked_by_support: false },
  ]);
});

t.test('names in NFC: the migration composes names stored decomposed and audits each change, so the event feed tells it', async (t) => {
  const url = await migratedUpTo(t, '20261201030000');
  const [org] = await query<{ id: string }>(
    url,
    `INSERT INTO organizations (id, customer_number, name, updated_at) VALUES (gen_random_uuid(), 'C-NFC', 'Mu\u0308ller GmbH', now()) RETURNING id`,
  );
  const [user] = await query<{ id: string }>(
    url,
    `INSERT INTO users (id, email, name, roles, status, organization_id, updated_at) VALUES (gen_random_uuid(), 'b@example.com', 'Bernd Mu\u0308ller', '{USER}', 'ACTIVE', $1, now()) RETURNING id`,
    [org!.id],
  );
  await query(url, `INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), 'c@example.com', 'Carla Müller', '{USER}', 'ACTIVE', now())`);
  // An organisation whose name is composed already: no row for it (mutation review, session 26).
  await query(url, `INSERT INTO organizations (id, customer_number, name, updated_at) VALUES (gen_random_uuid(), 'C-NFC-2', 'Schäfer AG', now())`);

  await migrate(url, quiet);
  t.same(await query(url, `SELECT name FROM users ORDER BY email`), [{ name: 'Bernd Müller' }, { name: 'Carla Müller' }]);
  t.same(await query(url, `SELECT name FROM organizations ORDER BY customer_number`), [{ name: 'Müller GmbH' }, { name: 'Schäfer AG' }]);
  const audits = await query<{ type: string; subject_user_id: string | null; organization_id: string; details: unknown }>(
    url,
    `SELECT type, subject_user_id, organization_id, details FROM audit_events ORDER BY type`,
  );
  t.same(audits, [
    { type: 'organization.updated', subject_user_id: null, organization_id: org!.id, details: { by: 'migration', name: { from: 'Mu\u0308ller GmbH', to: 'Müller GmbH' } } },
    { type: 'user.renamed', subject_user_id: user!.id, organization_id: org!.id, details: { by: 'migration', name: { from: 'Bernd Mu\u0308ller', to: 'Bernd Müller' } } },
  ], 'one row per name changed, none for a name already composed');
  const [index] = await query<{ indexdef: string }>(url, `SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_events_feed'`);
  t.match(index!.indexdef, /'user\.preferences_changed'.*'mfa\.enrolled'/s, 'the feed index, rebuilt with the two new types, under its name');
  t.same(await query(url, `SELECT indexname FROM pg_indexes WHERE indexname = 'audit_events_feed_2'`), [], 'no second index left');
});

// A rolling upgrade across 20261201030000 and 20261201040000 (upgrade review, session 27).

/** A long read of audit_events (a SIEM export, pg_dump): ACCESS SHARE until `end()` commits it. */
async function auditReader(t: Test, url: string): Promise<{ end(): Promise<void> }> {
  const reader = new pg.Client({ connectionString: url });
  await reader.connect();
  t.teardown(() => reader.end().catch(() => undefined));
  await reader.query('BEGIN');
  await reader.query('SELECT count(*) FROM audit_events');
  return { end: async () => void (await reader.query('COMMIT')) };
}

const indexValidity = (url: string, name: string) =>
  query<{ indisvalid: boolean }>(url, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1`, [name]);

t.test('feed index: a prebuild left invalid by an interrupted CREATE INDEX CONCURRENTLY ends up rebuilt, valid, in the feed\'s place', async (t) => {
  const url = await migratedUpTo(t, '20261201030000');
  // What an interrupted concurrent build leaves (Ctrl-C, a statement_timeout): an index of that name, marked invalid.
  await query(url, `INSERT INTO audit_events (id, type) VALUES (gen_random_uuid(), 'user.invited'), (gen_random_uuid(), 'user.invited')`);
  await query(url, `CREATE UNIQUE INDEX CONCURRENTLY "audit_events_feed_2" ON audit_events (type)`).catch(() => undefined);
  t.same(await indexValidity(url, 'audit_events_feed_2'), [{ indisvalid: false }], 'precondition: an invalid prebuilt index');

  await migrate(url, quiet);
  t.same(await indexValidity(url, 'audit_events_feed'), [{ indisvalid: true }], 'the event feed has a valid index');
  t.same(await query(url, `SELECT count(*)::int AS n FROM pg_index WHERE indrelid = 'audit_events'::regclass AND NOT indisvalid`), [{ n: 0 }], 'no invalid index left');
});

t.test('a migration waiting for a table lock gives way to the statements queued behind it (sign-ins) and applies once the lock is free', async (t) => {
  const url = await migratedUpTo(t, '20261201030000');
  const reader = await auditReader(t, url);
  const warnings: string[] = [];
  const migrating = migrate(url, { info() {}, warn: (m) => warnings.push(m) }, MIGRATIONS_DIR, { lockTimeoutMs: 500, retryDelayMs: 500, maxWaitMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const insert = await query(url, `SET statement_timeout = '3s'; INSERT INTO audit_events (id, type) VALUES (gen_random_uuid(), 'login.password_failed')`).then(
    () => 'inserted',
    (e: Error) => e.message,
  );
  t.equal(insert, 'inserted', "a sign-in's audit row is written while the migration waits for its lock");
  await new Promise((r) => setTimeout(r, 1500));
  await reader.end();
  const result = await migrating;
  t.ok(result.applied.includes('20261201030000_audit_events_feed_preferences_mfa'), 'applied once the reader ended');
  t.ok(warnings.some((w) => w.includes('gave way')), 'each wait is logged');
  t.same(await indexValidity(url, 'audit_events_feed'), [{ indisvalid: true }]);
});

t.test('a migration that cannot get its lock within the limit fails, recorded as rolled back, and the next start applies it', async (t) => {
  const url = await migratedUpTo(t, '20261201030000');
  const reader = await auditReader(t, url);
  const failed = await migrate(url, quiet, MIGRATIONS_DIR, { lockTimeoutMs: 200, retryDelayMs: 200, maxWaitMs: 700 }).then(() => 'applied', (e: Error) => e.message);
  t.match(failed, /20261201030000_audit_events_feed_preferences_mfa failed: canceling statement due to lock timeout/);
  t.same(
    await query(url, `SELECT finished_at IS NULL AS unfinished, rolled_back_at IS NOT NULL AS rolled_back FROM "_prisma_migrations" WHERE migration_name = '20261201030000_audit_events_feed_preferences_mfa'`),
    [{ unfinished: true, rolled_back: true }],
    'recorded as rolled back, once',
  );
  await reader.end();
  t.ok((await migrate(url, quiet)).applied.includes('20261201030000_audit_events_feed_preferences_mfa'));
});

t.test("names in NFC: the NFC migration's audit rows, whose ids are random, are listed for the retention sweep, which deletes them in time", async (t) => {
  const url = await migratedUpTo(t, '20261201040000');
  await query(url, `INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), 'd@example.com', 'Dora Mu\u0308ller', '{USER}', 'ACTIVE', now())`);
  await migrateBefore(url, '20261201050000');
  // As if 20261201040000 had run two years ago (its rows are written "now"; the trigger refuses updates).
  const [old] = await query<{ id: string }>(
    url,
    `INSERT INTO audit_events (id, type, details, created_at) VALUES (gen_random_uuid(), 'user.renamed', '{"by": "migration"}', now() - interval '2 years') RETURNING id::text`,
  );
  await migrate(url, quiet);
  const listed = await query<{ id: string }>(url, `SELECT id::text FROM audit_events_unordered_ids ORDER BY created_at`);
  t.equal(listed.length, 2, "both of the migration's rows are listed (ids left alone: the event feed may have handed them out)");
  t.equal(listed[0]?.id, old!.id);

  const { db, close } = openDatabase(url);
  t.teardown(close);
  const report = await purgeEnded({ db, clock: { now: () => new Date() }, config: { retentionDays: 30, auditRetentionDays: 365 } });
  t.equal(report.audit_events, 1, 'the one older than AUDIT_RETENTION_DAYS goes');
  t.same(await query(url, `SELECT id::text FROM audit_events WHERE id = $1`, [old!.id]), []);
  t.same((await query<{ id: string }>(url, `SELECT id::text FROM audit_events_unordered_ids`)).map((r) => r.id), [listed[1]!.id], 'and leaves the list');
});

t.test('names in NFC whoever writes them: a name an older release stored decomposed during the upgrade is composed and audited, and the database composes later writes', async (t) => {
  const url = await migratedUpTo(t, '20261201060000');
  // An instance of the release before 20261201040000, still serving, renames a user as typed.
  const [user] = await query<{ id: string }>(
    url,
    `INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), 'j@example.com', 'J\u00f6rg M\u00fcller', '{USER}', 'ACTIVE', now()) RETURNING id`,
  );
  await query(url, `UPDATE users SET name = 'Jo\u0308rg Mu\u0308ller' WHERE id = $1`, [user!.id]);
  await migrate(url, quiet);
  t.same(await query(url, `SELECT name FROM users WHERE id = $1`, [user!.id]), [{ name: 'J\u00f6rg M\u00fcller' }], 'composed');
  const audits = await query<{ id: string; details: unknown }>(url, `SELECT id::text, details FROM audit_events WHERE type = 'user.renamed'`);
  t.same(audits.map((a) => a.details), [{ by: 'migration', name: { from: 'Jo\u0308rg Mu\u0308ller', to: 'J\u00f6rg M\u00fcller' } }]);
  t.equal(audits[0]?.id[14], '7', 'a time-ordered id');

  // Still running after the upgrade, it writes decomposed names again: stored composed.
  await query(url, `UPDATE users SET name = 'Mu\u0308ller' WHERE id = $1`, [user!.id]);
  await query(url, `INSERT INTO organizations (id, customer_number, name, updated_at) VALUES (gen_random_uuid(), 'C-NFC-2', 'Mo\u0308bel GmbH', now())`);
  t.same(await query(url, `SELECT name FROM users WHERE id = $1`, [user!.id]), [{ name: 'M\u00fcller' }]);
  t.same(await query(url, `SELECT name FROM organizations WHERE customer_number = 'C-NFC-2'`), [{ name: 'M\u00f6bel GmbH' }]);
});

// Second read of session 27: the repair migration neither moves feed events nor deadlocks with a sign-in.

t.test('upgrade repairs: an event the feed or a webhook is delivering one at a time is neither skipped nor handed out again with another id', async (t) => {
  const url = await migratedUpTo(t, '20261201040000');
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  t.teardown(() => pool.end());
  // This release's reader stands in for the release before the repairs: on its one connection, an
  // empty stand-in for the table a later migration adds (20261201080000_feed_event_types).
  await pool.query('CREATE TEMP TABLE feed_event_types (type TEXT PRIMARY KEY)');
  // And for the feed's clock (20261203100000_feed_clock: no shift before it), dropped before that migration.
  await pool.query('CREATE TEMP TABLE feed_clock (id BOOLEAN PRIMARY KEY, shift BIGINT NOT NULL)');
  await pool.query('INSERT INTO feed_clock VALUES (true, 0)');
  for (let i = 0; i < 6; i++) {
    await pool.query(`INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), $1, $2, '{USER}', 'ACTIVE', now())`, [`u${i}@example.com`, `Mu\u0308ller ${i}`]);
  }
  await migrateBefore(url, '20261201050000');
  // A consumer taking events one at a time (as the webhook delivery does) has handed out two.
  const handedOut: string[] = [];
  const usersTold = new Set<string>();
  let cursor = FEED_START;
  // One event at a time; a transaction open elsewhere on the test server (other test files) holds
  // the feed back for a while: wait for the next event rather than take a pause for the end.
  const takeOne = async () => {
    for (let i = 0; i < 600; i++) {
      const [e] = await readFeedEvents(pool, cursor, 1);
      if (e) {
        handedOut.push(e.event.id);
        if (e.event.userId) usersTold.add(e.event.userId);
        cursor = e.cursor;
        return;
      }
      await sleep(50);
    }
  };
  for (let i = 0; i < 2; i++) await takeOne();
  t.equal(handedOut.length, 2, 'two handed out before the upgrade');
  await pool.query('DROP TABLE pg_temp.feed_clock');
  await migrate(url, quiet);
  // The migration wrote its events in one transaction: once one is handed out, all of them can be.
  await takeOne();
  for (;;) {
    const [e] = await readFeedEvents(pool, cursor, 1);
    if (!e) break;
    handedOut.push(e.event.id);
    if (e.event.userId) usersTold.add(e.event.userId);
    cursor = e.cursor;
  }
  const renamed = (await pool.query<{ id: string }>(`SELECT id::text FROM audit_events WHERE type = 'user.renamed'`)).rows.map((r) => r.id);
  t.equal(renamed.length, 6);
  t.equal(usersTold.size, 6, 'the consumer is told of every renamed user: none skipped (README: each once, none skipped)');
  t.same(handedOut.filter((id) => !renamed.includes(id)), [], 'no event handed out under an id it no longer has (FeedEvent.id: never handed out twice with another id)');
});

t.test('upgrade repairs: a sign-in (users row, then its audit row) running as the migration starts does not make the migration fail', async (t) => {
  const url = await migratedUpTo(t, '20261201060000');
  const signIn = new pg.Client({ connectionString: url });
  await signIn.connect();
  t.teardown(() => signIn.end().catch(() => undefined));
  const { rows: [user] } = await signIn.query<{ id: string }>(`INSERT INTO users (id, email, name, roles, status, updated_at) VALUES (gen_random_uuid(), 'a@example.com', 'Anna', '{USER}', 'ACTIVE', now()) RETURNING id`);
  // login.service.ts: updateMany on the user row, then recordAudit, in one transaction.
  await signIn.query('BEGIN');
  await signIn.query(`UPDATE users SET failed_password_count = 0 WHERE id = $1`, [user!.id]);
  const migrating = migrate(url, quiet).then(() => 'applied', (e: Error) => e.message);
  await new Promise((r) => setTimeout(r, 300));
  const audit = await signIn.query(`INSERT INTO audit_events (id, type, subject_user_id) VALUES (gen_random_uuid(), 'login.password_succeeded', $1)`, [user!.id]).then(() => 'inserted', (e: Error) => e.message);
  await signIn.query(audit === 'inserted' ? 'COMMIT' : 'ROLLBACK');
  t.equal(audit, 'inserted', "the sign-in's audit row is written");
  t.equal(await migrating, 'applied', 'the migration applies (retried like a lock timeout), it does not fail with a deadlock');
});
