import t from 'tap';
import argon2 from 'argon2';
import {
  HashQueueFullError,
  createPasswordHasher,
  parseArgon2Hash,
  type PasswordHasherOptions,
} from '../../src/lib/password-hasher.js';

// Cheap parameters: the real ones come from config; argon2 itself is never mocked.
const cheap: PasswordHasherOptions = { memoryCost: 1024, timeCost: 1, parallelism: 1, maxConcurrent: 2, maxQueued: 10 };
const PASSWORD = 'correct horse battery staple';

t.test('hash and verify round trip', async (t) => {
  const hasher = createPasswordHasher(cheap);
  const hash = await hasher.hash(PASSWORD);
  t.match(hash, /^\$argon2id\$v=19\$m=1024,p=1,t=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  t.same(parseArgon2Hash(hash), { algorithm: 'argon2id', version: 19, memoryCost: 1024, timeCost: 1, parallelism: 1 });
  t.not(await hasher.hash(PASSWORD), hash, 'salted: same password, different hash');
  const reordered = hash.replace('m=1024,p=1,t=1', 'm=1024,t=1,p=1');
  t.same(parseArgon2Hash(reordered), parseArgon2Hash(hash), 'parameter order does not matter');
  t.same(await hasher.verify(reordered, PASSWORD), { valid: true, needsRehash: false });
  // Argon2 1.0 strings carry no v=; they are outdated and must be re-hashed.
  t.equal(parseArgon2Hash(hash.replace('$v=19$', '$'))?.version, 0x10);
  t.equal((await hasher.verify(hash.replace('$v=19$', '$'), PASSWORD)).needsRehash, true);

  t.same(await hasher.verify(hash, PASSWORD), { valid: true, needsRehash: false });
  t.same(await hasher.verify(hash, 'correct horse battery stapl'), { valid: false, needsRehash: false });
  t.same(await hasher.verify(hash, ''), { valid: false, needsRehash: false });

  // Long Unicode input is hashed whole, not truncated.
  const long = 'ä'.repeat(1023) + 'b';
  const longHash = await hasher.hash(long);
  t.equal((await hasher.verify(longHash, long)).valid, true);
  t.equal((await hasher.verify(longHash, 'ä'.repeat(1023) + 'c')).valid, false);
});

t.test('needsRehash follows the configured parameters', async (t) => {
  const hash = await createPasswordHasher(cheap).hash(PASSWORD);

  const rehash = async (options: Partial<PasswordHasherOptions>) =>
    createPasswordHasher({ ...cheap, ...options }).verify(hash, PASSWORD);

  t.same(await rehash({}), { valid: true, needsRehash: false }, 'same parameters');
  t.same(await rehash({ memoryCost: 2048 }), { valid: true, needsRehash: true }, 'memoryCost raised');
  t.same(await rehash({ timeCost: 2 }), { valid: true, needsRehash: true }, 'timeCost raised');
  t.same(await rehash({ parallelism: 2 }), { valid: true, needsRehash: true }, 'parallelism raised');
  t.same(await rehash({ memoryCost: 512 }), { valid: true, needsRehash: false }, 'config lowered: no downgrade');

  const argon2i = await argon2.hash(PASSWORD, { type: argon2.argon2i, memoryCost: 4096, timeCost: 3, parallelism: 1 });
  t.same(await createPasswordHasher(cheap).verify(argon2i, PASSWORD), { valid: true, needsRehash: true }, 'not argon2id');
});

t.test('a malformed stored hash verifies as invalid instead of throwing', async (t) => {
  const hasher = createPasswordHasher(cheap);
  const good = await hasher.hash(PASSWORD);
  const malformed = [
    '',
    'not-a-hash',
    PASSWORD,
    good.slice(0, -10) + '!!!!!!!!!!',
    good.replace('$argon2id$', '$argon2xx$'),
    good.replace('m=1024,p=1,t=1', 'm=1024,m=1024,t=1'),
    good.replace('m=1024,p=1,t=1', 'm=1024,p=1'),
    '$argon2id$v=19$m=1024,t=1,p=1$$',
    '$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy',
    // Parses, but argon2 cannot run it (memory cost below the minimum of 8 KiB per lane).
    good.replace('m=1024', 'm=1'),
    good.replace('m=1024', `m=${2 ** 40}`),
  ];
  for (const hash of malformed) {
    t.equal((await hasher.verify(hash, PASSWORD)).valid, false, JSON.stringify(hash));
  }
  t.match(hasher.stats(), { running: 0, queued: 0 });
});

t.test('verifyDummy runs a full verification and never throws for any password', async (t) => {
  const hasher = createPasswordHasher(cheap);
  const pending = [hasher.verifyDummy(PASSWORD), hasher.verifyDummy('')];
  t.match(hasher.stats(), { running: 2, queued: 0 }, 'it occupies hashing slots like a real verify');
  t.same(await Promise.all(pending), [undefined, undefined]);
  await hasher.verifyDummy('ä'.repeat(1024));
  t.match(hasher.stats(), { running: 0, queued: 0 });
});

t.test('the queue is bounded: the overflow is rejected at once', async (t) => {
  const hasher = createPasswordHasher({ ...cheap, maxConcurrent: 1, maxQueued: 2 });
  const settled: string[] = [];
  const calls = Array.from({ length: 10 }, (_, i) =>
    hasher.hash(`${PASSWORD} ${i}`).then(
      (hash) => (settled.push(`ok ${i}`), hash),
      (err: unknown) => {
        settled.push(`rejected ${i}`);
        throw err;
      },
    ),
  );
  t.match(hasher.stats(), { running: 1, queued: 2 });

  const results = await Promise.allSettled(calls);
  const fulfilled = results.filter((r) => r.status === 'fulfilled');
  const rejected = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  t.equal(fulfilled.length, 3);
  t.equal(rejected.length, 7);
  for (const err of rejected) {
    t.ok(err instanceof HashQueueFullError);
    t.equal((err as HashQueueFullError).code, 'service_overloaded');
  }
  t.same(
    settled.slice(0, 7),
    [3, 4, 5, 6, 7, 8, 9].map((i) => `rejected ${i}`),
    'rejections come before any hash finishes',
  );
  t.same(settled.slice(7), ['ok 0', 'ok 1', 'ok 2'], 'queued calls run in order');
  t.match(hasher.stats(), { running: 0, queued: 0 });

  // Verification shares the same bound, and the hasher recovers once the flood is over.
  const hash = (fulfilled[0] as PromiseFulfilledResult<string>).value;
  const verifies = Array.from({ length: 5 }, () => hasher.verify(hash, `${PASSWORD} 0`));
  const verified = await Promise.allSettled(verifies);
  t.same(
    verified.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected'],
  );
  t.same(await hasher.verify(hash, `${PASSWORD} 0`), { valid: true, needsRehash: false });
  const dummies = Array.from({ length: 4 }, () => hasher.verifyDummy('x'));
  await t.rejects(Promise.all(dummies), HashQueueFullError);
  t.same((await Promise.allSettled(dummies)).map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected']);
});

t.test('a failing task releases its slot', async (t) => {
  const hasher = createPasswordHasher({ ...cheap, maxConcurrent: 1, maxQueued: 1 });
  // timeCost 0 is refused by argon2 itself.
  const broken = createPasswordHasher({ ...cheap, timeCost: 0, maxConcurrent: 1, maxQueued: 0 });
  await t.rejects(broken.hash(PASSWORD));
  t.match(broken.stats(), { running: 0, queued: 0 });
  t.ok(await hasher.hash(PASSWORD));
});

t.test('invalid queue options are refused', async (t) => {
  t.throws(() => createPasswordHasher({ ...cheap, maxConcurrent: 0 }), RangeError);
  t.throws(() => createPasswordHasher({ ...cheap, maxQueued: -1 }), RangeError);
  t.throws(() => createPasswordHasher({ ...cheap, maxConcurrent: 1.5 }), RangeError);
});

t.test('a hash older than the configured parameters is checked with the dummy beside it, in one slot', async (t) => {
  const older = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 });
  // One slot and no queue: a second slot taken for the dummy would be refused (503) every time.
  const hasher = createPasswordHasher({ ...cheap, memoryCost: 2048, maxConcurrent: 1, maxQueued: 0 });
  const pending = hasher.verify(older, 'a wrong password');
  t.match(hasher.stats(), { running: 1, queued: 0 }, 'one slot taken');
  t.same(await pending, { valid: false, needsRehash: true });
  t.same(await hasher.verify(older, PASSWORD), { valid: true, needsRehash: true });
  t.same(hasher.stats().runs, { verify: 2, dummy: 2, hash: 0 }, 'each check ran the dummy too');
});

t.test('new hashes carry every configured argon2id parameter (mutation review, session 22)', async (t) => {
  const hash = await createPasswordHasher({ ...cheap, memoryCost: 2048, timeCost: 2, parallelism: 2 }).hash(PASSWORD);
  t.same(parseArgon2Hash(hash), { algorithm: 'argon2id', version: 19, memoryCost: 2048, timeCost: 2, parallelism: 2 });
});

t.test('a malformed stored hash costs a full dummy verification (mutation review, session 22)', async (t) => {
  const hasher = createPasswordHasher(cheap);
  t.same(await hasher.verify('not-a-hash', PASSWORD), { valid: false, needsRehash: true });
  t.same(hasher.stats().runs, { verify: 0, dummy: 1, hash: 0 }, 'the dummy ran, as for an unknown address');
});

t.test('an outdated hash really runs argon2 on the dummy hash beside the check (mutation review, session 22)', async (t) => {
  const older = await argon2.hash(PASSWORD, { type: argon2.argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 });
  const hasher = createPasswordHasher({ ...cheap, memoryCost: 2048 });
  const verified: string[] = [];
  const original = argon2.verify;
  argon2.verify = (async (...args: Parameters<typeof original>) => {
    verified.push(args[0]);
    return original(...args);
  }) as typeof argon2.verify;
  t.teardown(() => {
    argon2.verify = original;
  });
  t.same(await hasher.verify(older, PASSWORD), { valid: true, needsRehash: true });
  t.equal(verified.length, 2, 'two argon2 verifications');
  t.ok(verified.includes(older), 'the stored hash');
  t.equal(verified.filter((d) => d !== older).length, 1, 'and one other hash: the dummy');
  t.match(verified.find((d) => d !== older), /^\$argon2id\$v=19\$m=2048,p=1,t=1\$/, 'the dummy made with the configured parameters');
});
