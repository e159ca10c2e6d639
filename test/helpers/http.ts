import type { FastifyInstance } from 'fastify';
import { checkContract } from './contract.js';

export type ApiResponse<T = any> = {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: T;
  raw: string;
};

export type RequestOptions = {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  body?: unknown;
  /** A bearer access token. */
  token?: string;
  headers?: Record<string, string>;
  /** Send this exact payload (e.g. malformed JSON) instead of JSON-encoding body. */
  payload?: string;
};

/**
 * The one way integration tests talk to the app: through HTTP (inject), with every response checked
 * against the app's OpenAPI document, so the contract the frontend and CSO 3.0 use is tested too.
 */
export function api(app: FastifyInstance) {
  return async function request<T = any>(options: RequestOptions): Promise<ApiResponse<T>> {
    const method = options.method ?? (options.body === undefined && options.payload === undefined ? 'GET' : 'POST');
    const headers: Record<string, string> = { ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    let payload: string | undefined = options.payload;
    if (payload === undefined && options.body !== undefined) {
      payload = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await app.inject({ method, url: options.url, headers, ...(payload === undefined ? {} : { payload }) });
    const contentType = res.headers['content-type'] as string | undefined;
    const body = contentType?.includes('json') && res.body ? JSON.parse(res.body) : res.body;
    const violation = checkContract(app, method, options.url, res.statusCode, contentType, res.body === '' ? undefined : body, res.headers);
    if (violation) throw new Error(`contract violation: ${violation}`);
    return { status: res.statusCode, headers: res.headers, body: body as T, raw: res.body };
  };
}

export type CursorPage = { items: { id: string }[]; nextCursor: string | null };

/**
 * The ids of every page of a cursor-paged list, in order: `fetchPage` gets one page's query
 * (`limit=<limit>`, and `&cursor=…` after the first page) and answers that page's body. Stops after
 * the last page, or after `maxPages` (a list that never ends must not hang the test).
 */
export async function pagedIds(fetchPage: (query: string) => Promise<CursorPage>, limit: number, maxPages = 10): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: CursorPage = await fetchPage(`limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    ids.push(...page.items.map((item) => item.id));
    cursor = page.nextCursor;
    pages++;
  } while (cursor && pages < maxPages);
  return { ids, pages };
}
