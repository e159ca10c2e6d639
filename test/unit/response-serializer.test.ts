import Fastify from 'fastify';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import t from 'tap';
import { z } from 'zod';
import { hasNoTransformation, serializerCompiler } from '../../src/http/response-serializer.js';

t.test('schemas without any transformation are checked with parse', async (t) => {
  type Tree = { name: string; children: Tree[] };
  const tree: z.ZodType<Tree> = z.lazy(() => z.object({ name: z.string(), children: z.array(tree) }));
  const plain = [
    z.object({ id: z.uuid(), n: z.int(), tags: z.array(z.string().trim()), kind: z.enum(['a', 'b']), ok: z.boolean() }),
    z.union([z.strictObject({ active: z.literal(false) }), z.object({ active: z.literal(true), sub: z.string() })]),
    z.discriminatedUnion('type', [z.object({ type: z.literal('x') }), z.object({ type: z.literal('y'), y: z.number() })]),
    z.object({ a: z.string().optional(), b: z.string().nullable(), c: z.record(z.string(), z.number()), d: z.tuple([z.string(), z.null()]) }),
    z.looseObject({ kid: z.string() }),
    tree,
  ];
  for (const schema of plain) t.ok(hasNoTransformation(schema), schema._zod.def.type);
});

t.test('anything that transforms, or that the check does not know, keeps encode', async (t) => {
  const isoDate = z.codec(z.iso.datetime(), z.date(), { decode: (s) => new Date(s), encode: (d) => d.toISOString() });
  const deep = (inner: z.ZodType) => z.object({ items: z.array(z.object({ value: z.union([z.null(), inner]) })) });
  const transforming = {
    codec: isoDate,
    transform: z.string().transform((s) => s.length),
    pipe: z.string().pipe(z.email()),
    default: z.string().default('x'),
    date: z.date(),
    custom: z.custom<string>((v) => typeof v === 'string'),
    'codec deep inside': deep(isoDate),
    'default deep inside': deep(z.number().default(1)),
    'catchall that transforms': z.object({}).catchall(z.string().transform((s) => s)),
  };
  for (const [name, schema] of Object.entries(transforming)) t.notOk(hasNoTransformation(schema), name);
});

t.test('over HTTP: responses are checked, stripped to the schema, and codecs still encode', async (t) => {
  const app = Fastify().withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  const Out = z.object({ id: z.uuid(), roles: z.array(z.enum(['USER', 'SUPPORT'])) });
  const id = '0190f1c2-7a3b-7c4d-8e5f-0123456789ab';
  app.get('/extra', { schema: { response: { 200: Out } } }, async () => ({ id, roles: ['USER' as const], passwordHash: 'secret' }));
  app.get('/wrong', { schema: { response: { 200: Out } } }, async () => ({ id: 'not-a-uuid', roles: ['USER' as const] }));
  app.get('/missing', { schema: { response: { 200: Out } } }, async () => ({ id }) as never);
  const isoDate = z.codec(z.iso.datetime(), z.date(), { decode: (s) => new Date(s), encode: (d) => d.toISOString() });
  app.get('/codec', { schema: { response: { 200: z.object({ at: isoDate }) } } }, async () => ({ at: new Date(Date.UTC(2026, 10, 28)) }));
  t.teardown(() => app.close());

  const extra = await app.inject('/extra');
  t.equal(extra.statusCode, 200);
  t.same(extra.json(), { id, roles: ['USER'] }, 'a field the schema does not declare never leaves');
  t.notMatch(extra.body, /passwordHash|secret/);

  for (const path of ['/wrong', '/missing']) {
    const res = await app.inject(path);
    t.equal(res.statusCode, 500, `${path}: a response that breaks its schema is an error, not sent`);
    t.notMatch(res.body, /not-a-uuid/);
  }

  const codec = await app.inject('/codec');
  t.equal(codec.statusCode, 200);
  t.same(codec.json(), { at: '2026-11-28T00:00:00.000Z' }, 'a codec schema is encoded (the Date becomes its ISO string)');
});
