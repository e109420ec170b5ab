'use strict';
// The enclave owner's share of a sealed activation, alone: the same noop action
// unsealed and sealed (sealed code, sealed parameters, the result sealed back with a
// receipt), one of each per round in alternating order, through a real owner (in
// this process, so the client can seal to its image key), its gate and real
// isolates, with no invoker, controller or Kafka around it. The client's crypto
// (sealing the parameters, opening the result, verifying the receipt) runs outside
// the timed spans. Reported: per kind the p50 of init -> initialized and of
// run -> result at the client, and the median over the rounds of sealed - unsealed
// (the owner's on-path cost of sealing: opening the envelope, sealing the reply,
// the larger frames); then the CPU the owner's process spends per activation, over
// a block of each kind (process.cpuUsage: the main thread and the slot threads);
// last, the owner's sealed steps alone, warm in a loop (CPU per step).
//
// Usage: node enclave-runtime/bench/sealed-bench.js [rounds] [--isolate addon|worker] [--interval ms]

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const sealed = require('../trusted/sealed');
const { Owner, parseArgs } = require('../trusted/owner');
const isolates = require('../trusted/isolates');
const { GateClient } = require('../test/gate-client');

const argv = process.argv.slice(2);
const ROUNDS = Number(argv.find((a) => /^[0-9]+$/.test(a)) || 200);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const ISOLATE = opt('--isolate', 'addon');
const INTERVAL_MS = Number(opt('--interval', '20'));
const WARMUP = 10;
// Activations of the warm loop after the rounds (warmSteps).
const WARM_STEPS = 1000;
const NS = 'guest';
const CODE = 'function main(p){return {noop:true, n:p.n}}';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-sealed-bench-'));
  const opts = parseArgs(['--socket', path.join(dir, 'gate.sock'), '--slots', '8', '--image', 'nodejs:20',
    '--enclave', 'sealed-bench', '--isolate', ISOLATE, '--work-dir', path.join(dir, 'work')]);
  const { backend } = isolates.choose(opts.isolate, opts.slots, opts.prewarm);
  const owner = new Owner(opts, backend);
  await owner.listen();
  const k = owner.keys.current();
  const sealedCode = (action) => {
    const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_CODE, sealed.codeAAD(NS, action), Buffer.from(CODE));
    return JSON.stringify({ [sealed.CODE_FIELD]: { v: 1, kid: k.kid, enc: enc.toString('base64'), ct: ct.toString('base64') } });
  };
  const kinds = {
    unsealed: { action: `/${NS}/noop`, code: CODE },
    sealed: { action: `/${NS}/noop-sealed`, code: sealedCode(`/${NS}/noop-sealed`) },
  };

  let seq = 0;
  // once runs one activation of a kind and returns its client-side spans (ms).
  async function once(kind) {
    const { action, code } = kinds[kind];
    const id = `sb${++seq}`;
    let value = { n: 42 };
    let reply = null;
    let nonce = '';
    if (kind === 'sealed') {
      // A v2 envelope, as the clients send: an AES-256 reply key inside.
      reply = crypto.randomBytes(32);
      nonce = crypto.randomBytes(16).toString('hex');
      const iat = Date.now();
      const s = sealed.hpkeSeal(k.kem.raw, sealed.INFO_PARAMS, sealed.paramsAAD(NS, action, nonce, iat, 2),
        Buffer.from(JSON.stringify({ params: value, reply: reply.toString('base64') })));
      value = { [sealed.PARAMS_FIELD]: { v: 2, suite: sealed.SUITE, kid: k.kid, nonce, iat,
        enc: s.enc.toString('base64'), ct: s.ct.toString('base64') } };
    }
    const c = await GateClient.connect(opts.socket);
    let out;
    try {
      await c.attach();
      let t = now();
      const ini = await c.request({ type: 'init', name: 'noop', main: 'main', code, env: { __OW_NAMESPACE: NS, __OW_ACTION_NAME: action } });
      const initMs = now() - t;
      if (ini.type !== 'initialized') throw new Error(`init: ${JSON.stringify(ini)}`);
      t = now();
      const res = await c.request({ type: 'run', value, timeoutMs: 10000, memoryMB: 128, env: { __OW_ACTIVATION_ID: id } });
      const runMs = now() - t;
      await c.request({ type: 'release' });
      out = { initMs, runMs, isolateMs: res.timings.isolateMs, actionMs: res.timings.runMs, res };
    } finally {
      c.close();
    }
    let result = out.res.result;
    if (reply) {
      const sr = result[sealed.RESULT_FIELD];
      result = JSON.parse(sealed.openSymmetric(reply, Buffer.from(sr.iv, 'base64'), sealed.resultAAD(id, nonce, 2),
        Buffer.from(sr.ct, 'base64')).toString()).result;
      const { sig, ...body } = sr.receipt;
      if (!crypto.verify(null, Buffer.from(`teemate-receipt-v1\n${sealed.canonicalJSON(body)}`), k.sig.publicKey, Buffer.from(sig, 'base64'))) {
        throw new Error('receipt does not verify');
      }
    }
    if (!result || result.noop !== true || result.n !== 42) throw new Error(`${kind}: unexpected result ${JSON.stringify(out.res)}`);
    return out;
  }

  for (let i = 0; i < WARMUP; i++) {
    await once('unsealed');
    await once('sealed');
  }
  const rounds = [];
  for (let i = 0; i < ROUNDS; i++) {
    const order = i % 2 ? ['sealed', 'unsealed'] : ['unsealed', 'sealed'];
    const r = {};
    for (const kind of order) {
      await sleep(INTERVAL_MS);
      r[kind] = await once(kind);
    }
    rounds.push(r);
  }
  const cpu = {};
  for (const kind of ['unsealed', 'sealed']) {
    await sleep(200);
    const before = process.cpuUsage();
    const n = Math.min(ROUNDS, 200);
    for (let i = 0; i < n; i++) {
      await sleep(INTERVAL_MS);
      await once(kind);
    }
    await sleep(200);
    const d = process.cpuUsage(before);
    cpu[kind] = (d.user + d.system) / 1000 / n;
  }
  const warm = warmSteps(owner.keys, k, WARM_STEPS);
  owner.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const f = (x) => x.toFixed(3);
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  console.log(`owner alone, ${ISOLATE} isolates, ${ROUNDS} rounds ${INTERVAL_MS} ms apart, load average ${load}`);
  console.log('| span (ms) | unsealed p50 | sealed p50 | paired difference |\n| --- | --- | --- | --- |');
  for (const span of ['initMs', 'runMs', 'isolateMs', 'actionMs']) {
    const u = rounds.map((r) => r.unsealed[span]);
    const s = rounds.map((r) => r.sealed[span]);
    console.log(`| ${span} | ${f(median(u))} | ${f(median(s))} | ${f(median(rounds.map((r) => r.sealed[span] - r.unsealed[span])))} |`);
  }
  const outside = (x) => x.runMs - x.isolateMs - x.actionMs;
  console.log(`| run - isolate - action | ${f(median(rounds.map((r) => outside(r.unsealed))))} | ${f(median(rounds.map((r) => outside(r.sealed))))} | ` +
    `${f(median(rounds.map((r) => outside(r.sealed) - outside(r.unsealed))))} |`);
  console.log(`\nCPU per activation (this process: owner and client; client crypto included for sealed): unsealed ${f(cpu.unsealed)} ms, ` +
    `sealed ${f(cpu.sealed)} ms, difference ${f(cpu.sealed - cpu.unsealed)} ms`);
  console.log(`\nThe owner's sealed steps warm, ${WARM_STEPS} times in a loop (CPU µs per activation): ` +
    Object.entries(warm).map(([step, us]) => `${step} ${us.toFixed(0)}`).join(', '));
}

// warmSteps runs the owner's sealed steps of one activation (sealed.js: openEnvelope,
// prepareReply, sealOutcome, prepareSpare) n times in a loop on envelopes sealed
// beforehand, and returns each step's CPU time per activation (µs): the floor the
// in-situ figures above compare with (there each step runs cold, between isolate
// preparations).
function warmSteps(keys, k, n) {
  const action = `/${NS}/noop-sealed`;
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: action, __OW_ACTIVATION_ID: 'warm' };
  const envelopes = [];
  for (let i = 0; i < n; i++) {
    const nonce = crypto.randomBytes(16).toString('hex');
    const iat = Date.now();
    const s = sealed.hpkeSeal(k.kem.raw, sealed.INFO_PARAMS, sealed.paramsAAD(NS, action, nonce, iat, 2),
      Buffer.from(JSON.stringify({ params: { n: 42 }, reply: crypto.randomBytes(32).toString('base64') })));
    envelopes.push({ [sealed.PARAMS_FIELD]: { v: 2, suite: sealed.SUITE, kid: k.kid, nonce, iat,
      enc: s.enc.toString('base64'), ct: s.ct.toString('base64') } });
  }
  const replay = new sealed.ReplayCache();
  const us = { open: 0, prepare: 0, seal: 0 };
  const step = (name, fn) => {
    const before = process.cpuUsage();
    const out = fn();
    const d = process.cpuUsage(before);
    us[name] += d.user + d.system;
    return out;
  };
  for (const value of envelopes) {
    const { ctx } = step('open', () => sealed.openEnvelope(keys, value, env, replay));
    step('prepare', () => sealed.prepareReply(ctx));
    step('seal', () => sealed.sealOutcome(keys, ctx, { outcome: 'success', result: { noop: true, n: 42 },
      resultText: '{"noop":true,"n":42}', logs: [], timings: {} }, 'warm'));
  }
  for (const name of Object.keys(us)) us[name] /= n;
  us.total = us.open + us.prepare + us.seal;
  return us;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
