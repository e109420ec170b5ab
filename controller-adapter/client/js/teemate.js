'use strict';
// TeeMate's client module for Node programs: the same sealed flows as the Go package
// controller-adapter/client and bin/teemate, for users of the OpenWhisk JS client library.
// It runs on the client's machine, never on the platform.
//
//   const teemate = require('.../controller-adapter/client/js/teemate.js');
//   const ev = await fetchEvidence(apihost, auth, '/guest/hello');   // GET /api/v1/teemate/evidence
//   teemate.verifyEvidence(ev, { allowSimulated: true });            // direct mode only
//   const { params, reply } = teemate.sealParams(ev, 'guest', '/guest/hello', { name: 'Bob' });
//   const act = await ow.actions.invoke({ name: 'hello', params, blocking: true });
//   const out = teemate.openResult(reply, act.activationId, act.response.result);
//   // out.result, out.error, out.logs; out.receipt is verified
//
// `reply` is the reply key (a secret key: keep it like a private one); its JSON is the Go
// package's ReplyKey JSON, so bin/teemate can open what this module sealed and the other way.
//
// Evidence: this module checks the binding (kid, report data) and refuses simulated evidence
// unless allowSimulated. It does not verify SGX DCAP quotes (a certificate chain and policy
// check the Go package does): sgx-dcap evidence is accepted only through opts.quoteVerified, a
// function the caller supplies (for instance one that runs `teemate attest --json`).
//
// The HPKE core (RFC 9180 base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) is the
// enclave runtime's own, enclave-runtime/trusted/sealed.js: one implementation of the formats in
// JavaScript, tested against Go's crypto/hpke.

const crypto = require('node:crypto');
const path = require('node:path');

const core = require(path.join(__dirname, '..', '..', '..', 'enclave-runtime', 'trusted', 'sealed.js'));

const EVIDENCE_LABEL = 'teemate-evidence-v1\n';
const RECEIPT_FIELDS = ['activationId', 'namespace', 'action', 'nonce', 'kid', 'identitySha256', 'codeSha256',
  'inputSha256', 'outputSha256'];

// TeeMateError carries the failure class in .code, as bin/teemate's exit codes do:
// 'simulated', 'evidence', 'integrity', 'receipt', 'malformed'.
class TeeMateError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'TeeMateError';
    this.code = code;
  }
}

function fail(code, message) {
  throw new TeeMateError(code, message);
}

function b64(s, what) {
  if (typeof s !== 'string' || !/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) {
    fail('malformed', `${what} is not base64`);
  }
  return Buffer.from(s, 'base64');
}

function sha256(...parts) {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

// parseEvidence takes the evidence as served (a string or Buffer) or an already parsed object.
// Receipts name the enclave by the evidence's identity hash, not by these bytes.
function parseEvidence(evidence) {
  if (typeof evidence === 'string' || Buffer.isBuffer(evidence)) {
    try {
      return { ev: JSON.parse(Buffer.from(evidence).toString('utf8')) };
    } catch (e) {
      return fail('malformed', `the evidence is not JSON: ${e.message}`);
    }
  }
  if (evidence === null || typeof evidence !== 'object') fail('malformed', 'no evidence');
  return { ev: evidence };
}

// verifyEvidence checks the evidence's shape and binding and the client's policy, and returns
// {type, kid, kem, sig, identitySha256} (kem and sig: raw 32-byte public keys; identitySha256: what
// receipts name the enclave by, the same for every owner of the image with this key and measurement).
function verifyEvidence(evidence, opts = {}) {
  const { ev } = parseEvidence(evidence);
  if (ev.v !== 1) fail('malformed', `evidence version ${JSON.stringify(ev.v)} is not 1`);
  if (!ev.keys || typeof ev.keys !== 'object') fail('malformed', 'the evidence has no keys');
  const kem = b64(ev.keys.kem, 'keys.kem');
  const sig = b64(ev.keys.sig, 'keys.sig');
  if (kem.length !== 32 || sig.length !== 32) fail('malformed', 'the evidence keys are not 32 bytes each');
  const kid = sha256(kem, sig).subarray(0, 16).toString('hex');
  if (ev.kid !== kid) fail('evidence', `the evidence's kid ${ev.kid} does not name its keys (${kid})`);
  const rd = Buffer.concat([sha256(Buffer.from(EVIDENCE_LABEL), kem, sig), Buffer.alloc(32)]).toString('hex');
  if (ev.reportData !== rd) fail('evidence', 'the evidence\'s reportData does not bind its keys');
  if (ev.type === 'simulated') {
    if (!ev.simulated || typeof ev.simulated !== 'object') fail('malformed', 'simulated evidence without its "simulated" object');
    if (!opts.allowSimulated) {
      fail('simulated', 'the evidence is simulated (direct mode: no hardware root of trust); pass allowSimulated to accept it');
    }
  } else if (ev.type === 'sgx-dcap') {
    if (typeof opts.quoteVerified !== 'function' || opts.quoteVerified(ev) !== true) {
      fail('evidence', 'sgx-dcap evidence needs a quote verifier (opts.quoteVerified); this module does not check DCAP chains');
    }
  } else {
    fail('malformed', `unknown evidence type ${JSON.stringify(ev.type)}`);
  }
  return { type: ev.type, kid, kem, sig, identitySha256: identityOf(ev) };
}

// identityOf is the evidence's identity hash (trusted/sealed.js identitySha256), with its
// refusal as this module's malformed-evidence error.
function identityOf(ev) {
  try {
    return core.identitySha256(ev);
  } catch (e) {
    return fail('malformed', `the evidence's identity: ${e.message}`);
  }
}

// keysOf is verifyEvidence's binding without the policy: sealing trusts evidence the caller
// verified.
function keysOf(evidence) {
  return verifyEvidence(evidence, { allowSimulated: true, quoteVerified: () => true });
}

// X25519 private keys travel raw (32 bytes, as Go's ecdh.PrivateKey.Bytes); node imports them as
// PKCS#8 with this fixed prefix (RFC 8410: version 0, algorithm id-X25519, the key octets).
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

function importPrivate(raw) {
  if (raw.length !== 32) fail('malformed', 'the reply key is not 32 bytes');
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([X25519_PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  return { privateKey, raw: core.rawPublic(crypto.createPublicKey(privateKey)) };
}

// sealParams seals params (an object) for one invocation of action (/ns/[pkg/]name) in
// namespace to the evidence's image key. It returns {params, reply}: params is what to send as the
// action's parameters ({"__teemate_sealed": ...}), reply the reply key (JSON-ready).
function sealParams(evidence, namespace, action, params = {}) {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) fail('malformed', 'params must be an object');
  if (!namespace || !action) fail('malformed', 'namespace and action are required');
  if (!action.startsWith('/')) action = `/${namespace}/${action}`;
  const k = keysOf(evidence);
  // v2: the reply key is a fresh AES-256 key, sent inside the envelope.
  const v = core.ENVELOPE_VERSION;
  const secret = crypto.randomBytes(32);
  const nonce = crypto.randomBytes(16).toString('hex');
  const iat = Date.now();
  const pt = Buffer.from(JSON.stringify({ params, reply: secret.toString('base64') }));
  const { enc, ct } = core.hpkeSeal(k.kem, core.INFO_PARAMS, core.paramsAAD(namespace, action, nonce, iat, v), pt);
  const envelope = { [core.PARAMS_FIELD]: { v, suite: core.SUITE, kid: k.kid, nonce, iat,
    enc: enc.toString('base64'), ct: ct.toString('base64') } };
  const reply = { v, key: secret.toString('base64'), namespace, action, kid: k.kid,
    nonce, iat, inputSha256: sha256(ct).toString('hex'), sigKey: k.sig.toString('base64'),
    identitySha256: k.identitySha256 };
  return { params: envelope, reply };
}

// sealCode seals an action's code to the image key, bound to namespace and action; the string is
// the action's code (create it with the annotation teemate-sealed: true).
function sealCode(evidence, namespace, action, code) {
  if (!action.startsWith('/')) action = `/${namespace}/${action}`;
  const k = keysOf(evidence);
  const { enc, ct } = core.hpkeSeal(k.kem, core.INFO_CODE, core.codeAAD(namespace, action), Buffer.from(code));
  return JSON.stringify({ [core.CODE_FIELD]: { v: core.VERSION, kid: k.kid, enc: enc.toString('base64'),
    ct: ct.toString('base64') } });
}

function findSealedResult(recordResult) {
  const r = recordResult;
  if (r && typeof r === 'object') {
    if (r[core.RESULT_FIELD]) return r[core.RESULT_FIELD];
    if (r.error && typeof r.error === 'object' && r.error[core.RESULT_FIELD]) return r.error[core.RESULT_FIELD];
    if (typeof r.error === 'string' && r.error.startsWith(core.INTEGRITY)) {
      fail('integrity', `the enclave refused the envelope: ${r.error}`);
    }
  }
  fail('integrity', `the result is not sealed: ${JSON.stringify(r).slice(0, 200)}`);
}

// verifyReceipt checks a receipt: the Ed25519 signature by the image key the envelope was sealed
// to, and every binding (key, evidence, namespace, action, nonce, input and output hashes).
function verifyReceipt(receipt, reply, sealedResultCT, activationId) {
  if (!receipt || typeof receipt !== 'object' || receipt.v !== 1) fail('receipt', 'no receipt of version 1');
  const body = { v: receipt.v };
  for (const f of RECEIPT_FIELDS) {
    if (typeof receipt[f] !== 'string') fail('receipt', `the receipt has no ${f}`);
    body[f] = receipt[f];
  }
  const sigKey = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64(reply.sigKey, 'sigKey').toString('base64url') },
    format: 'jwk' });
  const msg = Buffer.from('teemate-receipt-v1\n' + core.canonicalJSON(body));
  if (!crypto.verify(null, msg, sigKey, b64(receipt.sig, 'receipt.sig'))) fail('receipt', 'the receipt\'s signature does not verify');
  const want = { activationId, namespace: reply.namespace, action: reply.action, nonce: reply.nonce, kid: reply.kid,
    identitySha256: reply.identitySha256, inputSha256: reply.inputSha256,
    outputSha256: sha256(sealedResultCT).toString('hex') };
  for (const [f, v] of Object.entries(want)) {
    if (v !== undefined && receipt[f] !== v) fail('receipt', `the receipt's ${f} is ${JSON.stringify(receipt[f])}, want ${JSON.stringify(v)}`);
  }
}

// openResult opens an activation's sealed result (the record's response.result) with the reply
// key of its invocation and verifies the receipt; it returns {result, error, logs, receipt}. A
// reply key of version 1 (an X25519 private key, from an earlier client) opens v1 results.
function openResult(reply, activationId, recordResult) {
  if (!reply || !core.ENVELOPE_VERSIONS.includes(reply.v) || typeof reply.key !== 'string') fail('malformed', 'not a reply key');
  if (typeof activationId !== 'string' || !activationId) fail('malformed', 'an activation id is required');
  const sr = findSealedResult(recordResult);
  if (sr.v !== reply.v) fail('malformed', `sealed result version ${JSON.stringify(sr.v)} is not ${reply.v}, the envelope's`);
  const ct = b64(sr.ct, 'ct');
  verifyReceipt(sr.receipt, reply, ct, activationId);
  const aad = core.resultAAD(activationId, reply.nonce, sr.v);
  let pt;
  try {
    pt = sr.v === 1
      ? core.hpkeOpen(importPrivate(b64(reply.key, 'reply.key')), core.INFO_RESULT, aad, b64(sr.enc, 'enc'), ct)
      : core.openSymmetric(b64(reply.key, 'reply.key'), b64(sr.iv, 'iv'), aad, ct);
  } catch (e) {
    fail('integrity', `the sealed result does not open: ${e.message}`);
  }
  const body = JSON.parse(pt.toString('utf8'));
  return { result: body.result ?? null, error: body.error ?? null, logs: body.logs || [], receipt: sr.receipt };
}

module.exports = { TeeMateError, verifyEvidence, sealParams, sealCode, openResult, verifyReceipt };
