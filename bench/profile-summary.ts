import { readFileSync, readdirSync } from 'node:fs';

/**
 * Summarises a server CPU profile from `BENCH_CPU_PROF=1 bench/run`: top self-time functions and
 * self time by package, per bench phase (sliced with the phase times in the results JSON).
 *
 *   node --import tsx bench/profile-summary.ts [results.json] [profile.cpuprofile] [top=25]
 *
 * Defaults: the newest results JSON and the newest profile under bench/results/.
 */
type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] };
type Profile = { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] };

const dir = new URL('results/', import.meta.url).pathname;
const newest = (d: string, ext: string) =>
  readdirSync(d)
    .filter((f) => f.endsWith(ext))
    .sort()
    .at(-1);
const resultsFile = process.argv[2] || `${dir}${newest(dir, '.json')}`;
// Thread 0 is the main thread (the event loop); other files are worker threads.
const profileFile = process.argv[3] || `${dir}prof/${newest(`${dir}prof`, '.0.001.cpuprofile')}`;
const TOP = Number(process.argv[4] || 25);

const results = JSON.parse(readFileSync(resultsFile, 'utf8')) as {
  results: { phaseTimes: Record<string, { start: number; end: number }>; serverExitedAt: number };
};
const profile = JSON.parse(readFileSync(profileFile, 'utf8')) as Profile;
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
// The profile ends when the server exits: map profile microseconds to wall-clock milliseconds.
const wall = (us: number) => results.results.serverExitedAt - (profile.endTime - us) / 1000;

const where = (n: Node) => {
  const { url, lineNumber, functionName } = n.callFrame;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  const file = pkg ?? (url.includes('/src/') ? url.slice(url.indexOf('/src/') + 1) : url.replace(/^node:/, 'node:') || '(native)');
  return { fn: `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`, group: pkg ?? (url.startsWith('node:') ? 'node:internal' : url ? (url.includes('/src/') ? 'src' : url) : functionName) };
};

for (const [phase, { start, end }] of Object.entries(results.results.phaseTimes)) {
  const self = new Map<string, number>();
  const groups = new Map<string, number>();
  let t = profile.startTime;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]!;
    const ms = wall(t);
    if (ms < start || ms > end) continue;
    const node = nodes.get(profile.samples[i]!)!;
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const { fn, group } = where(node);
    self.set(fn, (self.get(fn) ?? 0) + dt);
    groups.set(group, (groups.get(group) ?? 0) + dt);
    total += dt;
  }
  const seconds = (end - start) / 1000;
  console.log(`\n## ${phase}: ${seconds.toFixed(1)} s wall, main thread sampled ${(total / 1000).toFixed(2)} s`);
  const idle = self.get('(idle) (native):0') ?? 0;
  console.log(`busy ${(((total - idle) / total) * 100).toFixed(0)} % of samples`);
  console.log('-- self time by package/group (ms, % of busy)');
  for (const [g, ms] of [...groups].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
    if (g === '(idle)') continue;
    console.log(`${ms.toFixed(0).padStart(8)}  ${((ms / (total - idle)) * 100).toFixed(1).padStart(5)} %  ${g}`);
  }
  console.log('-- top functions by self time');
  for (const [f, ms] of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${ms.toFixed(0).padStart(8)}  ${((ms / (total - idle)) * 100).toFixed(1).padStart(5)} %  ${f}`);
  }
}
