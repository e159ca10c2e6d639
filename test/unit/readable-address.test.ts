import t from 'tap';
import { domainToASCII } from 'node:url';
import { namedAddress, readableAddress } from '../../src/lib/email-address.js';

/** How mails show an address (German frontend review, session 30: an internationalised domain read as xn--). */
t.test('an internationalised domain in Unicode, with the stored ASCII form beside it; anything else as it is', async (t) => {
  t.equal(readableAddress('joerg@xn--mller-handel-dlb.de'), 'joerg@müller-handel.de (joerg@xn--mller-handel-dlb.de)');
  t.equal(readableAddress('a@sub.xn--mller-kva.de'), 'a@sub.müller.de (a@sub.xn--mller-kva.de)', 'any label');
  t.equal(readableAddress('a@XN--MLLER-KVA.DE'), 'a@müller.de (a@XN--MLLER-KVA.DE)', 'any letter case');
  // A look-alike: Cyrillic "а" in "pаypal.de" shows in Unicode like the Latin one; the ASCII form tells them apart.
  t.equal(readableAddress('a@xn--pypal-4ve.de'), 'a@pаypal.de (a@xn--pypal-4ve.de)');
  t.equal(readableAddress('dora@example.de'), 'dora@example.de');
  t.equal(readableAddress('dora@axn--b.de'), 'dora@axn--b.de', 'xn-- inside a label is no ASCII form');
  t.equal(readableAddress('dora@xn--abc.de'), 'dora@xn--abc.de', 'no valid punycode: as it is');
  t.equal(readableAddress('no-at-sign'), 'no-at-sign');
});

t.test('a domain with anything but letters, digits, marks and hyphens stays in its ASCII form (attacker\'s read, session 30)', async (t) => {
  for (const label of [`test${'\u2800'.repeat(5)}`, 'test\u201Aevil', 'a\u2768b\u2769', 'a\u2044b', 'a\u0589b']) {
    const ascii = domainToASCII(`${label}.intruder.example`);
    t.ok(ascii.startsWith('xn--'), `fixture: IDNA takes ${JSON.stringify(label)} (${ascii})`);
    t.equal(readableAddress(`jon@alpha.${ascii}`), `jon@alpha.${ascii}`, JSON.stringify(label));
  }
  // The letters that show as blank (display-text.ts refuses them in names) IDNA refuses itself.
  for (const blank of ['\u115F', '\u1160', '\u3164', '\uFFA0']) t.equal(domainToASCII(`a${blank}b.de`), '', `IDNA refuses U+${blank.codePointAt(0)!.toString(16)}`);
  t.equal(readableAddress(`jon@${domainToASCII('bücher-\u0915\u093F.de')}`), `jon@bücher-\u0915\u093F.de (jon@${domainToASCII('bücher-\u0915\u093F.de')})`, 'marks of other scripts are letters\' parts');
});

t.test('a person with their address: the readable form in the angle brackets, the stored one after them', async (t) => {
  t.equal(namedAddress('Grete Müller', 'grete@xn--mller-shne-kcb9d.de'), 'Grete Müller <grete@müller-söhne.de> (grete@xn--mller-shne-kcb9d.de)');
  t.equal(namedAddress('Dora', 'dora@example.de'), 'Dora <dora@example.de>');
  const blank = `jon@alpha.${domainToASCII(`test${'\u2800'.repeat(5)}.intruder.example`)}`;
  t.equal(namedAddress('Jon', blank), `Jon <${blank}>`, 'a domain readableAddress keeps in ASCII stays so');
});
