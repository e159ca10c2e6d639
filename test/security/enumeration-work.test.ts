import argon2 from 'argon2';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser } from '../helpers/factories.js';
import { inviteUser } from '../helpers/accounts.js';

/**
 * security.md item 5, the "same work" half, counted instead of timed: every failed password step
 * runs exactly one argon2 verification at the configured parameters, whatever the account's state.
 * (enumeration-timing.test.ts measures the time; with the tests' cheap argon2 a missing dummy
 * hash would hide in its 10-ms margin, this count cannot.)
 */

const WRONG = 'a wrong password 1';
type Runs = { verify: number; dummy: number; hash: number };

/** The hasher's own tally (not in /metrics: a per-kind count there would tell a metrics reader which addresses have accounts). */
const hashRuns = (app: FastifyInstance): Runs => app.ctx.hasher.stats().runs;

async function runsOf(app: FastifyInstance, work: () => Promise<unknown>): Promise<Runs> {
  const before = hashRuns(app);
  await work();
  const after = hashRuns(app);
  return { verify: after.verify - before.verify, dummy: after.dummy - before.dummy, hash: after.hash - before.hash };
}

t.test('a failed password step runs one argon2 verification in every account state', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const { user: invited } = await inviteUser(app);
  const login = (email: string) => () => request({ url: '/v1/auth/login', body: { email, password: WRONG } });

  t.same(await runsOf(app, login('nobody@example.test')), { verify: 0, dummy: 1, hash: 0 }, 'unknown address: the dummy');
  t.same(await runsOf(app, login(invited.email)), { verify: 0, dummy: 1, hash: 0 }, 'not activated: the dummy');
  t.same(await runsOf(app, login(user.email)), { verify: 1, dummy: 0, hash: 0 }, 'wrong password: the stored hash');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED' } });
  t.same(await runsOf(app, login(user.email)), { verify: 1, dummy: 0, hash: 0 }, 'blocked, wrong password: the same');
});

t.test('after the argon2 parameters were raised, an account with an older hash costs no less than an unknown address', async (t) => {
  // The configuration now asks for twice the memory of the hash stored below.
  const { app } = await buildTestApp(t, { ARGON2_MEMORY_KIB: '2048' });
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const older = await argon2.hash(password!, { type: argon2.argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 });
  await app.ctx.db.user.update({ where: { id: user.id }, data: { passwordHash: older } });
  const login = (email: string, pw: string) => () => request({ url: '/v1/auth/login', body: { email, password: pw } });

  t.same(await runsOf(app, login('nobody@example.test', WRONG)), { verify: 0, dummy: 1, hash: 0 }, 'unknown address: a dummy at the configured cost');
  t.same(
    await runsOf(app, login(user.email, WRONG)),
    { verify: 1, dummy: 1, hash: 0 },
    'wrong password on the older hash: the dummy at the configured cost runs beside it',
  );

  // A correct password renews the hash; from then on the account costs what everyone's does.
  const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 200);
  const renewed = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.match(renewed.passwordHash, /\$m=2048,/, 'renewed at the configured parameters');
  t.same(await runsOf(app, login(user.email, WRONG)), { verify: 1, dummy: 0, hash: 0 }, 'renewed hash: the stored hash alone');
});
