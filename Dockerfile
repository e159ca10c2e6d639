# syntax=docker/dockerfile:1
# webshop-auth container: one process, configuration by environment (see .env.example),
# migrations applied at start, non-root, health-checked on /healthz.
#
#   docker build -t webshop-auth .
#   docker run --rm -p 3000:3000 --env-file .env webshop-auth
#
# The TypeScript sources run directly through tsx (`node --import tsx`), exactly as in development
# and tests: no separate compile step, one code path; tsx's transform costs ~1 s at start only.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: full install (argon2 compiled from source, Prisma client generated), then pruned ----
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# `prisma generate` must not download the native schema engine (it is not needed to generate).
# node-gyp compiles argon2 against the headers the Node image ships in /usr/local/include/node
# instead of downloading them from nodejs.org: the build needs only the npm registry and apt.
ENV PRISMA_SCHEMA_ENGINE_BINARY=/bin/false \
    npm_config_build_from_source=true \
    npm_config_nodedir=/usr/local \
    CI=true
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
# npm ci runs the postinstall script: `prisma generate` into src/generated/prisma.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# Runtime dependencies only (tsx is one: the server runs the .ts sources through it).
# devDependencies are deleted from package.json first: `prisma` and `typescript` are also optional
# peers of @prisma/client, which npm flags devOptional and `--omit=dev` alone keeps (~215 MB:
# Prisma CLI and Studio, TypeScript). `--omit=optional` is no fix: it drops esbuild's binary (tsx).
RUN npm pkg delete devDependencies \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/tmp/webshop-auth
WORKDIR /app
COPY --from=build --chown=root:root /app/package.json /app/tsconfig.json ./
COPY --from=build --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/prisma ./prisma
COPY --from=build --chown=root:root /app/src ./src
# The code is owned by root and read-only for the service user.
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# server.ts applies pending migrations (advisory-locked: several instances may start at once),
# then listens; SIGTERM finishes in-flight requests and closes the pool.
CMD ["node", "--import", "tsx", "src/server.ts"]
