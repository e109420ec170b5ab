'use strict';
// CPU per activation of the enclave runtime's real isolate path, and where it goes.
//
// Wall time on a shared 2-CPU machine says little about what an activation costs;
// this bench counts CPU. It starts the addon with the runtime's real prelude
// (enclave-runtime/trusted: caps.js + activation.js, exactly what the owner hands
// start()) and runs n one-line actions in entry mode, one at a time:
//
//   cold   {prewarm: 0}: each run() creates its environment on the request path.
//   hot    {prewarm: 1}: each run() finds an environment prepared ahead (with
//          warm()), issued once info().prepared[0] is true again.
//
// Per mode it prints the process CPU (user + system, every thread: the slot thread's
// create + bootstrap + prelude + run + teardown, the watchdog, V8's platform
// workers, and the bench's own polling of info()) divided by n, and the medians of
// the phases the addon reports (createMs, bootstrapMs of which preludeMs, runMs,
// lastTeardownMs), plus median and p10 of the slot thread's own CPU per phase
// (createCpuMs, bootstrapCpuMs, preludeCpuMs, runCpuMs) and how often the
// prelude's code cache was produced / consumed.
//
// Usage: node bench/activation-cpu.js [n] [mode...] [--json]   (n=100, modes cold hot)
// Variants: see TEEMATE_BENCH_START below; TEEMATE_BENCH_ROUNDS=R repeats every
// variant R times, round-robin, in one process.

const { spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(process.execPath, [...process.execArgv, __filename, ...process.argv.slice(2)],
    { env, stdio: 'inherit' });
  process.exit(r.status === null ? 1 : r.status);
}

const root = path.resolve(__dirname, '..');
const addonPath = path.join(root, 'build', 'teemate_isolate.node');
if (!fs.existsSync(addonPath)) execFileSync('make', ['-C', root], { stdio: 'inherit' });
const iso = require(addonPath);
const { loadBootstrap } = require(path.join(root, '..', 'enclave-runtime', 'trusted', 'isolates.js'));

const args = process.argv.slice(2);
const asJSON = args.includes('--json');
const positional = args.filter((a) => a !== '--json');
const N = Number(positional[0] || 100);
const modes = positional.length > 1 ? positional.slice(1) : ['cold', 'hot'];
if (!Number.isInteger(N) || N < 1) throw new Error(`n must be a positive integer, got ${positional[0]}`);
for (const m of modes) if (m !== 'cold' && m !== 'hot') throw new Error(`unknown mode ${m} (cold, hot)`);
// Variants compared in one process, round-robin (the machine's load drifts):
// TEEMATE_BENCH_START is one start() options object or an array of them, e.g.
// '[{"codeCache":false},{}]'; the bench's own keys do not go to start():
// `noWarm: true` drops activate.warm from the prelude, `preludeFile` runs the
// prelude text in that file instead (e.g. an older one, for a before/after).
const variantsIn = process.env.TEEMATE_BENCH_START ? JSON.parse(process.env.TEEMATE_BENCH_START) : {};
const variants = Array.isArray(variantsIn) ? variantsIn : [variantsIn];
const rounds = Number(process.env.TEEMATE_BENCH_ROUNDS || 1);
const WARMUP = 5;

const fullPrelude = loadBootstrap();
const tail = fullPrelude.lastIndexOf('return activate;');
if (tail < 0) throw new Error('the runtime prelude no longer ends with `return activate;`');
const noWarmPrelude = `${fullPrelude.slice(0, tail)}delete activate.warm;\n${fullPrelude.slice(tail)}`;

// The request the owner builds for a plain-code action (see owner.js): a noop,
// or with TEEMATE_BENCH_ACTION=log one that writes one console line.
const logs = process.env.TEEMATE_BENCH_ACTION === 'log';
const request = JSON.stringify({
  action: { kind: 'code', filename: path.join(os.tmpdir(), 'noop.js'),
    source: `(function (exports, require, module, __filename, __dirname) {function main(){${logs ? 'console.log("hello");' : ''}return {}}\n;` +
      'return (function () { try { return main; } catch (e) { if (e instanceof ReferenceError) return undefined; throw e; } })();\n})' },
  main: 'main', value: {}, env: { __OW_ACTIVATION_ID: 'bench' }, logLimitBytes: 10485760,
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function once() {
  return new Promise((resolve, reject) => {
    // One tenant for every activation: with the start option {reuse: 'tenant'} (a
    // TEEMATE_BENCH_START variant) they share the slot's kept isolate.
    iso.run(0, null, request, 10000, 128, (err, result, stats) => {
      if (err) reject(err);
      else if (!result.startsWith('{"outcome":"success"')) reject(new Error(`activation failed: ${result}`));
      else resolve(stats);
    }, 'bench');
  });
}

// The slot is idle once its previous environment is freed (and, hot, the next
// one prepared): info().busy covers the whole background work.
async function idle(hot) {
  for (;;) {
    const info = iso.info();
    if (!info.busy[0] && (!hot || info.prepared[0])) return;
    await sleep(1);
  }
}

function pct(xs, p) {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  return v.length ? Math.round(v[Math.floor((v.length - 1) * p)] * 100) / 100 : null;
}

// One variant in one mode: n activations after the warm-ups; returns the
// process CPU and the per-run stats.
async function measure(name, variant) {
  const hot = name === 'hot';
  const { noWarm, preludeFile, ...opts } = variant;
  let prelude = noWarm ? noWarmPrelude : fullPrelude;
  if (preludeFile) prelude = fs.readFileSync(preludeFile, 'utf8');
  iso.start(1, { ...opts, prewarm: hot ? 1 : 0, prelude });
  try {
    for (let i = 0; i < WARMUP; i++) { await idle(hot); await once(); }
    await idle(hot);
    const stats = [];
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      stats.push(await once());
      await idle(hot);
    }
    const c = process.cpuUsage(c0);
    return { cpuMs: (c.user + c.system) / 1000, stats };
  } finally {
    iso.stop();
  }
}

// Per phase: median and p10 (the low end is closer to what a phase costs
// without other processes competing for caches and cores).
function summarise(name, variant, runs) {
  const stats = runs.flatMap((r) => r.stats);
  const n = stats.length;
  const cpu = runs.reduce((a, r) => a + r.cpuMs, 0);
  const out = { mode: name, variant, n, cpuMsPerActivation: Math.round(cpu / n * 100) / 100,
    bestRoundCpuMs: Math.round(Math.min(...runs.map((r) => r.cpuMs / r.stats.length)) * 100) / 100 };
  for (const k of Object.keys(stats[0])) {
    if (typeof stats[0][k] === 'number' && k !== 'envId' && k !== 'exitCode') {
      out[k] = pct(stats.map((s) => s[k]), 0.5);
      if (k.endsWith('CpuMs')) out[`${k}P10`] = pct(stats.map((s) => s[k]), 0.1);
    }
  }
  out.preludeCache = {};
  for (const s of stats) out.preludeCache[s.preludeCache] = (out.preludeCache[s.preludeCache] || 0) + 1;
  return out;
}

(async () => {
  const results = [];
  for (const m of modes) {
    const runs = variants.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (let v = 0; v < variants.length; v++) runs[v].push(await measure(m, variants[v]));
    }
    variants.forEach((v, i) => results.push(summarise(m, v, runs[i])));
  }
  if (asJSON) {
    process.stdout.write(`${JSON.stringify({ load: os.loadavg()[0], results })}\n`);
    return;
  }
  console.log(`n=${N} x ${rounds} rounds per variant  load ${os.loadavg()[0].toFixed(2)}`);
  for (const r of results) console.log(JSON.stringify(r));
})().catch((e) => { console.error(e); process.exit(1); });
