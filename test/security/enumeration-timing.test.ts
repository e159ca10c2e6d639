import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser } from '../helpers/factories.js';
import { inviteUser } from '../helpers/accounts.js';

/**
 * security.md item 5: login and forgot-password spend the same work whatever the account's state.
 * Measured through HTTP, samples interleaved, with the real argon2 parameters of the test config.
 */
const SAMPLES = 200;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function measure(fns: Record<string, () => Promise<unknown>>, between: () => Promise<unknown> = async () => {}) {
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  for (let i = 0; i < 10; i++) for (const fn of Object.values(fns)) await fn(); // warm-up
  for (let i = 0; i < SAMPLES; i++) {
    for (const [name, fn] of Object.entries(fns)) {
      await between();
      const start = process.hrtime.bigint();
      await fn();
      times[name]!.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
}

t.test('login: unknown e-mail, wrong password and not-activated account take the same time (median diff < 10 ms)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const { user: invited } = await inviteUser(app);
  const login = (email: string) => () => request({ url: '/v1/auth/login', body: { email, password: 'a wrong password 1' } });
  // Untimed: keep the real account below the lockout threshold, so every sample is a plain wrong password.
  const unlock = () => app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 0, passwordLockedUntil: null } });
  const medians = await measure({ unknown: login('nobody@example.test'), wrong: login(user.email), invited: login(invited.email) }, unlock);
  const values = Object.values(medians);
  t.ok(Math.max(...values) - Math.min(...values) < 10, `medians ${JSON.stringify(medians)}`);
});

t.test('forgot password: known and unknown addresses take the same time (median diff < 10 ms)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const forgot = (email: string) => () => request({ url: '/v1/password/forgot', body: { email } });
  const medians = await measure({ unknown: forgot('nobody@example.test'), known: forgot(user.email) });
  t.ok(Math.abs(medians.known! - medians.unknown!) < 10, `medians ${JSON.stringify(medians)}`);
});
