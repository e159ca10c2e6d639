import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { decodeProtectedHeader } from 'jose';
import { generateKey, parseKeyring } from '../../src/lib/secret-box.js';
import { createSigningKeyManager, rotateSigningKey } from '../../src/modules/sessions/signing-keys.js';
import { issueSession } from '../../src/modules/sessions/sessions.service.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser } from '../helpers/factories.js';

t.test('instance lacking the new key: a live token of the new key (signed by an instance that has it) is refused once', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  // The operator rotates --immediate with a key instance A lacks; instance B has it and signs.
  const otherKeyring = parseKeyring(`other-1:${generateKey()}`);
  const rotation = await rotateSigningKey({ ...app.ctx, keyring: otherKeyring }, { immediate: true });
  const signerB = createSigningKeyManager({ ...app.ctx, keyring: otherKeyring });
  await signerB.reload();
  const tokens = await app.ctx.db.$transaction((tx) =>
    issueSession({ ...app.ctx, signer: signerB }, tx, { userId: user.id, amr: ['pwd', 'otp'], meta: { ip: '127.0.0.1', userAgent: 'tap' } }),
  );
  t.equal(decodeProtectedHeader(tokens.accessToken).kid, rotation.kid);

  await sleep(5_100); // past UNKNOWN_KID_RELOAD_MIN_INTERVAL_MS since A's start-up load
  const first = await request({ url: '/v1/me', token: tokens.accessToken });
  const second = await request({ url: '/v1/me', token: tokens.accessToken });
  t.same([first.status, second.status], [200, 200], `a live token of the new key verifies on A (got ${first.status}, then ${second.status})`);
});
