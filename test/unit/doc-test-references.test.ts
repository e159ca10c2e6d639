import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import ts from 'typescript';

/**
 * The docs name the tests that hold each rule (docs/security.md maps every line of the security bar
 * to them): `test/…/x.test.ts` › "a test's name", "another". A renamed or deleted test must not
 * leave a row that points at nothing, so every such reference is checked against the test files.
 * A name may be shortened with "…"; a test whose name is built with `${…}` matches any text there.
 */
const root = new URL('../..', import.meta.url).pathname;
const docs = ['README.md', ...readdirSync(`${root}docs`).map((file) => `docs/${file}`)];

const REFERENCE = /`(test\/[^`\s]+\.test\.ts)`/g;
// One quoted name after " › " or ", ": it ends at the quote that ends the list or is followed by
// the next name (names may quote words themselves: "concurrent "forgot password" requests …"),
// within the table cell; else at the next quote.
const NAME = /"((?:(?!`|<br>| \| ).)*?)"(?=, "|\s*(?:$|[;(),.<|—]|and ))|"([^"]*)"/y;

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type Literal = { text: string; pattern: RegExp };

/**
 * Every string of a test file (read by TypeScript's parser), with a pattern: a template's `${…}`
 * matches any text on one line, a template without text of its own matches nothing.
 */
function literals(file: string): Literal[] {
  const found: Literal[] = [];
  const add = (parts: string[]) => {
    const normalised = parts.map((part) => part.replace(/\s+/g, ' '));
    if (normalised.join('').trim().length < 8) return;
    found.push({ text: normalised.join(''), pattern: new RegExp(`^${normalised.map(escapeRegExp).join('.{1,80}?')}$`) });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) add([node.text]);
    else if (ts.isTemplateExpression(node)) add([node.head.text, ...node.templateSpans.map((span) => span.literal.text)]);
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, readFileSync(`${root}${file}`, 'utf8'), ts.ScriptTarget.Latest));
  return found;
}

/** Whether one of the literals is the test the docs name (shortened with "…" or in full). */
function isNamed(name: string, candidates: Literal[]): boolean {
  if (!name.includes('…')) return candidates.some(({ pattern }) => pattern.test(name));
  const shortened = new RegExp(`^${name.split('…').map((part) => escapeRegExp(part.trim())).join('[\\s\\S]*')}`);
  return candidates.some(({ text }) => shortened.test(text));
}

const literalsOf = new Map<string, Literal[]>();
const allTestFiles = readdirSync(`${root}test`, { recursive: true, encoding: 'utf8' }).map((file) => `test/${file}`);
/** The files a reference names: one path, or a glob (`*` within a name, `**` for any folders, `<feature>` one folder). */
const testFiles = (reference: string): string[] => {
  const glob = reference
    .split(/(\*\*\/|\*|<[^>]+>)/)
    .map((part) => (part === '**/' ? '(?:.*/)?' : part === '*' ? '[^/]*' : part.startsWith('<') ? '[^/]+' : escapeRegExp(part)));
  const pattern = new RegExp(`^${glob.join('')}$`);
  return allTestFiles.filter((file) => pattern.test(file));
};

/** The references of one document, its line breaks read as spaces (names wrap there). */
function referencesIn(doc: string) {
  const text = readFileSync(`${root}${doc}`, 'utf8').replace(/\s+/g, ' ');
  return [...text.matchAll(REFERENCE)].map((match) => {
    const names: string[] = [];
    const at = match.index + match[0].length;
    if (text.startsWith(' › ', at)) {
      for (NAME.lastIndex = at + 3; ; NAME.lastIndex += 2) {
        const name = NAME.exec(text);
        if (!name) break;
        names.push((name[1] ?? name[2])!);
        if (!text.startsWith(', "', NAME.lastIndex)) break;
      }
    }
    return { doc, file: match[1]!, names };
  });
}

const references = docs.flatMap(referencesIn);

t.test('the docs name test files that exist', async (t) => {
  t.ok(references.length > 250, `${references.length} references`);
  const missing = references.filter(({ file }) => testFiles(file).length === 0).map(({ doc, file }) => `${doc}: ${file}`);
  t.same(missing, [], 'every referenced file exists');
});

t.test('every test the docs name by name is in the file they name', async (t) => {
  const named = references.flatMap(({ doc, file, names }) => names.map((name) => ({ doc, file, name })));
  t.ok(named.length > 300, `${named.length} test names`);
  const missing = named.filter(({ file, name }) => {
    const candidates = testFiles(file).flatMap((path) => {
      if (!literalsOf.has(path)) literalsOf.set(path, literals(path));
      return literalsOf.get(path)!;
    });
    return !isNamed(name, candidates);
  });
  t.same(missing.map(({ doc, file, name }) => `${doc}: ${file} › "${name}"`), [], 'none missing');
});

t.test('the check tells names that are there from names that are not', async (t) => {
  const own = literals('test/unit/doc-test-references.test.ts');
  const absent = ['a test', 'nobody wrote'].join(' ');
  t.ok(isNamed('the check tells names that are there from names that are not', own));
  t.ok(isNamed('the check tells names … not', own), 'shortened with …');
  t.notOk(isNamed(absent, own));
  t.notOk(isNamed(`${absent} …`, own));
  const templated = literals('test/security/review-races.test.ts');
  t.ok(isNamed('re-authentication (change password): a password lock committed while the password is being checked wins', templated), '${…} in a name');
});
