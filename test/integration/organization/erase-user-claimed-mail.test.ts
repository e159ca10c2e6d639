import t, { type Test } from 'tap';
import { deliverDueMail } from '../../../src/modules/mail/mail.worker.js';
import type { MailTransport } from '../../../src/modules/mail/mail.transport.js';
import { adminWorld, type AdminWorld } from './helpers.js';

/**
 * Review (undo2, session 27): erasure left a mail under a worker's claim to that worker ("sent within
 * seconds"). When that send failed (SMTP down, a timeout), the worker released the row for a retry
 * as it was: still naming the erased person (or still addressed to them), and it was sent later,
 * after the erasure (security.md 25.11: erasure deletes everything but the audit trail).
 */

/** A transport whose first send holds its claim until `fail()`, then fails like an SMTP outage. */
function failingOnCue() {
  let claim!: () => void;
  const claimed = new Promise<void>((resolve) => (claim = resolve));
  let fail!: () => void;
  const failing = new Promise<void>((resolve) => (fail = resolve));
  const transport = {
    kind: 'probe',
    send: async () => {
      claim();
      await failing;
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:25'), { code: 'ECONNREFUSED' });
    },
    close: async () => {},
  } as unknown as MailTransport;
  return { transport, claimed, fail };
}

/** Blocks and erases `leaver` while a worker holds the first due mail, whose send then fails. */
async function eraseWhileASendFails(t: Test, w: AdminWorld, leaverId: string): Promise<void> {
  const { transport, claimed, fail } = failingOnCue();
  const delivery = deliverDueMail(w.app.ctx, transport, 1);
  await claimed;
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaverId}/block`, token: w.adminA.token })).status, 200);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaverId}/erase`, token: w.adminA.token })).status, 204);
  fail();
  t.match(await delivery, { claimed: 1, failed: 1 });
}

async function deliveredLater(w: AdminWorld): Promise<{ to: string; text: string }[]> {
  w.clock.advance(3600);
  const sent: { to: string; text: string }[] = [];
  const sink = { kind: 'sink', send: async (m: { to: string; text: string }) => void sent.push({ to: m.to, text: m.text }), close: async () => {} } as unknown as MailTransport;
  await deliverDueMail(w.app.ctx, sink, 50);
  return sent;
}

t.test('a mail naming the erased administrator that a worker held at the erasure and failed to send is not sent later naming them', async (t) => {
  const w = await adminWorld(t);
  const { request } = w;
  const leaver = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Departing', email: 'dora.departing@private.test' });
  const leaverToken = await w.tokenFor(leaver.user);
  const colleague = await w.member(w.orgA.id, { name: 'Carl Colleague', email: 'carl.colleague@alpha.test' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${colleague.user.id}/password-reset`, token: leaverToken })).status, 200);

  await eraseWhileASendFails(t, w, leaver.user.id);

  const sent = await deliveredLater(w);
  t.ok(sent.some((m) => m.to === 'carl.colleague@alpha.test'), 'the colleague still gets the reset link');
  t.same(sent.filter((m) => /Dora Departing/.test(m.text)).map((m) => m.to), [], 'nothing sent after the erasure names the erased administrator');
});

t.test('a mail to the erased person that a worker held at the erasure and failed to send is not sent to them later', async (t) => {
  const w = await adminWorld(t);
  const leaver = await w.member(w.orgA.id, { name: 'Dora Departing', email: 'dora.departing@private.test' });
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/password-reset`, token: w.adminA.token })).status, 200);

  await eraseWhileASendFails(t, w, leaver.user.id);

  t.same((await deliveredLater(w)).filter((m) => m.to === 'dora.departing@private.test').map((m) => m.text.split('\n')[0]), [], 'nothing goes to the erased person after the erasure');
});
