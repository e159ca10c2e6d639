import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser } from '../../helpers/factories.js';
import { sendActivation } from '../../../src/modules/activation/activation.service.js';

/**
 * The whole first login through the API (activation link → password → enrolment → code → tokens),
 * with the authenticator side played by Debian's oathtool and the QR code read by zbarimg, both
 * from what the API returned: the interoperability bar of the issue. CI installs both tools;
 * a missing tool is a failure, not a skip.
 */

const PNG_PREFIX = 'data:image/png;base64,';

/** What an authenticator app shows at `epochSeconds`, computed by oathtool from the otpauth URI. */
function oathtool(otpauthUri: string, epochSeconds: number): string {
  const uri = new URL(otpauthUri);
  const secret = uri.searchParams.get('secret')!;
  const digits = uri.searchParams.get('digits')!;
  const period = uri.searchParams.get('period')!;
  return execFileSync(
    'oathtool',
    ['--totp=SHA1', '-b', `--digits=${digits}`, `--time-step-size=${period}s`, '--now', `@${epochSeconds}`, secret],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  ).trim();
}

function zbarimg(pngDataUrl: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-qr-'));
  try {
    const file = join(dir, 'qr.png');
    writeFileSync(file, Buffer.from(pngDataUrl.slice(PNG_PREFIX.length), 'base64'));
    return execFileSync('zbarimg', ['--quiet', '--raw', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).replace(/\n$/, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

t.test('activate → enrol (oathtool, zbarimg) → tokens; then password + code → tokens', async (t) => {
  const { app, clock } = await buildTestApp(t, { TOTP_ISSUER: 'ALSO Webshop' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Müller & Söhne GmbH' });
  const { user } = await createUser(app.ctx.db, app, {
    organizationId: org.id,
    status: 'INVITED',
    email: 'anna.mueller+shop@mueller-soehne.example',
    name: 'Anna Müller',
  });
  const { link } = await app.ctx.db.$transaction((tx) =>
    sendActivation(tx, app.ctx, { user, organizationName: org.name, actorUserId: null, by: 'cli' }),
  );
  const token = new URL(link).searchParams.get('token')!;
  const password = 'a long and unusual passphrase 4 me';

  const activated = await request({ url: '/v1/activation', body: { token, password } });
  t.equal(activated.status, 200);
  t.equal(activated.body.next, 'mfa_enrollment');
  const { challengeToken } = activated.body;

  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(started.status, 200);
  t.equal(started.body.challengeExpiresIn, activated.body.expiresIn, 'how long the screen has left to confirm (the test clock stands still)');
  const { otpauthUri, secret, qrCode } = started.body;
  t.equal(zbarimg(qrCode.pngDataUrl), otpauthUri, 'the PNG QR code decodes to exactly the otpauth URI');
  t.match(qrCode.svg, /^<svg[\s\S]*<\/svg>\s*$/);

  const uri = new URL(otpauthUri);
  t.equal(uri.protocol, 'otpauth:');
  t.equal(uri.host, 'totp');
  t.equal(decodeURIComponent(uri.pathname.slice(1)), 'ALSO Webshop:anna.mueller+shop@mueller-soehne.example');
  t.equal(uri.pathname.slice(1), 'ALSO%20Webshop:anna.mueller%2Bshop%40mueller-soehne.example', 'label parts URL-encoded');
  t.equal(uri.searchParams.get('issuer'), 'ALSO Webshop');
  t.equal(uri.searchParams.get('secret'), secret);
  t.notMatch(secret, /=/, 'no padding');
  t.equal(Buffer.from(base32Decode(secret)).length, 20, '160-bit secret');
  t.equal(uri.searchParams.get('algorithm'), 'SHA1');
  t.equal(uri.searchParams.get('digits'), '6');
  t.equal(uri.searchParams.get('period'), '30');

  const now = () => Math.floor(clock.now().getTime() / 1000);
  const verified = await request({
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken, code: oathtool(otpauthUri, now()) },
  });
  t.equal(verified.status, 200, 'oathtool codes confirm the enrolment');
  t.equal(verified.body.recoveryCodes.length, 10);
  const me = await request({ url: '/v1/me', token: verified.body.accessToken });
  t.equal(me.status, 200);
  t.same(me.body.session.amr, ['pwd', 'otp']);
  t.equal(me.body.mfa.enrolled, true);

  // The next login, a minute later: password, then the code the device shows then.
  clock.advance(60);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa');
  const wrong = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login.body.challengeToken, code: oathtool(otpauthUri, now() - 120) } });
  t.equal(wrong.body.hint, 'clock_drift', 'a device 2 min behind is told so');
  t.equal(wrong.body.offsetSeconds, -120);
  const tokens = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: login.body.challengeToken, code: oathtool(otpauthUri, now()) },
  });
  t.equal(tokens.status, 200);
  t.equal(tokens.headers['cache-control'], 'no-store');
  t.ok(tokens.body.accessToken && tokens.body.refreshToken);
  t.same(tokens.body.requiredActions.includes('mfa_enrollment'), false);
});

t.test('mfa-enrollment only for enrolment challenges; a password login of an enrolled user needs the code', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.body.next, 'mfa');
  const enrol = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  t.equal(enrol.status, 409);
  t.equal(enrol.body.code, 'challenge_step_mismatch');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'PENDING' } }), 0, 'no second factor sneaks in');
});

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function base32Decode(input: string): number[] {
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const c of input) {
    value = (value << 5) | BASE32.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return out;
}
