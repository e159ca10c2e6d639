import t from 'tap';
import { generateKey } from '../../../src/lib/secret-box.js';
import { tokenFromLink } from '../../helpers/accounts.js';
import { cli } from '../../helpers/cli.js';
import { auditOf, mailsTo } from '../organization/helpers.js';
import { CLI_AUDIT, staffWorld } from './cli-support-helpers.js';

/** The operator's commands for SUPPORT accounts: a new activation link; usage errors. */

t.test('resend-support-activation: a working link after the printed one expired; the old one is void', async (t) => {
  const w = await staffWorld(t);
  const inspect = (token: string) => w.request({ method: 'POST', url: '/v1/activation/inspect', body: { token } });

  const created = await w.run('create-support-user', '--email', 'late@shop.test', '--name', 'Lena Late');
  t.equal(created.code, 0, created.stderr);
  const first = tokenFromLink(created.stdout);
  const user = await w.db.user.findUniqueOrThrow({ where: { email: 'late@shop.test' } });
  // The bootstrap ran 8 days ago: its link has expired (and re-running it only says email_taken).
  await w.db.$executeRaw`UPDATE flow_tokens SET created_at = created_at - interval '8 days', expires_at = expires_at - interval '8 days' WHERE user_id = ${user.id}::uuid`;
  t.equal((await inspect(first)).body.code, 'link_expired');

  const resent = await w.run('resend-support-activation', '--email', 'LATE@Shop.test');
  t.equal(resent.code, 0, resent.stderr);
  t.match(resent.stdout, /^https:\/\/shop\.example\.test\/activate\?token=[A-Za-z0-9_-]{43}\n$/, 'stdout is exactly the link');
  t.match(resent.stderr, 'new activation link for SUPPORT user late@shop.test');
  const second = tokenFromLink(resent.stdout);
  const ok = await inspect(second);
  t.equal(ok.status, 200, 'the new link works');
  t.match(ok.body, { email: 'late@shop.test', name: 'Lena Late', organizationName: null });
  t.equal((await inspect(first)).body.code, 'link_used', 'the old link is void');
  t.same(
    (await w.db.flowToken.findMany({ where: { userId: user.id }, orderBy: { createdAt: 'asc' } })).map((f) => f.state),
    ['VOIDED', 'PENDING'],
  );
  t.same((await mailsTo(w.app, 'late@shop.test')).map((m) => m.template), ['activation', 'activation'], 'mailed too');
  t.match(await auditOf(w.app, 'user.activation_resent', user.id), [{ ...CLI_AUDIT, details: { by: 'cli' } }]);

  const activated = await w.request({ method: 'POST', url: '/v1/activation', body: { token: second, password: 'a long and unusual passphrase 42' } });
  t.equal(activated.status, 200);
  const active = await w.run('resend-support-activation', '--email', 'late@shop.test');
  t.equal(active.code, 1);
  t.match(active.stderr, 'refused: already_activated');
  t.equal(active.stdout, '');
});

t.test('usage errors exit 2; help lists the commands', async (t) => {
  const env = { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none', ENCRYPTION_KEYS: `cli-1:${generateKey()}` };
  const [typo, valued, help] = await Promise.all([
    cli(['block-support-user', '--email', 'a@b.test', '--allow-lst'], env),
    cli(['block-support-user', '--email', 'a@b.test', '--allow-last', 'yes'], env),
    cli(['help'], env),
  ]);
  t.equal(typo.code, 2, 'a mistyped option is not ignored');
  t.match(typo.stderr, 'unknown option --allow-lst');
  t.match(typo.stderr, 'usage: npm run cli -- block-support-user --email <e-mail> [--allow-last]');
  t.equal(valued.code, 2);
  t.match(valued.stderr, '--allow-last takes no value');
  for (const command of ['list-support-users', 'resend-support-activation --email', 'block-support-user --email', 'unblock-support-user --email', 'reset-support-mfa --email']) {
    t.match(help.stdout, command);
  }
});
