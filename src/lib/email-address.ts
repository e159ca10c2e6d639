import { domainToASCII, domainToUnicode } from 'node:url';

/** A domain with a label in IDNA's ASCII form ("xn--…"). */
const hasAsciiFormLabel = (domain: string): boolean => /(?:^|\.)xn--/i.test(domain);

/** A domain that IDNA has to look at: one with non-ASCII characters, or with a label in its ASCII form. */
const needsIdna = (domain: string): boolean => !/^[\x21-\x7e]*$/.test(domain) || hasAsciiFormLabel(domain);

const domainOf = (address: string): string | null => {
  const at = address.lastIndexOf('@');
  return at < 0 ? null : address.slice(at + 1);
};

/**
 * An address with its domain as DNS and SMTP know it: an internationalised domain (IDNA,
 * "joerg@müller-gmbh.de") in its ASCII form ("joerg@xn--mller-gmbh-9db.de"), so the address on a
 * business card and the one stored are the same account, and mail can be delivered without
 * SMTPUTF8. A domain already in its ASCII form is put in IDNA's canonical one (lower case, and a
 * label encoding a decomposed "u" + U+0308 as the "ü" it is), so no two spellings of one domain make
 * two accounts. Any other ASCII domain (any letter case) stays as it is, and so does one IDNA refuses
 * (hasValidDomain says so). The local part is never changed.
 */
export function asciiDomain(address: string): string {
  const domain = domainOf(address);
  if (domain === null || !needsIdna(domain)) return address;
  const ascii = domainToASCII(domain);
  return ascii ? `${address.slice(0, address.length - domain.length)}${ascii}` : address;
}

/**
 * A search term as the stored addresses spell it: "müller-gmbh.de", "müller-gmbh" or
 * "joerg@müller-gmbh.de" typed into a search box becomes "xn--mller-gmbh-9db.de", … (whole labels
 * only: punycode encodes a label as a whole); null when the term is ASCII or no domain (search for
 * it as typed only).
 */
export function asciiSearchTerm(term: string): string | null {
  if (/^[\x00-\x7f]*$/.test(term)) return null;
  if (term.includes('@')) {
    const ascii = asciiDomain(term);
    return ascii === term ? null : ascii;
  }
  if (/\s/.test(term)) return null;
  return domainToASCII(term) || null;
}

/** False for an address whose domain IDNA refuses: invalid punycode ("xn--abc"), or characters no domain may hold. */
export function hasValidDomain(address: string): boolean {
  const domain = domainOf(address);
  return domain === null || !needsIdna(domain) || domainToASCII(domain) !== '';
}

/**
 * zod's e-mail pattern with one change: the top-level domain may be an internationalised one in its
 * ASCII form ("xn--p1ai" for .рф), which zod's letters-only rule refuses.
 */
export const EMAIL_PATTERN = /^(?:[A-Za-z0-9_'+\-]+\.)*[A-Za-z0-9_'+\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\-]*\.)+(?:[A-Za-z]{2,}|xn--[A-Za-z0-9\-]{2,})$/;

/**
 * What a domain shown in Unicode may hold: letters, digits, marks, hyphens and its dots; nothing that
 * shows as blank or as punctuation (the letters that show as blank, U+3164 and its kin, IDNA refuses).
 */
const READABLE_DOMAIN = /^[\p{L}\p{N}\p{M}.-]+$/u;

/**
 * An address as its owner reads it in a mail: an internationalised domain in Unicode, as typed,
 * with the stored ASCII form after it ("joerg@müller-handel.de (joerg@xn--mller-handel-dlb.de)"):
 * the ASCII form alone was unrecognisable to a German reader (German frontend review, session 30),
 * and the Unicode form alone can look like another domain (a Cyrillic "а" for a Latin "a"), which in
 * a mail about a changed address would hide whose address it now is. IDNA lets a label hold more
 * than letters: characters that show as blank (U+2800) or as punctuation ("‚" for ",", "❨" for
 * "("), with which "jon@alpha.test" + blank space + ".intruder.example" read as the owner's own
 * address (attacker's read, session 30). A domain with any character but letters, digits, marks and
 * hyphens is shown in its ASCII form only. Any other address as it is.
 */
export function readableAddress(address: string): string {
  const unicode = unicodeForm(address);
  return unicode === null ? address : `${unicode} (${address})`;
}

/**
 * A person with their address, as readableAddress shows it: "Grete Müller <grete@müller-söhne.de>
 * (grete@xn--mller-shne-kcb9d.de)"; without an internationalised domain "Name <address>".
 */
export function namedAddress(name: string, address: string): string {
  const unicode = unicodeForm(address);
  return unicode === null ? `${name} <${address}>` : `${name} <${unicode}> (${address})`;
}

/**
 * The address as its owner typed it, for where it names their own account to them and nobody can
 * pass it off as another's (the authenticator label): its internationalised domain in Unicode when
 * readableAddress would show that form; else the address as stored.
 */
export function typedAddress(address: string): string {
  return unicodeForm(address) ?? address;
}

/** The address with its internationalised domain in Unicode, when readableAddress shows it so; else null. */
function unicodeForm(address: string): string | null {
  const domain = domainOf(address);
  if (domain === null || !hasAsciiFormLabel(domain)) return null;
  const unicode = domainToUnicode(domain);
  if (!unicode || unicode === domain || !READABLE_DOMAIN.test(unicode)) return null;
  return `${address.slice(0, address.length - domain.length)}${unicode}`;
}
