import { randomBytes } from 'node:crypto';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { PRODUCTION_ENV } from '../helpers/production-env.js';

// README "Configuration": NODE_ENV=production "refuses development defaults and weak secrets";
// src/config.ts: webhook secrets are "whsec_ and 24 to 64 random bytes". A typed, non-random
// webhook secret lets anyone who guesses it forge feed events (e.g. user.erased) to the receiver
// (event feed integrator review, session 24).
t.test('production refuses a webhook secret that was typed, not generated', async (t) => {
  const hooks = { EVENT_WEBHOOKS: 'cso=https://cso.example.com/hooks/auth' };
  t.ok(loadConfig({ ...PRODUCTION_ENV, ...hooks, EVENT_WEBHOOK_SECRETS: `cso=whsec_${randomBytes(32).toString('base64')}` }).isProduction, 'a generated secret loads');
  for (const [what, key] of [
    ['32 zero bytes', Buffer.alloc(32)],
    ['32 times "a"', Buffer.from('a'.repeat(32))],
    ['a typed passphrase', Buffer.from('our-cso-webhook-secret-2026-prod!')],
  ] as const) {
    t.throws(() => loadConfig({ ...PRODUCTION_ENV, ...hooks, EVENT_WEBHOOK_SECRETS: `cso=whsec_${key.toString('base64')}` }), { message: /EVENT_WEBHOOK_SECRETS/ }, what);
  }
});
