'use strict';
// The enclave owner's CPU per activation, and which of its threads spends it.
//
// owner.js runs as a real child process, started as the invoker's direct backend
// starts it (--zero-fill-buffers, 16 slots, the default prewarm budget, unless told
// otherwise), and serves whole gate conversations on new connections (hello,
// acquire, init, run, release), as the shims do, with C of them in flight. Per
// thread of the owner the CPU it ran (/proc/PID/task/TID/schedstat, ns) is read
// before and after the measured activations; the difference divided by n is the
// CPU per activation, grouped by thread:
//
//   main       the owner's JavaScript thread (gate protocol, JSON, scratch dirs)
//   slot       tm-slot-*: creating, bootstrapping, running and freeing environments
//   watchdog   tm-watchdog
//   v8         V8's platform workers (concurrent compile, GC helpers)
//   libuv      libuv's thread pool (fs.mkdir/rm of the scratch dirs)
//   other
//
// An idle window first (--idle-s, pings every --ping-ms as the invoker's health
// loop sends them) says what the owner spends with no activation at all.
//
// Usage: node enclave-runtime/bench/owner-cpu.js [n] [--concurrency C] [--slots S]
//          [--prewarm K] [--idle-s T] [--ping-ms P] [--action noop|md5] [--json]
//          [--owner-arg=--x --owner-arg=v ...] [--node-arg=--cpu-prof ...]
// NODE_EXTRA_CA_CERTS is dropped (it adds tens of ms to every Node start here).

const fs = require('fs');
const os = require('os');
const { startOwner, activate } = require('../test/gate-client');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const N = Number(argv.find((a, i) => /^[0-9]+$/.test(a) && !argv[i - 1]?.startsWith('--')) || 200);
const C = Number(opt('--concurrency', 8));
const SLOTS = Number(opt('--slots', 16));
const PREWARM = opt('--prewarm', '');
const IDLE_S = Number(opt('--idle-s', 0));
const PING_MS = Number(opt('--ping-ms', 0));
const JSON_OUT = argv.includes('--json');
const NODE_ARGS = argv.filter((a) => a.startsWith('--node-arg=')).map((a) => a.slice('--node-arg='.length));
const OWNER_ARGS = argv.filter((a) => a.startsWith('--owner-arg=')).map((a) => a.slice('--owner-arg='.length));
const ACTIONS = {
  noop: 'function main(){return {}}',
  md5: "const crypto = require('crypto');\nfunction main(p){ const h = crypto.createHash('md5'); " +
    "for (let i = 0; i < 100; i++) h.update('teemate' + i); return {digest: h.digest('hex')}; }",
};
const ACTION = ACTIONS[opt('--action', 'noop')];
if (!ACTION) throw new Error(`unknown --action; known: ${Object.keys(ACTIONS).join(', ')}`);
for (const [k, v] of [['n', N], ['--concurrency', C], ['--slots', SLOTS]]) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer`);
}
if (C > SLOTS) throw new Error('--concurrency must not exceed --slots (the gate answers busy)');

function group(comm) {
  if (comm.startsWith('tm-slot')) return 'slot';
  if (comm === 'tm-watchdog') return 'watchdog';
  if (comm.startsWith('libuv')) return 'libuv';
  if (/^V8|^node$|DefaultWorke/.test(comm)) return 'v8';
  return 'other';
}

// threads returns {tid: {comm, ns}} for every live thread of pid.
function threads(pid) {
  const out = {};
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const sched = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
      // schedstat: ns on a CPU, ns waiting for one, timeslices run (each a wake-up or preemption)
      out[tid] = { comm: Number(tid) === pid ? 'main' : comm, ns: Number(sched[0]), slices: Number(sched[2]) };
    } catch {
      // the thread ended between the listing and the read: it has nothing left to count
    }
  }
  return out;
}

// spent groups the CPU (ms) each thread ran between two readings.
function spent(pid, before, after) {
  const g = { main: 0, slot: 0, watchdog: 0, v8: 0, libuv: 0, other: 0 };
  for (const [tid, t] of Object.entries(after)) {
    const d = (t.ns - (before[tid] ? before[tid].ns : 0)) / 1e6;
    g[Number(tid) === pid ? 'main' : group(t.comm)] += d;
  }
  return g;
}

// minorFaults reads the process's minor page faults (/proc/PID/stat, field 10): a
// count that, unlike CPU time, does not grow with the machine's load.
function minorFaults(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const r2 = (x) => Math.round(x * 100) / 100;

async function run(owner, n) {
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      const res = await activate(owner, { code: ACTION }, { value: { n: next } });
      if (!res || res.type !== 'result' || res.outcome !== 'success') {
        failed++;
        if (failed === 1) process.stderr.write(`activation failed: ${JSON.stringify(res).slice(0, 300)}\n`);
      }
    }
  };
  await Promise.all(Array.from({ length: C }, worker));
  return failed;
}

async function main() {
  const args = ['--lockdown', 'none', ...OWNER_ARGS];
  if (PREWARM !== '') args.push('--prewarm', PREWARM);
  const owner = await startOwner({ slots: SLOTS, isolate: 'addon', args, nodeArgs: ['--zero-fill-buffers', ...NODE_ARGS] });
  const pid = owner.child.pid;
  try {
    await sleep(500); // the prewarmed slots fill
    const out = { n: N, concurrency: C, slots: SLOTS, prewarm: owner.ready.prewarm, load: os.loadavg().map(r2) };
    if (IDLE_S > 0) {
      const c = await owner.connect();
      const t0 = threads(pid);
      const end = Date.now() + IDLE_S * 1000;
      while (Date.now() < end) {
        if (PING_MS > 0) {
          await c.request({ type: 'ping' });
          await sleep(PING_MS);
        } else await sleep(100);
      }
      const g = spent(pid, t0, threads(pid));
      out.idle = { seconds: IDLE_S, pingMs: PING_MS, msPerSecond: Object.fromEntries(Object.entries(g).map(([k, v]) => [k, r2(v / IDLE_S)])) };
      c.close();
    }
    await run(owner, Math.min(20, N)); // warm-up: the code cache, the first scratch dirs
    await sleep(300);
    const t0 = threads(pid);
    const f0 = minorFaults(pid);
    const w0 = process.hrtime.bigint();
    const failed = await run(owner, N);
    const wall = Number(process.hrtime.bigint() - w0) / 1e6;
    await sleep(300); // the last teardowns and refills
    const t1 = threads(pid);
    const g = spent(pid, t0, t1);
    const slices = (after) => Object.entries(after).reduce((a, [tid, t]) => a + t.slices - (t0[tid] ? t0[tid].slices : 0), 0);
    out.minorFaultsPerActivation = Math.round((minorFaults(pid) - f0) / N);
    out.timeslicesPerActivation = Math.round(slices(t1) / N);
    const total = Object.values(g).reduce((a, b) => a + b, 0);
    out.failed = failed;
    out.wallMs = r2(wall);
    out.perSecond = r2(N / (wall / 1000));
    out.cpuMsPerActivation = { total: r2(total / N), ...Object.fromEntries(Object.entries(g).map(([k, v]) => [k, r2(v / N)])) };
    out.loadAfter = os.loadavg().map(r2);
    if (JSON_OUT) process.stdout.write(`${JSON.stringify(out)}\n`);
    else {
      process.stdout.write(`owner CPU per activation (ms), n=${N}, concurrency ${C}, ${SLOTS} slots, prewarm ${out.prewarm}, ` +
        `load ${out.load.join(' ')} -> ${out.loadAfter.join(' ')}, ${out.perSecond} act/s, ${failed} failed\n`);
      process.stdout.write(`  minor page faults per activation: ${out.minorFaultsPerActivation}, timeslices: ${out.timeslicesPerActivation}\n`);
      for (const [k, v] of Object.entries(out.cpuMsPerActivation)) process.stdout.write(`  ${k.padEnd(9)} ${v}\n`);
      if (out.idle) process.stdout.write(`idle (${IDLE_S} s, ping every ${PING_MS} ms), CPU ms per second: ${JSON.stringify(out.idle.msPerSecond)}\n`);
    }
  } finally {
    await owner.stop();
  }
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exitCode = 1;
});
