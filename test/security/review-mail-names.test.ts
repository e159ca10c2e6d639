import t from 'tap';
import { adminWorld, mailsTo } from '../integration/organization/helpers.js';

/**
 * Review (mail, session 31): a web address followed by a direction mark or joiner (kept by
 * display-text.ts for Hebrew/Arabic/Persian names) is not found by the address check
 * (linkify-it reads "com\u200E" as one label), so it reaches the official mails, where
 * mail programs' linkifiers (linkifyjs, Autolinker.js) link http://evil.com.
 */
t.test('a name with a web address and a trailing direction mark or joiner is refused (contains_address)', async (t) => {
  const w = await adminWorld(t);
  const names = ['Eve evil.com\u200E', 'Eve shop-login.com\u200F/reset', 'Eve evil.com\u200D', 'Eve evil.com\u061C'];
  for (const [i, name] of names.entries()) {
    const email = `n${i}@alpha.test`;
    const res = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name } });
    t.equal(res.status, 400, `${JSON.stringify(name)} refused`);
    t.equal(res.body.errors?.[0]?.reason, 'contains_address', JSON.stringify(name));
    const [mail] = await mailsTo(w.app, email);
    t.notOk(mail, `no activation mail reading "Hello ${name}," (${mail?.textBody.split('\n')[0] ?? ''})`);
  }
  const renamed = await w.request({ method: 'PATCH', url: '/v1/me', token: w.adminA.token, body: { name: 'Alice evil.com\u200E' } });
  t.equal(renamed.status, 400, 'nor as the name an administrator gives themself (named in reset and MFA mails)');
});

t.test('a name with a web address on an IP address is refused (Autolinker.js links "192.168.1.1/reset")', async (t) => {
  const w = await adminWorld(t);
  const res = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email: 'ip@alpha.test', name: 'Eve 203.0.113.7/reset' } });
  t.equal(res.status, 400);
  t.equal(res.body.errors?.[0]?.reason, 'contains_address');
});

/**
 * Attacker's read of session 31: the invisible marks a name may carry besides the kept format
 * characters — variation selectors (U+FE00–FE0F, U+E0100–E01EF), the combining grapheme joiner
 * (U+034F), Mongolian free variation selectors (U+180B–180D) — are marks, so displayText lets them
 * through, linkify-it reads them as letters of the domain, and UTS 46 maps them to nothing.
 */
t.test('a name with a web address hidden by a variation selector or grapheme joiner is refused (contains_address)', async (t) => {
  const w = await adminWorld(t);
  const names = ['Eve evil.com\uFE0F', 'Eve evil.com\u034F', 'Eve evil.c\uFE0Fom', 'Eve evil.c\u034Fom', 'Eve evil.c\u180Bom', 'Eve evil.c\u{E0100}om'];
  for (const [i, name] of names.entries()) {
    const email = `v${i}@alpha.test`;
    const res = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name } });
    t.equal(res.status, 400, `${JSON.stringify(name)} refused (got ${res.status})`);
    t.equal(res.body.errors?.[0]?.reason, 'contains_address', JSON.stringify(name));
    const [mail] = await mailsTo(w.app, email);
    t.notOk(mail, `no activation mail reading ${JSON.stringify(mail?.textBody.split('\n')[0] ?? '')}`);
  }
});
