import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';

export type HeldVerification = { entered: Promise<void>; release: () => void };

/**
 * Holds the next `count` correct password verifications inside the hash check (as a slow argon2
 * run would), each until its `release()`, in the order they arrive: the attempt is counted and
 * not yet settled meanwhile. Later verifications pass through; the hasher is restored at the end.
 */
export function holdCorrectVerifications(t: Test, app: FastifyInstance, count: number): HeldVerification[] {
  const hasher = app.ctx.hasher;
  const verify = hasher.verify.bind(hasher);
  const slots = Array.from({ length: count }, () => {
    let enter!: () => void;
    let release!: () => void;
    const entered = new Promise<void>((resolve) => (enter = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    return { enter, gate, held: { entered, release } };
  });
  let calls = 0;
  hasher.verify = async (hash: string, candidate: string) => {
    const result = await verify(hash, candidate);
    if (result.valid && calls < slots.length) {
      const slot = slots[calls++]!;
      slot.enter();
      await slot.gate;
    }
    return result;
  };
  t.teardown(() => void (hasher.verify = verify));
  return slots.map((slot) => slot.held);
}
