import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Config } from '../../config.js';
import type { Db, Tx } from '../../db/client.js';
import { commonErrors } from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { open, seal, type Keyring } from '../../lib/secret-box.js';
import type { SigningKey } from '../../generated/prisma/client.js';
import { createVerifiedTokenCache, type VerifiedTokenCache } from './verified-token-cache.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';

/**
 * JWT signing keys (security.md item 17), shared by all instances through the `signing_keys` table
 * and held in memory by each instance, so signing a token never needs a database query.
 *
 * - The private key is a JWK sealed with the keyring (AES-256-GCM, aad `signing-key:<kid>`).
 * - `kid` is the RFC 7638 thumbprint of the public key.
 * - `retiredAt` is the moment a key stops signing. The signing key is the OLDEST key of the
 *   configured algorithm that is not yet retired (retiredAt null or in the future).
 * - Rotation (`rotateSigningKey`, CLI `rotate-signing-key`) is staged: the new key is published in
 *   the JWKS at once, and the current key keeps signing for PREPUBLISH_SECONDS (its retiredAt is set
 *   to now + PREPUBLISH_SECONDS), so verifiers that cache the JWKS (max-age JWKS_MAX_AGE_SECONDS),
 *   even a copy served by an instance that had not reloaded yet, already know the new key when the
 *   first token signed with it arrives. `--immediate` is for a
 *   leaked key: the new key signs from each instance's next change check on and every older key is deleted, so tokens signed with
 *   them (forged ones included) stop verifying as soon as each instance reloads (its next change
 *   check: within KEY_CHANGE_CHECK_INTERVAL_MS) and leave the JWKS; sessions go on through their
 *   refresh tokens.
 * - Key retention: a retired key stays in the JWKS and keeps verifying for
 *   `ACCESS_TOKEN_TTL_SECONDS + KEY_PROPAGATION_SECONDS` after its retiredAt: the TTL covers the last
 *   token it signed; the margin covers other instances that still sign with it until their next
 *   background refresh (every REFRESH_INTERVAL_MS) plus clock skew. Later rotations delete keys past
 *   that point.
 * - No instance is ever left without a signer by a staged rotation: the retiring key's retiredAt and
 *   its successor are written in one transaction and loaded in one query, so an instance that knows
 *   its key retires also holds the key that follows; one whose last successful reload predates the
 *   rotation still sees retiredAt null and signs on with the old key (the case the margin covers).
 * - Only keys of the configured algorithm verify; switching JWT_ALGORITHM creates a new key at the
 *   next start and tokens signed with the old algorithm stop verifying at once (on that instance:
 *   instances of the two algorithms refuse each other's tokens, so every instance switches at once).
 *   The old algorithm's keys stay until the next rotation retires them.
 */

export const KEY_PROPAGATION_SECONDS = 120;
/**
 * Each instance reloads the keys this often at the latest (and sooner for an unknown kid). The
 * staged rotation's timing assumes no more than this: a change check can fail (the database away).
 */
export const KEY_RELOAD_INTERVAL_SECONDS = 60;
const REFRESH_INTERVAL_MS = KEY_RELOAD_INTERVAL_SECONDS * 1000;
/**
 * Between reloads, each instance asks the database this often whether the keys changed (a row
 * added, deleted or retired: one small query) and reloads at once when they did, so a rotation —
 * above all `--immediate`, for a leaked key — reaches every instance within seconds.
 */
export const KEY_CHANGE_CHECK_INTERVAL_MS = 5_000;
/** With no key to sign with (the first load failed), a reload is tried this often. */
const RETRY_INTERVAL_MS = 5_000;
/** The JWKS Cache-Control max-age. */
export const JWKS_MAX_AGE_SECONDS = 60;
/**
 * How long a new key is published before it signs: an instance that has not reloaded since the
 * rotation may serve the old JWKS for up to KEY_RELOAD_INTERVAL_SECONDS more, a verifier may cache
 * that for JWKS_MAX_AGE_SECONDS, plus a margin for a slow reload and clock skew.
 */
export const PREPUBLISH_SECONDS = KEY_RELOAD_INTERVAL_SECONDS + JWKS_MAX_AGE_SECONDS + 30;
const UNKNOWN_KID_RELOAD_MIN_INTERVAL_MS = 5_000;
const ADVISORY_LOCK_ID = 7_305_001;

export type JwtAlgorithm = Config['jwt']['algorithm'];

export type PublicJwk = JWK & { kty: string; kid: string; alg: JwtAlgorithm; use: 'sig' };

type LoadedKey = {
  kid: string;
  algorithm: string;
  publicJwk: PublicJwk;
  publicKey: KeyObject;
  createdAt: Date;
  retiredAt: Date | null;
  /** Decrypted only for keys that sign now or will sign later. */
  privateKey?: KeyObject;
};

export type ActiveSigningKey = { kid: string; algorithm: JwtAlgorithm; privateKey: KeyObject };

export type SigningKeyDeps = { db: Db; keyring: Keyring; clock: Clock; config: Config };

type Log = { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };

export type SigningKeyManager = {
  /** The key that signs new access tokens; throws 503 when no key could be loaded yet. */
  signingKey(): ActiveSigningKey;
  /** A public key of the configured algorithm that may still verify a live token, by kid. */
  verificationKey(kid: string): KeyObject | undefined;
  /** Like verificationKey, but reloads from the database (throttled) when the kid is unknown. */
  resolveVerificationKey(kid: string): Promise<KeyObject | undefined>;
  /** Every public key that may still verify a live token (the JWKS). */
  publicJwks(): PublicJwk[];
  /** Loads keys from the database, creating the first key if there is none. */
  reload(): Promise<void>;
  /** Starts the background refresh (keys rotated by another instance or the CLI). */
  start(): void;
  stop(): void;
  /** A key this instance can sign with is loaded (one it cannot open verifies, but does not count). */
  readonly loaded: boolean;
  /** `loaded` was true at least once since this instance started (readiness: health.routes.ts). */
  readonly everLoaded: boolean;
  /**
   * Access tokens already verified with these keys (verified-token-cache.ts): one per app instance,
   * like the keys; an entry only counts while verificationKey still answers its kid with its key.
   */
  readonly verifiedTokens: VerifiedTokenCache;
};

function retentionSeconds(config: Config): number {
  return config.jwt.accessTtlSeconds + KEY_PROPAGATION_SECONDS;
}

/** True while a key may still verify tokens (and so must be published). */
export function isPublishable(key: { retiredAt: Date | null }, now: Date, config: Config): boolean {
  return key.retiredAt === null || key.retiredAt.getTime() + retentionSeconds(config) * 1000 > now.getTime();
}

/** AAD under which a signing key's private JWK is sealed (also used by rotate-encryption-key). */
export const signingKeyAad = (kid: string) => `signing-key:${kid}`;

async function generateKey(algorithm: JwtAlgorithm): Promise<{ kid: string; publicJwk: PublicJwk; privateJwk: JWK }> {
  const pair =
    algorithm === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = pair.publicKey.export({ format: 'jwk' }) as JWK;
  const priv = pair.privateKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  const publicJwk: PublicJwk = { ...pub, kty: pub.kty ?? '', kid, alg: algorithm, use: 'sig' };
  return { kid, publicJwk, privateJwk: { ...priv, kid, alg: algorithm } };
}

/** `sealUnder`: an ENCRYPTION_KEYS key id of the keyring to seal with instead of its current one. */
async function insertKey(tx: Tx, deps: SigningKeyDeps, now: Date, sealUnder?: string): Promise<SigningKey> {
  const algorithm = deps.config.jwt.algorithm;
  const { kid, publicJwk, privateJwk } = await generateKey(algorithm);
  const keyring = sealUnder ? { ...deps.keyring, currentKeyId: sealUnder } : deps.keyring;
  const sealed = seal(keyring, JSON.stringify(privateJwk), signingKeyAad(kid));
  return tx.signingKey.create({
    data: {
      kid,
      algorithm,
      publicJwk: publicJwk as object,
      privateKeyCiphertext: sealed.ciphertext,
      encryptionKeyId: sealed.keyId,
      createdAt: now,
    },
  });
}

async function lock(tx: Tx): Promise<void> {
  // Serialises key creation/rotation across instances and the CLI.
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(${ADVISORY_LOCK_ID}::bigint)`;
}

/**
 * Makes sure an unretired key of the configured algorithm exists (creating one when not) and
 * returns all rows. Keys of another algorithm are left alone: an instance still configured with it
 * signs with them (retiring them made instances of the two algorithms replace each other's keys at
 * every reload); the next rotation retires them.
 */
export async function ensureSigningKey(deps: SigningKeyDeps): Promise<SigningKey[]> {
  return deps.db.$transaction(async (tx) => {
    const now = deps.clock.now();
    const existing = await tx.signingKey.findMany({ where: { retiredAt: null }, orderBy: { createdAt: 'desc' } });
    if (existing.some((k) => k.algorithm === deps.config.jwt.algorithm)) {
      return tx.signingKey.findMany({ orderBy: { createdAt: 'desc' } });
    }
    await lock(tx);
    const again = await tx.signingKey.findMany({ where: { retiredAt: null, algorithm: deps.config.jwt.algorithm } });
    if (again.length === 0) await insertKey(tx, deps, now);
    return tx.signingKey.findMany({ orderBy: { createdAt: 'desc' } });
  });
}

export type RotationResult = {
  kid: string;
  algorithm: string;
  /** The ENCRYPTION_KEYS key id the new private key is sealed under: every instance needs it. */
  sealedUnder: string;
  signsFrom: string;
  retired: string[];
  deleted: string[];
  /** --immediate only: the replaced keys this keyring could not open (see rotateSigningKey). */
  warning?: string;
};

/** What the change check compares: every key row's kid and retiredAt. */
const keysFingerprint = (rows: { kid: string; retiredAt: Date | null }[]): string =>
  rows
    .map((row) => `${row.kid}:${row.retiredAt?.getTime() ?? '-'}`)
    .sort()
    .join(',');

/** A key of the configured algorithm that signs now or will: it has not reached its retiredAt. */
const signsNowOrLater = (key: { algorithm: string; retiredAt: Date | null }, algorithm: JwtAlgorithm, now: Date): boolean =>
  key.algorithm === algorithm && (key.retiredAt === null || key.retiredAt > now);

/** A key row's private JWK, opened with `keyring`; throws when the keyring cannot open it. */
function openPrivateJwk(keyring: Keyring, row: SigningKey): JsonWebKey {
  return JSON.parse(open(keyring, { ciphertext: row.privateKeyCiphertext, keyId: row.encryptionKeyId }, signingKeyAad(row.kid))) as JsonWebKey;
}

/** "<kid> (sealed under <key id>)": how messages name a key that could not be opened. */
const sealedUnderText = (row: SigningKey): string => `${row.kid} (sealed under ${row.encryptionKeyId})`;

/** The unretired keys of the configured algorithm (the one signing now first) and those of them `keyring` cannot open. */
function signersNow(rows: SigningKey[], deps: SigningKeyDeps, now: Date): { signers: SigningKey[]; unopenable: string[] } {
  const signers = rows
    .filter((row) => signsNowOrLater(row, deps.config.jwt.algorithm, now))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  const unopenable = signers
    .filter((row) => {
      try {
        openPrivateJwk(deps.keyring, row);
        return false;
      } catch {
        return true;
      }
    })
    .map(sealedUnderText);
  return { signers, unopenable };
}

/**
 * Adds a new signing key; the current key keeps signing for PREPUBLISH_SECONDS and then retires.
 * Retired keys stay published until every token they signed has expired; keys past that point are
 * deleted. With `immediate` (a leaked key) the new key signs from now on (each instance from its next
 * change check) and every older key is deleted
 * now: a key that may be in an attacker's hands must not verify anything any more, whatever the
 * tokens it signed would have lived. Other instances pick the change up at their next change check
 * (KEY_CHANGE_CHECK_INTERVAL_MS; at the latest their next reload), or at once when they meet the new kid.
 *
 * The new key is sealed under the encryption key the key signing now is sealed under: every
 * server demonstrably holds that one, where this keyring's current key may be one the servers do
 * not have yet (a key added to the CLI's ENCRYPTION_KEYS first, as an encryption-key rotation
 * begins; rotate-encryption-key re-seals it later like everything else). A keyring that cannot open
 * the key signing now is not the servers' (a wrong env file, development keys): a staged rotation
 * with it is refused, since 150 s later no server could sign. `--immediate` goes ahead (a leaked
 * key must go, and the servers may have lost its encryption key themselves), sealing under this
 * keyring's current key, and says so.
 *
 * Audited (`signing_key.rotated`, support's audit log) in the same transaction, with `meta`: the
 * operator CLI's origin (who ran it, and why).
 */
export async function rotateSigningKey(
  deps: SigningKeyDeps,
  options: { immediate?: boolean; meta?: RequestMeta } = {},
): Promise<RotationResult> {
  return deps.db.$transaction(async (tx) => {
    await lock(tx);
    const now = deps.clock.now();
    const { signers, unopenable } = signersNow(await tx.signingKey.findMany(), deps, now);
    if (unopenable.length > 0 && !options.immediate) {
      throw new Error(
        `refused: this ENCRYPTION_KEYS cannot open the signing key ${unopenable.join(', ')}, so it is not the servers' keyring, ` +
          'and no server could open a key sealed with it. Run the command with the servers\' ENCRYPTION_KEYS.',
      );
    }
    const active = await tx.signingKey.findMany({ where: { retiredAt: null }, select: { kid: true } });
    // Nothing signs yet (fresh database): the new key signs at once.
    const switchAt = new Date(now.getTime() + (options.immediate || active.length === 0 ? 0 : PREPUBLISH_SECONDS * 1000));
    // Immediate: every older key goes (nothing to retire first); otherwise the signing key retires
    // at switchAt and keys past their retention go.
    if (!options.immediate) await tx.signingKey.updateMany({ where: { retiredAt: null }, data: { retiredAt: switchAt } });
    const cutoff = new Date(now.getTime() - retentionSeconds(deps.config) * 1000);
    const stale = await tx.signingKey.findMany({
      where: options.immediate ? {} : { retiredAt: { lte: cutoff } },
      select: { kid: true },
    });
    await tx.signingKey.deleteMany({ where: { kid: { in: stale.map((k) => k.kid) } } });
    const proven = unopenable.length === 0 ? signers[0]?.encryptionKeyId : undefined;
    const created = await insertKey(tx, deps, now, proven);
    const result: RotationResult = {
      kid: created.kid,
      algorithm: created.algorithm,
      sealedUnder: created.encryptionKeyId,
      signsFrom: switchAt.toISOString(),
      retired: active.map((k) => k.kid),
      deleted: stale.map((k) => k.kid),
      ...(unopenable.length > 0
        ? { warning: `this ENCRYPTION_KEYS could not open the replaced key(s) ${unopenable.join(', ')}: every server needs key ${created.encryptionKeyId} to sign with the new one` }
        : {}),
    };
    await recordAudit(tx, deps.clock, {
      type: 'signing_key.rotated',
      meta: options.meta ?? { ip: null, userAgent: null },
      details: { immediate: options.immediate === true, ...result },
    });
    return result;
  });
}

/**
 * `changeCheckIntervalMs`: KEY_CHANGE_CHECK_INTERVAL_MS; tests that rotate keys and then look at
 * what an instance that has not reloaded yet does set it to the reload interval (test/helpers/app.ts).
 */
export function createSigningKeyManager(
  deps: SigningKeyDeps,
  log?: Log,
  { changeCheckIntervalMs = KEY_CHANGE_CHECK_INTERVAL_MS }: { changeCheckIntervalMs?: number } = {},
): SigningKeyManager {
  const { config, clock } = deps;
  let keys = new Map<string, LoadedKey>();
  let timer: NodeJS.Timeout | undefined;
  /** Counts start()/stop(): a check started before the latest of them does not schedule the next. */
  let runs = 0;
  let lastReload = 0;
  let loadedFingerprint: string | undefined;
  let inflight: Promise<void> | undefined;
  /** A load has installed a key this instance can sign with, at least once (manager.everLoaded). */
  let everLoaded = false;

  /**
   * Replaces the loaded keys with the database's. A private key this instance cannot open (sealed
   * under an encryption key it lacks) does not keep the old set: the keys are replaced all the
   * same, that one without its private key (it still verifies), and the load then fails, to be
   * logged and retried. A key deleted by `rotate-signing-key --immediate` (leaked) thus stops
   * verifying and signing here even so; with nothing else to sign with, signing answers 503.
   */
  async function load(): Promise<void> {
    const rows = await ensureSigningKey(deps);
    loadedFingerprint = keysFingerprint(rows);
    const now = clock.now();
    const next = new Map<string, LoadedKey>();
    const unopened: string[] = [];
    for (const row of rows) {
      const jwk = row.publicJwk as PublicJwk;
      const signsLater = signsNowOrLater(row, config.jwt.algorithm, now);
      let privateKey = keys.get(row.kid)?.privateKey;
      if (signsLater && !privateKey) {
        try {
          privateKey = createPrivateKey({ key: openPrivateJwk(deps.keyring, row), format: 'jwk' });
        } catch {
          unopened.push(sealedUnderText(row));
        }
      }
      next.set(row.kid, {
        kid: row.kid,
        algorithm: row.algorithm,
        publicJwk: { ...jwk, kid: row.kid, alg: row.algorithm as JwtAlgorithm, use: 'sig' },
        publicKey: createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }),
        createdAt: row.createdAt,
        retiredAt: row.retiredAt,
        ...(signsLater && privateKey ? { privateKey } : {}),
      });
    }
    keys = next;
    everLoaded ||= currentSigner() !== undefined;
    if (unopened.length > 0) {
      throw new Error(
        `cannot open the private signing key(s) ${unopened.join(', ')}: ENCRYPTION_KEYS must hold the key they were sealed under ` +
          '(an id it lists with other key material — a wrong secret mounted — fails the same way)',
      );
    }
  }

  /** The oldest key of the configured algorithm that has not reached its retiredAt. */
  function currentSigner(): ActiveSigningKey | undefined {
    const now = clock.now();
    let best: LoadedKey | undefined;
    for (const k of keys.values()) {
      if (!k.privateKey || !signsNowOrLater(k, config.jwt.algorithm, now)) continue;
      if (!best || k.createdAt < best.createdAt) best = k;
    }
    return best ? { kid: best.kid, algorithm: config.jwt.algorithm, privateKey: best.privateKey! } : undefined;
  }

  function reload(): Promise<void> {
    // One load at a time; concurrent callers share it.
    inflight ??= load().finally(() => {
      lastReload = performance.now();
      inflight = undefined;
    });
    return inflight;
  }

  /** Whether the database's keys differ from the loaded ones (false when it cannot tell: the next reload will). */
  async function changedInDatabase(): Promise<boolean> {
    try {
      return keysFingerprint(await deps.db.signingKey.findMany({ select: { kid: true, retiredAt: true } })) !== loadedFingerprint;
    } catch {
      return false;
    }
  }

  /** Every changeCheckIntervalMs: a reload when the keys changed, when none signs here, or when one is due. */
  function schedule(run: number) {
    const delay = currentSigner() === undefined ? RETRY_INTERVAL_MS : changeCheckIntervalMs;
    timer = setTimeout(async () => {
      const due = currentSigner() === undefined || performance.now() - lastReload >= REFRESH_INTERVAL_MS || (await changedInDatabase());
      if (due) {
        await reload().catch((err: unknown) => log?.warn({ err }, 'could not refresh signing keys; retrying'));
      }
      if (run === runs) schedule(run);
    }, delay);
    timer.unref();
  }

  const manager: SigningKeyManager = {
    get loaded() {
      return currentSigner() !== undefined;
    },
    get everLoaded() {
      return everLoaded;
    },
    verifiedTokens: createVerifiedTokenCache(),
    signingKey() {
      const active = currentSigner();
      if (!active) {
        throw commonErrors.service_unavailable('Signing keys are not loaded yet. Try again shortly.', {}, { 'retry-after': '5' });
      }
      return active;
    },
    verificationKey(kid) {
      const key = keys.get(kid);
      if (!key || key.algorithm !== config.jwt.algorithm || !isPublishable(key, clock.now(), config)) return undefined;
      return key.publicKey;
    },
    async resolveVerificationKey(kid) {
      const known = manager.verificationKey(kid);
      if (known || keys.has(kid)) return known;
      if (performance.now() - lastReload < UNKNOWN_KID_RELOAD_MIN_INTERVAL_MS && !inflight) return undefined;
      try {
        await reload();
      } catch (err) {
        // A failed reload may still have installed the kid (with a private key it could not open).
        log?.warn({ err }, 'could not reload signing keys for an unknown kid');
      }
      return manager.verificationKey(kid);
    },
    publicJwks() {
      const now = clock.now();
      return [...keys.values()]
        .filter((k) => k.algorithm === config.jwt.algorithm && isPublishable(k, now, config))
        .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())
        .map((k) => k.publicJwk);
    },
    reload,
    start() {
      if (timer) return;
      schedule(++runs);
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      runs++; // a check in flight schedules no next one
    },
  };
  return manager;
}
