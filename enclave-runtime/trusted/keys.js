'use strict';
// The image key (trusted side): one X25519 key pair (the HPKE recipient of sealed
// envelopes and code) and one Ed25519 key pair (receipts) per image, generated
// inside an enclave and shared by every enclave of that image, wherever it runs.
//
// An owner gets its image key in one of three ways (CONFIDENTIALITY.md, "Key
// lifecycle"):
//   * unsealed from DIR/image-key.sealed (--key-dir): a restarted owner comes back
//     with the same kid. direct mode seals with AES-256-GCM under a 32-byte key the
//     host gives on standard input (so it protects nothing from the host, and the
//     evidence says simulated); sgx seals under Gramine's MRENCLAVE sealing key;
//   * imported from a live owner of the same image (key-request / key-offer /
//     key-import): the peer checks this owner's evidence (same measurement) and
//     sends the key HPKE-sealed to an ephemeral key of this owner; the host relays
//     ciphertext only. Not bound to one CPU (the MigSGX idea);
//   * generated, when neither applies.
// Rotation makes a new key; the previous one still opens envelopes for ROTATE_GRACE_MS.
//
// Evidence (v1) binds the public keys to the enclave: reportData =
// SHA-256("teemate-evidence-v1\n" || kem || sig) || 32 zero bytes; on sgx a DCAP
// quote from Gramine's /dev/attestation carries it, in direct mode a report that
// says in its own fields that it is simulated, with the measurement = SHA-256 over
// the trusted sources and the native code the owner loaded (measurement() below).

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const hpke = require('./hpke');
const sealed = require('./sealed');

const EVIDENCE_DOMAIN = 'teemate-evidence-v1\n';
const SEAL_DOMAIN = 'teemate-image-key-v1\n';
const TRANSFER_INFO = 'teemate-transfer-v1';
const SEALED_FILE = 'image-key.sealed';
const ROTATE_GRACE_MS = 10 * 60 * 1000;
const SEALING_KEY_BYTES = 32;
const DEFAULT_ATTESTATION_DIR = '/dev/attestation';
// Offsets in a DCAP v3 quote: a 48-byte header, then the ISV enclave report body
// (MRENCLAVE at 64, report_data at 320 of the body).
const QUOTE_HEADER = 48;
const QUOTE_MRENCLAVE = QUOTE_HEADER + 64;
const QUOTE_REPORT_DATA = QUOTE_HEADER + 320;
const QUOTE_MIN = QUOTE_HEADER + 384;

// KeyError is a refusal of a key operation (bad sealed file, mismatched evidence,
// malformed transfer message). Its message says what was wrong.
class KeyError extends Error {}

// ---- measurement -------------------------------------------------------------------
// measurement hashes the code the owner runs as the simulated evidence's measurement:
// every .js file of this directory, sorted by name, each as name "\n" byte length
// "\n" bytes; then each native file the owner loaded (natives: the isolate, sealed-crypto
// and lockdown addons, as owner.js lists them), in the order given, each as
// "native:" base name "\n" byte length "\n" bytes; then "node:" and Node's version.
// The node binary itself is named by its version, not hashed (about 100 MB, read at
// every start). In sgx mode the quote's MRENCLAVE covers all of it instead (they are
// trusted files of the manifest, the binary included).
// The owner's own sources are measured once per list of natives (they do not change
// while it runs); any other directory (tests) every time.
const measured = new Map();
function measurement(dir = __dirname, natives = []) {
  const cacheKey = dir === __dirname ? natives.join('\0') : null;
  if (cacheKey !== null && measured.has(cacheKey)) return measured.get(cacheKey);
  const h = crypto.createHash('sha256');
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.js')).sort()) {
    const b = fs.readFileSync(path.join(dir, name));
    h.update(`${name}\n${b.length}\n`);
    h.update(b);
  }
  for (const file of natives) {
    const b = fs.readFileSync(file);
    h.update(`native:${path.basename(file)}\n${b.length}\n`);
    h.update(b);
  }
  h.update(`node:${process.version}`);
  const m = h.digest('hex');
  if (cacheKey !== null) measured.set(cacheKey, m);
  return m;
}

// ---- raw keys ----------------------------------------------------------------------
const { rawPublic } = hpke; // not a JWK export: see hpke.rawPublic

function makePair(type) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync(type);
  return { privateKey, publicKey, raw: rawPublic(publicKey) };
}

// pairFromJwk rebuilds a pair from its private JWK ({crv, d, x}) and checks that
// the public half is the one the private half derives.
function pairFromJwk(crv, j) {
  if (!j || typeof j.d !== 'string' || typeof j.x !== 'string') throw new KeyError(`${crv} key is malformed`);
  let privateKey;
  try {
    privateKey = crypto.createPrivateKey({ key: { kty: 'OKP', crv, d: j.d, x: j.x }, format: 'jwk' });
  } catch (e) {
    throw new KeyError(`${crv} key is malformed: ${e.message}`);
  }
  const publicKey = crypto.createPublicKey(privateKey);
  const raw = rawPublic(publicKey);
  if (raw.toString('base64url') !== j.x) throw new KeyError(`${crv} public key does not match its private key`);
  return { privateKey, publicKey, raw };
}

function jwkOf(pair) {
  return { d: hpke.rawPrivate(pair.privateKey).toString('base64url'), x: pair.raw.toString('base64url') };
}

function kidOf(kemRaw, sigRaw) {
  return crypto.createHash('sha256').update(kemRaw).update(sigRaw).digest().subarray(0, 16).toString('hex');
}

function makeKey() {
  const kem = makePair('x25519');
  const sig = makePair('ed25519');
  return { kid: kidOf(kem.raw, sig.raw), kem, sig };
}

function keyFromJSON(o) {
  if (!o || typeof o !== 'object') throw new KeyError('image key is malformed');
  const kem = pairFromJwk('X25519', o.kem);
  const sig = pairFromJwk('Ed25519', o.sig);
  const kid = kidOf(kem.raw, sig.raw);
  if (o.kid !== undefined && o.kid !== kid) throw new KeyError('image key kid does not match its keys');
  return { kid, kem, sig };
}

function keyToJSON(k) {
  return { kid: k.kid, kem: jwkOf(k.kem), sig: jwkOf(k.sig) };
}

// reportData is the 64 bytes evidence binds: SHA-256 of the domain and both raw
// public keys, then 32 zero bytes (attest.ReportData in Go).
function reportData(kemRaw, sigRaw) {
  const out = Buffer.alloc(64);
  crypto.createHash('sha256').update(EVIDENCE_DOMAIN).update(kemRaw).update(sigRaw).digest().copy(out);
  return out;
}

// ---- HPKE (hpke.js, shared with sealed.js), its failures as KeyErrors ----
function hpkeSeal(pkRaw, info, aad, plaintext) {
  try {
    return hpke.seal(Buffer.from(pkRaw), info, aad, plaintext);
  } catch (e) {
    if (e instanceof hpke.HpkeError) throw new KeyError(`X25519 with the peer's key failed: ${e.message}`);
    throw e;
  }
}

function hpkeOpen(pair, info, aad, enc, ct) {
  try {
    return hpke.open(pair, info, aad, enc, ct);
  } catch (e) {
    if (!(e instanceof hpke.HpkeError)) throw e;
    if (e.kind === 'malformed') throw new KeyError('HPKE message is malformed');
    if (e.kind === 'key') throw new KeyError(`X25519 with the peer's key failed: ${e.message}`);
    throw new KeyError('HPKE open failed: the message was not sealed to this key or was altered');
  }
}

// ---- quotes (sgx) ------------------------------------------------------------------
// parseQuote reads what the transfer compares in a DCAP v3 quote: MRENCLAVE and
// report_data. The signature chain is attest.Verify's job on the client side.
function parseQuote(b) {
  if (b.length < QUOTE_MIN || b.readUInt16LE(0) !== 3) throw new KeyError('quote is not a DCAP v3 quote');
  return {
    mrenclave: b.subarray(QUOTE_MRENCLAVE, QUOTE_MRENCLAVE + 32).toString('hex'),
    reportData: b.subarray(QUOTE_REPORT_DATA, QUOTE_REPORT_DATA + 64),
  };
}

// ---- the image key holder -------------------------------------------------------------
class ImageKeys {
  // opts: image (string); keyDir ('' = key in memory only); sealingKey (32-byte
  // Buffer, direct mode's sealing); attestationDir (Gramine's /dev/attestation, a
  // stand-in directory in tests); natives (the native files the owner runs, for the
  // simulated measurement); now (clock, tests); log(level, msg, fields).
  constructor(opts = {}) {
    if (typeof opts.image !== 'string' || opts.image === '') throw new Error('ImageKeys needs an image');
    this.image = opts.image;
    this.keyDir = opts.keyDir || '';
    this.sealingKey = opts.sealingKey || null;
    if (this.sealingKey !== null && !(Buffer.isBuffer(this.sealingKey) && this.sealingKey.length === SEALING_KEY_BYTES)) {
      throw new Error(`the sealing key must be ${SEALING_KEY_BYTES} bytes`);
    }
    this.attestationDir = opts.attestationDir === undefined ? DEFAULT_ATTESTATION_DIR : opts.attestationDir;
    this.type = this.attestationDir && fs.existsSync(this.attestationDir) ? 'sgx-dcap' : 'simulated';
    this.now = opts.now || Date.now;
    this.log = opts.log || (() => {});
    this.measurement = this.type === 'simulated' ? (opts.measurement || measurement(__dirname, opts.natives || [])) : null;
    this.key = null;
    this.retired = []; // [{key, until}] rotated-out keys still in their grace
    this.cachedEvidence = null;
    this.cachedEvidenceSha256 = '';
    this.transfer = null; // the pending key-request's ephemeral pair
    if (this.type === 'sgx-dcap') {
      // Our own MRENCLAVE: read from a quote over zeros, compared with peers'.
      this.measurement = parseQuote(this.quote(Buffer.alloc(64))).mrenclave;
    }
  }

  // start applies --key-mode: 'generate' unseals DIR/image-key.sealed when there
  // is one (a bad one throws: see unseal) or makes a new key and seals it;
  // 'await' leaves the owner without a key until key-import.
  start(keyMode = 'generate') {
    if (keyMode !== 'generate' && keyMode !== 'await') throw new Error('--key-mode must be generate or await');
    if (this.keyDir) fs.mkdirSync(this.keyDir, { recursive: true, mode: 0o700 });
    if (keyMode === 'await') return null;
    if (this.keyDir && this.unseal()) return this.key.kid;
    this.setKey(makeKey(), []);
    this.seal();
    return this.key.kid;
  }

  ready() { return this.key !== null; }

  current() {
    if (!this.key) throw new KeyError('this enclave has no image key yet (awaiting a key transfer)');
    return this.key;
  }

  byKid(kid) {
    if (this.key && this.key.kid === kid) return this.key;
    const t = this.now();
    for (const r of this.retired) if (r.key.kid === kid && r.until > t) return r.key;
    return null;
  }

  evidence() {
    if (!this.cachedEvidence) {
      const k = this.current();
      this.cachedEvidence = this.makeEvidence(k);
      this.cachedEvidenceSha256 = crypto.createHash('sha256').update(JSON.stringify(this.cachedEvidence)).digest('hex');
      k.identitySha256 = sealed.identitySha256(this.cachedEvidence);
    }
    return this.cachedEvidence;
  }

  // evidenceSha256 is the hex SHA-256 of the evidence as served (JSON.stringify).
  evidenceSha256() {
    this.evidence();
    return this.cachedEvidenceSha256;
  }

  // identitySha256 is what receipts name the enclave by (sealed.identitySha256): the
  // same for every owner holding this key in this measurement. kid: the current key
  // (default) or one rotated out but still in its grace; '' for an unknown kid.
  // Computed once per key.
  identitySha256(kid) {
    const k = kid === undefined ? this.current() : this.byKid(kid);
    if (!k) return '';
    if (k === this.key) this.evidence();
    if (!k.identitySha256) k.identitySha256 = sealed.identitySha256(this.makeEvidence(k));
    return k.identitySha256;
  }

  makeEvidence(k) {
    const rd = reportData(k.kem.raw, k.sig.raw);
    const ev = { v: 1, type: this.type, image: this.image, kid: k.kid,
      keys: { kem: k.kem.raw.toString('base64'), sig: k.sig.raw.toString('base64') },
      reportData: rd.toString('hex') };
    if (this.type === 'sgx-dcap') ev.quote = this.quote(rd).toString('base64');
    else ev.simulated = { note: 'simulated: no hardware root of trust', measurement: this.measurement };
    return ev;
  }

  // quote asks Gramine for a DCAP quote over reportData (sgx only).
  quote(rd) {
    fs.writeFileSync(path.join(this.attestationDir, 'user_report_data'), rd);
    return fs.readFileSync(path.join(this.attestationDir, 'quote'));
  }

  setKey(key, retired) {
    this.key = key;
    this.retired = retired.filter((r) => r.until > this.now());
    this.cachedEvidence = null;
    this.cachedEvidenceSha256 = '';
  }

  // ---- sealing to disk ----
  sealedPath() { return path.join(this.keyDir, SEALED_FILE); }

  // sealKey is the key that seals the image key: direct mode's host-given key, or
  // Gramine's MRENCLAVE sealing key on sgx.
  sealKey() {
    if (this.type === 'sgx-dcap') {
      const k = fs.readFileSync(path.join(this.attestationDir, 'keys', '_sgx_mrenclave'));
      if (k.length < 16) throw new KeyError('Gramine sealing key is too short');
      return crypto.createHash('sha256').update('teemate-seal-v1\n').update(k).digest();
    }
    if (!this.sealingKey) throw new Error('--key-dir needs a sealing key on standard input in direct mode');
    return this.sealingKey;
  }

  sealAAD(header) {
    return Buffer.from(`${SEAL_DOMAIN}${header.image}\n${header.type}\n${header.measurement}\n${header.kid}`);
  }

  // seal writes the current key (and the rotated-out ones in their grace) to
  // DIR/image-key.sealed, atomically (a temporary file renamed over it).
  seal() {
    if (!this.keyDir) return;
    const header = { v: 1, image: this.image, type: this.type, measurement: this.measurement, kid: this.key.kid };
    const body = JSON.stringify({ key: keyToJSON(this.key),
      retired: this.retired.map((r) => ({ key: keyToJSON(r.key), until: r.until })) });
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', this.sealKey(), iv);
    c.setAAD(this.sealAAD(header));
    const ct = Buffer.concat([c.update(body), c.final(), c.getAuthTag()]);
    const file = this.sealedPath();
    // Owners of one image share the directory, and confined ones are all pid 1: a random name.
    const tmp = `${file}.tmp-${crypto.randomBytes(6).toString('hex')}`;
    fs.writeFileSync(tmp, `${JSON.stringify({ ...header, iv: iv.toString('hex'), ct: ct.toString('base64') })}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  }

  // unseal loads DIR/image-key.sealed. No file: false. A file sealed by another
  // build of the runtime (its measurement differs; on sgx its sealing key differs
  // too) is moved aside with a loud warning and false is returned, so a new key is
  // made. Anything else that does not open (altered bytes, another image, a
  // different sealing key) throws a KeyError: the owner refuses to start rather
  // than silently replace a key clients may still encrypt to.
  unseal() {
    const file = this.sealedPath();
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if (e.code === 'ENOENT') return false;
      throw e;
    }
    const bad = (why) => new KeyError(`sealed image key ${file} cannot be opened: ${why}; ` +
      'the owner refuses to start rather than replace it (remove the file to start with a new image key)');
    let s;
    try {
      s = JSON.parse(text);
    } catch {
      throw bad('not JSON');
    }
    if (!s || s.v !== 1 || typeof s.iv !== 'string' || typeof s.ct !== 'string' || typeof s.kid !== 'string') throw bad('malformed');
    if (s.image !== this.image) throw bad(`sealed for image ${JSON.stringify(s.image)}, not ${JSON.stringify(this.image)}`);
    if (s.type !== this.type || s.measurement !== this.measurement) {
      const aside = `${file}.stale-${this.now()}`;
      fs.renameSync(file, aside);
      this.log('warn', 'SEALED IMAGE KEY FROM ANOTHER RUNTIME BUILD MOVED ASIDE: a new image key is generated; ' +
        'clients must fetch the new evidence', { file, movedTo: aside, sealedMeasurement: s.measurement, measurement: this.measurement });
      return false;
    }
    const ct = Buffer.from(s.ct, 'base64');
    const iv = Buffer.from(s.iv, 'hex');
    if (iv.length !== 12 || ct.length < 16) throw bad('malformed');
    let body;
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', this.sealKey(), iv);
      d.setAAD(this.sealAAD(s));
      d.setAuthTag(ct.subarray(ct.length - 16));
      body = JSON.parse(Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]).toString('utf8'));
    } catch {
      throw bad('integrity check failed (altered, or sealed under another sealing key)');
    }
    const key = keyFromJSON(body.key);
    if (key.kid !== s.kid) throw bad('kid does not match the sealed key');
    this.setKey(key, (body.retired || []).map((r) => ({ key: keyFromJSON(r.key), until: Number(r.until) })));
    return true;
  }

  // ---- rotation ----
  // rotate makes a new image key; the previous one opens envelopes for
  // ROTATE_GRACE_MS more. Returns the new kid.
  rotate() {
    const old = this.current();
    this.setKey(makeKey(), [...this.retired, { key: old, until: this.now() + ROTATE_GRACE_MS }]);
    this.seal();
    return this.key.kid;
  }

  // ---- transfer ----
  // request starts a transfer into this owner: an ephemeral key pair with its own
  // evidence. Returns {evidence, pub}.
  request() {
    const e = makeKey();
    this.transfer = e;
    return { evidence: this.makeEvidence(e), pub: e.kem.raw.toString('base64') };
  }

  // checkPeer verifies a peer's evidence for a transfer: well formed, bound to its
  // keys, same image, and the same measurement as ours; simulated evidence only
  // between simulated owners. Returns the peer's raw keys.
  checkPeer(ev) {
    if (!ev || typeof ev !== 'object' || ev.v !== 1 || !ev.keys) throw new KeyError('peer evidence is malformed');
    if (ev.type !== this.type) {
      throw new KeyError(`peer evidence is ${ev.type}, this enclave's is ${this.type}: ` +
        'a key moves only between enclaves of the same kind (simulated only between simulated)');
    }
    if (ev.image !== this.image) throw new KeyError(`peer evidence is for image ${JSON.stringify(ev.image)}, not ${JSON.stringify(this.image)}`);
    const kem = Buffer.from(String(ev.keys.kem), 'base64');
    const sig = Buffer.from(String(ev.keys.sig), 'base64');
    if (kem.length !== 32 || sig.length !== 32) throw new KeyError('peer evidence keys are malformed');
    const rd = reportData(kem, sig);
    if (ev.reportData !== rd.toString('hex') || ev.kid !== kidOf(kem, sig)) throw new KeyError('peer evidence is not bound to its keys');
    let peerMeasurement;
    if (this.type === 'sgx-dcap') {
      // Structure, binding and MRENCLAVE only: the quote's signature chain is not
      // checked inside the enclave yet, so the owner refuses sgx transfers unless
      // a verifier is installed (CONFIDENTIALITY.md, "Key lifecycle").
      if (!this.verifyQuote) throw new KeyError('sgx key transfer needs an in-enclave DCAP quote verifier, which this runtime does not have');
      const q = parseQuote(Buffer.from(String(ev.quote), 'base64'));
      if (!q.reportData.equals(rd)) throw new KeyError('peer quote does not carry the evidence report data');
      this.verifyQuote(Buffer.from(String(ev.quote), 'base64'));
      peerMeasurement = q.mrenclave;
    } else {
      peerMeasurement = ev.simulated && ev.simulated.measurement;
    }
    if (peerMeasurement !== this.measurement) {
      throw new KeyError(`peer measurement ${String(peerMeasurement).slice(0, 64)} is not this enclave's ${this.measurement}`);
    }
    return { kem, sig };
  }

  // checkRequest verifies a peer's key-request (its evidence, and that its pub is
  // the key that evidence binds) and returns the peer's ephemeral public key.
  // The key transfer below and the state transfer (transfer.js) both start here.
  checkRequest(req) {
    if (!req || typeof req !== 'object' || typeof req.pub !== 'string') throw new KeyError('key request is malformed');
    const peer = this.checkPeer(req.evidence);
    const pub = Buffer.from(req.pub, 'base64');
    if (!pub.equals(peer.kem)) throw new KeyError('key request pub is not the key its evidence binds');
    return pub;
  }

  // keyBody is the JSON text that moves the image key: the current key and the
  // rotated-out keys in their grace.
  keyBody() {
    return JSON.stringify({ key: keyToJSON(this.current()),
      retired: this.retired.map((r) => ({ key: keyToJSON(r.key), until: r.until })) });
  }

  // offer answers a peer's key-request: checks its evidence and seals this
  // owner's key (and rotated-out keys in their grace) to the peer's ephemeral key.
  offer(req) {
    const pub = this.checkRequest(req);
    const evidence = this.evidence();
    const { enc, ct } = hpkeSeal(pub, TRANSFER_INFO, this.transferAAD(evidence.kid, req.evidence.kid), Buffer.from(this.keyBody()));
    return { evidence, enc: enc.toString('base64'), ct: ct.toString('base64') };
  }

  transferAAD(fromKid, toKid) {
    return Buffer.from(`${TRANSFER_INFO}\n${this.image}\n${fromKid}\n${toKid}`);
  }

  // importOffer takes the key a peer offered for this owner's pending request:
  // checks the peer's evidence, opens the offer with the ephemeral key and checks
  // that the key is the one the peer's evidence shows. A key this owner already
  // held becomes a rotated-out key in its grace. Returns the kid.
  importOffer(offer) {
    if (!this.transfer) throw new KeyError('no key request is pending');
    if (!offer || typeof offer !== 'object' || typeof offer.enc !== 'string' || typeof offer.ct !== 'string') {
      throw new KeyError('key offer is malformed');
    }
    this.checkPeer(offer.evidence);
    const plain = hpkeOpen(this.transfer.kem, TRANSFER_INFO, this.transferAAD(offer.evidence.kid, this.transfer.kid),
      Buffer.from(offer.enc, 'base64'), Buffer.from(offer.ct, 'base64'));
    return this.adopt(plain.toString('utf8'), offer.evidence.kid);
  }

  // adopt installs a key body (keyBody's text) received from the peer whose
  // evidence showed peerKid, ends the pending request and seals the key. A key this
  // owner already held becomes a rotated-out key in its grace. Returns the kid.
  adopt(text, peerKid) {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new KeyError('key offer body is malformed');
    }
    if (!body || typeof body !== 'object') throw new KeyError('key offer body is malformed');
    const key = keyFromJSON(body.key);
    if (key.kid !== peerKid) throw new KeyError('offered key is not the key of the peer evidence');
    const retired = (Array.isArray(body.retired) ? body.retired : []).map((r) => ({ key: keyFromJSON(r.key), until: Number(r.until) }));
    if (this.key && this.key.kid !== key.kid) retired.push({ key: this.key, until: this.now() + ROTATE_GRACE_MS });
    for (const r of this.retired) if (!retired.some((x) => x.key.kid === r.key.kid)) retired.push(r);
    this.transfer = null;
    this.setKey(key, retired.filter((r) => r.key.kid !== key.kid));
    this.seal();
    return key.kid;
  }
}

// parseSealingKey reads direct mode's sealing key line: 64 lowercase hex digits.
function parseSealingKey(text) {
  const s = String(text).replace(/\n$/, '');
  if (!/^[0-9a-f]{64}$/.test(s)) throw new Error(`the sealing key must be ${SEALING_KEY_BYTES * 2} lowercase hex digits`);
  return Buffer.from(s, 'hex');
}

module.exports = { ImageKeys, KeyError, measurement, reportData, kidOf, parseQuote, parseSealingKey,
  hpkeSeal, hpkeOpen, ROTATE_GRACE_MS, SEALED_FILE, TRANSFER_INFO };
