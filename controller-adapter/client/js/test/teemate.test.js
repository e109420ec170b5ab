'use strict';
// The JS client module against the enclave side of the same formats
// (enclave-runtime/trusted/sealed.js): seal params here, open them there, seal the
// outcome there, open it and verify the receipt here; and every refusal.
// Interop with the Go package is controller-adapter/client's js_test.go.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');

const teemate = require('../teemate.js');
const enclave = require(path.join(__dirname, '..', '..', '..', '..', 'enclave-runtime', 'trusted', 'sealed.js'));

// raw is a public key's raw bytes (not through a JWK export, which can deadlock Node 20:
// see enclave-runtime/trusted/hpke.js rawPublic).
const raw = enclave.rawPublic;

// imageKeys is a stand-in for keys.js's ImageKeys with simulated evidence: only the shape
// sealed.js reads (current, byKid, identitySha256).
function imageKeys() {
  const kem = crypto.generateKeyPairSync('x25519');
  const sig = crypto.generateKeyPairSync('ed25519');
  const kemRaw = raw(kem.publicKey);
  const sigRaw = raw(sig.publicKey);
  const kid = crypto.createHash('sha256').update(kemRaw).update(sigRaw).digest().subarray(0, 16).toString('hex');
  const rd = Buffer.concat([crypto.createHash('sha256').update('teemate-evidence-v1\n').update(kemRaw).update(sigRaw).digest(),
    Buffer.alloc(32)]).toString('hex');
  const evidence = { v: 1, type: 'simulated', image: 'nodejs:20', kid,
    keys: { kem: kemRaw.toString('base64'), sig: sigRaw.toString('base64') }, reportData: rd,
    simulated: { note: 'simulated: no hardware root of trust', measurement: '00'.repeat(32) } };
  const text = JSON.stringify(evidence);
  const key = { kid, kem: { privateKey: kem.privateKey, publicKey: kem.publicKey, raw: kemRaw },
    sig: { privateKey: sig.privateKey, publicKey: sig.publicKey, raw: sigRaw } };
  return { text, evidence,
    current: () => key,
    byKid: (k) => (k === kid ? key : null),
    identitySha256: () => enclave.identitySha256(evidence) };
}

const env = { __OW_NAMESPACE: 'guest', __OW_ACTION_NAME: '/guest/hello', __OW_ACTIVATION_ID: 'a1b2c3' };

function roundTrip(keys, params, outcome = 'success') {
  const sealedParams = teemate.sealParams(keys.text, 'guest', '/guest/hello', params);
  const opened = enclave.openEnvelope(keys, sealedParams.params, env, new enclave.ReplayCache());
  const result = outcome === 'success' ? { echo: opened.params } : { error: 'bad input' };
  const msg = enclave.sealOutcome(keys, opened.ctx, { outcome, result,
    logs: [{ time: '2026-01-01T00:00:00Z', stream: 'stdout', line: `got ${opened.params.b}` }] }, 'c0de');
  return { ...sealedParams, opened, msg };
}

test('verifyEvidence: binding, simulated refused unless allowed', () => {
  const keys = imageKeys();
  assert.throws(() => teemate.verifyEvidence(keys.text), { code: 'simulated', message: /simulated/ });
  const v = teemate.verifyEvidence(keys.text, { allowSimulated: true });
  assert.equal(v.kid, keys.evidence.kid);
  assert.equal(v.identitySha256, keys.identitySha256());
  const bad = { ...keys.evidence, kid: '0'.repeat(32) };
  assert.throws(() => teemate.verifyEvidence(JSON.stringify(bad), { allowSimulated: true }), { code: 'evidence' });
  const sgx = { ...keys.evidence, type: 'sgx-dcap', quote: 'AAAA' };
  delete sgx.simulated;
  assert.throws(() => teemate.verifyEvidence(JSON.stringify(sgx)), { code: 'evidence', message: /quote verifier/ });
});

test('sealParams -> enclave -> openResult: plaintext, logs, verified receipt', () => {
  const keys = imageKeys();
  const { params, reply, opened, msg } = roundTrip(keys, { b: 'secret-b' });
  assert.deepEqual(Object.keys(params), ['__teemate_sealed']);
  assert.ok(!JSON.stringify(params).includes('secret-b'));
  assert.deepEqual(opened.params, { b: 'secret-b' });
  assert.ok(!JSON.stringify(msg.result).includes('secret-b'));
  const out = teemate.openResult(reply, env.__OW_ACTIVATION_ID, msg.result);
  assert.deepEqual(out.result, { echo: { b: 'secret-b' } });
  assert.equal(out.error, null);
  assert.deepEqual(out.logs, ['2026-01-01T00:00:00Z stdout: got secret-b']);
  assert.equal(out.receipt.activationId, env.__OW_ACTIVATION_ID);
  assert.equal(out.receipt.codeSha256, 'c0de');
});

test('an application error comes back sealed in {error: ...}', () => {
  const keys = imageKeys();
  const { reply, msg } = roundTrip(keys, { b: 1 }, 'application');
  assert.ok(msg.result.error.__teemate_sealed_result);
  const out = teemate.openResult(reply, env.__OW_ACTIVATION_ID, msg.result);
  assert.equal(out.result, null);
  assert.equal(out.error, 'bad input');
});

test('refusals: tampered result, wrong activation, enclave refusal, other reply key', () => {
  const keys = imageKeys();
  const { reply, msg } = roundTrip(keys, { b: 1 });
  const tampered = structuredClone(msg.result);
  const ct = Buffer.from(tampered.__teemate_sealed_result.ct, 'base64');
  ct[0] ^= 1;
  tampered.__teemate_sealed_result.ct = ct.toString('base64');
  assert.throws(() => teemate.openResult(reply, env.__OW_ACTIVATION_ID, tampered), { code: 'receipt', message: /outputSha256/ });
  assert.throws(() => teemate.openResult(reply, 'other', msg.result), { code: 'receipt', message: /activationId/ });
  assert.throws(() => teemate.openResult(reply, 'x', { error: `${enclave.INTEGRITY}: replayed envelope` }), { code: 'integrity' });
  assert.throws(() => teemate.openResult(reply, 'x', { plain: true }), { code: 'integrity', message: /not sealed/ });
  const other = roundTrip(keys, { b: 2 });
  assert.throws(() => teemate.openResult(other.reply, env.__OW_ACTIVATION_ID, msg.result), { code: 'receipt' });
});

test('a tampered envelope or another action is refused by the enclave', () => {
  const keys = imageKeys();
  const { params } = teemate.sealParams(keys.text, 'guest', '/guest/hello', { b: 1 });
  const t = structuredClone(params);
  const ct = Buffer.from(t.__teemate_sealed.ct, 'base64');
  ct[0] ^= 1;
  t.__teemate_sealed.ct = ct.toString('base64');
  assert.throws(() => enclave.openEnvelope(keys, t, env, new enclave.ReplayCache()), { message: /^TeeMate sealed: integrity/ });
  const elsewhere = { ...env, __OW_ACTION_NAME: '/guest/other' };
  assert.throws(() => enclave.openEnvelope(keys, params, elsewhere, new enclave.ReplayCache()), { message: /^TeeMate sealed: integrity/ });
});

test('sealCode opens in the enclave, bound to the action', () => {
  const keys = imageKeys();
  const code = teemate.sealCode(keys.text, 'guest', 'hello', 'function main() { return {} }');
  assert.ok(enclave.isSealedCode(code));
  assert.equal(enclave.openCode(keys, code, env), 'function main() { return {} }');
  assert.throws(() => enclave.openCode(keys, code, { ...env, __OW_ACTION_NAME: '/guest/x' }), { message: /integrity/ });
});
