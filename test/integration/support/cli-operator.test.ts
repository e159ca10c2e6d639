import { userInfo } from 'node:os';
import t from 'tap';
import type { Prisma } from '../../../src/generated/prisma/client.js';
import { cliOrigin } from '../../../src/modules/support/cli-origin.js';
import { cli, cliEnv, cliInTurn } from '../../helpers/cli.js';
import { CLI_AUDIT, staffWorld } from './cli-support-helpers.js';

/**
 * Every operator command that changes an account says in its audit rows who ran it (`operator`:
 * SUDO_USER, else the OS account) and, with --reason, why; a bad --reason is a usage error.
 */

const SUDO_USER = 'alice-admin';

t.test('each command records the operator (SUDO_USER wins) and the --reason (trimmed; absent without one)', async (t) => {
  const w = await staffWorld(t);
  const plain = userInfo().username;
  t.not(plain, SUDO_USER);
  const invited = await w.support('invited@shop.test', { status: 'INVITED' });
  const leaving = await w.support('leaving@shop.test');
  await w.support('spare@shop.test'); // leaving@ is not the last ACTIVE one
  const blocked = await w.support('back@shop.test', { status: 'BLOCKED' });
  const phone = await w.support('phone@shop.test');
  const longReason = 'r'.repeat(500);

  const cases: { args: string[]; sudo?: true; reason?: string; types: string[]; rows: () => Promise<Prisma.AuditEventWhereInput> }[] = [
    {
      args: ['create-support-user', '--email', 'new@shop.test', '--name', 'Nina New', '--reason', '  OPS-101 new hire  '],
      reason: 'OPS-101 new hire',
      types: ['user.invited'],
      rows: async () => ({ subjectUserId: (await w.db.user.findUniqueOrThrow({ where: { email: 'new@shop.test' } })).id }),
    },
    {
      args: ['create-organization', '--customer-number', 'K-7', '--name', 'Kappa AG', '--admin-email', 'chef@kappa.test', '--admin-name', 'Karl Kappa'],
      types: ['organization.administrator_appointed', 'organization.created', 'user.invited'],
      rows: async () => ({ organizationId: (await w.db.organization.findUniqueOrThrow({ where: { customerNumber: 'K-7' } })).id }),
    },
    {
      args: ['resend-support-activation', '--email', 'invited@shop.test', '--reason', ` ${longReason}\t`],
      reason: longReason,
      types: ['user.activation_resent'],
      rows: async () => ({ subjectUserId: invited.user.id }),
    },
    {
      args: ['block-support-user', '--email', 'leaving@shop.test', '--reason', 'OPS-104 left the company'],
      sudo: true,
      reason: 'OPS-104 left the company',
      types: ['user.blocked'],
      rows: async () => ({ subjectUserId: leaving.user.id }),
    },
    { args: ['unblock-support-user', '--email', 'back@shop.test'], types: ['user.unblocked'], rows: async () => ({ subjectUserId: blocked.user.id }) },
    {
      args: ['reset-support-mfa', '--email', 'phone@shop.test', '--reason', 'OPS-106 lost phone (Ü)'],
      reason: 'OPS-106 lost phone (Ü)',
      types: ['mfa.reset_by_admin'],
      rows: async () => ({ subjectUserId: phone.user.id }),
    },
  ];

  const runs = await cliInTurn(cases.map((c) => () => cli(c.args, { ...cliEnv(w.databaseUrl), ...(c.sudo ? { SUDO_USER } : {}) })));
  for (const [i, c] of cases.entries()) {
    const command = c.args[0]!;
    t.equal(runs[i]!.code, 0, `${command}: ${runs[i]!.stderr}`);
    const rows = await w.db.auditEvent.findMany({ where: await c.rows(), orderBy: { type: 'asc' } });
    t.same(rows.map((r) => r.type), c.types, `${command}: its audit rows`);
    for (const row of rows) {
      const details = row.details as Record<string, unknown> & { cli: Record<string, unknown> };
      t.match(row, { actorUserId: CLI_AUDIT.actorUserId, ip: CLI_AUDIT.ip, userAgent: CLI_AUDIT.userAgent }, `${command} ${row.type}: no actor`);
      t.equal(details.cli.operator, c.sudo ? SUDO_USER : plain, `${command} ${row.type}: operator`);
      t.equal(details.cli.reason, c.reason, `${command} ${row.type}: reason`);
      t.equal('reason' in details.cli, c.reason !== undefined, `${command} ${row.type}: no reason key without --reason`);
      t.notOk('operator' in details, `${command} ${row.type}: kept apart from the event's own details`);
      t.ok(details.by === 'cli' || details.via === 'cli', `${command} ${row.type}: still by/via cli`);
    }
  }
});

t.test('a bad --reason is a usage error (exit 2) and changes nothing; help and usage mention --reason; a mistyped option is refused', async (t) => {
  const w = await staffWorld(t);
  const target = await w.support('target@shop.test');
  await w.support('other@shop.test');
  const block = (...reason: string[]) => w.run('block-support-user', '--email', 'target@shop.test', '--reason', ...reason);

  const [empty, blank, tooLong, newline, bidi, invisible, separator, missing, help, typo] = await cliInTurn([
    () => block(''),
    () => block('   '),
    () => block('x'.repeat(501)),
    () => block('OPS-1\nsecond line'),
    () => block('OPS-1 \u202Edeliver\u202C'),
    () => block('\u200B'),
    () => block('OPS-1\u2028second line'),
    () => w.run('block-support-user', '--email', 'target@shop.test', '--reason'),
    () => w.run('--help'),
    () => w.run('create-support-user', '--email', 'typo@shop.test', '--name', 'Ty Po', '--reasn', 'OPS-1'),
  ]);
  for (const [name, run] of Object.entries({ empty, blank, tooLong, newline, bidi, invisible, separator, missing })) {
    t.equal(run.code, 2, `${name}: ${run.stderr}`);
    t.match(run.stderr, /^--reason\b/m, `${name}: says what is wrong`);
    t.match(run.stderr, 'usage: npm run cli -- block-support-user --email <e-mail> [--allow-last] [--reason <text>]');
  }
  t.match(newline.stderr, 'control characters');
  t.match(missing.stderr, '--reason needs a value');
  t.match(await w.db.user.findUniqueOrThrow({ where: { id: target.user.id } }), { status: 'ACTIVE', blockedAt: null });
  t.equal(await w.db.auditEvent.count(), 0, 'no audit row');
  t.equal(await w.db.mailOutbox.count(), 0, 'no mail');

  t.equal(typo.code, 2);
  t.match(typo.stderr, 'unknown option --reasn');
  t.equal(await w.db.user.count({ where: { email: 'typo@shop.test' } }), 0);

  t.equal(help.code, 0);
  for (const command of ['create-support-user', 'create-organization', 'resend-support-activation', 'block-support-user', 'unblock-support-user', 'reset-support-mfa']) {
    t.match(help.stdout, new RegExp(`^  ${command} .*\\[--reason <text>\\]`, 'm'), `${command}: usage mentions --reason`);
  }
  t.match(help.stdout, /--reason <text>.*audit/s, 'help says where the reason goes');
});

t.test('the operator is stored only as an account name: a SUDO_USER that is none falls back to the OS account', async (t) => {
  const plain = userInfo().username;
  t.equal(cliOrigin({}, { SUDO_USER: 'bob.smith@corp' }).meta.cli?.operator, 'bob.smith@corp');
  for (const odd of ['bob\nroot', 'x'.repeat(65), 'bob\u202E', 'bob smith']) {
    t.equal(cliOrigin({}, { SUDO_USER: odd }).meta.cli?.operator, plain, JSON.stringify(odd));
  }
  t.same(cliOrigin({ reason: 'OPS-7' }, {}).meta.cli, { operator: plain, reason: 'OPS-7' });
});
