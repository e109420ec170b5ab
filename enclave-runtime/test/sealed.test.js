'use strict';
// Sealed invocation on the enclave side (trusted/sealed.js and its wiring in the
// owner): sealed parameters, results, logs and code through a real owner, its gate
// and real isolates, with a real image key (trusted/keys.js). The client's half is
// written here with the same module's HPKE; invoker/sealed's interop test runs the
// Go client against it.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const sealed = require('../trusted/sealed');
const { ImageKeys } = require('../trusted/keys');
const { Owner, parseArgs } = require('../trusted/owner');
const isolates = require('../trusted/isolates');
const { GateClient, ADDON } = require('./gate-client');
const need = require('./need');

const NS = 'guest';
const ACTION = '/guest/secret';

function newKeys() {
  const keys = new ImageKeys({ image: 'nodejs:20', attestationDir: '' });
  keys.start('generate');
  return keys;
}

// sealParams is the client's half: the envelope for params, and what opens the result.
// v 2 (the default, what clients send) carries an AES-256 reply key; v 1 an X25519 one.
function sealParams(keys, params, { ns = NS, action = ACTION, iat = Date.now(), nonce, kid, v = sealed.ENVELOPE_VERSION } = {}) {
  const k = keys.current();
  let reply;
  let replyRaw;
  if (v === 1) {
    const pair = crypto.generateKeyPairSync('x25519');
    replyRaw = sealed.rawPublic(pair.publicKey);
    reply = { privateKey: pair.privateKey, raw: replyRaw };
  } else {
    replyRaw = crypto.randomBytes(32);
    reply = { secret: replyRaw, raw: replyRaw };
  }
  const n = nonce || crypto.randomBytes(16).toString('hex');
  const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_PARAMS, sealed.paramsAAD(ns, action, n, iat, v),
    Buffer.from(JSON.stringify({ params, reply: replyRaw.toString('base64') })));
  const value = { [sealed.PARAMS_FIELD]: { v, suite: sealed.SUITE, kid: kid || k.kid, nonce: n, iat,
    enc: enc.toString('base64'), ct: ct.toString('base64') } };
  return { value, reply, nonce: n, inputSha256: sealed.sha256hex(ct) };
}

// openSealed opens a sealed result's ct with the reply key of s (v2: AES-256-GCM, the
// tag at the end; v1: HPKE); a wrong key, IV, AAD or ciphertext throws.
function openSealed(s, sr, activationId) {
  const ct = Buffer.from(sr.ct, 'base64');
  const aad = Buffer.from(sealed.resultAAD(activationId, s.nonce, sr.v));
  if (sr.v === 1) {
    assert.ok(s.reply.privateKey, 'a v1 result for a v2 envelope');
    return sealed.hpkeOpen(s.reply, sealed.INFO_RESULT, aad, Buffer.from(sr.enc, 'base64'), ct);
  }
  assert.equal(sr.v, 2);
  assert.ok(s.reply.secret, 'a v2 result for a v1 envelope');
  return sealed.openSymmetric(s.reply.secret, Buffer.from(sr.iv, 'base64'), aad, ct);
}

// openResult is the client opening what the host got, and checking the receipt.
function openResult(keys, s, activationId, result) {
  const sr = result[sealed.RESULT_FIELD] || (result.error && result.error[sealed.RESULT_FIELD]);
  assert.ok(sr, `not a sealed result: ${JSON.stringify(result)}`);
  const ct = Buffer.from(sr.ct, 'base64');
  const plain = JSON.parse(openSealed(s, sr, activationId).toString('utf8'));
  const { sig, ...body } = sr.receipt;
  assert.ok(crypto.verify(null, Buffer.from(`teemate-receipt-v1\n${sealed.canonicalJSON(body)}`),
    keys.current().sig.publicKey, Buffer.from(sig, 'base64')), 'receipt signature');
  assert.equal(body.activationId, activationId);
  assert.equal(body.inputSha256, s.inputSha256);
  assert.equal(body.outputSha256, sealed.sha256hex(ct));
  assert.equal(body.identitySha256, keys.identitySha256());
  assert.equal(body.nonce, s.nonce);
  return { plain, receipt: sr.receipt };
}

// An owner in this process, so the test can seal to its image key and check the
// receipts with it; its isolates are real (the addon's new isolates, or worker threads).
async function startOwner(isolate) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-sealed-test-'));
  const opts = parseArgs(['--socket', path.join(dir, 'gate.sock'), '--slots', '2', '--image', 'nodejs:20',
    '--enclave', 'sealed-test', '--isolate', isolate, '--prewarm', '0', '--work-dir', path.join(dir, 'work')]);
  const { backend } = isolates.choose(opts.isolate, opts.slots, opts.prewarm);
  // The owner makes its image key itself (keys.js; in memory: no --key-dir).
  const owner = new Owner(opts, backend);
  const logged = [];
  await owner.listen();
  return {
    owner, keys: owner.keys, logged,
    connect: () => GateClient.connect(opts.socket),
    stop() {
      owner.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

let seq = 0;
// activate runs one activation on a new connection and returns every message it got.
async function activate(o, { code, value, action = ACTION, ns = NS, activationId }) {
  const id = activationId || `act${++seq}`;
  const c = await o.connect();
  try {
    const acq = await c.attach();
    assert.equal(acq.type, 'acquired');
    const ini = await c.request({ type: 'init', name: 'secret', main: 'main', code,
      env: { __OW_NAMESPACE: ns, __OW_ACTION_NAME: action } });
    if (ini.type !== 'initialized') return { init: ini, id };
    const res = await c.request({ type: 'run', value, timeoutMs: 5000, memoryMB: 128,
      env: { __OW_ACTIVATION_ID: id } });
    const rel = await c.request({ type: 'release' });
    assert.equal(rel.type, 'released');
    return { res, id };
  } finally {
    c.close();
  }
}

const CANARY = 'canary-7f3a';
const ECHO = `function main(p) { console.log('${CANARY}-log ' + p.secret); console.error('second line'); return { got: p.secret + '-${CANARY}-out', keys: Object.keys(p) }; }`;

// noCanary asserts that nothing the host got carries plaintext of the activation.
function noCanary(msg) {
  const text = JSON.stringify(msg);
  assert.ok(!text.includes(CANARY), `plaintext reached the host: ${text.slice(0, 300)}`);
}

const backends = [
  { name: 'worker', skip: false },
  { name: 'addon', skip: need.skip(!fs.existsSync(ADDON) && `isolate addon not built (${ADDON}); run make build`) },
];

for (const b of backends) {
  test(`sealed activations through the owner (${b.name})`, { skip: b.skip }, async (t) => {
    const o = await startOwner(b.name);
    t.after(() => o.stop());

    await t.test('a good envelope: the action sees the params, the host sees ciphertext', async () => {
      const s = sealParams(o.keys, { secret: CANARY });
      // A default parameter the platform merged in is not passed to the action.
      s.value.injected = 'by the host';
      const { res, id } = await activate(o, { code: ECHO, value: s.value });
      noCanary(res);
      assert.equal(res.outcome, 'success');
      assert.deepEqual(res.logs.map((l) => l.line), ['sealed: 2 log lines in the sealed result']);
      const { plain, receipt } = openResult(o.keys, s, id, res.result);
      assert.deepEqual(plain.result, { got: `${CANARY}-${CANARY}-out`, keys: ['secret'] });
      assert.equal(plain.error, null);
      assert.equal(plain.logs.length, 2);
      assert.match(plain.logs[0], new RegExp(`^\\S+ stdout: ${CANARY}-log ${CANARY}$`));
      assert.match(plain.logs[1], /stderr: second line$/);
      assert.equal(receipt.codeSha256, sealed.sha256hex(ECHO));
      assert.equal(receipt.action, ACTION);
      assert.equal(receipt.namespace, NS);
    });

    await t.test('a v1 envelope (X25519 reply key) is answered with a v1 result', async () => {
      const s = sealParams(o.keys, { secret: CANARY }, { v: 1 });
      const { res, id } = await activate(o, { code: ECHO, value: s.value });
      noCanary(res);
      assert.equal(res.result[sealed.RESULT_FIELD].v, 1);
      assert.deepEqual(openResult(o.keys, s, id, res.result).plain.result, { got: `${CANARY}-${CANARY}-out`, keys: ['secret'] });
    });

    await t.test('application and developer errors are sealed too', async () => {
      const app = sealParams(o.keys, { secret: CANARY });
      let r = await activate(o, { code: `function main(p) { return Promise.reject({ why: p.secret }); }`, value: app.value });
      noCanary(r.res);
      assert.equal(r.res.outcome, 'application');
      assert.deepEqual(openResult(o.keys, app, r.id, r.res.result).plain.error, { why: CANARY });
      const dev = sealParams(o.keys, { secret: CANARY });
      r = await activate(o, { code: `function main(p) { throw new Error('boom ' + p.secret); }`, value: dev.value });
      noCanary(r.res);
      assert.equal(r.res.outcome, 'developer');
      assert.match(openResult(o.keys, dev, r.id, r.res.result).plain.error, new RegExp(`boom ${CANARY}`));
    });

    await t.test('refusals: developer errors starting "TeeMate sealed: integrity", no isolate runs', async (tt) => {
      const flip = (b64) => {
        const buf = Buffer.from(b64, 'base64');
        buf[buf.length >> 1] ^= 1;
        return buf.toString('base64');
      };
      const edit = (f) => (s) => { f(s.value[sealed.PARAMS_FIELD]); return s; };
      const cases = [
        { name: 'ct tampered', s: edit((e) => { e.ct = flip(e.ct); }), re: /does not open/ },
        { name: 'enc tampered', s: edit((e) => { e.enc = flip(e.enc); }), re: /integrity/ },
        { name: 'nonce (aad) changed', s: edit((e) => { e.nonce = 'ab'.repeat(16); }), re: /does not open/ },
        { name: 'iat (aad) changed', s: edit((e) => { e.iat += 1; }), re: /does not open/ },
        { name: 'moved to another action', s: (s) => s, action: '/guest/other', re: /does not open/ },
        { name: 'moved to another namespace', s: (s) => s, ns: 'other', re: /does not open/ },
        { name: 'unknown kid', s: edit((e) => { e.kid = '0'.repeat(32); }), re: /unknown kid/ },
        { name: 'stale iat', iat: Date.now() - 11 * 60 * 1000, s: (s) => s, re: /stale/ },
        { name: 'future iat', iat: Date.now() + 11 * 60 * 1000, s: (s) => s, re: /future/ },
        { name: 'oversize', s: edit((e) => { e.ct = Buffer.alloc(sealed.MAX_SEALED_BYTES + 1).toString('base64'); }), re: /larger than/ },
        { name: 'not an object', s: (s) => { s.value[sealed.PARAMS_FIELD] = 'x'; return s; }, re: /not an object/ },
      ];
      for (const c of cases) {
        await tt.test(c.name, async () => {
          const s = c.s(sealParams(o.keys, { secret: CANARY }, { iat: c.iat }));
          const { res } = await activate(o, { code: `function main() { console.log('${CANARY}'); return {}; }`,
            value: s.value, action: c.action, ns: c.ns });
          assert.equal(res.outcome, 'developer');
          assert.ok(res.result.error.startsWith('TeeMate sealed: integrity: '), res.result.error);
          assert.match(res.result.error, c.re);
          assert.deepEqual(res.logs, []);
          noCanary(res);
        });
      }
      await tt.test('replay: the same envelope twice', async () => {
        const s = sealParams(o.keys, { secret: CANARY });
        const first = await activate(o, { code: ECHO, value: s.value });
        assert.equal(first.res.outcome, 'success');
        const again = await activate(o, { code: ECHO, value: s.value });
        assert.equal(again.res.outcome, 'developer');
        assert.match(again.res.result.error, /^TeeMate sealed: integrity: replayed envelope/);
      });
    });

    await t.test('sealed code: opened at init, bound to the action', async () => {
      const src = `function main(p) { return { from: 'sealed ${CANARY}' }; }`;
      const sealCode = (action) => {
        const k = o.keys.current();
        const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_CODE, sealed.codeAAD(NS, action), Buffer.from(src));
        return JSON.stringify({ [sealed.CODE_FIELD]: { v: 1, kid: k.kid, enc: enc.toString('base64'), ct: ct.toString('base64') } });
      };
      const s = sealParams(o.keys, {});
      const { res, id } = await activate(o, { code: sealCode(ACTION), value: s.value });
      noCanary(res);
      const { plain, receipt } = openResult(o.keys, s, id, res.result);
      assert.deepEqual(plain.result, { from: `sealed ${CANARY}` });
      assert.equal(receipt.codeSha256, sealed.sha256hex(src));

      const moved = await activate(o, { code: sealCode('/guest/elsewhere'), value: {} });
      assert.equal(moved.init.type, 'error');
      assert.equal(moved.init.class, 'init');
      assert.match(moved.init.message, /^TeeMate sealed: integrity: /);

      // A sealed action that does not compile: the reason (which quotes code) is withheld.
      const k = o.keys.current();
      const bad = `function main( { ${CANARY}`;
      const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_CODE, sealed.codeAAD(NS, ACTION), Buffer.from(bad));
      const r = await activate(o, { code: JSON.stringify({ [sealed.CODE_FIELD]: { v: 1, kid: k.kid,
        enc: enc.toString('base64'), ct: ct.toString('base64') } }), value: {} });
      assert.equal(r.init.class, 'init');
      assert.match(r.init.message, /the sealed code could not be prepared/);
      noCanary(r.init);
    });

    await t.test('unsealed actions are unchanged, and the owner still serves', async () => {
      const { res } = await activate(o, { code: ECHO, value: { secret: 'plain' } });
      assert.equal(res.outcome, 'success');
      assert.deepEqual(res.result, { got: `plain-${CANARY}-out`, keys: ['secret'] });
      assert.deepEqual(res.logs.map((l) => l.line), [`${CANARY}-log plain`, 'second line']);
      const c = await o.connect();
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      c.close();
    });
  });
}

test('ReplayCache: bounded, and a replay is refused even after eviction', () => {
  let now = 1_000_000_000;
  const r = new sealed.ReplayCache({ capacity: 3, now: () => now });
  const nonce = (i) => i.toString(16).padStart(32, '0');
  for (let i = 1; i <= 3; i++) {
    r.check(nonce(i), now - 100 + i);
    r.record(nonce(i), now - 100 + i);
  }
  assert.throws(() => r.check(nonce(2), now - 98), /replayed/);
  r.record(nonce(4), now - 96); // evicts nonce 1 (iat now-99): the floor rises to it
  assert.equal(r.size, 3);
  assert.throws(() => r.check(nonce(1), now - 99), /older than the replay cache/);
  r.check(nonce(5), now); // newer than the floor: fine
  now += sealed.IAT_WINDOW_MS + 1000;
  assert.throws(() => r.check(nonce(6), now - sealed.IAT_WINDOW_MS - 1), /stale/);
  r.record(nonce(7), now); // expired entries go first
  assert.equal(r.size, 1);
});

test('a sealed result stays within what the host reads of a response', () => {
  const keys = newKeys();
  const s = sealParams(keys, {});
  const ctx = { v: 2, kid: keys.current().kid, nonce: s.nonce, reply: s.reply.raw, inputSha256: s.inputSha256,
    namespace: NS, action: ACTION, activationId: 'a1' };
  const line = 'x'.repeat(1000);
  const logs = Array.from({ length: 2000 }, () => ({ stream: 'stdout', time: 't', line }));
  let msg = sealed.sealOutcome(keys, ctx, { outcome: 'success', result: { ok: true }, logs, timings: {} }, '');
  assert.ok(Buffer.byteLength(JSON.stringify(msg.result)) <= 1024 * 1024);
  let { plain } = openResult(keys, s, 'a1', msg.result);
  assert.deepEqual(plain.result, { ok: true });
  assert.match(plain.logs[plain.logs.length - 1], /^Logs were truncated: \d+ lines did not fit/);
  assert.equal(msg.logs[0].line, `sealed: ${plain.logs.length} log lines in the sealed result`);

  msg = sealed.sealOutcome(keys, ctx, { outcome: 'success', result: { big: 'y'.repeat(1000 * 1000) }, logs: [], timings: {} }, '');
  assert.equal(msg.outcome, 'developer');
  assert.ok(Buffer.byteLength(JSON.stringify(msg.result)) <= 1024 * 1024);
  ({ plain } = openResult(keys, s, 'a1', msg.result));
  assert.match(plain.error, /exceeded the allowed length of a sealed result/);
});

test('HPKE: what one side seals the other opens; wrong info, aad or key fail', () => {
  const pair = crypto.generateKeyPairSync('x25519');
  const recipient = { privateKey: pair.privateKey, raw: sealed.rawPublic(pair.publicKey) };
  const { enc, ct } = sealed.hpkeSeal(recipient.raw, 'info', 'aad', Buffer.from('hello'));
  assert.equal(sealed.hpkeOpen(recipient, 'info', 'aad', enc, ct).toString(), 'hello');
  assert.throws(() => sealed.hpkeOpen(recipient, 'other', 'aad', enc, ct), sealed.SealedError);
  assert.throws(() => sealed.hpkeOpen(recipient, 'info', 'aae', enc, ct), sealed.SealedError);
  const other = crypto.generateKeyPairSync('x25519');
  assert.throws(() => sealed.hpkeOpen({ privateKey: other.privateKey, raw: sealed.rawPublic(other.publicKey) }, 'info', 'aad', enc, ct),
    sealed.SealedError);
  // A small-order encapsulated key (all zeros) is refused, not used.
  assert.throws(() => sealed.hpkeOpen(recipient, 'info', 'aad', Buffer.alloc(32), ct), /small-order|X25519/);
  assert.equal(sealed.canonicalJSON({ b: 1, a: 'x"y', c: 'é\n' }), '{"a":"x\\"y","b":1,"c":"é\\n"}');
});

test('rotation: an envelope sealed to the previous key opens in its grace, and its receipt names the evidence it was sealed to', () => {
  const keys = newKeys();
  const before = { kid: keys.current().kid, sig: keys.current().sig.publicKey, evidence: keys.identitySha256() };
  const replay = new sealed.ReplayCache();
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'r1' };
  const early = sealParams(keys, { a: 1 });
  const late = sealParams(keys, { a: 2 });
  const opened = sealed.openEnvelope(keys, early.value, env, replay);
  keys.rotate();
  assert.notEqual(keys.current().kid, before.kid);
  const opened2 = sealed.openEnvelope(keys, late.value, { ...env, __OW_ACTIVATION_ID: 'r2' }, replay);
  for (const [o, s, id] of [[opened, early, 'r1'], [opened2, late, 'r2']]) {
    const msg = sealed.sealOutcome(keys, o.ctx, { outcome: 'success', result: o.params, logs: [], timings: {} }, '');
    const sr = msg.result[sealed.RESULT_FIELD];
    const { sig, ...body } = sr.receipt;
    assert.equal(body.kid, before.kid);
    assert.equal(body.identitySha256, before.evidence);
    assert.ok(crypto.verify(null, Buffer.from(`teemate-receipt-v1\n${sealed.canonicalJSON(body)}`), before.sig, Buffer.from(sig, 'base64')));
    const plain = JSON.parse(openSealed(s, sr, id).toString());
    assert.deepEqual(plain.result, o.params);
  }
});

test('an owner awaiting its image key refuses envelopes and sealed code with an integrity error', () => {
  const keys = new ImageKeys({ image: 'nodejs:20', attestationDir: '' });
  keys.start('await');
  const s = sealParams(newKeys(), {});
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'a' };
  assert.throws(() => sealed.openEnvelope(keys, s.value, env, new sealed.ReplayCache()),
    /^SealedError: TeeMate sealed: integrity: this enclave has no image key yet/);
  assert.throws(() => sealed.openCode(keys, '{"__teemate_sealed_code":{"v":1,"kid":"00000000000000000000000000000000","enc":"","ct":""}}', env),
    /no image key yet/);
  assert.throws(() => sealed.openEnvelope(newKeys(), s.value, { ...env, __OW_NAMESPACE: 'a\nb' }, new sealed.ReplayCache()), /newline/);
});

// invoker/attest/testdata/identity-vectors.json is shared with Go's
// attest.Evidence.IdentitySha256: both must give the same identity hash.
test('identitySha256 matches Go on the shared vectors, and ignores what differs between owners', () => {
  const vecs = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'invoker', 'attest', 'testdata', 'identity-vectors.json'), 'utf8'));
  assert.equal(vecs.length, 2);
  for (const v of vecs) {
    assert.equal(sealed.identitySha256(v.evidence), v.identitySha256, v.evidence.type);
    if (v.evidence.type === 'sgx-dcap') {
      const q = Buffer.from(v.evidence.quote, 'base64');
      q[q.length - 1] ^= 1; // another owner's quote: same report body, other signature data
      assert.equal(sealed.identitySha256({ ...v.evidence, quote: q.toString('base64') }), v.identitySha256);
    }
    assert.notEqual(sealed.identitySha256({ ...v.evidence, kid: '0'.repeat(32) }), v.identitySha256);
  }
  assert.throws(() => sealed.identitySha256({ v: 1, type: 'other', keys: {} }), sealed.SealedError);
});

test('CodeCache: sealed code is opened once per action, and never past its key', () => {
  let t = 1000;
  const keys = new ImageKeys({ image: 'nodejs:20', attestationDir: '', now: () => t });
  keys.start('generate');
  const src = 'function main() { return {}; }';
  const k = keys.current();
  const { enc, ct } = sealed.hpkeSeal(k.kem.raw, sealed.INFO_CODE, sealed.codeAAD(NS, ACTION), Buffer.from(src));
  const code = JSON.stringify({ [sealed.CODE_FIELD]: { v: 1, kid: k.kid, enc: enc.toString('base64'), ct: ct.toString('base64') } });
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION };
  const cache = new sealed.CodeCache({ maxEntries: 2 });
  assert.deepEqual(sealed.openCode(keys, code, env, cache), { code: src, sha256: sealed.sha256hex(src) });
  assert.equal(cache.size, 1);
  // A hit: the same answer; the cached entry is bound to its namespace and action.
  assert.deepEqual(sealed.openCode(keys, code, env, cache), { code: src, sha256: sealed.sha256hex(src) });
  assert.equal(cache.size, 1);
  assert.throws(() => sealed.openCode(keys, code, { ...env, __OW_ACTION_NAME: '/guest/other' }, cache), sealed.SealedError);
  // Rotated out and past its grace: the cache does not open what openCode would refuse.
  keys.rotate();
  t += 11 * 60 * 1000;
  assert.throws(() => sealed.openCode(keys, code, env, cache), /unknown kid/);
});

test('prepareReply (v1): the result is sealed with the context made ahead, once', () => {
  const keys = newKeys();
  const s = sealParams(keys, { a: 1 }, { v: 1 });
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'id1' };
  const { ctx } = sealed.openEnvelope(keys, s.value, env, new sealed.ReplayCache());
  sealed.prepareReply(ctx);
  const enc = ctx.sender.enc;
  const out = sealed.sealOutcome(keys, ctx, { type: 'result', outcome: 'success', result: { ok: true }, logs: [] }, '');
  assert.equal(out.result[sealed.RESULT_FIELD].enc, enc.toString('base64'));
  assert.equal(ctx.sender, null);
  const { plain } = openResult(keys, s, 'id1', out.result);
  assert.deepEqual(plain.result, { ok: true });
});

test('a spare ephemeral key made ahead serves one v1 reply only', () => {
  const keys = newKeys();
  const env = (id) => ({ __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: id });
  const replay = new sealed.ReplayCache();
  const encs = new Set();
  for (const [i, spare] of [[1, true], [2, false], [3, true], [4, true]]) {
    if (spare) sealed.prepareSpare();
    const s = sealParams(keys, { i }, { v: 1 });
    const { ctx } = sealed.openEnvelope(keys, s.value, env(`s${i}`), replay);
    const out = sealed.sealOutcome(keys, ctx, { outcome: 'success', result: { i }, logs: [] }, '');
    encs.add(out.result[sealed.RESULT_FIELD].enc);
    assert.deepEqual(openResult(keys, s, `s${i}`, out.result).plain.result, { i });
  }
  assert.equal(encs.size, 4); // no two replies share an ephemeral key
});

test('v2: the result is AES-256-GCM under the reply key, with a fresh IV; only that key, activation and nonce open it', () => {
  const keys = newKeys();
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'g1' };
  const s = sealParams(keys, { a: 1 });
  assert.equal(s.value[sealed.PARAMS_FIELD].v, 2);
  const { ctx } = sealed.openEnvelope(keys, s.value, env, new sealed.ReplayCache());
  sealed.prepareReply(ctx);
  assert.equal(ctx.sender, null); // no public-key work for a v2 reply
  const msg = { outcome: 'success', result: { ok: 1 }, logs: [], timings: {} };
  const a = sealed.sealOutcome(keys, ctx, msg, '').result[sealed.RESULT_FIELD];
  const b = sealed.sealOutcome(keys, ctx, msg, '').result[sealed.RESULT_FIELD];
  assert.equal(a.v, 2);
  assert.equal(a.enc, undefined);
  assert.equal(Buffer.from(a.iv, 'base64').length, 12);
  assert.notEqual(a.iv, b.iv); // the same reply key twice (a redelivery): never the same IV
  const ivs = new Set(); // and across the IV pool's refills (341 IVs a refill)
  for (let i = 0; i < 1000; i++) ivs.add(sealed.sealSymmetric(s.reply.secret, 'x', Buffer.from('y')).iv.toString('hex'));
  assert.equal(ivs.size, 1000);
  assert.deepEqual(openResult(keys, s, 'g1', { [sealed.RESULT_FIELD]: a }).plain.result, { ok: 1 });
  const flip = (b64) => { const x = Buffer.from(b64, 'base64'); x[0] ^= 1; return x.toString('base64'); };
  assert.throws(() => openSealed(s, { ...a, ct: flip(a.ct) }, 'g1'));
  assert.throws(() => openSealed(s, { ...a, iv: flip(a.iv) }, 'g1'));
  assert.throws(() => openSealed(s, a, 'g2'));
  assert.throws(() => openSealed({ ...s, reply: { secret: crypto.randomBytes(32) } }, a, 'g1'));
  // A reply key that is not 32 bytes is refused before anything runs.
  const k = keys.current();
  const n = crypto.randomBytes(16).toString('hex');
  const iat = Date.now();
  const bad = sealed.hpkeSeal(k.kem.raw, sealed.INFO_PARAMS, sealed.paramsAAD(NS, ACTION, n, iat, 2),
    Buffer.from(JSON.stringify({ params: {}, reply: crypto.randomBytes(16).toString('base64') })));
  const value = { [sealed.PARAMS_FIELD]: { v: 2, suite: sealed.SUITE, kid: k.kid, nonce: n, iat,
    enc: bad.enc.toString('base64'), ct: bad.ct.toString('base64') } };
  assert.throws(() => sealed.openEnvelope(keys, value, env, new sealed.ReplayCache()), /reply is not a 32-byte AES-256 key/);
  // The version is bound: a v2 envelope relabelled v1 (its AES key taken for an X25519
  // key) does not open.
  const relabelled = sealParams(keys, {});
  relabelled.value[sealed.PARAMS_FIELD].v = 1;
  assert.throws(() => sealed.openEnvelope(keys, relabelled.value, env, new sealed.ReplayCache()), /does not open/);
  // An unknown version is refused.
  const v3 = sealParams(keys, {});
  v3.value[sealed.PARAMS_FIELD].v = 3;
  assert.throws(() => sealed.openEnvelope(keys, v3.value, env, new sealed.ReplayCache()), /envelope version 3 is not one of 1, 2/);
});

test('v1: an envelope with an X25519 reply key is still answered with an HPKE-sealed result', () => {
  const keys = newKeys();
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'o1' };
  const s = sealParams(keys, { a: 1 }, { v: 1 });
  const { ctx } = sealed.openEnvelope(keys, s.value, env, new sealed.ReplayCache());
  const sr = sealed.sealOutcome(keys, ctx, { outcome: 'success', result: { ok: 1 }, logs: [], timings: {} }, '').result[sealed.RESULT_FIELD];
  assert.equal(sr.v, 1);
  assert.equal(sr.iv, undefined);
  assert.deepEqual(openResult(keys, s, 'o1', { [sealed.RESULT_FIELD]: sr }).plain.result, { ok: 1 });
});

test('the result text the owner kept is sealed as it is, with the same meaning as the value', () => {
  const keys = newKeys();
  const s = sealParams(keys, {});
  const env = { __OW_NAMESPACE: NS, __OW_ACTION_NAME: ACTION, __OW_ACTIVATION_ID: 'k1' };
  const result = { a: [1, 'two', null], b: { c: 'é\n"' } };
  const logs = [{ stream: 'stdout', time: 't', line: 'hello' }];
  const msg = { outcome: 'success', result, logs, timings: {} };
  Object.defineProperty(msg, 'resultText', { value: JSON.stringify(result) });
  const { ctx } = sealed.openEnvelope(keys, s.value, env, new sealed.ReplayCache());
  const out = sealed.sealOutcome(keys, ctx, msg, '');
  const { plain } = openResult(keys, s, 'k1', out.result);
  assert.deepEqual(plain, { result, error: null, logs: ['t stdout: hello'] });
  // Too large: the developer error, whichever form the value came in.
  const big = { big: 'y'.repeat(1000 * 1000) };
  const s2 = sealParams(keys, {});
  const m2 = { outcome: 'success', result: big, logs: [], timings: {} };
  Object.defineProperty(m2, 'resultText', { value: JSON.stringify(big) });
  const o2 = sealed.openEnvelope(keys, s2.value, { ...env, __OW_ACTIVATION_ID: 'k2' }, new sealed.ReplayCache());
  const out2 = sealed.sealOutcome(keys, o2.ctx, m2, '');
  assert.equal(out2.outcome, 'developer');
  assert.match(openResult(keys, s2, 'k2', out2.result).plain.error, /exceeded the allowed length of a sealed result/);
});

test('strict base64: exactly what the padded standard alphabet allows, without a regular expression', () => {
  const STRICT = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const accepts = (s) => {
    try {
      return sealed.b64(s, 'x').equals(Buffer.from(s, 'base64'));
    } catch (e) {
      assert.match(e.message, /x is not base64/);
      return false;
    }
  };
  for (const s of ['', 'QUJD', 'QQ==', 'QUI=', 'QR==', 'QU-D', 'QU_D', 'QQ=A', 'Q===', '====', 'QUJ\nQUJD', 'QU D', 'QUJDQQ', 'QUJD\n', 'Q%JD']) {
    assert.equal(accepts(s), STRICT.test(s), JSON.stringify(s));
  }
  // Random short strings over alphabets that make the edge cases likely.
  let seed = 7;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  for (const alphabet of ['AB=', 'A/=_', 'Ab= ', 'A=\n-.', 'aZ09+/=']) {
    for (let i = 0; i < 5000; i++) {
      let s = '';
      for (let j = rnd(13); j > 0; j--) s += alphabet[rnd(alphabet.length)];
      assert.equal(accepts(s), STRICT.test(s), JSON.stringify(s));
    }
  }
  for (let i = 0; i < 200; i++) {
    const b = crypto.randomBytes(i);
    assert.ok(sealed.b64(b.toString('base64'), 'x').equals(b));
  }
  assert.throws(() => sealed.b64('QUJDQUJD', 'x', 2), /larger than 2 bytes/);
});
