'use strict';
// Latency of one activation through the gate, measured at the client: owner.js runs
// as a real child process and every activation is a whole gate conversation on a
// new connection (hello, acquire, init, run, release), as a shim does it.
//
//   hot   owner with --prewarm 1: the slot's environment (and, since the trusted
//         prelude, the activation plumbing inside it) was prepared before the run
//   cold  owner with --prewarm 0: the environment is made on the request path
//
// Requests are spaced (5 ms after the previous release, and on a hot owner once
// `pong.prepared` says the slot is ready again), one at a time, on 4 slots.
// Reported per mode: the `run` -> `result` time at the client, the owner's
// `timings.isolateMs` and `timings.runMs` (the addon's run phase: everything from
// handing the request to the environment until its result is read), and the
// `init` -> `initialized` time.
//
// Usage: node enclave-runtime/bench/gate-bench.js [n] [--isolate addon|worker] [--action noop|logs]
// NODE_EXTRA_CA_CERTS is dropped (it adds tens of ms to every Node start here).

const os = require('os');
const { startOwner } = require('../test/gate-client');

const argv = process.argv.slice(2);
const N = Number(argv.find((a) => /^[0-9]+$/.test(a)) || 40);
const WARMUP = 5;
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const ISOLATE = opt('--isolate', 'addon');
const ACTIONS = {
  noop: 'function main(){return {}}',
  logs: 'function main(p){ console.log("hello", p.n); console.error("err"); return {n: p.n}; }',
};
const ACTION = ACTIONS[opt('--action', 'noop')];
if (!ACTION) throw new Error(`unknown --action; known: ${Object.keys(ACTIONS).join(', ')}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function ready(owner, want) {
  for (let i = 0; i < 2000; i++) {
    const c = await owner.connect();
    const p = await c.request({ type: 'ping' });
    c.close();
    if (p.prepared >= want) return;
    await sleep(1);
  }
  throw new Error('the prewarmed slot never became ready');
}

async function once(owner, i) {
  const c = await owner.connect();
  try {
    await c.attach();
    let t = process.hrtime.bigint();
    const ini = await c.request({ type: 'init', name: 'noop', main: 'main', binary: false, code: ACTION });
    const initMs = Number(process.hrtime.bigint() - t) / 1e6;
    if (ini.type !== 'initialized') throw new Error(`init failed: ${JSON.stringify(ini)}`);
    t = process.hrtime.bigint();
    const res = await c.request({ type: 'run', value: { n: i }, timeoutMs: 10000, memoryMB: 128 });
    const runRtt = Number(process.hrtime.bigint() - t) / 1e6;
    if (res.type !== 'result' || res.outcome !== 'success') throw new Error(`run failed: ${JSON.stringify(res)}`);
    await c.request({ type: 'release' });
    return { initMs, runRtt, isolateMs: res.timings.isolateMs, runMs: res.timings.runMs };
  } finally {
    c.close();
  }
}

function pct(s, p) {
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function mode(name, prewarm) {
  const owner = await startOwner({ slots: 4, isolate: ISOLATE, args: ['--prewarm', String(prewarm)] });
  const rows = [];
  try {
    for (let i = 0; i < WARMUP + N; i++) {
      await sleep(5);
      if (prewarm > 0) await ready(owner, prewarm);
      const r = await once(owner, i);
      if (i >= WARMUP) rows.push(r);
    }
  } finally {
    await owner.stop();
  }
  const out = {};
  for (const k of ['runRtt', 'isolateMs', 'runMs', 'initMs']) {
    const s = rows.map((r) => r[k]).sort((a, b) => a - b);
    out[k] = { p50: pct(s, 50), p90: pct(s, 90) };
  }
  return { name, out };
}

(async () => {
  const l0 = os.loadavg();
  const modes = ISOLATE === 'addon' ? [['hot (--prewarm 1)', 1], ['cold (--prewarm 0)', 0]] : [['worker', 0]];
  const results = [];
  for (const [name, k] of modes) results.push(await mode(name, k));
  const l1 = os.loadavg();
  const la = (l) => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, isolate ${ISOLATE}, n=${N} (+${WARMUP} warm-up), 4 slots, ms`);
  console.log(`load average before: ${la(l0)}; after: ${la(l1)}`);
  const f = (x) => x.toFixed(2).padStart(8);
  console.log(`${'mode'.padEnd(20)}${'run->result p50/p90'.padStart(20)}${'runMs p50/p90'.padStart(18)}` +
    `${'isolateMs p50'.padStart(15)}${'init p50'.padStart(10)}`);
  for (const { name, out } of results) {
    console.log(`${name.padEnd(20)}${f(out.runRtt.p50)} /${f(out.runRtt.p90)}  ${f(out.runMs.p50)} /${f(out.runMs.p90)}` +
      `${f(out.isolateMs.p50).padStart(15)}${f(out.initMs.p50).padStart(10)}`);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
