import t from 'tap';
import { tokenFromLink } from '../../helpers/accounts.js';
import { adminWorld, mailsTo } from '../organization/helpers.js';

/**
 * The `contact` of a problem (account_blocked, mfa_locked, a dead invitation) is what the frontend
 * puts into its own sentence, translated by `code`: support is named as the user's language names
 * it (SUPPORT_CONTACT_DE for German users, as their mails do), while `detail` stays English and
 * names support as SUPPORT_CONTACT does. Found by session 24's end-user review.
 */
const env = { SUPPORT_CONTACT: 'the e-business team', SUPPORT_CONTACT_DE: 'unser E-Business-Team' };

t.test('account_blocked and mfa_locked: contact.support in the user\'s language, detail in English', async (t) => {
  const w = await adminWorld(t, env);
  const { request, app } = w;
  const german = await w.member(w.orgA.id, { name: 'Dora Deutsch', email: 'dora@alpha.test', language: 'de', termsAccepted: true, preferencesSet: true });
  const english = await w.member(w.orgA.id, { name: 'Eve English', email: 'eve@alpha.test', language: 'en', termsAccepted: true, preferencesSet: true });

  for (const [member, support, language] of [
    [german, 'unser E-Business-Team', 'de'],
    [english, 'the e-business team', 'en'],
  ] as const) {
    await app.ctx.db.user.update({ where: { id: member.user.id }, data: { mfaLockedUntil: new Date(w.clock.now().getTime() + 600_000) } });
    const locked = await request({ method: 'POST', url: '/v1/auth/login', body: { email: member.user.email, password: member.password } });
    t.equal(locked.status, 423);
    t.equal(locked.body.code, 'mfa_locked');
    t.same(locked.body.contact, { support, language, administrators: [{ name: 'Alice Admin', email: w.adminA.user.email }] });
    t.match(locked.body.detail, /Ask your organisation's administrator \(Alice Admin <[^>]+>\) or the e-business team to reset/);

    t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: w.adminA.token })).status, 200);
    const blocked = await request({ method: 'POST', url: '/v1/auth/login', body: { email: member.user.email, password: member.password } });
    t.equal(blocked.status, 403);
    t.equal(blocked.body.code, 'account_blocked');
    t.same(blocked.body.contact, { support, language, administrators: [{ name: 'Alice Admin', email: w.adminA.user.email }] });
    t.match(blocked.body.detail, /^This account is blocked\. Contact your organisation's administrator \(Alice Admin <[^>]+>\) or the e-business team\.$/);
  }

  // Blocked by support: support alone, still in the user's language.
  const other = await w.member(w.orgA.id, { name: 'Dieter Deutsch', email: 'dieter@alpha.test', language: 'de' });
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${other.user.id}/block`, token: w.support.token })).status, 200);
  const bySupport = await request({ method: 'POST', url: '/v1/auth/login', body: { email: other.user.email, password: other.password } });
  t.equal(bySupport.body.code, 'account_blocked');
  t.same(bySupport.body.contact, { support: 'unser E-Business-Team', language: 'de', administrators: [] });
  t.equal(bySupport.body.detail, 'This account is blocked. Contact the e-business team.');
});

t.test('an expired invitation: a full sentence in English, whom to ask in the invitee\'s language', async (t) => {
  const w = await adminWorld(t, env);
  const { request, app } = w;
  const invitees = [
    { email: 'late@alpha.test', language: 'de', support: 'unser E-Business-Team' },
    { email: 'later@alpha.test', language: 'en', support: 'the e-business team' },
  ] as const;
  const tokens: string[] = [];
  for (const { email, language } of invitees) {
    t.equal((await request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: 'Late Larry', language } })).status, 201);
    const [mail] = await mailsTo(app, email);
    tokens.push(tokenFromLink(mail!.textBody, '/activate'));
  }
  w.clock.advance(8 * 24 * 3600);
  for (const [i, { support, language }] of invitees.entries()) {
    const res = await request({ method: 'POST', url: '/v1/activation/inspect', body: { token: tokens[i] } });
    t.equal(res.status, 410);
    t.equal(res.body.code, 'link_expired');
    t.match(res.body.detail, /^The link has expired\. For a new invitation, ask your organisation's administrator \(Alice Admin <[^>]+>\) or the e-business team\.$/);
    t.same(res.body.contact, { support, language, administrators: [{ name: 'Alice Admin', email: w.adminA.user.email }] });
  }
});
