-- Refreshes per session: the session ends at REFRESH_MAX_PER_SESSION, so its rotated refresh tokens
-- (all kept for reuse detection) stay bounded. A previous release still running beside this one
-- (rolling upgrade) does not count its refreshes: the default covers its inserts.
ALTER TABLE "sessions" ADD COLUMN "refresh_count" INTEGER NOT NULL DEFAULT 0;
