import { ResponseSerializationError, serializerCompiler as encodingSerializerCompiler } from 'fastify-type-provider-zod';
import { $ZodType, safeParse } from 'zod/v4/core';

/**
 * Serialises every response after checking it against the route's zod schema: a response that does
 * not match is a 500 (error-handler.ts), never a reply that breaks the contract or carries a field
 * the schema does not declare (objects are stripped to their declared keys).
 *
 * fastify-type-provider-zod checks with zod's *encode* direction, for schemas with codecs. Encode
 * does not use the code zod compiles for each object schema and, in a server where every route
 * passes its own shapes through the same generic functions, cost about a sixth of an
 * introspection's CPU (bench/README.md). For a schema without any transformation (no codec, transform,
 * pipe or default anywhere inside), parse and encode accept the same values and return the same
 * data, so such schemas are checked with parse. A schema that has one, or holds a kind of schema
 * this check does not know, keeps the library's encode.
 */

type Def = {
  type: string;
  shape?: Record<string, $ZodType>;
  catchall?: $ZodType;
  element?: $ZodType;
  options?: $ZodType[];
  left?: $ZodType;
  right?: $ZodType;
  keyType?: $ZodType;
  valueType?: $ZodType;
  items?: $ZodType[];
  rest?: $ZodType | null;
  innerType?: $ZodType;
  getter?: () => $ZodType;
};

const LEAVES = new Set([
  'string', 'number', 'int', 'boolean', 'bigint', 'null', 'undefined', 'void', 'never', 'any', 'unknown',
  'nan', 'literal', 'enum', 'template_literal',
]);
const WRAPPERS = new Set(['optional', 'nullable', 'readonly', 'nonoptional']);

/** True when parse and encode of `schema` are the same check with the same result. */
export function hasNoTransformation(schema: $ZodType, seen = new Set<$ZodType>()): boolean {
  if (seen.has(schema)) return true; // recursion through z.lazy: the rest of the walk decides
  seen.add(schema);
  const def = schema._zod.def as Def;
  const all = (schemas: ($ZodType | null | undefined)[]) => schemas.every((s) => !s || hasNoTransformation(s, seen));
  switch (def.type) {
    case 'object':
      return all([...Object.values(def.shape ?? {}), def.catchall]);
    case 'array':
      return all([def.element]);
    case 'union':
      return all(def.options ?? []);
    case 'intersection':
      return all([def.left, def.right]);
    case 'record':
      return all([def.keyType, def.valueType]);
    case 'tuple':
      return all([...(def.items ?? []), def.rest]);
    case 'lazy':
      return all([def.getter?.()]);
    default:
      if (WRAPPERS.has(def.type)) return all([def.innerType]);
      return LEAVES.has(def.type);
  }
}

type RouteSchema = Parameters<typeof encodingSerializerCompiler>[0];

export const serializerCompiler = (routeSchema: RouteSchema) => {
  const { schema, method, url } = routeSchema;
  if (!(schema instanceof $ZodType) || !hasNoTransformation(schema)) return encodingSerializerCompiler(routeSchema);
  return (data: unknown): string => {
    const result = safeParse(schema, data);
    if (result.error) throw new ResponseSerializationError(method, url, { cause: result.error });
    return JSON.stringify(result.data);
  };
};
