'use strict';
// State transfer (trusted/transfer.js): the image key and the opened sealed code
// moving between two owners in sealed chunks; interrupted and resumed, refused
// for another measurement, refused when a chunk is altered, moved, replayed or
// missing; the transient memory it takes; then through two real owner processes
// and their gates, with a sealed action opened before and after the move.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { ImageKeys, KeyError } = require('../trusted/keys');
const sealed = require('../trusted/sealed');
const { StateTransfer, CHUNK_BYTES, pieces } = require('../trusted/transfer');
const { startOwner } = require('./gate-client');
const { token } = require('../trusted/gateauth');

const NS = 'guest';

function keys(opts = {}) {
  return new ImageKeys({ image: 'nodejs:20', attestationDir: '', ...opts });
}

function sealCode(k, action, src) {
  const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_CODE, sealed.codeAAD(NS, action), Buffer.from(src));
  return JSON.stringify({ [sealed.CODE_FIELD]: { v: 1, kid: k.kid, enc: enc.toString('base64'), ct: ct.toString('base64') } });
}

// source is a live owner's state: a key (rotated once, so a retired key moves
// too) and a code cache with the given sources opened into it.
function source(sources, { cacheBytes } = {}) {
  const k = keys();
  k.start();
  k.rotate();
  const cache = new sealed.CodeCache(cacheBytes ? { maxBytes: cacheBytes } : {});
  sources.forEach((src, n) => {
    sealed.openCode(k, sealCode(k.current(), `/guest/a${n}`, src), { __OW_NAMESPACE: NS, __OW_ACTION_NAME: `/guest/a${n}` }, cache);
  });
  return { k, cache, st: new StateTransfer({ keys: k, cache }) };
}

function destination(opts) {
  const k = keys(opts);
  k.start('await');
  const cache = new sealed.CodeCache();
  return { k, cache, st: new StateTransfer({ keys: k, cache }) };
}

// open runs the session's start: key-request, state-offer, state-open.
function open(src, dst) {
  const offer = src.st.offer(dst.k.request());
  const status = dst.st.open(offer);
  return { offer, status };
}

// pump moves chunks from..end (or to the end) of the session, count per batch.
function pump(src, dst, session, from, { count = 2, end } = {}) {
  let last;
  for (let i = from; i < (end ?? Infinity);) {
    const batch = src.st.chunks({ session, from: i, count });
    for (const c of batch.chunks) {
      last = dst.st.accept({ session, ...c });
      i++;
      if (last.done || i === end) return last;
    }
  }
  return last;
}

const MIXED = `// ünïcödé 𝒯𝑒𝑒𝑀𝑎𝑡𝑒 ${'𝒳'.repeat(30000)} end`;
const BIG = `function main() { return { n: ${'1'.length} }; } // ${'x'.repeat(300 * 1024)}`;

test('pieces: ASCII cut by bytes, other text never between the halves of a pair', () => {
  assert.deepEqual(pieces(''), [[0, 0]]);
  const a = 'a'.repeat(CHUNK_BYTES * 2);
  for (const [s, e] of pieces(a)) assert.ok(e - s <= CHUNK_BYTES - 2048);
  const m = pieces(MIXED);
  assert.ok(m.length > 1);
  for (const [s, e] of m) {
    const part = MIXED.slice(s, e);
    assert.ok(Buffer.byteLength(part) <= CHUNK_BYTES - 2048);
    assert.equal(Buffer.from(part).toString('utf8'), part, 'each piece decodes by itself');
  }
  assert.equal(m.map(([s, e]) => MIXED.slice(s, e)).join(''), MIXED);
});

test('the key, its rotated-out key and the opened code move in chunks', () => {
  const src = source(['function main() { return {}; }', MIXED, BIG]);
  const dst = destination();
  const { offer, status } = open(src, dst);
  assert.ok(offer.total > 3, `chunks: ${offer.total}`);
  assert.deepEqual({ next: status.next, total: status.total }, { next: 0, total: offer.total });
  assert.equal(dst.k.ready(), false);
  const done = pump(src, dst, offer.session, 0);
  assert.equal(done.done, true);
  assert.equal(done.kid, src.k.current().kid);
  assert.equal(done.entries, 3);
  assert.equal(dst.k.ready(), true);
  assert.equal(dst.k.retired.length, 1, 'the rotated-out key moved in its grace');
  assert.deepEqual([...dst.cache.entries], [...src.cache.entries]);
  // What the host relayed holds no plaintext of the code.
  const batch = src.st.chunks({ session: offer.session, from: 0, count: 8 });
  assert.ok(!JSON.stringify(batch).includes('𝒳'.repeat(4)) && !JSON.stringify(batch).includes('xxxxxxxx'));
});

test('interrupted half way and resumed in the same session', () => {
  const src = source([BIG, MIXED]);
  const dst = destination();
  const { offer } = open(src, dst);
  const half = Math.floor(offer.total / 2);
  pump(src, dst, offer.session, 0, { end: half });
  // The connection breaks: chunk `half` was sealed and sent, never delivered.
  src.st.chunks({ session: offer.session, from: half, count: 1 });
  const st = dst.st.status({ session: offer.session });
  assert.equal(st.next, half, 'the receiver says where to resume');
  // A chunk that arrived before the break and is sent again is refused as a replay.
  const again = src.st.chunks({ session: offer.session, from: half - 1, count: 1 }).chunks[0];
  assert.throws(() => dst.st.accept({ session: offer.session, ...again }), /was taken already \(replayed\)/);
  const done = pump(src, dst, offer.session, st.next);
  assert.equal(done.done, true);
  assert.equal(done.kid, src.k.current().kid);
  assert.deepEqual([...dst.cache.entries], [...src.cache.entries]);
});

test('a destination with another measurement is refused, both ways', () => {
  const src = source(['x']);
  const other = destination({ measurement: 'bb'.repeat(32) });
  assert.throws(() => src.st.offer(other.k.request()),
    (e) => e instanceof KeyError && /peer measurement b{64} is not this enclave's [0-9a-f]{64}/.test(e.message));
  assert.equal(src.st.sending.size, 0, 'no session for a refused peer');
  // And a receiver refuses a sender of another measurement.
  const odd = source(['x']);
  odd.k.measurement = 'cc'.repeat(32);
  odd.k.cachedEvidence = null;
  const dst = destination();
  assert.throws(() => odd.st.offer(dst.k.request()), /peer measurement/);
  const req = dst.k.request();
  const good = src.st.offer(req);
  assert.throws(() => dst.st.open({ ...good, evidence: odd.k.evidence() }), /peer measurement/);
  assert.equal(dst.k.ready(), false);
});

test('altered, moved, replayed, reordered and truncated chunks are refused', async (t) => {
  const src = source([BIG]);
  const dst = destination();
  const { offer } = open(src, dst);
  const s = offer.session;
  const [c0, c1, c2] = src.st.chunks({ session: s, from: 0, count: 3 }).chunks;
  const flip = (b64) => {
    const b = Buffer.from(b64, 'base64');
    b[b.length >> 1] ^= 1;
    return b.toString('base64');
  };
  await t.test('altered ciphertext or iv', () => {
    assert.throws(() => dst.st.accept({ session: s, ...c0, ct: flip(c0.ct) }), /chunk 0 does not open/);
    assert.throws(() => dst.st.accept({ session: s, ...c0, iv: flip(c0.iv) }), /chunk 0 does not open/);
  });
  await t.test('a chunk relabelled with another index', () => {
    assert.throws(() => dst.st.accept({ session: s, ...c1, i: 0 }), /chunk 0 does not open/);
  });
  await t.test('reordered', () => {
    assert.throws(() => dst.st.accept({ session: s, ...c1 }), /chunk 1 arrived before chunk 0/);
  });
  await t.test('a chunk of another session', () => {
    const other = destination();
    const o2 = src.st.offer(other.k.request());
    const x = src.st.chunks({ session: o2.session, from: 0, count: 1 }).chunks[0];
    assert.throws(() => dst.st.accept({ session: s, ...x }), /chunk 0 does not open/);
    assert.throws(() => dst.st.accept({ session: o2.session, ...x }), /unknown or expired/);
  });
  await t.test('replayed', () => {
    assert.equal(dst.st.accept({ session: s, ...c0 }).next, 1);
    assert.throws(() => dst.st.accept({ session: s, ...c0 }), /replayed/);
    assert.equal(dst.st.accept({ session: s, ...c1 }).next, 2);
    assert.equal(dst.st.accept({ session: s, ...c2 }).next, 3);
  });
  await t.test('truncated: nothing installed before the last chunk', () => {
    assert.equal(dst.k.ready(), false);
    assert.equal(dst.cache.size, 0);
  });
  await t.test('expired session', () => {
    const t0 = Date.now();
    src.st.now = () => t0 + 3 * 60 * 1000;
    assert.throws(() => src.st.chunks({ session: s, from: 3, count: 1 }), /unknown or expired/);
    dst.st.now = src.st.now;
    assert.throws(() => dst.st.status({ session: s }), /unknown or expired/);
  });
});

test('transient memory is bounded by the batch, not the state', (t) => {
  // 16 MiB of opened code; the transfer's transient buffers stay within a few chunks.
  const srcs = [];
  for (let n = 0; n < 12; n++) srcs.push(`// ${n} ${crypto.randomBytes(1024 * 1024).toString('base64')}`);
  const src = source(srcs, { cacheBytes: 64 * 1024 * 1024 });
  const dst = destination();
  const { offer } = open(src, dst);
  const done = pump(src, dst, offer.session, 0, { count: 2 });
  assert.equal(done.entries, 12);
  t.diagnostic(`state ${offer.bytes} bytes in ${offer.total} chunks; peak transient: sender ${src.st.peak} bytes, receiver ${dst.st.peak} bytes`);
  assert.ok(offer.bytes > 16 * 1024 * 1024);
  // Two chunks: plaintext, ciphertext, base64 each.
  assert.ok(src.st.peak <= 2 * (CHUNK_BYTES + CHUNK_BYTES + 16 + Math.ceil((CHUNK_BYTES + 16) / 3) * 4), `sender peak ${src.st.peak}`);
  assert.ok(dst.st.peak <= 4 * CHUNK_BYTES, `receiver peak ${dst.st.peak}`);
});

// ---- real owners ---------------------------------------------------------------------------
const GATE_KEY = 'ab'.repeat(32);
function auth(type) {
  return crypto.createHmac('sha256', Buffer.from(GATE_KEY, 'hex')).update(`teemate-keys-v1\n${type}`).digest('hex');
}

let acts = 0;
async function activate(owner, code, action) {
  const c = await owner.connect();
  const id = `act-${++acts}`;
  try {
    const w = await c.request({ type: 'hello', version: 1, sandbox: 'test', activation: id, namespace: NS,
      token: token(Buffer.from(GATE_KEY, 'hex'), id, NS) });
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    const acq = await c.request({ type: 'acquire' });
    assert.equal(acq.type, 'acquired', JSON.stringify(acq));
    const ini = await c.request({ type: 'init', name: 'a', main: 'main', binary: false, code,
      env: { __OW_NAMESPACE: NS, __OW_ACTION_NAME: action } });
    assert.equal(ini.type, 'initialized', JSON.stringify(ini));
    const res = await c.request({ type: 'run', value: {}, timeoutMs: 10000, memoryMB: 128, env: { __OW_ACTIVATION_ID: id } });
    await c.request({ type: 'release' });
    return res;
  } finally {
    c.close();
  }
}

test('real owners: state moves over their gates, resumed on a new connection; sealed code opens on both', { concurrency: false }, async (t) => {
  const a = await startOwner({ args: ['--gate-key', 'stdin'], stdin: `${GATE_KEY}\n` });
  t.after(() => a.stop());
  const b = await startOwner({ args: ['--gate-key', 'stdin', '--key-mode', 'await'], stdin: `${GATE_KEY}\n` });
  t.after(() => b.stop());
  const ca = await a.connect();
  const ev = (await ca.request({ type: 'evidence' })).evidence;
  // The client attests once (the evidence above) and seals its code to that key.
  const k = { kid: ev.kid, kem: { raw: Buffer.from(ev.keys.kem, 'base64') } };
  const pad = `// ${'p'.repeat(2 * 1024 * 1024)}`;
  const code = sealCode(k, '/guest/moved', `function main() { return { ok: 'sealed' }; } ${pad}`);
  const before = await activate(a, code, '/guest/moved');
  assert.equal(before.outcome, 'success', JSON.stringify(before).slice(0, 300));
  assert.deepEqual(before.result, { ok: 'sealed' });

  const cb = await b.connect();
  const req = await cb.request({ type: 'key-request', auth: auth('key-request') });
  const cx = await a.connect();
  const refused = await cx.request({ type: 'state-offer', request: req.request });
  assert.equal(refused.class, 'auth', 'only the invoker may start a transfer');
  cx.close();
  const off = await ca.request({ type: 'state-offer', request: req.request, auth: auth('state-offer') });
  assert.equal(off.type, 'state-offer', JSON.stringify(off).slice(0, 300));
  const { session, total, rss } = off.offer;
  assert.ok(total > 8, `chunks ${total}`);
  const st = await cb.request({ type: 'state-open', offer: off.offer, auth: auth('state-open') });
  assert.deepEqual({ type: st.type, next: st.next, total: st.total }, { type: 'state-status', next: 0, total });
  let peakRss = rss;
  const send = async (conn, from, end) => {
    let last;
    for (let i = from; i < end; i += 2) {
      const r = await ca.request({ type: 'state-chunks', session, from: i, count: 2, auth: auth('state-chunks') });
      assert.equal(r.type, 'state-chunks', JSON.stringify(r).slice(0, 300));
      peakRss = Math.max(peakRss, r.rss || 0);
      for (const c of r.chunks) {
        if (c.i >= end) break;
        last = await conn.request({ type: 'state-chunk', session, ...c, auth: auth('state-chunk') });
        assert.equal(last.type, 'state-status', JSON.stringify(last));
      }
    }
    return last;
  };
  const half = total >> 1;
  await send(cb, 0, half);
  cb.close(); // the connection breaks half way
  const cb2 = await b.connect();
  const resume = await cb2.request({ type: 'state-status', session, auth: auth('state-status') });
  assert.equal(resume.next, half);
  const done = await send(cb2, resume.next, total);
  assert.equal(done.done, true);
  assert.equal(done.kid, ev.kid);
  assert.equal(done.entries, 1);
  t.diagnostic(`real owners: ${total} chunks, sender RSS ${rss} -> peak ${peakRss}; peak transient sender/receiver ${done.peakBytes}`);
  ca.close();
  cb2.close();

  // The same sealed code, sealed once against A's evidence, runs on B (from the moved cache).
  const after = await activate(b, code, '/guest/moved');
  assert.equal(after.outcome, 'success', JSON.stringify(after).slice(0, 300));
  assert.deepEqual(after.result, { ok: 'sealed' });
  const pong = await (await b.connect()).request({ type: 'ping' });
  assert.equal(pong.kid, ev.kid);
});

test('real owners: a peer whose native addon the host swapped has another measurement and gets no state', { concurrency: false }, async (t) => {
  const primitives = require('../trusted/primitives'); // eslint-disable-line global-require
  const addon = primitives.nativeFile();
  if (!addon) {
    t.skip(`the sealed-crypto addon is not built (${primitives.whyNotNative()}); make build`);
    return;
  }
  // The host's swap: the same addon with one byte appended (it still loads; only its bytes differ).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-swap-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const swapped = path.join(dir, path.basename(addon));
  fs.writeFileSync(swapped, Buffer.concat([fs.readFileSync(addon), Buffer.from([0])]));
  const a = await startOwner({ args: ['--gate-key', 'stdin'], stdin: `${GATE_KEY}\n` });
  t.after(() => a.stop());
  const b = await startOwner({ args: ['--gate-key', 'stdin', '--key-mode', 'await'], stdin: `${GATE_KEY}\n`,
    env: { TEEMATE_SEALCRYPTO_ADDON: swapped } });
  t.after(() => b.stop());
  const ca = await a.connect();
  const cb = await b.connect();
  try {
    const ea = (await ca.request({ type: 'evidence' })).evidence;
    assert.match(ea.simulated.measurement, /^[0-9a-f]{64}$/);
    const req = await cb.request({ type: 'key-request', auth: auth('key-request') });
    assert.equal(req.type, 'key-request', JSON.stringify(req).slice(0, 300));
    const off = await ca.request({ type: 'state-offer', request: req.request, auth: auth('state-offer') });
    assert.notEqual(off.type, 'state-offer', 'the swapped peer must not get the state');
    assert.match(JSON.stringify(off), /peer measurement [0-9a-f]{64} is not this enclave's/);
  } finally {
    ca.close();
    cb.close();
  }
});
