import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import t from 'tap';
import ts from 'typescript';
import openapiTS, { astToString } from 'openapi-typescript';
import createClient from 'openapi-fetch';
import { totpCode } from '../../src/lib/totp.js';
import { buildTestApp } from '../helpers/app.js';
import { createOrganization, createUser } from '../helpers/factories.js';

/**
 * product.md: the shop frontend gets "a typed client generated from the OpenAPI document". This
 * generates it the way the README says (openapi-typescript from the committed openapi/openapi.json),
 * type-checks a frontend's use of it with openapi-fetch — right calls compile, wrong ones do not —
 * and then signs in through the same client against a real listener.
 */

const root = fileURLToPath(new URL('../..', import.meta.url));
const documentPath = path.join(root, 'openapi', 'openapi.json');

/** A frontend's code, typed by the generated `paths`. Lines marked @ts-expect-error must NOT compile. */
const FRONTEND = `
import createClient from 'openapi-fetch';
import type { paths, components } from './webshop-auth';

type Problem = components['schemas']['Problem'];
const auth = createClient<paths>({ baseUrl: 'https://auth.example.test' });

export async function signIn(email: string, password: string, code: string): Promise<string | Problem> {
  const step = await auth.POST('/v1/auth/login', { body: { email, password } });
  if (step.error) return step.error;
  const next: 'mfa' | 'mfa_enrollment' = step.data.next;
  if (next === 'mfa_enrollment') {
    const enrolment = await auth.POST('/v1/auth/login/mfa-enrollment', { body: { challengeToken: step.data.challengeToken } });
    const svg: string | undefined = enrolment.data?.qrCode.svg;
    void svg;
  }
  const tokens = await auth.POST('/v1/auth/login/mfa', { body: { challengeToken: step.data.challengeToken, code } });
  if (tokens.error) return tokens.error;
  const me = await auth.GET('/v1/me', { headers: { authorization: 'Bearer ' + tokens.data.accessToken } });
  const actions: ('mfa_enrollment' | 'accept_terms' | 'set_preferences')[] = me.data?.requiredActions ?? [];
  void actions;
  await auth.DELETE('/v1/me/sessions/{id}', { params: { path: { id: tokens.data.user.id } } });

  // @ts-expect-error the e-mail address is a string (unknown fields openapi-fetch lets through; the server refuses them)
  await auth.POST('/v1/auth/login', { body: { email: 42, password } });
  // @ts-expect-error the password is required
  await auth.POST('/v1/auth/login', { body: { email } });
  // @ts-expect-error no such operation
  await auth.GET('/v1/auth/login');
  // @ts-expect-error next is one of two values
  const wrong: 'done' = step.data.next;
  void wrong;
  return tokens.data.accessToken;
}
`;

function typeErrors(files: Record<string, string>): string[] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'],
    types: [],
    skipLibCheck: true,
    noUnusedLocals: false,
  };
  // The two files exist only in memory, as if they were in the frontend's source next to node_modules.
  const virtual = new Map(Object.entries(files).map(([name, text]) => [path.join(root, 'test', 'contract', '.typed-client', name), text]));
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile, directoryExists } = host;
  const virtualDirectory = path.dirname([...virtual.keys()][0]!);
  host.directoryExists = (d) => d === virtualDirectory || (directoryExists ? directoryExists.call(host, d) : true);
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f);
  host.readFile = (f) => virtual.get(f) ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, onError, create) =>
    virtual.has(f) ? ts.createSourceFile(f, virtual.get(f)!, lang) : getSourceFile.call(host, f, lang, onError, create);
  const program = ts.createProgram([...virtual.keys()].filter((f) => f.endsWith('frontend.ts')), options, host);
  return ts
    .getPreEmitDiagnostics(program)
    .map((d) => `${d.file ? path.basename(d.file.fileName) + ':' + (d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1) + ' ' : ''}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

t.test('the client generated from openapi/openapi.json types a frontend: right calls compile, wrong ones do not', async (t) => {
  const types = astToString(await openapiTS(new URL(`file://${documentPath}`)));
  t.match(types, /"\/v1\/auth\/login": \{/, 'every operation is in `paths`');
  t.same(typeErrors({ 'webshop-auth.d.ts': types, 'frontend.ts': FRONTEND }), [], 'compiles, and every @ts-expect-error line is an error');

  // The check can fail: the same code with a wrong field name outside an @ts-expect-error does not compile.
  const broken = FRONTEND.replace("const next: 'mfa' | 'mfa_enrollment' = step.data.next;", "const next: 'mfa' | 'mfa_enrollment' = step.data.nextStep;");
  t.match(typeErrors({ 'webshop-auth.d.ts': types, 'frontend.ts': broken }).join('\n'), /nextStep/);
});

t.test('a sign-in through the generated client (openapi-fetch) against a real listener', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: true, preferencesSet: true });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;

  // The runtime client is untyped here (the types are checked above); the calls are the frontend's.
  const auth = createClient<Record<string, never>>({ baseUrl: `http://127.0.0.1:${port}` }) as unknown as {
    POST(path: string, init: object): Promise<{ data?: Record<string, any>; error?: Record<string, any>; response: Response }>;
    GET(path: string, init: object): Promise<{ data?: Record<string, any>; error?: Record<string, any>; response: Response }>;
  };
  const wrong = await auth.POST('/v1/auth/login', { body: { email: user.email, password: 'not the password at all' } });
  t.equal(wrong.response.status, 401);
  t.equal(wrong.error?.code, 'invalid_credentials', 'problem+json arrives as `error`');

  const step = await auth.POST('/v1/auth/login', { body: { email: user.email, password } });
  t.equal(step.data?.next, 'mfa');
  const code = totpCode(totpSecret!, Math.floor(clock.now().getTime() / 1000));
  const tokens = await auth.POST('/v1/auth/login/mfa', { body: { challengeToken: step.data!.challengeToken, code } });
  t.equal(tokens.response.status, 200);
  t.same(tokens.data?.requiredActions, []);
  const me = await auth.GET('/v1/me', { headers: { authorization: `Bearer ${tokens.data!.accessToken}` } });
  t.equal(me.data?.email, user.email);
  t.equal(fs.existsSync(path.join(root, 'test', 'contract', '.typed-client')), false, 'nothing was written into the repository');
});
