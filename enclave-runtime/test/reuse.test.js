'use strict';
// --isolate-reuse tenant through a real owner (the addon's own rules are tested in
// node-isolate-patch/test/reuse.test.js): the tenant is the namespace of the gate
// token, a tenant's next activation runs in its slot's kept isolate (a Node
// environment beside the isolate's own: two or more native contexts, where a fresh
// isolate has one) and sees nothing of the previous one; another tenant, a sealed
// activation and the default mode never share; the worker backend is refused.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const { startOwner, ADDON } = require('./gate-client');
const { token } = require('../trusted/gateauth');
const sealed = require('../trusted/sealed');

const GATE_KEY = 'cd'.repeat(32);
const CODE = `const v8 = require('v8');
function main() {
  const seen = { contexts: v8.getHeapStatistics().number_of_native_contexts, leaked: typeof globalThis.leaked };
  globalThis.leaked = 1;
  return seen;
}`;

let seq = 0;
// activateAs runs CODE as namespace ns on a new connection, with a token for ns.
async function activateAs(owner, ns, value = {}) {
  const id = `reuse-${++seq}`;
  const c = await owner.connect();
  try {
    const w = await c.request({ type: 'hello', version: 1, sandbox: 'test', activation: id, namespace: ns,
      token: token(Buffer.from(GATE_KEY, 'hex'), id, ns) });
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    assert.equal((await c.request({ type: 'acquire' })).type, 'acquired');
    const env = { __OW_NAMESPACE: ns, __OW_ACTION_NAME: `/${ns}/probe` };
    const ini = await c.request({ type: 'init', name: 'probe', main: 'main', binary: false, code: CODE, env });
    assert.equal(ini.type, 'initialized', JSON.stringify(ini));
    const res = await c.request({ type: 'run', value, timeoutMs: 10000, memoryMB: 128, env: { __OW_ACTIVATION_ID: id } });
    await c.request({ type: 'release' });
    return res;
  } finally {
    c.close();
  }
}

const kept = (owner) => owner.stderr.join('').split('\n').filter((l) => l.includes('slot isolate kept'))
  .map((l) => JSON.parse(l)).map((l) => l.tenant);

test('a tenant keeps its slot\'s isolate; another tenant and sealed activations do not share it', { skip: !fs.existsSync(ADDON) && 'the isolate addon is not built (make build)' }, async (t) => {
  const owner = await startOwner({ slots: 1, isolate: 'addon', args: ['--prewarm', '1', '--gate-key', 'stdin', '--isolate-reuse', 'tenant'], stdin: `${GATE_KEY}\n` });
  t.after(() => owner.stop());
  assert.match(owner.stderr.join(''), /"isolateReuse":"tenant"/);
  const a1 = await activateAs(owner, 'alice');
  const a2 = await activateAs(owner, 'alice');
  for (const r of [a1, a2]) {
    assert.equal(r.outcome, 'success', JSON.stringify(r));
    assert.equal(r.result.leaked, 'undefined', 'nothing of the previous activation is visible');
    assert.ok(r.result.contexts >= 2, `a context of a kept isolate: ${r.result.contexts} native contexts`);
  }
  assert.deepEqual(kept(owner), ['alice']);
  const b = await activateAs(owner, 'bob');
  assert.equal(b.outcome, 'success');
  assert.equal(b.result.leaked, 'undefined');
  assert.deepEqual(kept(owner), ['alice', 'bob'], 'bob\'s activation took the slot into an isolate of his');

  // A sealed activation (its namespace is only the host's word) shares with no one.
  const ec = await owner.connect();
  const ev = (await ec.request({ type: 'evidence' })).evidence;
  ec.close();
  const nonce = crypto.randomBytes(16).toString('hex');
  const iat = Date.now();
  const v = sealed.ENVELOPE_VERSION;
  const { enc, ct } = sealed.hpkeSeal(Buffer.from(ev.keys.kem, 'base64'), sealed.INFO_PARAMS,
    sealed.paramsAAD('bob', '/bob/probe', nonce, iat, v),
    Buffer.from(JSON.stringify({ params: {}, reply: crypto.randomBytes(32).toString('base64') })));
  const envelope = { [sealed.PARAMS_FIELD]: { v, suite: sealed.SUITE, kid: ev.kid, nonce, iat,
    enc: enc.toString('base64'), ct: ct.toString('base64') } };
  const s = await activateAs(owner, 'bob', envelope);
  assert.equal(s.outcome, 'success', JSON.stringify(s).slice(0, 300));
  assert.ok(s.result[sealed.RESULT_FIELD], `a sealed result: ${JSON.stringify(s).slice(0, 200)}`);
  assert.deepEqual(kept(owner), ['alice', 'bob', ''], 'the sealed activation left the slot kept for nobody');
  const b2 = await activateAs(owner, 'bob');
  assert.equal(b2.result.leaked, 'undefined');
  assert.deepEqual(kept(owner), ['alice', 'bob', '', 'bob']);
});

test('the hello\'s sealed hint ranks a slot kept for nobody first; a non-boolean one is refused', { skip: !fs.existsSync(ADDON) && 'the isolate addon is not built (make build)' }, async (t) => {
  const owner = await startOwner({ slots: 2, isolate: 'addon', args: ['--prewarm', '2', '--gate-key', 'stdin', '--isolate-reuse', 'tenant'], stdin: `${GATE_KEY}\n` });
  t.after(() => owner.stop());
  const settle = () => new Promise((r) => setTimeout(r, 500)); // both slots prepared again
  await settle();
  assert.equal((await activateAs(owner, 'alice')).outcome, 'success');
  assert.deepEqual(kept(owner), ['alice']);
  await settle();
  // acquireAs takes a slot as alice, with or without the hint, and gives it back.
  const acquireAs = async (hello) => {
    const id = `reuse-${++seq}`;
    const c = await owner.connect();
    try {
      const w = await c.request({ type: 'hello', version: 1, sandbox: 'test', activation: id, namespace: 'alice',
        token: token(Buffer.from(GATE_KEY, 'hex'), id, 'alice'), ...hello });
      if (w.type !== 'welcome') return w;
      return await c.request({ type: 'acquire' });
    } finally {
      c.close();
    }
  };
  const plain = await acquireAs({});
  assert.equal(plain.tcs, 0, 'alice\'s next activation takes the slot kept for her');
  await settle();
  const hinted = await acquireAs({ sealed: true });
  assert.equal(hinted.tcs, 1, 'a sealed one takes the slot kept for nobody');
  const bad = await acquireAs({ sealed: 'yes' });
  assert.equal(bad.type, 'error', JSON.stringify(bad));
  assert.match(bad.message, /hello.sealed must be a boolean/);
});

test('without --isolate-reuse every activation has an isolate of its own', { skip: !fs.existsSync(ADDON) && 'the isolate addon is not built (make build)' }, async (t) => {
  const owner = await startOwner({ slots: 1, isolate: 'addon', args: ['--prewarm', '1', '--gate-key', 'stdin'], stdin: `${GATE_KEY}\n` });
  t.after(() => owner.stop());
  for (let i = 0; i < 3; i++) {
    const r = await activateAs(owner, 'alice');
    assert.equal(r.outcome, 'success', JSON.stringify(r));
    assert.equal(r.result.contexts, 1, 'a fresh isolate has one native context');
  }
  assert.deepEqual(kept(owner), []);
});

test('--isolate-reuse is checked: a bad value, or the worker backend, is refused', async () => {
  await assert.rejects(startOwner({ args: ['--isolate-reuse', 'always'] }), /--isolate-reuse must be none or tenant/);
  await assert.rejects(startOwner({ isolate: 'worker', args: ['--isolate-reuse', 'tenant'] }), /--isolate-reuse tenant needs the isolate addon/);
});
