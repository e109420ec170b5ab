'use strict';
// Per-activation cost of a fresh isolate, cold and prewarmed.
//
//   cold       : teemate_isolate started with {prewarm: false}: each run() creates a
//                new Node environment from the built-in snapshot on the parked slot
//                thread and runs; it is torn down after the answer (as on every
//                slot). Timed run() -> callback.
//   prewarm    : {prewarm: true}: the slot thread prepared a fresh environment
//                (created + Node-bootstrapped, no user code) before the request
//                arrived; run() only runs the script; teardown and the next
//                preparation happen after the answer. Requests arrive once the
//                slot reports its environment ready (info().prepared).
//   prewarm b2b: the same, but each run() is issued from the previous callback,
//                so it waits for the previous teardown + the next preparation:
//                the worst case, when requests on one slot come faster than it
//                can prepare.
//   budget     : one pool of 8 slots with {prewarm: 2} (what the owner runs, with a
//                smaller budget): alternating spaced runs on hot slot 0 (prepared)
//                and cold slot 7 (made on the request path).
//   runtime    : the enclave runtime's real bootstrap (enclave-runtime/trusted/
//                activation.js) as the addon's prelude, {prewarm: true}: the prelude
//                (stdio capture, console, builtins, process guards) ran while the
//                environment was prepared; run(0, null, request) only calls its
//                activate() with a one-line action (`function main(){return {}}`).
//                Spaced like prewarm. runtime-cold: the same on a cold slot.
//   worker     : a new worker_threads Worker per run, timed from `new Worker` to
//                its 'exit' event (the closest stock-Node equivalent; it also
//                creates the OS thread, which the addon does not).
// Every addon run, in every mode, gets an environment no other run touched
// (checked below through stats.envId).
//
// Also: resident memory per slot holding a prepared environment (fresh child
// processes: start(8) with and without prewarm).
//
// Usage: node bench/isolate-bench.js [n]   (default n=50, after 5 warm-up runs)
// NODE_EXTRA_CA_CERTS is removed from the environment by re-executing, since
// it adds tens of ms to every Node environment start on this machine.

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
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

// Child mode for the memory figure: prints {base, started, ready} RSS in bytes.
// A fifth argument 'prelude' prepares the environments with the runtime's prelude.
if (process.argv[2] === '--rss') {
  const slots = Number(process.argv[3]);
  const prewarm = process.argv[4] === 'true';
  const opts = { prewarm };
  if (process.argv[5] === 'prelude') {
    opts.prelude = require(path.join(root, '..', 'enclave-runtime', 'trusted', 'isolates.js')).loadBootstrap();
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  (async () => {
    await sleep(200);
    const base = process.memoryUsage().rss;
    iso.start(slots, opts);
    while (prewarm && !iso.info().prepared.every(Boolean)) await sleep(10);
    await sleep(300);
    const ready = process.memoryUsage().rss;
    iso.stop();
    console.log(JSON.stringify({ base, ready }));
  })();
  return;
}

const N = Number(process.argv[2] || 50);
const WARMUP = 5;
const RSS_SLOTS = 8;
const BUDGET_SLOTS = 8;
const BUDGET = 2;
const request = JSON.stringify({ name: 'bench', n: 1000 });

// The same small piece of work in both: parse the request, compute, answer.
const work = 'let s = 0; for (let i = 0; i < req.n; i++) s += i;';
const addonBootstrap = `const req = JSON.parse(globalThis.__teemate_request); ${work}
globalThis.__teemate_result = JSON.stringify({ name: req.name, s });`;
const workerSource = `const { parentPort, workerData } = require('worker_threads');
const req = JSON.parse(workerData); ${work}
parentPort.postMessage(JSON.stringify({ name: req.name, s }));`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The runtime mode: activation.js as the prelude, and the request the enclave
// runtime's owner builds for a plain-code action (see owner.js onRun).
// (isolates.js assembles it: the capability set, then activation.js.)
const RUNTIME_PRELUDE = require(path.join(root, '..', 'enclave-runtime', 'trusted', 'isolates.js')).loadBootstrap();
const runtimeRequest = JSON.stringify({
  action: { kind: 'code', filename: path.join(os.tmpdir(), 'noop.js'),
    source: '(function (exports, require, module, __filename, __dirname) {function main(){return {}}\n;' +
      'return (function () { try { return main; } catch (e) { if (e instanceof ReferenceError) return undefined; throw e; } })();\n})' },
  main: 'main', value: {}, env: { __OW_ACTIVATION_ID: 'bench' }, logLimitBytes: 10485760,
});

function runtimeOnce(slot = 0) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    iso.run(slot, null, runtimeRequest, 10000, 128, (err, result, stats) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (err) reject(err);
      else if (!result.startsWith('{"outcome":"success"')) reject(new Error(`runtime bootstrap failed: ${result}`));
      else resolve({ ms, stats, result });
    });
  });
}

async function runtimeMode(prewarm) {
  iso.start(1, { prewarm, prelude: RUNTIME_PRELUDE });
  try {
    return await measure(async () => {
      await sleep(5);
      await slotReady(0);
      return runtimeOnce(0);
    });
  } finally {
    iso.stop();
  }
}

function addonOnce(slot = 0) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    iso.run(slot, addonBootstrap, request, 10000, 64, (err, result, stats) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (err) reject(err);
      else resolve({ ms, stats, result });
    });
  });
}

// Waits until the slot holds a prepared environment (or is outside the budget).
async function slotReady(slot) {
  while (slot < iso.info().prewarm && !iso.info().prepared[slot]) await sleep(1);
}

// Cold and prewarm get the same arrivals: one request whenever the slot is
// idle (and, with prewarm, ready), after a short idle gap.
async function spacedOnce(slot = 0) {
  await sleep(5);
  await slotReady(slot);
  return addonOnce(slot);
}

// Hot and cold slots of one budgeted pool, alternating, same arrivals.
async function budgetMode() {
  iso.start(BUDGET_SLOTS, { prewarm: BUDGET });
  const hot = [];
  const cold = [];
  try {
    for (let i = 0; i < WARMUP + N; i++) {
      const h = await spacedOnce(0);
      const c = await spacedOnce(BUDGET_SLOTS - 1);
      if (i >= WARMUP) { hot.push(h); cold.push(c); }
    }
  } finally {
    iso.stop();
  }
  return { hot, cold };
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

async function addonMode(prewarm, fn) {
  iso.start(1, { prewarm });
  try {
    return await measure(fn);
  } finally {
    iso.stop();
  }
}

function rssPerSlot(prewarm, prelude = false) {
  const args = [__filename, '--rss', String(RSS_SLOTS), String(prewarm)];
  if (prelude) args.push('prelude');
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rss child failed: ${r.stderr}`);
  const { base, ready } = JSON.parse(r.stdout.trim());
  return (ready - base) / RSS_SLOTS / (1 << 20);
}

(async () => {
  const load0 = os.loadavg();
  const cold = await addonMode(false, spacedOnce);
  const warm = await addonMode(true, spacedOnce);
  const b2b = await addonMode(true, () => addonOnce(0));
  const budget = await budgetMode();
  const runtime = await runtimeMode(true);
  const runtimeCold = await runtimeMode(false);
  const worker = await measure(workerOnce);
  const load1 = os.loadavg();
  const rssCold = rssPerSlot(false);
  const rssWarm = rssPerSlot(true);
  const rssPrelude = rssPerSlot(true, true);

  const addonRuns = [...cold, ...warm, ...b2b, ...budget.hot, ...budget.cold];
  if (new Set([...addonRuns, ...worker].map((r) => r.result)).size !== 1) {
    throw new Error('addon and worker runs disagree on the result');
  }
  for (const runs of [cold, warm, b2b, [...budget.hot, ...budget.cold], runtime, runtimeCold]) {
    if (new Set(runs.map((r) => r.stats.envId)).size !== runs.length) {
      throw new Error('an environment served two runs');
    }
  }
  const warmHits = warm.filter((r) => r.stats.prewarmed).length;
  const b2bHits = b2b.filter((r) => r.stats.prewarmed).length;
  const col = (runs, k) => runs.map((r) => r.stats[k]).filter((x) => typeof x === 'number');
  const rows = [
    summary('cold: run() -> callback', cold.map((r) => r.ms)),
    summary('  setupMs (on path)', col(cold, 'setupMs')),
    summary('    createMs', col(cold, 'createMs')),
    summary('    bootstrapMs (Node)', col(cold, 'bootstrapMs')),
    summary('  runMs', col(cold, 'runMs')),
    summary('  teardown (after answer)', col(cold, 'lastTeardownMs')),
    summary('prewarm: run() -> callback', warm.map((r) => r.ms)),
    summary('  setupMs (on path)', col(warm, 'setupMs')),
    summary('  runMs', col(warm, 'runMs')),
    summary('  createMs (ahead)', col(warm, 'createMs')),
    summary('  bootstrapMs (ahead)', col(warm, 'bootstrapMs')),
    summary('prewarm b2b: run() -> cb', b2b.map((r) => r.ms)),
    summary(`budget ${BUDGET}/${BUDGET_SLOTS}: hot slot 0`, budget.hot.map((r) => r.ms)),
    summary(`budget ${BUDGET}/${BUDGET_SLOTS}: cold slot ${BUDGET_SLOTS - 1}`, budget.cold.map((r) => r.ms)),
    summary('  cold slot teardown+trim', col(budget.cold, 'lastTeardownMs')),
    summary('runtime prewarm: run() -> cb', runtime.map((r) => r.ms)),
    summary('  runMs', col(runtime, 'runMs')),
    summary('  preludeMs (ahead)', col(runtime, 'preludeMs')),
    summary('runtime cold: run() -> cb', runtimeCold.map((r) => r.ms)),
    summary('  setupMs (incl. prelude)', col(runtimeCold, 'setupMs')),
    summary('  runMs', col(runtimeCold, 'runMs')),
    summary('worker: new Worker -> exit', worker.map((r) => r.ms)),
  ];
  const f = (x) => x.toFixed(2).padStart(8);
  const la = (l) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, n=${N} (+${WARMUP} warm-up) per mode, times in ms`);
  console.log(`load average before: ${la(load0)}; after: ${la(load1)}`);
  console.log(`${'what'.padEnd(30)}${'min'.padStart(8)}${'p10'.padStart(8)}${'p50'.padStart(8)}${'p90'.padStart(8)}${'max'.padStart(8)}${'mean'.padStart(8)}`);
  for (const r of rows) {
    console.log(`${r.name.padEnd(30)}${f(r.min)}${f(r.p10)}${f(r.p50)}${f(r.p90)}${f(r.max)}${f(r.mean)}`);
  }
  console.log(`prewarmed environment found ready: ${warmHits}/${warm.length} spaced runs, ${b2bHits}/${b2b.length} back-to-back runs`);
  console.log(`runtime bootstrap: prewarmed ${runtime.filter((r) => r.stats.prewarmed).length}/${runtime.length}`);
  console.log(`budget pool: hot slot prewarmed ${budget.hot.filter((r) => r.stats.prewarmed).length}/${budget.hot.length}, ` +
    `cold slot prewarmed ${budget.cold.filter((r) => r.stats.prewarmed).length}/${budget.cold.length}`);
  console.log(`RSS per slot (${RSS_SLOTS} slots, fresh process): parked thread only ${rssCold.toFixed(2)} MiB, ` +
    `with a prepared environment ${rssWarm.toFixed(2)} MiB (prepared environment ~${(rssWarm - rssCold).toFixed(2)} MiB), ` +
    `with the runtime prelude run in it ${rssPrelude.toFixed(2)} MiB (~${(rssPrelude - rssCold).toFixed(2)} MiB)`);
  const c = rows[0].p50;
  const w = rows[6].p50;
  const k = rows[rows.length - 1].p50;
  console.log(`median (p50): cold ${c.toFixed(2)} ms, prewarmed ${w.toFixed(2)} ms, worker ${k.toFixed(2)} ms; ` +
    `target p50 <= 8 ms for a new isolate per activation: cold ${c <= 8 ? 'met' : 'NOT met'}, prewarmed ${w <= 8 ? 'met' : 'NOT met'}`);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
