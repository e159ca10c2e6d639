import { generateKey } from '../../src/lib/secret-box.js';

/**
 * ENCRYPTION_KEYS of every test app in this test process (buildTestApp) and of the operator CLI the
 * tests run against them (cliEnv): like in production, the CLI shares the servers' keys, so what one
 * seals (mail bodies it queues, signing keys it creates) the other opens. Fresh for every test file.
 */
export const TEST_ENCRYPTION_KEYS = `test-1:${generateKey()}`;
