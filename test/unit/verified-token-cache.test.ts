import { generateKeyPairSync } from 'node:crypto';
import t from 'tap';
import {
  VERIFIED_TOKEN_CACHE_CAPACITY,
  createVerifiedTokenCache,
  type VerifiedTokenEntry,
} from '../../src/modules/sessions/verified-token-cache.js';

const key = generateKeyPairSync('ed25519').publicKey;
const entry = (sub: string): VerifiedTokenEntry => ({
  kid: 'kid',
  key,
  nbf: undefined,
  claims: { sub, sid: sub, jti: sub, iat: 0, exp: 1, iss: 'iss', aud: ['webshop'], org: null, roles: ['USER'], amr: ['pwd'], terms: null },
});

t.test('bounded: never more than its capacity, the least recently used entry goes first', async (t) => {
  const cache = createVerifiedTokenCache(3);
  for (const token of ['a', 'b', 'c']) cache.set(token, entry(token));
  t.equal(cache.size, 3);
  t.equal(cache.get('a')?.claims.sub, 'a', 'a is used again: b is now the oldest');
  cache.set('d', entry('d'));
  t.equal(cache.size, 3, 'still 3');
  t.equal(cache.get('b'), undefined, 'b evicted');
  t.ok(cache.get('a') && cache.get('c') && cache.get('d'), 'a, c and d kept');

  for (let i = 0; i < 100; i++) cache.set(`t${i}`, entry(`t${i}`));
  t.equal(cache.size, 3, 'a flood of entries does not grow it');
  t.same(['t97', 't98', 't99'].map((k) => cache.get(k)?.claims.sub), ['t97', 't98', 't99'], 'the newest stay');

  cache.set('t99', entry('again'));
  t.equal(cache.size, 3, 'replacing an entry does not grow it');
  cache.delete('t99');
  t.equal(cache.get('t99'), undefined);
  t.equal(cache.size, 2);
});

t.test('the default capacity', async (t) => {
  t.equal(createVerifiedTokenCache().capacity, VERIFIED_TOKEN_CACHE_CAPACITY);
  t.equal(VERIFIED_TOKEN_CACHE_CAPACITY, 10_000);
});
