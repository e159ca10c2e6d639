import t from 'tap';
import { buildTestApp } from '../helpers/app.js';

/**
 * Which response headers the document promises. A header every answer of a status carries is
 * `required: true` (Retry-After on 423/429/503, WWW-Authenticate on 401), so a generated client may
 * rely on it; one that comes with some codes only (Retry-After with 409 mfa_enrollment_in_progress)
 * is declared without it. The contract checker (helpers/contract.ts) insists only on required ones.
 */
type Header = { required?: boolean; schema?: Record<string, unknown> };
type Doc = {
  paths: Record<string, Record<string, { operationId?: string; security?: Record<string, unknown>[]; responses?: Record<string, { headers?: Record<string, Header> }> }>>;
};

t.test('headers every answer of a status carries are required; the others are not', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = app.swagger() as unknown as Doc;
  t.notOk(JSON.stringify(doc).includes('x-required'), 'the marker is moved into the header object');
  let checked = 0;
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        // An operation that takes credentials (bearer token, client Basic) answers every 401 with its
        // challenge; public operations' 401s (invalid_credentials, challenge_invalid, ...) carry none.
        const authenticated = (op.security ?? []).some((s) => 'bearerAuth' in s || 'clientBasic' in s);
        const expected = ['423', '429', '503'].includes(status)
          ? 'Retry-After'
          : status === '401' && authenticated
            ? 'WWW-Authenticate'
            : undefined;
        if (expected) {
          checked++;
          t.equal(response.headers?.[expected]?.required, true, `${method.toUpperCase()} ${path} ${status}: ${expected} required`);
        }
      }
    }
  }
  t.ok(checked > 50, `${checked} responses checked`);
  const enrol = doc.paths['/v1/auth/login/mfa-enrollment']?.post?.responses?.['409']?.headers?.['Retry-After'];
  t.ok(enrol, '409 of the login enrolment step declares Retry-After (mfa_enrollment_in_progress)');
  t.notOk(enrol?.required, '… not for every 409 it answers');
});
