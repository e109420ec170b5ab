'use strict';
// HPKE base mode (RFC 9180), single-shot (sequence number 0), trusted side: the one
// implementation the enclave runtime uses, for sealed envelopes, code and results
// (sealed.js) and for the image key's transfer between owners (keys.js). Suite:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, over node:crypto (X25519
// through crypto.diffieHellman on KeyObjects, HKDF's extract and expand from
// HMAC-SHA256). Go's crypto/hpke is the other end: the interop tests in
// invoker/sealed run both.
//
// What does not depend on the message is computed once: the labels' fixed
// prefixes and, per info string, the key schedule's context (psk_id_hash and
// info_hash). Callers wrap HpkeError into their own error class.
//
// Why JWK and HMAC, measured on Node 20 (OpenSSL 3), µs per call in a warm loop: a
// raw X25519 public key imports as JWK in 15-24 (OpenSSL builds it from the raw
// bytes) but as SPKI DER in about 110 (OpenSSL 3's decoder framework), and exports
// as JWK in 3 against about 95 as DER; one HMAC-SHA256 costs 5-10 and one
// crypto.hkdfSync about 14, so the key schedule's five HMACs beat the three
// hkdfSync calls it would take (key and base_nonce each redo the extract). The
// per-activation cost is the X25519 operations (about 40 each) and the receipt's
// Ed25519 signature (about 60), which the format needs.

const crypto = require('crypto');

const KEM_ID = 0x0020;
const KDF_ID = 0x0001;
const AEAD_ID = 0x0002;
const NK = 32; // AES-256 key
const NN = 12; // GCM nonce
const NT = 16; // GCM tag
const NH = 32; // SHA-256
const EMPTY = Buffer.alloc(0);
const ZERO_SALT = Buffer.alloc(NH);

class HpkeError extends Error {
  // kind: 'malformed' (sizes), 'key' (enc is no usable X25519 key, or a small-order
  // point), 'open' (the AEAD refused: tampered, or sealed to another key or AAD).
  constructor(kind, message) {
    super(message);
    this.name = 'HpkeError';
    this.kind = kind;
  }
}

function u16(n) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

const KEM_SUITE = Buffer.concat([Buffer.from('KEM'), u16(KEM_ID)]);
const HPKE_SUITE = Buffer.concat([Buffer.from('HPKE'), u16(KEM_ID), u16(KDF_ID), u16(AEAD_ID)]);
const HPKE_V1 = Buffer.from('HPKE-v1');

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data).digest();
}

// labeledExtract: HKDF-Extract (RFC 5869) over "HPKE-v1" || suite || label || ikm. An
// empty salt is HashLen zero bytes (the same as an empty HMAC key).
function labeledExtract(suite, salt, label, ikm) {
  return hmac(salt.length ? salt : ZERO_SALT, Buffer.concat([HPKE_V1, suite, Buffer.from(label), ikm]));
}

// labeledExpand: HKDF-Expand over I2OSP(length, 2) || "HPKE-v1" || suite || label || info.
function labeledExpand(suite, prk, label, info, length) {
  if (length > 255 * NH) throw new Error('HKDF-Expand: length too large');
  const labeled = Buffer.concat([u16(length), HPKE_V1, suite, Buffer.from(label), info]);
  const out = [];
  let t = EMPTY;
  for (let i = 1, have = 0; have < length; i++) {
    t = hmac(prk, Buffer.concat([t, labeled, Buffer.from([i])]));
    out.push(t);
    have += t.length;
  }
  return out.length === 1 ? t.subarray(0, length) : Buffer.concat(out).subarray(0, length);
}

// contexts caches, per info string, mode_base's key schedule context:
// 0x00 || psk_id_hash || info_hash. The infos are the formats' few constants.
const contexts = new Map();
function scheduleContext(info) {
  let c = contexts.get(info);
  if (!c) {
    c = Buffer.concat([Buffer.from([0x00]), labeledExtract(HPKE_SUITE, EMPTY, 'psk_id_hash', EMPTY),
      labeledExtract(HPKE_SUITE, EMPTY, 'info_hash', Buffer.from(info))]);
    if (contexts.size < 64) contexts.set(info, c);
  }
  return c;
}

// publicKey imports a raw 32-byte X25519 public key.
function publicKey(raw) {
  if (!Buffer.isBuffer(raw) || raw.length !== 32) throw new HpkeError('key', 'an X25519 public key is not 32 bytes');
  try {
    return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') }, format: 'jwk' });
  } catch {
    throw new HpkeError('key', 'the key is not an X25519 public key');
  }
}

// rawPublic is the raw 32 bytes of an X25519 or Ed25519 public key: the end of its
// SPKI DER (a fixed 12-byte header, RFC 8410). Not through a JWK export: Node 20's
// JWK export of an OKP key holds the key's lock while it builds the JS object, and a
// garbage collection then that frees the generateKeyPairSync job of the same key
// takes that lock again: the thread deadlocks (seen here within 200k key pairs;
// the DER export never did). keys.js's pairs go through here too.
function rawPublic(key) {
  return key.export({ type: 'spki', format: 'der' }).subarray(-32);
}

// rawPrivate is the raw 32 bytes of an X25519 or Ed25519 private key: the end of its
// PKCS#8 DER (a fixed 16-byte header, RFC 8410); not a JWK export, as rawPublic says.
function rawPrivate(key) {
  return key.export({ type: 'pkcs8', format: 'der' }).subarray(-32);
}

// ephemeral makes a sender's key pair: {privateKey, raw}.
function ephemeral() {
  const p = crypto.generateKeyPairSync('x25519');
  return { privateKey: p.privateKey, raw: rawPublic(p.publicKey) };
}

// spare is one sender pair made ahead (prepareEphemeral), when the caller has nothing
// else to do, for the next setupSender: generating it is half of a sender's setup.
// It is handed out once (takeEphemeral), so no two messages share an ephemeral key.
let spare = null;

// prepareEphemeral makes the spare sender pair if there is none.
function prepareEphemeral() {
  if (!spare) spare = ephemeral();
}

// takeEphemeral hands out the spare pair, or a new one when there is none.
function takeEphemeral() {
  const e = spare || ephemeral();
  spare = null;
  return e;
}

function dh(privateKey, pub) {
  let z;
  try {
    z = crypto.diffieHellman({ privateKey, publicKey: pub });
  } catch {
    // OpenSSL refuses an all-zero result itself.
    throw new HpkeError('key', 'the peer key is a small-order point');
  }
  // RFC 9180 7.1.4: an all-zero X25519 output (a small-order public key) is refused.
  if (z.every((b) => b === 0)) throw new HpkeError('key', 'the peer key is a small-order point');
  return z;
}

// keySchedule: DHKEM's ExtractAndExpand over kem_context = enc || pkR, then
// mode_base's key schedule; returns the AEAD key and base nonce.
function keySchedule(z, enc, pkRaw, info) {
  const prk = labeledExtract(KEM_SUITE, EMPTY, 'eae_prk', z);
  const shared = labeledExpand(KEM_SUITE, prk, 'shared_secret', Buffer.concat([enc, pkRaw]), NH);
  const context = scheduleContext(info);
  const secret = labeledExtract(HPKE_SUITE, shared, 'secret', EMPTY);
  return { key: labeledExpand(HPKE_SUITE, secret, 'key', context, NK),
    nonce: labeledExpand(HPKE_SUITE, secret, 'base_nonce', context, NN) };
}

// setupSender runs the sender's side of the key schedule, which does not depend on
// the message: pkRaw is the recipient's raw public key, pkR (optional) the same key
// already imported as a KeyObject, eph (optional) a sender pair made ahead by
// ephemeral() (default: the spare, see prepareEphemeral). Returns {enc, key, nonce} for ONE message (sealWith), so that a caller
// can do this while it waits for the plaintext.
function setupSender(pkRaw, info, { pkR, eph } = {}) {
  const recipient = pkR || publicKey(pkRaw);
  const e = eph || takeEphemeral();
  const { key, nonce } = keySchedule(dh(e.privateKey, recipient), e.raw, pkRaw, info);
  return { enc: e.raw, key, nonce, used: false };
}

// sealWith encrypts the one message of a setupSender context (sequence number 0:
// a second use would reuse the nonce, so it throws).
function sealWith(sender, aad, plaintext) {
  if (sender.used) throw new Error('HPKE: a single-shot sender context was used twice');
  sender.used = true;
  const c = crypto.createCipheriv('aes-256-gcm', sender.key, sender.nonce, { authTagLength: NT });
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  return { enc: sender.enc, ct };
}

// seal encrypts plaintext to the recipient (opts: setupSender's). Returns {enc, ct}.
function seal(pkRaw, info, aad, plaintext, opts) {
  return sealWith(setupSender(pkRaw, info, opts), aad, plaintext);
}

// open decrypts with the recipient's pair ({privateKey: KeyObject, raw: its 32-byte
// public key}).
function open(pair, info, aad, enc, ct) {
  if (!Buffer.isBuffer(enc) || enc.length !== 32) throw new HpkeError('malformed', 'the encapsulated key is not 32 bytes');
  if (!Buffer.isBuffer(ct) || ct.length < NT) throw new HpkeError('malformed', 'the ciphertext is shorter than its tag');
  const { key, nonce } = keySchedule(dh(pair.privateKey, publicKey(enc)), enc, pair.raw, info);
  const d = crypto.createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: NT });
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(ct.subarray(ct.length - NT));
  try {
    return Buffer.concat([d.update(ct.subarray(0, ct.length - NT)), d.final()]);
  } catch {
    throw new HpkeError('open', 'the ciphertext does not open');
  }
}

module.exports = { HpkeError, seal, open, setupSender, sealWith, ephemeral, prepareEphemeral, publicKey, rawPublic, rawPrivate, labeledExtract, labeledExpand,
  KEM_SUITE, HPKE_SUITE, NT };
