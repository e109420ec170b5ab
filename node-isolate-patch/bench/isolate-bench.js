'use strict';
// Per-activation cost of a fresh isolate: create + run + teardown.
//
//   addon  : teemate_isolate.run() on a parked slot thread (new Node environment
//            from the built-in snapshot), timed from run() to its callback.
//   worker : a new worker_threads Worker per run, timed from `new Worker` to its
//            'exit' event (the closest stock-Node equivalent; it also creates
//            the OS thread, which the addon does not).
//
// Usage: node bench/isolate-bench.js [n]   (default n=50, after 5 warm-up runs)
// NODE_EXTRA_CA_CERTS is removed from the environment by re-executing, since
// it adds tens of ms to every Node environment start on this machine.

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const r = spawnSync(process.execPath, [__filename, ...process.argv.slice(2)], { env, stdio: 'inherit' });
  process.exit(r.status === null ? 1 : r.status);
}

const root = path.resolve(__dirname, '..');
const addonPath = path.join(root, 'build', 'teemate_isolate.node');
if (!fs.existsSync(addonPath)) execFileSync('make', ['-C', root], { stdio: 'inherit' });
const iso = require(addonPath);

const N = Number(process.argv[2] || 50);
const WARMUP = 5;
const request = JSON.stringify({ name: 'bench', n: 1000 });

// The same small piece of work in both: parse the request, compute, answer.
const work = 'let s = 0; for (let i = 0; i < req.n; i++) s += i;';
const addonBootstrap = `const req = JSON.parse(globalThis.__teemate_request); ${work}
globalThis.__teemate_result = JSON.stringify({ name: req.name, s });`;
const workerSource = `const { parentPort, workerData } = require('worker_threads');
const req = JSON.parse(workerData); ${work}
parentPort.postMessage(JSON.stringify({ name: req.name, s }));`;

function addonOnce() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    iso.run(0, addonBootstrap, request, 10000, 64, (err, result, stats) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (err) reject(err);
      else resolve({ ms, stats, result });
    });
  });
}

function workerOnce() {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let result;
    const w = new Worker(workerSource, { eval: true, workerData: request });
    w.on('message', (m) => { result = m; });
    w.on('error', reject);
    w.on('exit', () => resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, result }));
  });
}

function pct(sorted, p) {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function summary(name, xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return { name, n: s.length, min: s[0], p10: pct(s, 10), p50: pct(s, 50), p90: pct(s, 90), max: s[s.length - 1], mean };
}

async function measure(fn) {
  for (let i = 0; i < WARMUP; i++) await fn();
  const out = [];
  for (let i = 0; i < N; i++) out.push(await fn());
  return out;
}

(async () => {
  iso.start(1);
  const addon = await measure(addonOnce);
  const worker = await measure(workerOnce);
  iso.stop();

  if (new Set([...addon, ...worker].map((r) => r.result)).size !== 1) {
    throw new Error('addon and worker runs disagree on the result');
  }
  const rows = [
    summary('addon: run() -> callback', addon.map((r) => r.ms)),
    summary('  addon setupMs', addon.map((r) => r.stats.setupMs)),
    summary('  addon runMs', addon.map((r) => r.stats.runMs)),
    summary('  addon teardownMs', addon.map((r) => r.stats.teardownMs)),
    summary('worker: new Worker -> exit', worker.map((r) => r.ms)),
  ];
  const f = (x) => x.toFixed(2).padStart(8);
  console.log(`node ${process.version}, ${require('os').cpus().length} CPUs, n=${N} (+${WARMUP} warm-up), times in ms`);
  console.log(`${'what'.padEnd(30)}${'min'.padStart(8)}${'p10'.padStart(8)}${'p50'.padStart(8)}${'p90'.padStart(8)}${'max'.padStart(8)}${'mean'.padStart(8)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(30)}${f(r.min)}${f(r.p10)}${f(r.p50)}${f(r.p90)}${f(r.max)}${f(r.mean)}`);
  }
  const a = rows[0].p50;
  const w = rows[4].p50;
  console.log(`median (p50): addon ${a.toFixed(2)} ms vs worker ${w.toFixed(2)} ms (${(w / a).toFixed(1)}x); target addon p50 <= 8 ms: ${a <= 8 ? 'met' : 'NOT met'}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
