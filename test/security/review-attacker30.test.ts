import t from 'tap';
import { deliverDueMail } from '../../src/modules/mail/mail.worker.js';
import { startSmtpSink } from '../helpers/smtp-sink.js';
import { adminWorld, mailsTo } from '../integration/organization/helpers.js';
import { moveTo, signedInMember } from '../integration/accounts/email-change-helpers.js';

/** Attacker review of 16916aa..f2fe6c4 (helper attacker30). */

t.test("an SMTP reply naming a recipient with an apostrophe (o'neil) leaves no part of the address in last_error or the log", async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { app, logs } = w;
  const email = "erika.o'neil@alpha.test";
  sink.refuseRecipient(email, { code: 550, text: `5.1.1 <${email}>: Recipient address rejected: User unknown` });
  const invited = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: 'Erika ONeil' } });
  t.equal(invited.status, 201, 'the address is accepted (EMAIL_PATTERN allows an apostrophe in the local part)');
  t.match(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10, app.log), { claimed: 1, failed: 1 });
  const [row] = await app.ctx.db.mailOutbox.findMany({ where: { toAddress: email } });
  t.notMatch(row?.lastError ?? '', /erika/i, `last_error keeps no part of the address: ${row?.lastError}`);
  const failures = logs.filter((l) => l.includes('mail delivery failed'));
  t.equal(failures.length, 1);
  t.notOk(failures.some((l) => /erika/i.test(l)), `no part of the address in the log: ${failures[0]}`);
});

t.test('the "your address was changed" notice cannot show the new address as the owner\'s own, followed by blank space', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  // An intruder with jon's session and password moves the account to a subdomain of a domain they
  // control, whose label "test" + 50 braille blanks (U+2800, which display-text.ts refuses in names
  // because it "shows as blank") shows as jon's own address with a wide gap after it.
  const label = 'xn--test-yj5baaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
  const intruder = `jon@alpha.${label}.intruder.example`;
  await moveTo(w, jon.token, jon.password!, intruder);
  const notice = (await mailsTo(w.app, 'jon@alpha.test')).find((m) => m.template === 'email_changed');
  t.ok(notice, 'the owner is told');
  const line = notice!.textBody.split('\n').find((l) => l.includes('changed to')) ?? '';
  t.notMatch(line, /\u2800/, `the new address shows no characters that render as blank: ${JSON.stringify(line.slice(0, 140))}`);
  t.notMatch(line, /changed to jon@alpha\.test[\s\u2800]/u, 'it does not read as the owner\'s own address');
});
