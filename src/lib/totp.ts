import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ScureBase32Plugin } from 'otplib';

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;

const SECRET_BYTES = 20;
// RFC 4226 R6: shared secrets below 128 bits are not acceptable.
const MIN_SECRET_BYTES = 16;
const ACCEPT_WINDOW = 1;
const DRIFT_WINDOW = 10;
const CODE_PATTERN = /^\d{6}$/;

const base32 = new ScureBase32Plugin();

export type TotpCheck =
  | { result: 'valid'; step: number }
  | { result: 'replayed'; step: number }
  | { result: 'clock_drift'; offsetSeconds: number; step: number }
  | { result: 'invalid' };

export type CheckTotpInput = {
  /** base32 secret as stored for the factor */
  secret: string;
  code: string;
  nowMs: number;
  /** highest time step already accepted for this factor; null before the first use */
  lastUsedStep?: number | null;
  /**
   * Steps for which a code was refused with the clock-drift hint before they came (hintedStep): a
   * code matching one of them is spent (`replayed`), also once its step is inside the window. Otherwise the
   * hint would tell whoever guessed codes which guess to send again, and when: the accepted window
   * would be -1..+10 steps, not ±1 (ASVS V6 review, session 30).
   */
  refusedSteps?: readonly number[];
};

export function generateTotpSecret(): string {
  return base32.encode(randomBytes(SECRET_BYTES), { padding: false });
}

export function decodeTotpSecret(secretBase32: string): Buffer {
  return Buffer.from(base32.decode(secretBase32));
}

export function buildOtpauthUri(input: { issuer: string; accountName: string; secret: string }): string {
  const { issuer, accountName, secret } = input;
  // Authenticator apps split the decoded label on ':' so an encoded colon would still
  // break issuer/account parsing; reject instead of encoding.
  for (const [name, value] of [['issuer', issuer], ['accountName', accountName]] as const) {
    if (value.length === 0) throw new TypeError(`otpauth ${name} must not be empty`);
    if (value.includes(':')) throw new TypeError(`otpauth ${name} must not contain ':'`);
  }
  if (!/^[A-Z2-7]+$/.test(secret)) {
    throw new TypeError('otpauth secret must be unpadded upper-case base32');
  }
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(accountName)}`;
  // Defaults are spelled out: some apps mis-handle an absent parameter.
  const query = [
    `secret=${secret}`,
    `issuer=${encodeURIComponent(issuer)}`,
    'algorithm=SHA1',
    `digits=${TOTP_DIGITS}`,
    `period=${TOTP_PERIOD_SECONDS}`,
  ].join('&');
  return `otpauth://totp/${label}?${query}`;
}

// Synchronous node:crypto HMAC: a code check must never wait in the libuv pool behind argon2 hashes.
export function hotp(secret: Buffer, counter: number, digits = TOTP_DIGITS): string {
  if (!Number.isSafeInteger(counter) || counter < 0) {
    throw new RangeError(`HOTP counter must be a non-negative safe integer, got ${counter}`);
  }
  if (!Number.isInteger(digits) || digits < 6 || digits > 8) {
    throw new RangeError(`HOTP digits must be 6..8, got ${digits}`);
  }
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', secret).update(message).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(binary % 10 ** digits).padStart(digits, '0');
}

export function timeStep(epochSeconds: number): number {
  return Math.floor(epochSeconds / TOTP_PERIOD_SECONDS);
}

/** The time step at a clock reading in milliseconds. */
export function stepAtMs(nowMs: number): number {
  return timeStep(Math.floor(nowMs / 1000));
}

export function totpCode(secretBase32: string, epochSeconds: number, digits = TOTP_DIGITS): string {
  return hotp(decodeTotpSecret(secretBase32), timeStep(epochSeconds), digits);
}

export function checkTotp(input: CheckTotpInput): TotpCheck {
  try {
    return check(input);
  } catch {
    // Callers treat any failure as a wrong code; a throw here would become a 500.
    return { result: 'invalid' };
  }
}

function check({ secret, code, nowMs, lastUsedStep, refusedSteps = [] }: CheckTotpInput): TotpCheck {
  if (typeof code !== 'string' || !CODE_PATTERN.test(code)) return { result: 'invalid' };
  if (typeof secret !== 'string' || typeof nowMs !== 'number' || !Number.isFinite(nowMs) || nowMs < 0) {
    return { result: 'invalid' };
  }
  // Fail closed: a corrupt stored step must not switch off replay protection.
  if (lastUsedStep != null && !Number.isSafeInteger(lastUsedStep)) return { result: 'invalid' };
  const key = decodeTotpSecret(secret);
  if (key.length < MIN_SECRET_BYTES) return { result: 'invalid' };

  const currentStep = stepAtMs(nowMs);
  const given = Buffer.from(code, 'ascii');
  // The accepted window first: a code found there lets the user in (or is answered as replayed),
  // which the response tells anyway, so the wider search for the clock hint runs only when it was
  // not there (3 HMACs instead of 21 for the usual code). Within each search every candidate is
  // compared, so timing does not tell which of its steps matched.
  const best =
    closestMatch(key, given, currentStep, 0, ACCEPT_WINDOW) ?? closestMatch(key, given, currentStep, ACCEPT_WINDOW + 1, DRIFT_WINDOW);
  if (best === null) return { result: 'invalid' };
  // A step hinted before it came: the code shown then is spent, as one accepted is. Answered as a
  // replay ("wait for the next code", not counted towards the code lock): a device whose clock was
  // ahead shows it again once its time has come (attacker's read, session 30), and whoever guessed
  // it learns nothing the hint had not told them.
  if (refusedSteps.includes(best)) return { result: 'replayed', step: best };

  // The code last accepted, sent again minutes later, is a replay (not a guess, and not a device
  // clock running slow). An older code that was never accepted, outside the window, is what a slow
  // device shows: the hint. Inside the window every code up to the last accepted one is a replay.
  if (lastUsedStep != null && best === lastUsedStep) return { result: 'replayed', step: best };
  const delta = best - currentStep;
  if (Math.abs(delta) > ACCEPT_WINDOW) {
    return { result: 'clock_drift', offsetSeconds: delta * TOTP_PERIOD_SECONDS, step: best };
  }
  if (lastUsedStep != null && best <= lastUsedStep) return { result: 'replayed', step: best };
  return { result: 'valid', step: best };
}

/** The step to remember (refusedSteps) after a check: that of a clock-drift hint for a step still to come, else null. */
export function hintedStep(check: TotpCheck): number | null {
  return check.result === 'clock_drift' && check.offsetSeconds > 0 ? check.step : null;
}

/** The matching step whose distance from `currentStep` is within [minDelta, maxDelta]: the closest, on a tie the later one (which replay protection can still accept). */
function closestMatch(key: Buffer, given: Buffer, currentStep: number, minDelta: number, maxDelta: number): number | null {
  let best: number | null = null;
  for (let delta = -maxDelta; delta <= maxDelta; delta++) {
    const step = currentStep + delta;
    if (Math.abs(delta) < minDelta || step < 0) continue;
    const matches = timingSafeEqual(given, Buffer.from(hotp(key, step), 'ascii'));
    if (matches && (best === null || Math.abs(delta) <= Math.abs(best - currentStep))) best = step;
  }
  return best;
}
