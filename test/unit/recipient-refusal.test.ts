import t from 'tap';
import { isPermanentRecipientRefusal } from '../../src/modules/mail/mail.worker.js';

// As nodemailer reports a refused RCPT TO: the reply in `response`, its code in `responseCode`.
const refusal = (response: string, command = 'RCPT TO') => ({ command, response, responseCode: Number.parseInt(response, 10) });

t.test('only a refusal of the address itself gives a mail up at once', async (t) => {
  for (const reply of ['550 5.1.1 <x@example.test>: Recipient address rejected: User unknown', '553 5.1.3 Bad recipient address syntax', '550 5.1.10 Null MX', '550 No such user', '551 User not local', '553 Mailbox name not allowed']) {
    t.ok(isPermanentRecipientRefusal(refusal(reply)), `given up: ${reply}`);
  }
  for (const reply of [
    '554 5.7.1 <x@example.test>: Relay access denied',
    '550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain',
    '550 5.7.1 Client host rejected: access denied',
    '552 5.2.2 Mailbox full',
    '552 Requested mail action aborted: exceeded storage allocation',
    '554 Transaction failed',
    '450 4.2.1 Mailbox busy',
    '550 4.7.1 Greylisted',
  ]) {
    t.notOk(isPermanentRecipientRefusal(refusal(reply)), `retried: ${reply}`);
  }
  t.notOk(isPermanentRecipientRefusal(refusal('550 5.1.1 User unknown', 'DATA')), 'not at RCPT TO: retried');
  t.notOk(isPermanentRecipientRefusal(new Error('connect ECONNREFUSED')), 'no SMTP reply: retried');
  t.notOk(isPermanentRecipientRefusal(null));
});
