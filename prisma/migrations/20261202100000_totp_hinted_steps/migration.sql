-- The time steps for which a code was refused with the clock-drift hint before they came: a code
-- the hint told to be valid later is never accepted for that step (src/lib/totp.ts, checkTotp's
-- refusedSteps; found by the ASVS V6 review, session 30: it widened the accepted window from ±1 to
-- -1..+10 steps for whoever guessed). Steps left behind are pruned when the next hint is stored.
-- A column with a constant default is added without rewriting the table.
ALTER TABLE "totp_factors" ADD COLUMN "hinted_steps" INTEGER[] NOT NULL DEFAULT ARRAY[]::INTEGER[];
