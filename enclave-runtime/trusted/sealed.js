'use strict';
// Sealed invocation (trusted side): the enclave's half of the formats in
// invoker/sealed/README.md. The client (invoker/sealed in Go, the CLI, the JS
// client module) seals an activation's parameters, and optionally the action's
// code, to the image key (keys.js); the host relays them as ciphertext through
// REST, Kafka, the invoker and the gate. Here, in the owner's trusted JS and never
// inside the tenant's isolate, the envelope is opened, its binding and freshness
// checked, the action runs on the plaintext in its isolate as usual, and its result,
// error and log lines are sealed to the client's reply key, with a receipt signed
// by the image key. The image's private keys never leave this file's callers: the
// isolate only ever sees the opened parameters and the opened code.
//
// Cryptography: HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256 and AES-256-GCM (hpke.js, shared with keys.js's key transfer);
// Ed25519 for receipts; the primitives from primitives.js (natively on Node's
// OpenSSL when the addon is built). An envelope of version 2 (what the clients send) carries
// a fresh AES-256 reply key inside it, and the result is sealed with AES-256-GCM
// under that key: no public-key operation on the way back (the reply key reaches
// the enclave only inside the HPKE ciphertext, so it is as secret as the
// parameters). Version 1 carried an X25519 reply key and had the result sealed
// with HPKE; it is still answered in kind. Go's crypto/hpke is the other end: the interop tests in
// invoker/sealed run both.
//
// Every refusal is a SealedError whose message starts with INTEGRITY ("TeeMate
// sealed: integrity"); the owner answers it as the activation's developer error
// and keeps serving.

const { randomFillSync } = require('crypto');
const hpke = require('./hpke');
const P = require('./primitives');

// VERSION is the version of sealed code, receipts and the v1 envelope and result.
const VERSION = 1;
// ENVELOPE_VERSION is the envelope (and sealed result) version clients send now;
// ENVELOPE_VERSIONS the ones the enclave opens.
const ENVELOPE_VERSION = 2;
const ENVELOPE_VERSIONS = [1, 2];
// A v2 result is AES-256-GCM with a 12-byte random IV and a 16-byte tag.
const RESULT_IV_BYTES = 12;
const RESULT_TAG_BYTES = 16;
const SUITE = 'X25519-HKDF-SHA256/HKDF-SHA256/AES-256-GCM';
const PARAMS_FIELD = '__teemate_sealed';
const RESULT_FIELD = '__teemate_sealed_result';
const CODE_FIELD = '__teemate_sealed_code';
const INTEGRITY = 'TeeMate sealed: integrity';

const INFO_PARAMS = 'teemate-sealed-v1';
const INFO_RESULT = 'teemate-result-v1';
const INFO_CODE = 'teemate-code-v1';
const RECEIPT_DOMAIN = 'teemate-receipt-v1\n';

// An envelope's ciphertext is at most 1 MiB (OpenWhisk's bound on parameters).
const MAX_SEALED_BYTES = 1024 * 1024;
// Sealed code: the init frame's own bound (64 MiB) is the real one; this only
// keeps a base64 string from being decoded before it is known to be sane.
const MAX_SEALED_CODE_BYTES = 48 * 1024 * 1024;
// An envelope is accepted within this distance of the enclave's clock, and its
// nonce is remembered for as long.
const IAT_WINDOW_MS = 10 * 60 * 1000;
// Nonces the replay cache holds at most (see ReplayCache).
const REPLAY_CAPACITY = 65536;

class SealedError extends Error {
  constructor(reason) {
    super(`${INTEGRITY}: ${reason}`);
    this.name = 'SealedError';
  }
}

// ---- HPKE (hpke.js), its failures as integrity refusals ------------------------------------
// hpkeSeal encrypts one message to the raw X25519 public key (opts: hpke.seal's).
function hpkeSeal(pkRaw, info, aad, plaintext, opts) {
  try {
    return hpke.seal(pkRaw, info, aad, plaintext, opts);
  } catch (e) {
    if (e instanceof hpke.HpkeError) throw new SealedError(e.message);
    throw e;
  }
}

// hpkeOpen decrypts one message with the recipient's pair ({privateKey: KeyObject,
// raw: its 32-byte public key}); a failure is a SealedError.
function hpkeOpen(pair, info, aad, enc, ct) {
  try {
    return hpke.open(pair, info, aad, enc, ct);
  } catch (e) {
    if (!(e instanceof hpke.HpkeError)) throw e;
    if (e.kind === 'open') throw new SealedError('the ciphertext does not open (tampered, or sealed for another key, action or time)');
    if (e.kind === 'key' && /not an X25519/.test(e.message)) throw new SealedError('the encapsulated key is not an X25519 key');
    if (e.kind === 'key') throw new SealedError('the encapsulated key is a small-order point');
    throw new SealedError(e.message);
  }
}

// ---- the pieces of the formats ---------------------------------------------------------
const HEX32 = /^[0-9a-f]{32}$/;

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// b64 decodes standard base64 with padding strictly: Buffer.from would skip what
// it does not understand, and a field must mean one thing only. What it accepts is
// exactly /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, checked
// without the regular expression (which costs tens of ms on a 1 MiB envelope): the
// decoder stops at an inner '=' and skips characters outside its alphabets, so any
// of those makes the output shorter than the text's length says; '-' and '_' (the
// URL alphabet, which it also takes) are looked for separately.
function b64(s, what, maxBytes) {
  if (typeof s !== 'string') throw new SealedError(`${what} is not a string`);
  if (maxBytes !== undefined && s.length > Math.ceil(maxBytes / 3) * 4) {
    throw new SealedError(`${what} is larger than ${maxBytes} bytes`);
  }
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  if (s.length % 4 !== 0 || s.includes('-') || s.includes('_')) throw new SealedError(`${what} is not base64`);
  const b = Buffer.from(s, 'base64');
  if (b.length !== (s.length / 4) * 3 - pad) throw new SealedError(`${what} is not base64`);
  return b;
}

function sha256hex(data) {
  return P.sha256(data).toString('hex');
}

// The AADs name the envelope's version, so that an envelope's v cannot be changed
// in transit (its reply key taken for another kind of key) without it failing to open.
function paramsAAD(namespace, action, nonce, iat, v = 1) {
  return `teemate-params-v${v}\n${namespace}\n${action}\n${nonce}\n${iat}`;
}

function resultAAD(activationId, nonce, v = 1) {
  return `teemate-result-v${v}\n${activationId}\n${nonce}`;
}

function codeAAD(namespace, action) {
  return `teemate-code-v1\n${namespace}\n${action}`;
}

// binding reads what an envelope or sealed code is bound to from the activation's
// effective environment (the init env overlaid by the run env), as the action sees it.
function binding(env, needActivation) {
  const ns = env && env.__OW_NAMESPACE;
  const action = env && env.__OW_ACTION_NAME;
  const activationId = env && env.__OW_ACTIVATION_ID;
  if (typeof ns !== 'string' || !ns || typeof action !== 'string' || !action) {
    throw new SealedError('the activation has no namespace or action name to bind the envelope to');
  }
  // The AAD joins the names with newlines: a name holding one could pass for another split.
  if (ns.includes('\n') || action.includes('\n')) throw new SealedError('a namespace or action name holds a newline');
  if (needActivation && (typeof activationId !== 'string' || !activationId)) {
    throw new SealedError('the activation has no activation id to bind the sealed result to');
  }
  return { namespace: ns, action, activationId };
}

function keyFor(keys, kid) {
  if (!keys || (typeof keys.ready === 'function' && !keys.ready())) {
    throw new SealedError('this enclave has no image key yet (awaiting a key transfer)');
  }
  if (typeof kid !== 'string' || !HEX32.test(kid)) throw new SealedError('kid is not 32 hex digits');
  const k = keys.byKid(kid);
  if (!k) throw new SealedError(`unknown kid ${kid} (not this image's key, or rotated out)`);
  return k;
}

// identitySha256 names, in a receipt, the enclave identity behind evidence: the hex
// SHA-256 of the canonical JSON of {v, type, image, kid, kem, sig, reportData,
// measurement}, where kem and sig are the keys' base64 and measurement is the
// simulated measurement or, for sgx-dcap, the quote's MRENCLAVE then MRSIGNER (hex).
// Unlike the hash of the evidence as served, it is the same for every owner of the
// image holding the same key in the same measured enclave (each sgx owner's quote
// differs), so a receipt from any of them verifies against the evidence another
// published. Go's attest.Evidence.IdentitySha256 is the same; a shared vector tests it.
const QUOTE_MRENCLAVE = 48 + 64;
const QUOTE_MRSIGNER = 48 + 128;
function identitySha256(ev) {
  if (!isPlainObject(ev) || !isPlainObject(ev.keys)) throw new SealedError('the evidence has no keys');
  let measurement;
  if (ev.type === 'simulated' && isPlainObject(ev.simulated)) {
    measurement = ev.simulated.measurement;
  } else if (ev.type === 'sgx-dcap') {
    const q = b64(ev.quote, 'quote');
    if (q.length < QUOTE_MRSIGNER + 32 || q.readUInt16LE(0) !== 3) throw new SealedError('the quote is not a DCAP v3 quote');
    measurement = q.subarray(QUOTE_MRENCLAVE, QUOTE_MRENCLAVE + 32).toString('hex') +
      q.subarray(QUOTE_MRSIGNER, QUOTE_MRSIGNER + 32).toString('hex');
  } else {
    throw new SealedError(`evidence of type ${JSON.stringify(ev.type)} has no measurement`);
  }
  const fields = { v: ev.v, type: ev.type, image: ev.image, kid: ev.kid, kem: ev.keys.kem, sig: ev.keys.sig,
    reportData: ev.reportData, measurement };
  for (const [k, v] of Object.entries(fields)) {
    if (k === 'v' ? !Number.isSafeInteger(v) : typeof v !== 'string') throw new SealedError(`the evidence's ${k} is malformed`);
  }
  return sha256hex(canonicalJSON(fields));
}

// identitySha256For is the identity hash of the key kid: keys.js computes it once per
// key, for the current key and the rotated-out ones in their grace alike, so a run
// that straddles a rotation still names the identity the client sealed to.
function identitySha256For(keys, kid) {
  const h = typeof keys.identitySha256 === 'function' ? keys.identitySha256(kid) : '';
  if (!h) throw new SealedError(`no identity for kid ${kid}`);
  return h;
}

// ---- the replay cache ---------------------------------------------------------------------
// ReplayCache remembers the nonces of the envelopes this owner opened within the iat
// window. It is bounded: when full, the oldest entry is evicted and the floor
// rises to its iat, so every envelope no newer than an evicted one is refused from
// then on. A replay is thus always refused; under a flood, old but fresh envelopes
// may be refused too, which fails safe. (Owners do not share the cache: a replay
// sent to another owner of the image within the window is not detected there.)
class ReplayCache {
  constructor({ windowMs = IAT_WINDOW_MS, capacity = REPLAY_CAPACITY, now = Date.now } = {}) {
    this.windowMs = windowMs;
    this.capacity = capacity;
    this.now = now;
    this.seen = new Map(); // nonce -> iat, in insertion order
    this.floor = -Infinity;
  }

  // check refuses a stale, future or replayed envelope; it records nothing.
  check(nonce, iat) {
    const t = this.now();
    if (iat < t - this.windowMs) throw new SealedError(`the envelope is stale (iat ${iat} is more than ${this.windowMs / 60000} minutes old)`);
    if (iat > t + this.windowMs) throw new SealedError(`the envelope is from the future (iat ${iat} is more than ${this.windowMs / 60000} minutes ahead)`);
    if (this.seen.has(nonce)) throw new SealedError(`replayed envelope (nonce ${nonce} was seen)`);
    if (iat <= this.floor) throw new SealedError('the envelope is older than the replay cache can vouch for');
  }

  // record remembers an opened envelope's nonce.
  record(nonce, iat) {
    const t = this.now();
    for (const [n, i] of this.seen) {
      if (i >= t - this.windowMs && this.seen.size < this.capacity) break;
      this.seen.delete(n);
      if (i >= t - this.windowMs) this.floor = Math.max(this.floor, i);
    }
    this.seen.set(nonce, iat);
  }

  get size() { return this.seen.size; }
}

// ---- envelopes ------------------------------------------------------------------------------
// isEnvelope says whether a run's value is a sealed activation's parameters.
function isEnvelope(value) {
  return isPlainObject(value) && Object.prototype.hasOwnProperty.call(value, PARAMS_FIELD);
}

// openEnvelope opens a run's value and returns {params, ctx}: the parameters for the
// action and what sealing the result needs. Keys other than the envelope's (default
// parameters the platform merged in) are dropped: the action sees only what the
// client sealed. env is the activation's effective environment; replay a ReplayCache.
function openEnvelope(keys, value, env, replay) {
  const e = value[PARAMS_FIELD];
  if (!isPlainObject(e)) throw new SealedError('the envelope is not an object');
  if (!ENVELOPE_VERSIONS.includes(e.v)) throw new SealedError(`envelope version ${JSON.stringify(e.v)} is not one of ${ENVELOPE_VERSIONS.join(', ')}`);
  if (e.suite !== SUITE) throw new SealedError(`suite ${JSON.stringify(e.suite)} is not ${SUITE}`);
  if (typeof e.nonce !== 'string' || !HEX32.test(e.nonce)) throw new SealedError('nonce is not 32 hex digits');
  if (!Number.isSafeInteger(e.iat)) throw new SealedError('iat is not an integer');
  const b = binding(env, true);
  const key = keyFor(keys, e.kid);
  const enc = b64(e.enc, 'enc', 32);
  const ct = b64(e.ct, 'ct', MAX_SEALED_BYTES);
  if (ct.length > MAX_SEALED_BYTES) throw new SealedError(`ct is larger than ${MAX_SEALED_BYTES} bytes`);
  replay.check(e.nonce, e.iat);
  const pt = hpkeOpen(key.kem, INFO_PARAMS, paramsAAD(b.namespace, b.action, e.nonce, e.iat, e.v), enc, ct);
  let body;
  try {
    body = JSON.parse(pt.toString('utf8'));
  } catch {
    throw new SealedError('the opened envelope is not JSON');
  }
  if (!isPlainObject(body) || !isPlainObject(body.params)) throw new SealedError('the opened envelope has no params object');
  const reply = b64(body.reply, 'reply', 32);
  if (reply.length !== 32) throw new SealedError(e.v === 1 ? 'reply is not a 32-byte X25519 key' : 'reply is not a 32-byte AES-256 key');
  replay.record(e.nonce, e.iat);
  // The input's hash (and for v1 the agreement with the reply key) waits for
  // prepareReply, which runs while the action does (a small-order reply key is
  // refused when the result is sealed, and nothing reaches the host then).
  return { params: body.params,
    ctx: { v: e.v, kid: e.kid, nonce: e.nonce, reply, sender: null, ct, inputSha256: '', identitySha256: identitySha256For(keys, e.kid), ...b } };
}

// inputHash fills ctx.inputSha256 (the receipt's hash of the envelope's ct) once.
function inputHash(ctx) {
  if (!ctx.inputSha256) {
    ctx.inputSha256 = sha256hex(ctx.ct);
    ctx.ct = null;
  }
}

// ---- sealed code ------------------------------------------------------------------------------
function isSealedCode(code) {
  if (typeof code !== 'string' || !code.startsWith('{')) return false;
  // The marker is the code's only key; anything else that parses is ordinary code.
  return /^\{\s*"__teemate_sealed_code"\s*:/.test(code);
}

// CodeCache remembers opened sealed code for the owner's lifetime (trusted memory,
// like the image key), so that an action's inits after its first (one per
// activation: each sandbox is used once) skip the HPKE open. An entry is found by
// the sealed text's hash with the namespace and action it was opened for, and is
// used only while its kid still opens (byKid: current, or rotated out but in its
// grace), so a hit never accepts what openCode would refuse.
class CodeCache {
  constructor({ maxEntries = 256, maxBytes = 32 * 1024 * 1024 } = {}) {
    this.maxEntries = maxEntries;
    this.maxBytes = maxBytes;
    this.bytes = 0;
    this.entries = new Map(); // key -> {kid, code, sha256}, least recently used first
  }

  get(key) {
    const e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
    }
    return e;
  }

  set(key, e) {
    const size = Buffer.byteLength(e.code);
    if (size > this.maxBytes) return;
    this.entries.set(key, e);
    this.bytes += size;
    for (const [k, old] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= Buffer.byteLength(old.code);
    }
  }

  get size() { return this.entries.size; }
}

// openCode returns the plaintext code of sealed code, bound to the init env's
// namespace and action. With a CodeCache, returns {code, sha256} (the plaintext's
// hash, for receipts) and remembers it; without, the plaintext string.
function openCode(keys, code, env, cache) {
  if (cache) {
    const b = binding(env, false);
    const ck = `${sha256hex(code)}\n${b.namespace}\n${b.action}`;
    const hit = cache.get(ck);
    if (hit && keys && keys.byKid(hit.kid)) return { code: hit.code, sha256: hit.sha256 };
    const plain = openCode(keys, code, env);
    const entry = { kid: JSON.parse(code)[CODE_FIELD].kid, code: plain, sha256: sha256hex(plain) };
    cache.set(ck, entry);
    return { code: entry.code, sha256: entry.sha256 };
  }
  if (code.length > Math.ceil(MAX_SEALED_CODE_BYTES / 3) * 4 + 1024) throw new SealedError('the sealed code is too large');
  let o;
  try {
    o = JSON.parse(code);
  } catch {
    throw new SealedError('the sealed code is not JSON');
  }
  const s = isPlainObject(o) ? o[CODE_FIELD] : null;
  if (!isPlainObject(s)) throw new SealedError('the sealed code is not an object');
  if (s.v !== VERSION) throw new SealedError(`sealed code version ${JSON.stringify(s.v)} is not ${VERSION}`);
  const b = binding(env, false);
  const key = keyFor(keys, s.kid);
  const pt = hpkeOpen(key.kem, INFO_CODE, codeAAD(b.namespace, b.action), b64(s.enc, 'enc', 32),
    b64(s.ct, 'ct', MAX_SEALED_CODE_BYTES));
  return pt.toString('utf8');
}

// ---- results and receipts ------------------------------------------------------------------------
// canonicalJSON is the text a receipt's signature covers: keys sorted, no spaces.
// Receipts are flat (strings and one integer), so one level is all it needs.
function canonicalJSON(o) {
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${JSON.stringify(o[k])}`).join(',')}}`;
}

function signReceipt(sigPair, fields) {
  const body = { v: VERSION, ...fields };
  const sig = P.ed25519Sign(sigPair.privateKey, RECEIPT_DOMAIN + canonicalJSON(body));
  return { ...body, sig: sig.toString('base64') };
}

// logLine renders one captured line as OpenWhisk's activation logs show it.
function logLine(e) {
  return `${e.time} ${e.stream}: ${e.line}`;
}

// prepareSpare makes, off any request's path, the ephemeral key pair the next
// prepareReply takes (hpke.prepareEphemeral): the owner calls it after a sealed
// reply went out.
function prepareSpare() {
  hpke.prepareEphemeral();
}

// prepareReply runs, ahead of the result, the half of sealing it that does not depend
// on the result (the input's hash; for v1 also X25519 of the spare ephemeral key with
// the reply key, and the key schedule): the owner calls it while the action runs in its
// isolate, off the reply's path.
function prepareReply(ctx) {
  inputHash(ctx);
  if (ctx.v !== 1) return;
  try {
    ctx.sender = hpke.setupSender(ctx.reply, INFO_RESULT);
  } catch (e) {
    if (e instanceof hpke.HpkeError) throw new SealedError(e.message);
    throw e;
  }
}

// freshIV hands out 12 bytes of a pooled CSPRNG buffer, each once: a randomBytes(12)
// call costs about 11 µs here, a 4 KiB refill about the same once per 341 IVs. A
// refill makes a new buffer, so an IV handed out is never overwritten.
let ivPool = Buffer.alloc(0);
let ivOffset = 0;
function freshIV() {
  if (ivOffset + RESULT_IV_BYTES > ivPool.length) {
    ivPool = randomFillSync(Buffer.allocUnsafe(4096));
    ivOffset = 0;
  }
  const iv = ivPool.subarray(ivOffset, ivOffset + RESULT_IV_BYTES);
  ivOffset += RESULT_IV_BYTES;
  return iv;
}

// sealSymmetric seals plaintext with AES-256-GCM under a v2 envelope's reply key: a
// fresh random IV (one reply key may see a second result if the envelope runs on
// another owner too), the tag appended to the ciphertext as HPKE's AEAD does.
function sealSymmetric(key, aad, plaintext) {
  const iv = freshIV();
  return { iv, ct: P.gcmSeal(key, iv, aad, plaintext) };
}

// openSymmetric is the client's half of sealSymmetric (the JS client module and the
// tests use it): a wrong key, IV, AAD or ciphertext is a SealedError.
function openSymmetric(key, iv, aad, ct) {
  if (key.length !== 32 || iv.length !== RESULT_IV_BYTES || ct.length < RESULT_TAG_BYTES) {
    throw new SealedError('the sealed result\'s key, IV or ciphertext has the wrong size');
  }
  try {
    return P.gcmOpen(key, iv, aad, ct);
  } catch (e) {
    if (e instanceof P.PrimitiveError) throw new SealedError('the sealed result does not open (tampered, or for another key or activation)');
    throw e;
  }
}

// sealResult seals the JSON text of {result, error, logs} to the client's reply key
// (v2: AES-256-GCM under it; v1: HPKE to it) and signs the receipt.
function sealResult(keys, ctx, plainText, codeSha256) {
  const key = keyFor(keys, ctx.kid);
  inputHash(ctx);
  const aad = resultAAD(ctx.activationId, ctx.nonce, ctx.v);
  let fields;
  let ct;
  if (ctx.v === 1) {
    if (!ctx.sender) prepareReply(ctx);
    let sealedText;
    try {
      sealedText = hpke.sealWith(ctx.sender, aad, Buffer.from(plainText));
    } finally {
      ctx.sender = null;
    }
    ct = sealedText.ct;
    fields = { v: 1, enc: sealedText.enc.toString('base64') };
  } else {
    const sealedText = sealSymmetric(ctx.reply, aad, Buffer.from(plainText));
    ct = sealedText.ct;
    fields = { v: ctx.v, iv: sealedText.iv.toString('base64') };
  }
  const receipt = signReceipt(key.sig, {
    activationId: ctx.activationId, namespace: ctx.namespace, action: ctx.action, nonce: ctx.nonce, kid: ctx.kid,
    identitySha256: ctx.identitySha256 || identitySha256For(keys, ctx.kid), codeSha256, inputSha256: ctx.inputSha256, outputSha256: sha256hex(ct),
  });
  return { [RESULT_FIELD]: { ...fields, ct: ct.toString('base64'), receipt } };
}

// The host reads at most 1 MiB of an action's response (invoker/internal/proxy's
// DefaultMaxResponse) and truncates the rest, which would leave a sealed result
// nobody can open. The plaintext is bounded so that its sealed form, base64 and
// wrapped with its receipt, stays below that.
const MAX_RESULT_TEXT = 1024 * 1024;
const MAX_RESULT_PLAINTEXT = Math.floor((MAX_RESULT_TEXT - 2048) / 4) * 3 - 16;

// fitPlaintext returns the JSON text of {result, error, logs} within
// MAX_RESULT_PLAINTEXT: log lines that do not fit are dropped (with a line saying
// so), and a value that does not fit by itself becomes the developer error
// OpenWhisk gives for an oversize response. resultText (optional) is result's JSON
// text as the owner already has it (outcomeOf's msg.resultText, parsed and checked
// there): the value is then not encoded again, which for a large result is most of
// the work.
function fitPlaintext(result, error, lines, resultText) {
  let rt = typeof resultText === 'string' ? resultText : JSON.stringify(result);
  let et = JSON.stringify(error);
  // The members in the order JSON.stringify({result, error, logs}) writes them (an
  // undefined value is left out, as it would).
  const text = (logsText) => `{${rt === undefined ? '' : `"result":${rt},`}${et === undefined ? '' : `"error":${et},`}"logs":${logsText}}`;
  let base = text('[]');
  let outcome = null;
  if (Buffer.byteLength(base) > MAX_RESULT_PLAINTEXT) {
    const size = Buffer.byteLength(base);
    rt = 'null';
    et = JSON.stringify(`The action produced a response that exceeded the allowed length of a sealed result: ${size} > ${MAX_RESULT_PLAINTEXT} bytes.`);
    base = text('[]');
    outcome = 'developer';
  }
  const note = (n) => `Logs were truncated: ${n} lines did not fit in the sealed result.`;
  let budget = MAX_RESULT_PLAINTEXT - Buffer.byteLength(base) - Buffer.byteLength(JSON.stringify(note(lines.length))) - 1;
  const kept = [];
  for (const line of lines) {
    const n = Buffer.byteLength(JSON.stringify(line)) + 1;
    if (n > budget) break;
    budget -= n;
    kept.push(line);
  }
  if (kept.length < lines.length) kept.push(note(lines.length - kept.length));
  return { text: kept.length ? text(JSON.stringify(kept)) : base, lines: kept.length, outcome };
}

// sealOutcome turns the owner's `result` message of a sealed activation into the
// one the host gets: the outcome stays (the host needs it for the activation's
// status), the value, error and log lines go into the sealed result, and one log
// line says how many lines it holds. On success the result is the sealed result; on
// any other outcome it is {"error": the sealed result}.
function sealOutcome(keys, ctx, msg, codeSha256) {
  const r = msg.result;
  let ok = msg.outcome === 'success';
  const error = ok ? null : (isPlainObject(r) && Object.prototype.hasOwnProperty.call(r, 'error') ? r.error : r);
  const fit = fitPlaintext(ok ? r : null, error, (msg.logs || []).map(logLine), ok ? msg.resultText : undefined);
  const outcome = fit.outcome || msg.outcome;
  ok = outcome === 'success';
  const sealed = sealResult(keys, ctx, fit.text, codeSha256);
  return { type: 'result', outcome, result: ok ? sealed : { error: sealed },
    logs: [{ stream: 'stdout', time: new Date().toISOString(), line: `sealed: ${fit.lines} log lines in the sealed result` }],
    timings: msg.timings };
}

// refusedOutcome is the `result` message for an envelope the enclave refused: the
// action did not run, and the host learns only the reason.
function refusedOutcome(err) {
  return { type: 'result', outcome: 'developer', result: { error: err.message }, logs: [],
    timings: { isolateMs: 0, runMs: 0, teardownMs: 0 } };
}

module.exports = {
  VERSION, ENVELOPE_VERSION, ENVELOPE_VERSIONS, SUITE, PARAMS_FIELD, RESULT_FIELD, CODE_FIELD, INTEGRITY, INFO_PARAMS, INFO_RESULT, INFO_CODE,
  MAX_SEALED_BYTES, IAT_WINDOW_MS, REPLAY_CAPACITY, MAX_RESULT_PLAINTEXT,
  SealedError, ReplayCache, CodeCache,
  hpkeSeal, hpkeOpen, labeledExtract: hpke.labeledExtract, labeledExpand: hpke.labeledExpand, rawPublic: hpke.rawPublic,
  paramsAAD, resultAAD, codeAAD, canonicalJSON, identitySha256, signReceipt, sha256hex, b64,
  isEnvelope, openEnvelope, isSealedCode, openCode, sealSymmetric, openSymmetric, prepareSpare, prepareReply, sealResult, sealOutcome, refusedOutcome,
};
