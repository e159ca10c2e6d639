import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { generateKey, parseKeyring } from '../../src/lib/secret-box.js';
import { buildLink, enqueueMail, LINK_PATHS } from '../../src/modules/mail/mail.service.js';
import { deliverDueMail } from '../../src/modules/mail/mail.worker.js';
import { resealSecrets } from '../../src/modules/mfa/key-rotation.js';
import { GOOD_PASSWORD, tokenFromLink } from '../helpers/accounts.js';
import { outboxMails } from '../helpers/outbox.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { buildTestApp } from '../helpers/app.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';

/**
 * security.md item 14 ("stored only as a SHA-256 hash") for the mail outbox: the rendered body of an
 * activation, reset or MFA-reset mail carries the raw link token, so a queued row holds it only
 * sealed (AES-256-GCM under ENCRYPTION_KEYS, bound to the row), and a row that is done (sent or
 * given up) holds no body at all. A read-only copy of the database hands out no working link.
 */

const HOUR = 3600;

/** Every row of the outbox as PostgreSQL serialises it (every column, whatever the model knows). */
async function rawOutbox(app: FastifyInstance): Promise<Record<string, unknown>[]> {
  const { rows } = await app.ctx.pool.query<{ row: Record<string, unknown> }>('SELECT row_to_json(m) AS row FROM mail_outbox m ORDER BY created_at, id');
  return rows.map((r) => r.row);
}

/** The tables (of the public schema) in which some row, serialised, contains `needle`. */
async function tablesContaining(app: FastifyInstance, needle: string): Promise<string[]> {
  const { rows: tables } = await app.ctx.pool.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  const found: string[] = [];
  for (const { name } of tables) {
    const { rows } = await app.ctx.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${name}" x WHERE strpos(row_to_json(x)::text, $1) > 0`, [needle]);
    if (rows[0]!.n > 0) found.push(name);
  }
  return found;
}

const NO_BODY = { body_ciphertext: null, encryption_key_id: null, text_body: null, html_body: null };

t.test('links requested through the API: no token in the outbox while queued, no body once sent; the delivered links work', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, request } = w;
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test', name: 'Mia Member' });
  const confirmer = await w.member(w.orgA.id, { email: 'phone@alpha.test', name: 'Paul Phone' });

  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'new@alpha.test', name: 'Nina New' } })).status, 201);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'member@alpha.test' } })).status, 202);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${confirmer.user.id}/mfa-reset-request`, token: w.support.token })).status, 202);

  // The tokens, read the way only the service can: by opening the sealed bodies with its keyring.
  const cases = [
    { to: 'new@alpha.test', template: 'activation', path: LINK_PATHS.activation, subject: 'ALSO Webshop: activate your account' },
    { to: 'member@alpha.test', template: 'password_reset', path: LINK_PATHS.passwordReset, subject: 'ALSO Webshop: reset your password' },
    { to: 'phone@alpha.test', template: 'mfa_reset_confirm', path: LINK_PATHS.mfaResetConfirm, subject: 'ALSO Webshop: confirm the reset of your 2-step login' },
  ];
  const queued = await outboxMails(app, { where: { template: { in: cases.map((c) => c.template) } } });
  t.equal(queued.length, 3, 'three link mails queued');
  const tokens = new Map<string, string>();
  for (const c of cases) {
    const mail = queued.find((m) => m.toAddress === c.to && m.template === c.template)!;
    tokens.set(c.template, tokenFromLink(mail.textBody, c.path));
    t.equal(tokenFromLink(mail.htmlBody, c.path), tokens.get(c.template), `${c.template}: the HTML part carries the same link`);
  }

  // While queued: the whole row, every column, holds neither the token nor the link nor anything of the body.
  const rows = await rawOutbox(app);
  for (const c of cases) {
    const token = tokens.get(c.template)!;
    const row = rows.find((r) => r.to_address === c.to && r.template === c.template)!;
    const dump = JSON.stringify(row);
    t.notOk(dump.includes(token), `${c.template}: the token is in no column of its queued row`);
    t.notOk(dump.includes(encodeURIComponent(token)), `${c.template}: nor URL-encoded`);
    t.notOk(dump.includes(c.path), `${c.template}: nor the link`);
    t.notOk(/Hello|href=/.test(dump), `${c.template}: nor any of the text`);
    t.match(row, { subject: c.subject, text_body: null, html_body: null, encryption_key_id: 'test-1', body_ciphertext: /^[A-Za-z0-9_-]{200,}$/ }, `${c.template}: sealed, key id beside it`);
    t.same(await tablesContaining(app, token), [], `${c.template}: the token is in no table at all`);
  }
  const sealedTexts = rows.map((r) => r.body_ciphertext);
  t.equal(new Set(sealedTexts).size, sealedTexts.length, 'every row its own ciphertext');

  // Delivered: the rows keep recipient, template, subject, times and attempts, and no body.
  const delivered = await deliverDueMail(app.ctx, app.ctx.mailTransport, 100, app.log);
  t.same(delivered, { claimed: rows.length, sent: rows.length, failed: 0 });
  for (const row of await rawOutbox(app)) {
    t.match(row, { ...NO_BODY, attempts: 1, last_error: null, sent_at: String, to_address: String, subject: String, template: String }, `${row.template} to ${row.to_address}: sent, body removed`);
  }
  for (const token of tokens.values()) t.same(await tablesContaining(app, token), [], 'after delivery the token is nowhere either');

  // The mails that arrived carry the working links.
  const arrived = (to: string, path: string) => {
    const [mail] = sink.to(to);
    if (!mail) throw new Error(`nothing arrived for ${to}`);
    t.equal(tokenFromLink(mail.html, path), tokenFromLink(mail.text, path), `${to}: text and HTML agree`);
    return tokenFromLink(mail.text, path);
  };
  const activation = arrived('new@alpha.test', LINK_PATHS.activation);
  const reset = arrived('member@alpha.test', LINK_PATHS.passwordReset);
  const confirm = arrived('phone@alpha.test', LINK_PATHS.mfaResetConfirm);
  t.same([activation, reset, confirm], [...tokens.values()], 'the delivered links are the ones that were sealed');
  t.equal(sink.to('new@alpha.test')[0]!.subject, 'ALSO Webshop: activate your account');

  t.equal((await request({ url: '/v1/activation', body: { token: activation, password: GOOD_PASSWORD } })).status, 200, 'the activation link works');
  t.equal((await request({ url: '/v1/password/reset', body: { token: reset, password: GOOD_PASSWORD } })).status, 204, 'the reset link works');
  t.equal((await request({ url: '/v1/mfa-reset/confirm', body: { token: confirm } })).status, 200, 'the MFA-reset link works');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: confirmer.user.id } }), 0, 'the MFA reset happened');
  t.ok(member);
});

t.test('a body that does not open is given up at once (tampered, moved to another row); one under a key this instance lacks is left to an instance that has it, and given up when too old; the rest is delivered', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, config, clock, logs } = w;
  const ctx = app.ctx;
  const link = (token: string) => buildLink(config, LINK_PATHS.passwordReset, token);
  const reset = (to: string, token: string) => ({ to: { email: to, language: null, id: null }, template: 'password_reset' as const, data: { name: to, link: link(token), expiresAt: clock.now(), mfaEnrolled: true, by: 'self' as const } });
  const removedKey = parseKeyring(`removed-1:${generateKey()}`);

  const ids = await ctx.db.$transaction(async (tx) => ({
    tampered: (await enqueueMail(tx, ctx, reset('tampered@example.test', 'tok-tampered-0001'))).id,
    moved: (await enqueueMail(tx, ctx, reset('moved@example.test', 'tok-moved-00000001'))).id,
    keyGone: (await enqueueMail(tx, { ...ctx, keyring: removedKey }, reset('keygone@example.test', 'tok-keygone-000001'))).id,
    keyNeverBack: (await enqueueMail(tx, { ...ctx, keyring: removedKey }, reset('never@example.test', 'tok-never-00000001'))).id,
    fine: (await enqueueMail(tx, ctx, reset('fine@example.test', 'tok-fine-000000001'))).id,
    alsoFine: (await enqueueMail(tx, ctx, { to: { email: 'notice@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Nora', sessionsEnded: 'others' } })).id,
  }));
  // One bit flipped in the middle of the ciphertext; another row's (valid) ciphertext copied onto a row.
  await ctx.pool.query(
    `UPDATE mail_outbox SET body_ciphertext = overlay(body_ciphertext PLACING (CASE WHEN substr(body_ciphertext, 40, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 40 FOR 1) WHERE id = $1`,
    [ids.tampered],
  );
  await ctx.pool.query(`UPDATE mail_outbox SET body_ciphertext = (SELECT body_ciphertext FROM mail_outbox WHERE id = $2) WHERE id = $1`, [ids.moved, ids.fine]);

  const result = await deliverDueMail(ctx, ctx.mailTransport, 100, app.log);
  t.same(result, { claimed: 4, sent: 2, failed: 2 }, 'the mails under a key this instance lacks are left to an instance that has it');
  t.same(sink.messages.map((m) => m.to[0]).sort(), ['fine@example.test', 'notice@example.test'], 'only the mails whose body opened were sent');
  t.match(tokenFromLink(sink.to('fine@example.test')[0]!.text, LINK_PATHS.passwordReset), 'tok-fine-000000001', 'the good one carries its own link');

  const rows = await ctx.db.mailOutbox.findMany({ orderBy: { toAddress: 'asc' } }); // as stored: some do not open
  const byId = new Map(rows.map((r) => [r.id, r]));
  const expected = { tampered: /authentication_failed/, moved: /authentication_failed/ };
  for (const [name, reason] of Object.entries(expected)) {
    const row = byId.get(ids[name as keyof typeof ids])!;
    t.equal(row.failedAt?.getTime(), clock.now().getTime(), `${name}: given up now`);
    t.match(row, { sentAt: null, lockedUntil: null, attempts: 1, bodyCiphertext: null, encryptionKeyId: null, subject: 'ALSO Webshop: reset your password' }, `${name}: given up, body removed`);
    t.match(row.lastError, /^mail body cannot be opened: /, `${name}: the reason is recorded`);
    t.match(row.lastError, reason);
    t.notMatch(row.lastError, /tok-|Hello|reset-password/, `${name}: nothing of the body in the error`);
    t.ok(
      logs.some((l) => l.includes(row.id) && l.includes('"level":50') && l.includes('"reason":"body_unreadable"')),
      `${name}: logged as an error`,
    );
  }
  for (const name of ['keyGone', 'keyNeverBack'] as const) {
    const row = byId.get(ids[name])!;
    t.match(row, { failedAt: null, sentAt: null, lockedUntil: null, attempts: 0, lastError: null, encryptionKeyId: 'removed-1' }, `${name}: not claimed, kept sealed`);
    t.ok(row.bodyCiphertext, `${name}: body kept`);
  }
  t.notOk(logs.some((l) => /tok-(tampered|moved|keygone|never|fine)/.test(l)), 'no body content in any log line');

  // An instance that has the key (the rotation's other half) sends it at once; one mail that only
  // this instance is left to try is given up once it is MAIL_GIVE_UP_SECONDS old.
  const withKey = { ...ctx, keyring: { currentKeyId: ctx.keyring.currentKeyId, keys: new Map([...ctx.keyring.keys, ...removedKey.keys]) } };
  t.same(await deliverDueMail(withKey, ctx.mailTransport, 1, app.log), { claimed: 1, sent: 1, failed: 0 }, 'the instance with the key sends it');
  t.match(tokenFromLink(sink.to('keygone@example.test')[0]!.text, LINK_PATHS.passwordReset), 'tok-keygone-000001');
  clock.advance(24 * HOUR);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 100, app.log), { claimed: 0, sent: 0, failed: 0 }, 'tampered ones are never tried again; the other waits for its key');
  clock.advance(8 * 24 * HOUR);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 100, app.log), { claimed: 1, sent: 0, failed: 1 }, 'too old: claimed without its key');
  const gaveUp = await ctx.db.mailOutbox.findUniqueOrThrow({ where: { id: ids.keyNeverBack } });
  t.match(gaveUp, { bodyCiphertext: null, encryptionKeyId: null, lastError: /^mail body cannot be opened: unknown_key_id: unknown key id "removed-1"/ }, 'and given up, body removed');
  t.ok(gaveUp.failedAt, 'failed_at set');
  t.ok(logs.some((l) => l.includes(gaveUp.id) && l.includes('"level":50') && l.includes('"reason":"body_unreadable"')), 'logged as an error');
  const metrics = await app.inject({ url: '/metrics' });
  t.match(metrics.body, /webshop_auth_mail_outbox_failed 3\b/, 'counted in the failed gauge');
  t.match(metrics.body, /webshop_auth_mail_outbox_backlog 0\b/);
});

t.test('rotate-encryption-key re-seals the bodies of queued mails: delivered with only the new key; done rows are left alone', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, request } = w;
  const oldKey = app.ctx.keyring.keys.get('test-1')!.toString('base64');
  const newKey = generateKey();
  await w.member(w.orgA.id, { email: 'member@alpha.test' });

  // Done before the rotation: one mail sent, one given up (the server refuses the recipient).
  sink.refuseRecipient('gone@alpha.test');
  await w.member(w.orgA.id, { email: 'gone@alpha.test' });
  await request({ url: '/v1/password/forgot', body: { email: 'gone@alpha.test' } });
  await app.ctx.db.$transaction((tx) => enqueueMail(tx, app.ctx, { to: { email: 'early@alpha.test', language: null, id: null }, template: 'password_changed', data: { name: 'E', sessionsEnded: 'others' } }));
  t.same(await deliverDueMail(app.ctx, app.ctx.mailTransport, 100), { claimed: 2, sent: 1, failed: 1 });

  // Queued under the old key while SMTP is down: an invitation and a reset link.
  await sink.stop();
  t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'new@alpha.test', name: 'Nina New' } })).status, 201);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'member@alpha.test' } })).status, 202);
  t.same(await deliverDueMail(app.ctx, app.ctx.mailTransport, 100), { claimed: 2, sent: 0, failed: 2 }, 'SMTP down: both stay queued');
  const before = await rawOutbox(app);

  // The new key is appended (and so current), the command run.
  const rotating = parseKeyring(`test-1:${oldKey},test-2:${newKey}`);
  const run = { clock: app.ctx.clock, meta: { ip: null, userAgent: null } };
  const report = await resealSecrets(app.ctx.db, rotating, run);
  t.equal(report.currentKeyId, 'test-2');
  t.same(report.mailBodies, { resealed: 2, skipped: 0, failed: 0 }, 'the two queued bodies, nothing else');
  t.same(report.failures, []);
  const after = await rawOutbox(app);
  for (const row of after) {
    const old = before.find((r) => r.id === row.id)!;
    if (row.sent_at === null && row.failed_at === null) {
      t.equal(row.encryption_key_id, 'test-2', `${row.template}: under the new key`);
      t.not(row.body_ciphertext, old.body_ciphertext, `${row.template}: sealed anew`);
      t.same({ ...row, body_ciphertext: null, encryption_key_id: null }, { ...old, body_ciphertext: null, encryption_key_id: null }, `${row.template}: nothing else changed`);
    } else {
      t.same(row, old, `${row.template} (${row.sent_at ? 'sent' : 'given up'}): untouched, still without a body`);
      t.match(row, NO_BODY);
    }
  }
  t.same((await resealSecrets(app.ctx.db, rotating, run)).mailBodies, { resealed: 0, skipped: 0, failed: 0 }, 'idempotent');

  // The old key removed: an instance with only the new key delivers them, and the links work.
  const onlyNew = { ...app.ctx, keyring: parseKeyring(`test-2:${newKey}`) };
  await sink.start();
  w.clock.advance(60); // past the retry back-off, well inside the reset link's 30 minutes
  t.same(await deliverDueMail(onlyNew, app.ctx.mailTransport, 100), { claimed: 2, sent: 2, failed: 0 });
  for (const row of await rawOutbox(app)) t.match(row, NO_BODY, `${row.template} to ${row.to_address}: no body left`);
  const activation = tokenFromLink(sink.to('new@alpha.test')[0]!.text, LINK_PATHS.activation);
  const reset = tokenFromLink(sink.to('member@alpha.test')[0]!.text, LINK_PATHS.passwordReset);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: activation } })).status, 200, 'the activation link works');
  t.equal((await request({ url: '/v1/password/reset', body: { token: reset, password: GOOD_PASSWORD } })).status, 204, 'the reset link works');
  await deliverDueMail(app.ctx, app.ctx.mailTransport, 100); // the reset's "password changed" notice

  // A queued body under a key the command does not have is reported (id and reason only), not changed.
  const stray = await app.ctx.db.$transaction((tx) =>
    enqueueMail(tx, { ...app.ctx, keyring: parseKeyring(`stray-1:${generateKey()}`) }, { to: { email: 'x@alpha.test', language: null, id: null }, template: 'mfa_enrolled', data: { name: 'X' } }),
  );
  const missing = await resealSecrets(app.ctx.db, parseKeyring(`test-2:${newKey}`), run);
  t.same(missing.mailBodies, { resealed: 0, skipped: 0, failed: 1 });
  t.same(missing.failures, [{ table: 'mail_outbox', id: stray.id, reason: 'unknown_key_id' }]);
  t.equal((await app.ctx.db.mailOutbox.findUniqueOrThrow({ where: { id: stray.id } })).encryptionKeyId, 'stray-1', 'left as it was');
});

t.test('a mail queued before bodies were sealed (plain text) is still delivered, then its body removed', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, request } = w;
  await w.member(w.orgA.id, { email: 'legacy@alpha.test' });
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'legacy@alpha.test' } })).status, 202);

  // Turn the row into what the previous version wrote: the bodies in plain text, no seal.
  const [mail] = await outboxMails(app, { where: { toAddress: 'legacy@alpha.test' } });
  const token = tokenFromLink(mail!.textBody, LINK_PATHS.passwordReset);
  await app.ctx.db.mailOutbox.update({
    where: { id: mail!.id },
    data: { textBody: mail!.textBody, htmlBody: mail!.htmlBody, bodyCiphertext: null, encryptionKeyId: null },
  });
  t.same(await tablesContaining(app, token), ['mail_outbox'], 'the legacy row holds the token in plain text');

  t.same(await deliverDueMail(app.ctx, app.ctx.mailTransport, 100), { claimed: 1, sent: 1, failed: 0 });
  const [arrived] = sink.to('legacy@alpha.test');
  t.equal(arrived?.subject, 'ALSO Webshop: reset your password');
  t.equal(tokenFromLink(arrived!.text, LINK_PATHS.passwordReset), token, 'delivered from its plain text');
  const [row] = await rawOutbox(app);
  t.match(row, { ...NO_BODY, sent_at: String, subject: 'ALSO Webshop: reset your password', template: 'password_reset' }, 'then scrubbed');
  t.same(await tablesContaining(app, token), [], 'the token is gone from the database');
  t.equal((await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } })).status, 204, 'the link works');
});

t.test('an SMTP reply quoting the mail (a spam filter) keeps no link token in last_error or the log', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, logs, clock } = w;
  t.equal((await w.request({ url: '/v1/password/forgot', body: { email: w.adminA.user.email } })).status, 202);
  sink.rejectQuotingLinks(true);
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { claimed: 1, sent: 0, failed: 1 });
  const [row] = await app.ctx.db.mailOutbox.findMany();
  t.match(row?.lastError, /Rejected as spam: https:\/\/shop\.example\.test\/reset-password\?token=\[redacted\]/, 'the reply is kept, its token is not');
  sink.rejectQuotingLinks(false);
  clock.advance(3600);
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { sent: 1 });
  const token = tokenFromLink(sink.messages[0]!.text, LINK_PATHS.passwordReset);
  t.notOk(logs.some((l) => l.includes(token)), 'the token is in no log line');
  t.notMatch(row?.lastError ?? '', token);
});

/** Every piece of 8 characters of a token: what describe() (mail.worker.ts) must not leave in a reply. */
const piecesOf = (token: string) => Array.from({ length: token.length - 7 }, (_, i) => token.slice(i, i + 8));

t.test('an SMTP reply quoting the mail as it was on the wire (quoted-printable, soft line breaks) keeps no piece of a link token (log review, session 24)', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, logs, clock } = w;
  t.equal((await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'rita.reject@alpha.test', name: 'Rita Reject' } })).status, 201);
  t.equal((await w.request({ url: '/v1/password/forgot', body: { email: w.adminA.user.email } })).status, 202);
  sink.rejectQuotingLinks('raw');
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { claimed: 2, sent: 0, failed: 2 });
  const rows = await app.ctx.db.mailOutbox.findMany({ orderBy: { createdAt: 'asc' } });
  for (const row of rows) t.match(row.lastError, /451 .*content rejected, offending text: .*https:\/\/shop\.example\.test\//, 'the reply is kept');
  sink.rejectQuotingLinks(false);
  clock.advance(3600);
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { sent: 2 });
  const tokens = [tokenFromLink(sink.to('rita.reject@alpha.test')[0]!.text, LINK_PATHS.activation), tokenFromLink(sink.to(w.adminA.user.email)[0]!.text, LINK_PATHS.passwordReset)];
  for (const token of tokens) {
    const pieces = piecesOf(token);
    t.notOk(rows.some((row) => pieces.some((piece) => row.lastError?.includes(piece))), 'no 8 characters of the token in last_error');
    t.notOk(logs.some((line) => pieces.some((piece) => line.includes(piece))), 'nor in any log line');
  }
});

t.test('a mail sent while the rotation waits for its row keeps no body: skipped, not sealed anew (mutation review, session 21)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const queued = await app.ctx.db.$transaction((tx) =>
    enqueueMail(tx, app.ctx, { to: { email: 'x@alpha.test', language: null, id: null }, template: 'password_changed', data: { name: 'X', sessionsEnded: 'others' } }),
  );
  // A worker marks it sent (dropping the body) and holds the row until the rotation waits for it.
  const other = await openClient(t, databaseUrl);
  await other.query('BEGIN');
  await other.query('UPDATE mail_outbox SET sent_at = now(), body_ciphertext = NULL, encryption_key_id = NULL, text_body = NULL, html_body = NULL WHERE id = $1', [queued.id]);
  const rotating = parseKeyring(`test-1:${app.ctx.keyring.keys.get('test-1')!.toString('base64')},test-2:${generateKey()}`);
  const running = resealSecrets(app.ctx.db, rotating, { clock: app.ctx.clock, meta: { ip: null, userAgent: null } });
  await waitForLockWaiters(other, 1);
  await other.query('COMMIT');
  t.same((await running).mailBodies, { resealed: 0, skipped: 1, failed: 0 });
  const [row] = (await rawOutbox(app)).filter((r) => r.id === queued.id);
  t.match(row, NO_BODY, 'the sent row holds no body');
});

t.test('an SMTP reply naming the recipient (550 <address>: Recipient address rejected) leaves no address in the log or last_error (DPO review, session 30)', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, logs, clock } = w;
  sink.refuseRecipient('erika.reject@alpha.test', { code: 550, text: '5.1.1 <erika.reject@alpha.test>: Recipient address rejected: User unknown' });
  sink.refuseRecipient('otto.later@alpha.test', { code: 451, text: '4.7.1 <otto.later@alpha.test>: greylisted, cc Otto.Later@Alpha.test' });
  for (const email of ['erika.reject@alpha.test', 'otto.later@alpha.test']) {
    t.equal((await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: 'Erika Otto' } })).status, 201);
  }
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { claimed: 2, sent: 0, failed: 2 });
  clock.advance(3600);
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { claimed: 1, failed: 1 }, 'the temporary refusal again');
  const rows = await app.ctx.db.mailOutbox.findMany({ where: { toAddress: { in: ['erika.reject@alpha.test', 'otto.later@alpha.test'] } } });
  t.equal(rows.length, 2);
  for (const row of rows) {
    t.match(row.lastError, /^EENVELOPE (?:550 .*5\.1\.1 \[address\]: Recipient address rejected: User unknown|451 .*4\.7\.1 \[address\]: greylisted, cc \[address\])$/, 'the reply is kept, the address is not');
    t.notMatch(row.lastError ?? '', /@/);
  }
  const failures = logs.filter((l) => l.includes('mail delivery failed'));
  t.equal(failures.length, 3, 'one line per failed attempt');
  t.notOk(failures.some((l) => /erika|otto/i.test(l)), 'no address in the log');
});
