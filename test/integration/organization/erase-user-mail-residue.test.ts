import t from 'tap';
import { outboxMails } from '../../helpers/outbox.js';
import { adminWorld } from './helpers.js';

/**
 * DPO review: erasure (GDPR Art. 17, docs/security.md 25.11 "deletes everything the service holds
 * on them except the audit trail (and the mail budget's SHA-256)") must not leave the erased
 * person's name or address in mails still waiting in the outbox — mails to other people that were
 * rendered while the erased person was their administrator (the reset "sent by your administrator
 * <name>", the block notice listing "<name> <address>"). Those are sent after the erasure.
 */
t.test('erasing an administrator leaves no unsent mail naming them (DPO review)', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const leaver = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Departing', email: 'dora.departing@private.test' });
  const leaverToken = await w.tokenFor(leaver.user);
  const colleague = await w.member(w.orgA.id, { name: 'Carl Colleague', email: 'carl.colleague@alpha.test' });

  // Mail is not delivered in between (an SMTP outage, or simply the worker's next pass).
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${colleague.user.id}/mfa-reset`, token: leaverToken })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${colleague.user.id}/password-reset`, token: leaverToken })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${colleague.user.id}/block`, token: adminA.token })).status, 200);

  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/erase`, token: adminA.token })).status, 204);

  const waiting = (await outboxMails(app, { where: { sentAt: null, failedAt: null } })).map((m) => ({
    to: m.toAddress,
    template: m.template,
    namesLeaver: /Dora Departing|dora\.departing@private\.test/i.test(`${m.subject}\n${m.textBody}\n${m.htmlBody}`),
  }));
  t.same(
    waiting.filter((m) => m.namesLeaver),
    [],
    'no mail waiting to be sent names the erased person (their name or their address)',
  );

  // The colleague is still told, as if the erased administrator had never been named.
  const toColleague = await outboxMails(app, { where: { toAddress: 'carl.colleague@alpha.test', sentAt: null } });
  t.same(toColleague.map((m) => m.template).sort(), ['account_blocked', 'mfa_removed', 'password_reset']);
  const text = (template: string) => toColleague.find((m) => m.template === template)!.textBody;
  t.match(text('mfa_removed'), "Your organisation's administrator reset the 2-step login of your account.");
  t.match(text('password_reset'), "your organisation's administrator sent you this link");
  t.match(text('password_reset'), /expires on \d/, 'the link\'s expiry still stated');
  t.match(text('account_blocked'), 'Alice Admin', 'the administrators still there are named');
  const erased = await app.ctx.db.auditEvent.findFirst({ where: { type: 'user.erased', subjectUserId: leaver.user.id } });
  t.match(erased?.details, { mailsRewritten: 3 });
  t.same(
    (await app.ctx.db.mailOutbox.findMany({ where: { toAddress: 'carl.colleague@alpha.test' }, select: { mentions: true } })).flatMap((m) => m.mentions).filter((id) => id === leaver.user.id),
    [],
    'nothing records them any more',
  );
});
