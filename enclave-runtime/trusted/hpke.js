'use strict';
// HPKE base mode (RFC 9180), single-shot (sequence number 0), trusted side: the one
// implementation the enclave runtime uses, for sealed envelopes, code and results
// (sealed.js) and for the image key's transfer between owners (keys.js). Suite:
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, over primitives.js (the
// native addon on Node's OpenSSL when built, else node:crypto; HKDF's extract and
// expand from HMAC-SHA256). Go's crypto/hpke is the other end: the interop tests in
// invoker/sealed run both.
//
// What does not depend on the message is computed once: the labels' fixed
// prefixes and, per info string, the key schedule's context (psk_id_hash and
// info_hash). With the native primitives an open is one call (the agreement, the
// key schedule and AES-GCM in sealcrypto.cc's hpkeOpen): the owner opens an
// envelope per sealed activation, and this file's key schedule, composed of a
// dozen calls and their buffers, ran cold at several times its warm cost. Sealing
// stays composed here (a client's side, and the owner's v1 replies). Callers wrap
// HpkeError into their own error class.
//
// Why HMAC, measured on Node 20 (OpenSSL 3), µs per call in a warm loop: one
// HMAC-SHA256 through node:crypto costs 5-10 and one crypto.hkdfSync about 14, so the
// key schedule's five HMACs beat the three hkdfSync calls it would take (key and
// base_nonce each redo the extract); natively an HMAC is about 1. The per-activation
// cost is the X25519 agreement (about 55) and the receipt's Ed25519 signature, which
// the format needs.

const crypto = require('crypto');
const P = require('./primitives');

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

// labeledExtract: HKDF-Extract (RFC 5869) over "HPKE-v1" || suite || label || ikm. An
// empty salt is HashLen zero bytes (the same as an empty HMAC key).
function labeledExtract(suite, salt, label, ikm) {
  return P.hmacSha256(salt.length ? salt : ZERO_SALT, Buffer.concat([HPKE_V1, suite, Buffer.from(label), ikm]));
}

// labeledExpand: HKDF-Expand over I2OSP(length, 2) || "HPKE-v1" || suite || label || info.
function labeledExpand(suite, prk, label, info, length) {
  if (length > 255 * NH) throw new Error('HKDF-Expand: length too large');
  const labeled = Buffer.concat([u16(length), HPKE_V1, suite, Buffer.from(label), info]);
  const out = [];
  let t = EMPTY;
  for (let i = 1, have = 0; have < length; i++) {
    t = P.hmacSha256(prk, Buffer.concat([t, labeled, Buffer.from([i])]));
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

// rawPublic is the raw 32 bytes of an X25519 or Ed25519 public key: the end of its
// SPKI DER (a fixed 12-byte header, RFC 8410). Not through a JWK export: Node 20's
// JWK export of an OKP key holds the key's lock while it builds the JS object, and a
// garbage collection then that frees the generateKeyPairSync job of the same key
// takes that lock again: the thread deadlocks (seen here within 200k key pairs;
// the DER export never did). keys.js's pairs go through here too.
function rawPublic(key) {
  return key.export({ type: 'spki', format: 'der' }).subarray(-32);
}

// rawPrivate is the raw 32 bytes of an X25519 or Ed25519 private key (primitives.js).
const { rawPrivate } = P;

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

// dh is X25519 of a private KeyObject with a raw 32-byte public key.
function dh(privateKey, pubRaw) {
  if (!Buffer.isBuffer(pubRaw) || pubRaw.length !== 32) throw new HpkeError('key', 'an X25519 public key is not 32 bytes');
  let z;
  try {
    z = P.x25519(privateKey, pubRaw);
  } catch (e) {
    // OpenSSL refuses an all-zero result itself.
    if (e instanceof P.PrimitiveError) throw new HpkeError('key', /not an X25519/.test(e.message) ? 'the key is not an X25519 public key' : 'the peer key is a small-order point');
    throw e;
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
// the message: pkRaw is the recipient's raw public key, eph (optional) a sender pair
// made ahead by ephemeral() (default: the spare, see prepareEphemeral). Returns
// {enc, key, nonce} for ONE message (sealWith), so that a caller can do this while it
// waits for the plaintext.
function setupSender(pkRaw, info, { eph } = {}) {
  const e = eph || takeEphemeral();
  const { key, nonce } = keySchedule(dh(e.privateKey, pkRaw), e.raw, pkRaw, info);
  return { enc: e.raw, key, nonce, used: false };
}

// sealWith encrypts the one message of a setupSender context (sequence number 0:
// a second use would reuse the nonce, so it throws).
function sealWith(sender, aad, plaintext) {
  if (sender.used) throw new Error('HPKE: a single-shot sender context was used twice');
  sender.used = true;
  return { enc: sender.enc, ct: P.gcmSeal(sender.key, sender.nonce, aad, plaintext) };
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
  const inOne = P.hpkeOpenInOne();
  if (inOne) {
    try {
      return inOne(pair.privateKey, pair.raw, enc, scheduleContext(info), Buffer.isBuffer(aad) ? aad : Buffer.from(aad), ct);
    } catch (e) {
      if (!(e instanceof P.PrimitiveError)) throw e;
      if (e.kind === 'gcm') throw new HpkeError('open', 'the ciphertext does not open');
      throw new HpkeError('key', /not an X25519/.test(e.message) ? 'the key is not an X25519 public key' : 'the peer key is a small-order point');
    }
  }
  const { key, nonce } = keySchedule(dh(pair.privateKey, enc), enc, pair.raw, info);
  try {
    return P.gcmOpen(key, nonce, aad, ct);
  } catch (e) {
    if (e instanceof P.PrimitiveError) throw new HpkeError('open', 'the ciphertext does not open');
    throw e;
  }
}

module.exports = { HpkeError, seal, open, setupSender, sealWith, ephemeral, prepareEphemeral, rawPublic, rawPrivate, labeledExtract, labeledExpand,
  KEM_SUITE, HPKE_SUITE, NT };
