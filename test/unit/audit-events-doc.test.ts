import { readFileSync } from 'node:fs';
import t from 'tap';
import { AUDIT_EVENT_TYPES } from '../../src/modules/audit/audit.service.js';
import { FEED_EVENT_TYPES } from '../../src/modules/events/event-feed.js';
import { SECURITY_EVENT_TYPES } from '../../src/modules/me/security-events.js';

/** docs/audit-events.md explains every audit event type once, and says truly which are in the event feed. */

const doc = readFileSync(new URL('../../docs/audit-events.md', import.meta.url), 'utf8');
const sections = new Map([...doc.matchAll(/^#### `([a-z_.]+)`\n([\s\S]*?)(?=^#{2,4} |(?![\s\S]))/gm)].map((m) => [m[1]!, m[2]!]));

t.test('every audit event type has exactly one section, and no section names a type that does not exist', async (t) => {
  const headings = [...doc.matchAll(/^#### `([a-z_.]+)`/gm)].map((m) => m[1]!);
  t.same([...headings].sort(), [...AUDIT_EVENT_TYPES].sort());
  t.equal(new Set(headings).size, headings.length, 'none twice');
});

t.test("each section says whether the type is in the event feed, as the feed's list says", async (t) => {
  for (const type of AUDIT_EVENT_TYPES) {
    const feed = /Feed: (yes|no)\b/.exec(sections.get(type) ?? '')?.[1];
    t.equal(feed, (FEED_EVENT_TYPES as readonly string[]).includes(type) ? 'yes' : 'no', type);
  }
});

t.test("each section says whether the user sees the type among their own security events, as that list says", async (t) => {
  for (const type of AUDIT_EVENT_TYPES) {
    const own = /Own security events: (yes|no)\b/.exec(sections.get(type) ?? '')?.[1];
    t.equal(own, (SECURITY_EVENT_TYPES as readonly string[]).includes(type) ? 'yes' : 'no', type);
  }
});
