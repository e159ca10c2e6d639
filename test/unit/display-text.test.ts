import t from 'tap';
import { displayText } from '../../src/lib/display-text.js';

t.test('display text is stored trimmed (mutation review, session 22)', async (t) => {
  const schema = displayText(40);
  t.equal(schema.parse('  Dora Example  '), 'Dora Example');
  t.equal(schema.parse('\u00a0Dora\u3000'), 'Dora', 'non-breaking and ideographic spaces too');
  t.equal(schema.parse(`${'x'.repeat(40)}   `), 'x'.repeat(40), 'the length limit applies after trimming');
  t.notOk(schema.safeParse('   ').success, 'only spaces is empty');
});
