import { domainToASCII } from 'node:url';

/**
 * An address with its domain as DNS and SMTP know it: an internationalised domain (IDNA,
 * "joerg@müller-gmbh.de") in its ASCII form ("joerg@xn--mller-gmbh-9db.de"), so the address on a
 * business card and the one stored are the same account, and mail can be delivered without
 * SMTPUTF8. An ASCII domain (any letter case) stays as it is; a domain IDNA refuses too, for the
 * address check to refuse. The local part is never changed.
 */
export function asciiDomain(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1);
  if (/^[\x21-\x7e]*$/.test(domain)) return address;
  const ascii = domainToASCII(domain);
  return ascii ? `${address.slice(0, at + 1)}${ascii}` : address;
}
