import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { injectFaults } from '../helpers/faults.js';
import { createUser } from '../helpers/factories.js';
import { holdCorrectVerifications } from '../helpers/held-verify.js';
import { LANGUAGES } from '../../src/lib/languages.js';
import { renderMail } from '../../src/modules/mail/mail.templates.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { moveTo, signedInMember, undo, undoLink } from '../integration/accounts/email-change-helpers.js';

/**
 * Mutation review, session 29: tests for changed lines whose mutants no test killed.
 */

t.test('two correct passwords checked at once: the later-reserved one settling first does not leave the count below zero, so the 10th wrong password after them still locks (security.md 6.2, 6.5; successResetSql GREATEST)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const waiting = holdCorrectVerifications(t, app, 2);

  const first = request({ url: '/v1/auth/login', body: { email: user.email, password } }); // reserved as failure 1
  await waiting[0]!.entered;
  const second = request({ url: '/v1/auth/login', body: { email: user.email, password } }); // reserved as failure 2
  await waiting[1]!.entered;
  waiting[1]!.release();
  t.equal((await second).status, 200, 'the second settles first: it takes away both failures');
  waiting[0]!.release();
  t.equal((await first).status, 200, 'then the first');

  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedPasswordCount, 0, 'no failures left, and none owed');
  for (let i = 1; i <= 10; i++) {
    t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong password number ${i}` } })).status, 401);
  }
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 10, 'ten wrong passwords counted');
  t.ok(row.passwordLockedUntil && row.passwordLockedUntil > app.ctx.clock.now(), 'and the 10th locked password sign-in (security.md item 6)');
});

t.test('an undo link voided by an earlier undo no longer holds its address: support does not find the account by it, and it can be invited (README: "while the undo link lasts"; accountsHolding, state PENDING)', async (t) => {
  const w = await adminWorld(t);
  const { request } = w;
  const kim = await signedInMember(w, 'kim@alpha.test');
  await moveTo(w, kim.token, kim.password!, 'kb@new.test');
  await moveTo(w, kim.token, kim.password!, 'kc@new.test');
  t.equal((await undo(w, await undoLink(w, 'kim@alpha.test'))).status, 200, 'the first address undoes both moves, voiding the undo link sent to kb@');
  const found = await request({ method: 'GET', url: `/v1/support/users?email=${encodeURIComponent('kb@new.test')}`, token: w.support.token });
  t.same([found.status, found.body.items], [200, []], 'support finds nobody by kb@: its link is dead');
  const invited = await request({ url: '/v1/organization/users', token: w.adminA.token, body: { email: 'kb@new.test', name: 'Kay Bee' } });
  t.equal(invited.status, 201, 'and the address is an ordinary one again');
});

t.test('the undo mail of a blocked account names whom to ask to lift the block, in every language (README: "blocked.contact and the mail name whom to ask")', async (t) => {
  const env = { shopName: 'Webshop', supportContact: 'SUPPORT-DESK', audience: 'member', timeZone: 'UTC' } as const;
  const sentence: Record<string, RegExp> = { en: /still blocked[\s\S]*?lift it\./, de: /weiterhin gesperrt[\s\S]*?darum\./ };
  const admin: Record<string, RegExp> = { en: /administrator/, de: /Administrator/ };
  const data = { name: 'Jon', movedTo: 'evil@attacker.test', link: 'https://shop.example.test/reset-password?token=abc', expiresAt: new Date(Date.UTC(2026, 0, 2, 3, 4)) };
  const blockSentence = (stillBlocked: 'organization' | 'support' | null, locale: (typeof LANGUAGES)[number]) =>
    renderMail('email_change_undone', { ...data, stillBlocked }, env, locale).text.match(sentence[locale]!)?.[0];
  for (const locale of LANGUAGES) {
    const byOrganization = blockSentence('organization', locale);
    t.match(byOrganization, admin[locale]!, `${locale}: an administrator's block: still blocked, ask the administrator`);
    t.match(byOrganization, /SUPPORT-DESK/, `${locale}: or support`);
    const bySupport = blockSentence('support', locale);
    t.match(bySupport, /SUPPORT-DESK/, `${locale}: support's block: still blocked, ask support`);
    t.notMatch(bySupport, admin[locale]!, `${locale}: not the administrator, who cannot lift it`);
    t.equal(blockSentence(null, locale), undefined, `${locale}: not blocked: no such sentence`);
  }
});

t.test('an ordinary correct password (no lock set by it) is not audited as lifting a lock (audit-events.md: lockLifted only when this very attempt had set one)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 3 } });
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 200);
  const [success] = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } });
  t.ok(success, 'the success is audited');
  t.notOk(success && 'lockLifted' in (success.details as object), 'without lockLifted');
});

t.test('the general path (the one-statement success met a concurrent login challenge) also keeps the failures counted while the correct 10th password was checked, and their lock (security.md 6.5; login.service.ts reset)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const fault = await injectFaults(t, databaseUrl, { table: 'flow_tokens', event: 'INSERT', when: "NEW.purpose = 'LOGIN_CHALLENGE'" }, ['challenge_conflict']);
  const [held] = holdCorrectVerifications(t, app, 1);
  const correct = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  await held!.entered;
  for (let i = 0; i < 10; i++) t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong password number ${i}` } })).status, 401);
  held!.release();
  const ok = await correct;
  t.equal(await fault.count(), 2, 'the one-statement success met the conflict; the general path issued the challenge');
  t.equal(ok.status, 200, 'the correct 10th password gets its challenge');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 10, 'the ten failures after it stay counted');
  t.ok(row.passwordLockedUntil && row.passwordLockedUntil > app.ctx.clock.now(), 'and keep the lock');
  const [success] = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } });
  t.notOk(success && 'lockLifted' in (success.details as object), 'the success does not say it lifted the lock (audit-events.md lockLifted)');
});
