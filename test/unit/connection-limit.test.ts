import t from 'tap';
import { DEFAULT_CEILING, defaultMaxConnections, leavesTooFewDescriptors, openFileLimit } from '../../src/http/connection-limit.js';

const limits = (soft: string, hard = soft) =>
  `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             95219                95219                processes \nMax open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     \n`;

t.test('openFileLimit reads the soft limit from /proc/self/limits', async (t) => {
  t.equal(openFileLimit(limits('1048576')), 1_048_576);
  t.equal(openFileLimit(limits('1024', '524288')), 1024, 'the soft one');
  t.equal(openFileLimit(limits('unlimited')), null);
  t.equal(openFileLimit(null), null, 'no /proc (not Linux)');
  t.equal(openFileLimit('Max processes 5 5 processes\n'), null);
  t.type(openFileLimit(), 'number', 'this process (Linux)');
});

t.test('defaultMaxConnections keeps a quarter of the descriptors, 128 to 1,024, for the rest; at most the ceiling', async (t) => {
  t.equal(defaultMaxConnections(256), 128);
  t.equal(defaultMaxConnections(1024), 768);
  t.equal(defaultMaxConnections(8192), 7168);
  t.equal(defaultMaxConnections(20_000), DEFAULT_CEILING);
  t.equal(defaultMaxConnections(1_048_576), DEFAULT_CEILING);
  t.equal(defaultMaxConnections(100), 1, 'never none');
  t.equal(defaultMaxConnections(null), DEFAULT_CEILING);
});

t.test('leavesTooFewDescriptors: a MAX_CONNECTIONS above the open-file limit less what the default keeps (review of session 32)', async (t) => {
  t.equal(leavesTooFewDescriptors(128, 256), false);
  t.equal(leavesTooFewDescriptors(129, 256), true);
  t.equal(leavesTooFewDescriptors(20_000, 1_048_576), false, 'above the default ceiling, far below the limit: no warning');
  t.equal(leavesTooFewDescriptors(1_047_553, 1_048_576), true);
  t.equal(leavesTooFewDescriptors(1_000_000, null), false, 'no known limit');
});
