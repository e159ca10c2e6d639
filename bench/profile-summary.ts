import { existsSync, readFileSync, readdirSync } from 'node:fs';

/**
 * Summarises the CPU profiles of `BENCH_CPU_PROF=1 bench/run`, per bench phase (sliced with the
 * phase times in the results JSON):
 *  - the server's main thread: top self-time functions and self time by package;
 *  - for /me and introspection, when the bare baseline was profiled too: the main thread's µs per
 *    request of the service and of the bare route side by side, by package and by function, the
 *    biggest differences first: what the service's stack adds to the same query.
 *
 *   node --import tsx bench/profile-summary.ts [results.json] [top=25]
 *
 * Default: the newest results JSON under bench/results/, with the newest main-thread profiles in
 * bench/results/prof/ (server) and bench/results/prof-bare/ (baseline).
 */
type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number } };
type Profile = { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] };
type Counted = { requests: { total: number } };
type Results = {
  phaseTimes: Record<string, { start: number; end: number }>;
  serverExitedAt: number;
  baselineExitedAt?: number;
  me?: { me: Counted; bare: Counted };
  introspect?: { introspect: Counted; bare: Counted };
};

const dir = new URL('results/', import.meta.url).pathname;
const newest = (d: string, suffix: string) => (existsSync(d) ? readdirSync(d).filter((f) => f.endsWith(suffix)).sort().at(-1) : undefined);
const resultsFile = process.argv[2] || `${dir}${newest(dir, '.json')}`;
const TOP = Number(process.argv[3] || 25);
const results = (JSON.parse(readFileSync(resultsFile, 'utf8')) as { results: Results }).results;

// Thread 0 is the main thread (the event loop); the other files are worker threads.
const mainProfile = (sub: string) => {
  const file = newest(`${dir}${sub}`, '.0.001.cpuprofile');
  return file ? (JSON.parse(readFileSync(`${dir}${sub}/${file}`, 'utf8')) as Profile) : null;
};

const where = (n: Node) => {
  const { url, lineNumber, columnNumber, functionName } = n.callFrame;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  const file = pkg ?? (url.includes('/src/') ? url.slice(url.indexOf('/src/') + 1) : url || '(native)');
  // Code loaded through tsx reports line 1 for everything: the column tells its functions apart.
  const at = lineNumber === 0 && !pkg && url ? `${lineNumber + 1}:${columnNumber + 1}` : `${lineNumber + 1}`;
  const group = pkg ?? (url.startsWith('node:') ? 'node:internal' : url ? (url.includes('/src/') ? 'src' : url.replace(/^.*\//, '')) : functionName || '(native, unnamed)');
  return { fn: `${functionName || '(anonymous)'} ${file}:${at}`, group };
};

/** Self time (ms) by function and by group of one profile within [start, end] (wall ms), idle excluded. */
function selfTimes(profile: Profile, exitedAt: number, start: number, end: number) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  // The profile ends when its process exits: map profile microseconds to wall-clock milliseconds.
  const wall = (us: number) => exitedAt - (profile.endTime - us) / 1000;
  const byFunction = new Map<string, number>();
  const byGroup = new Map<string, number>();
  let sampled = 0;
  let busy = 0;
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    const ms = wall(t);
    if (ms < start || ms > end) continue;
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    sampled += dt;
    const { fn, group } = where(nodes.get(profile.samples[i]!)!);
    if (group === '(idle)') continue;
    busy += dt;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt);
    byGroup.set(group, (byGroup.get(group) ?? 0) + dt);
  }
  return { byFunction, byGroup, sampled, busy };
}

const pad = (s: string, n: number) => s.padStart(n);

function printPhase(phase: string, times: ReturnType<typeof selfTimes>, seconds: number) {
  console.log(`\n## ${phase}: ${seconds.toFixed(1)} s wall, main thread sampled ${(times.sampled / 1000).toFixed(2)} s`);
  console.log(`busy ${((times.busy / times.sampled) * 100).toFixed(0)} % of samples`);
  console.log('-- self time by package/group (ms, % of busy)');
  for (const [g, ms] of [...times.byGroup].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    console.log(`${pad(ms.toFixed(0), 8)}  ${pad(((ms / times.busy) * 100).toFixed(1), 5)} %  ${g}`);
  }
  console.log('-- top functions by self time');
  for (const [f, ms] of [...times.byFunction].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${pad(ms.toFixed(0), 8)}  ${pad(((ms / times.busy) * 100).toFixed(1), 5)} %  ${f}`);
  }
}

/** µs per request of the service and of the bare route, side by side, the biggest differences first. */
function printPerRequest(title: string, service: Map<string, number>, serviceRequests: number, bare: Map<string, number>, bareRequests: number, top: number) {
  const rows = [...new Set([...service.keys(), ...bare.keys()])].map((k) => {
    const s = ((service.get(k) ?? 0) * 1000) / serviceRequests;
    const b = ((bare.get(k) ?? 0) * 1000) / bareRequests;
    return { k, s, b, diff: s - b };
  });
  rows.sort((x, y) => Math.abs(y.diff) - Math.abs(x.diff));
  console.log(`-- ${title}: µs per request, service | bare | difference`);
  for (const r of rows.slice(0, top)) {
    console.log(`${pad(r.s.toFixed(1), 7)} ${pad(r.b.toFixed(1), 7)} ${pad((r.diff >= 0 ? '+' : '') + r.diff.toFixed(1), 7)}  ${r.k}`);
  }
}

const server = mainProfile('prof');
if (!server) throw new Error(`no server profile under ${dir}prof/: run BENCH_CPU_PROF=1 bench/run`);
const bare = results.baselineExitedAt !== undefined ? mainProfile('prof-bare') : null;
const counts: Record<string, [Counted, Counted] | undefined> = {
  me: results.me && [results.me.me, results.me.bare],
  introspect: results.introspect && [results.introspect.introspect, results.introspect.bare],
};

for (const [phase, { start, end }] of Object.entries(results.phaseTimes)) {
  const times = selfTimes(server, results.serverExitedAt, start, end);
  printPhase(phase, times, (end - start) / 1000);
  const n = counts[phase];
  if (!bare || !n) continue;
  const base = selfTimes(bare, results.baselineExitedAt!, start, end);
  const [s, b] = [n[0].requests.total, n[1].requests.total];
  console.log(`-- main thread per request: service ${((times.busy * 1000) / s).toFixed(1)} µs, bare ${((base.busy * 1000) / b).toFixed(1)} µs (${s} and ${b} requests)`);
  printPerRequest('by package/group', times.byGroup, s, base.byGroup, b, 15);
  printPerRequest('by function', times.byFunction, s, base.byFunction, b, TOP);
}
