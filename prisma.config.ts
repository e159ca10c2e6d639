import { defineConfig } from 'prisma/config';

// Only `prisma generate` runs here (see README: migrations are applied by our own runner).
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/webshop_auth' },
});
