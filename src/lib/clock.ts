/** Time is injected everywhere it matters, so TOTP windows, expiries and lockouts test without sleeps. */
export type Clock = { now(): Date };

export const systemClock: Clock = { now: () => new Date() };

export const addSeconds = (date: Date, seconds: number): Date => new Date(date.getTime() + seconds * 1000);

/** Whole seconds left until `until` (rounded down, never negative): what a stated lifetime may promise. */
export const secondsLeft = (until: Date, now: Date): number => Math.max(0, Math.floor((until.getTime() - now.getTime()) / 1000));
