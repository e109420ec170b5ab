'use strict';
// State transfer (trusted side): an owner's state moves to another enclave of the
// same image and measurement in chunks, through the untrusted host (KEYS.md, "State
// transfer"). The state is the image key (with the rotated-out keys in their grace)
// and the opened sealed code (sealed.js's CodeCache): what a warm owner has that a
// new one would otherwise rebuild, or could not rebuild at all (the key).
//
// The session starts like the key transfer (keys.js): the receiving owner's
// key-request (evidence over an ephemeral X25519 key) goes to the sending owner,
// which checks it (same image, same measurement) and answers state-offer: its own
// evidence and, HPKE-sealed to the ephemeral key, a fresh session key with the
// session id and the number of chunks. The receiver checks the sender's evidence
// and opens it (state-open). The state then travels as chunks of at most
// CHUNK_BYTES of plaintext, each AES-256-GCM-sealed under the session key with
// the image, session id, chunk index and chunk count as associated data: a chunk
// out of order, replayed, from another session or altered is refused, and the
// state is installed only after the last chunk (so a truncated stream installs
// nothing). The receiver accepts only the next index; after a broken connection
// the host asks it for that index (state-status) and the sender resumes there, in
// the same session, until SESSION_TTL_MS after the offer.
//
// Memory: the sender never copies the state: the offer fixes a layout (which
// record, which character range of it, per chunk) over the strings it already
// holds, and each chunk is encoded and sealed when it is asked for. The receiver
// holds one chunk at a time beside the state it is building. Both count the
// transient bytes (chunk plaintext, ciphertext and its base64) and report the peak.

const crypto = require('crypto');
const { KeyError, hpkeSeal, hpkeOpen } = require('./keys');

const STATE_INFO = 'teemate-state-v1';
// Plaintext bytes of one chunk, header included.
const CHUNK_BYTES = 64 * 1024;
// Room for a chunk's header (record number, kind, and on a record's first chunk
// its cache key: a hash and an OpenWhisk namespace and action name, 256 each).
const HEADROOM = 2048;
const SESSION_TTL_MS = 2 * 60 * 1000;
const MAX_SENDING = 4; // sessions a sender keeps at once (the oldest goes)
const MAX_BATCH = 8; // chunks one state-chunks answers
const SESSION = /^[0-9a-f]{32}$/;

function stateAAD(image, fromKid, toKid, session) {
  return Buffer.from(`${STATE_INFO}\n${image}\n${fromKid}\n${toKid}\n${session}`);
}

function chunkAAD(image, session, i, total) {
  return Buffer.from(`${STATE_INFO}-chunk\n${image}\n${session}\n${i}\n${total}`);
}

// pieces splits a record into character ranges whose UTF-8 fits a chunk beside
// its header: 3 bytes at most per UTF-16 unit (a surrogate pair is 4 bytes for 2
// units), and never between the two halves of a pair, so every range decodes by
// itself. ASCII text is cut by bytes.
function pieces(text) {
  const room = CHUNK_BYTES - HEADROOM;
  const step = Buffer.byteLength(text) === text.length ? room : Math.floor(room / 3);
  const out = [];
  for (let s = 0; s < text.length || out.length === 0;) {
    let e = Math.min(s + step, text.length);
    if (e < text.length && e > s + 1) {
      const c = text.charCodeAt(e - 1);
      if (c >= 0xd800 && c <= 0xdbff) e -= 1;
    }
    out.push([s, e]);
    s = e;
  }
  return out;
}

// encodePlain is a chunk's plaintext: 4-byte header length, header JSON, data.
function encodePlain(header, data) {
  const h = Buffer.from(JSON.stringify(header));
  const b = Buffer.allocUnsafe(4 + h.length + Buffer.byteLength(data));
  b.writeUInt32BE(h.length, 0);
  h.copy(b, 4);
  b.write(data, 4 + h.length, 'utf8');
  return b;
}

function decodePlain(b) {
  if (b.length < 4) throw new KeyError('state chunk is malformed');
  const n = b.readUInt32BE(0);
  if (4 + n > b.length) throw new KeyError('state chunk is malformed');
  let header;
  try {
    header = JSON.parse(b.subarray(4, 4 + n).toString('utf8'));
  } catch {
    throw new KeyError('state chunk header is malformed');
  }
  return { header, data: b.subarray(4 + n).toString('utf8') };
}

function rss() {
  return process.memoryUsage.rss ? process.memoryUsage.rss() : process.memoryUsage().rss;
}

// Sending is one session on the sending owner: the layout of its chunks over the
// records (the key body and the cache entries as they were at the offer).
class Sending {
  constructor(image, session, key, records, expires) {
    this.image = image;
    this.session = session;
    this.key = key;
    this.records = records;
    this.expires = expires;
    this.layout = []; // [record, start, end] per chunk
    this.bytes = 0;
    records.forEach((r, n) => {
      for (const [s, e] of pieces(r.text)) this.layout.push([n, s, e]);
      this.bytes += Buffer.byteLength(r.text);
    });
  }

  get total() { return this.layout.length; }

  // chunk seals chunk i; returns it and the transient bytes it took.
  chunk(i) {
    const [n, s, e] = this.layout[i];
    const r = this.records[n];
    const header = { r: n, kind: r.kind, end: e === r.text.length };
    if (s === 0) header.meta = r.meta;
    const plain = encodePlain(header, r.text.slice(s, e));
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(chunkAAD(this.image, this.session, i, this.total));
    const ct = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
    const out = { i, iv: iv.toString('base64'), ct: ct.toString('base64') };
    return { out, transient: plain.length + ct.length + out.ct.length };
  }
}

// Receiving is the session of the receiving owner: the next chunk it takes, the
// record being rebuilt and the records complete so far (installed at the end).
class Receiving {
  constructor(image, session, key, total, peerKid, expires) {
    Object.assign(this, { image, session, key, total, peerKid, expires });
    this.next = 0;
    this.bytes = 0;
    this.cur = null; // {r, kind, meta, parts}
    this.keyBody = null;
    this.entries = []; // [cacheKey, {kid, code, sha256}]
  }
}

// StateTransfer is an owner's side of state transfers, both ways. keys: the
// owner's ImageKeys; cache: its sealed.CodeCache (or null); now: the clock.
class StateTransfer {
  constructor({ keys, cache = null, now = Date.now, log = () => {} }) {
    this.keys = keys;
    this.cache = cache;
    this.now = now;
    this.log = log;
    this.sending = new Map(); // session -> Sending, oldest first
    this.receiving = null;
    this.peak = 0; // the most transient bytes one message took, either way
  }

  note(transient) {
    if (transient > this.peak) this.peak = transient;
  }

  // offer answers a peer's key-request with a new sending session: the peer's
  // evidence is checked (keys.checkRequest: same image, same measurement), the
  // layout is fixed over the current key and cache, and the session key goes to
  // the peer sealed to its ephemeral key.
  offer(req) {
    const pub = this.keys.checkRequest(req);
    const evidence = this.keys.evidence();
    const records = [{ kind: 'key', text: this.keys.keyBody() }];
    if (this.cache) {
      for (const [ck, e] of this.cache.entries) {
        if (this.keys.byKid(e.kid)) records.push({ kind: 'code', text: e.code, meta: { ck, kid: e.kid, sha256: e.sha256 } });
      }
    }
    const session = crypto.randomBytes(16).toString('hex');
    const key = crypto.randomBytes(32);
    const s = new Sending(this.keys.image, session, key, records, this.now() + SESSION_TTL_MS);
    this.sweep();
    while (this.sending.size >= MAX_SENDING) this.sending.delete(this.sending.keys().next().value);
    this.sending.set(session, s);
    const head = JSON.stringify({ session, key: key.toString('base64'), total: s.total, bytes: s.bytes, entries: records.length - 1 });
    const { enc, ct } = hpkeSeal(pub, STATE_INFO, stateAAD(this.keys.image, evidence.kid, req.evidence.kid, session), Buffer.from(head));
    this.log('info', 'state transfer offered', { session, chunks: s.total, bytes: s.bytes, entries: records.length - 1 });
    return { evidence, session, total: s.total, bytes: s.bytes, rss: rss(),
      enc: enc.toString('base64'), ct: ct.toString('base64') };
  }

  sweep() {
    const t = this.now();
    for (const [id, s] of this.sending) if (s.expires <= t) this.sending.delete(id);
    if (this.receiving && this.receiving.expires <= this.now()) this.receiving = null;
  }

  // chunks answers state-chunks: up to count (at most MAX_BATCH) chunks of the
  // session from index from.
  chunks(m) {
    this.sweep();
    const s = typeof m.session === 'string' ? this.sending.get(m.session) : undefined;
    if (!s) throw new KeyError('unknown or expired state transfer session');
    const from = m.from;
    const count = m.count === undefined ? 1 : m.count;
    if (!Number.isSafeInteger(from) || from < 0 || from >= s.total) throw new KeyError(`from must be a chunk index below ${s.total}`);
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_BATCH) throw new KeyError(`count must be 1 to ${MAX_BATCH}`);
    const out = [];
    let transient = 0;
    for (let i = from; i < Math.min(from + count, s.total); i++) {
      const c = s.chunk(i);
      out.push(c.out);
      transient += c.transient;
    }
    this.note(transient);
    return { session: s.session, total: s.total, chunks: out, peakBytes: this.peak };
  }

  // open takes a state-offer for this owner's pending key-request: checks the
  // sender's evidence, opens the session key with the ephemeral key and starts
  // receiving. Returns the session's status.
  open(offer) {
    const k = this.keys;
    if (!k.transfer) throw new KeyError('no key request is pending');
    if (!offer || typeof offer !== 'object' || typeof offer.enc !== 'string' || typeof offer.ct !== 'string' ||
      typeof offer.session !== 'string' || !SESSION.test(offer.session)) {
      throw new KeyError('state offer is malformed');
    }
    k.checkPeer(offer.evidence);
    const plain = hpkeOpen(k.transfer.kem, STATE_INFO, stateAAD(k.image, offer.evidence.kid, k.transfer.kid, offer.session),
      Buffer.from(offer.enc, 'base64'), Buffer.from(offer.ct, 'base64'));
    let head;
    try {
      head = JSON.parse(plain.toString('utf8'));
    } catch {
      throw new KeyError('state offer header is malformed');
    }
    const key = Buffer.from(String(head.key), 'base64');
    if (head.session !== offer.session || key.length !== 32 || !Number.isSafeInteger(head.total) || head.total < 1 ||
      head.total !== offer.total) {
      throw new KeyError('state offer header does not match the offer');
    }
    this.receiving = new Receiving(k.image, head.session, key, head.total, offer.evidence.kid, this.now() + SESSION_TTL_MS);
    return this.status({ session: head.session });
  }

  // status answers state-status: the next chunk index the session takes (every
  // chunk below it arrived), for a sender resuming after a broken connection.
  status(m) {
    this.sweep();
    const r = this.receiving;
    if (!r || m.session !== r.session) throw new KeyError('unknown or expired state transfer session');
    return { session: r.session, next: r.next, total: r.total, done: false, peakBytes: this.peak };
  }

  // accept takes one chunk (state-chunk): only the next index of the session, and
  // only when it opens under the session key with its index and the count as
  // associated data. The last chunk installs the state.
  accept(m) {
    this.sweep();
    const r = this.receiving;
    if (!r || m.session !== r.session) throw new KeyError('unknown or expired state transfer session');
    if (!Number.isSafeInteger(m.i) || typeof m.iv !== 'string' || typeof m.ct !== 'string') throw new KeyError('state chunk is malformed');
    if (m.i < r.next) throw new KeyError(`state chunk ${m.i} was taken already (replayed); the session takes chunk ${r.next}`);
    if (m.i > r.next) throw new KeyError(`state chunk ${m.i} arrived before chunk ${r.next} (reordered or lost)`);
    const iv = Buffer.from(m.iv, 'base64');
    const ct = Buffer.from(m.ct, 'base64');
    if (iv.length !== 12 || ct.length < 16) throw new KeyError('state chunk is malformed');
    let plain;
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', r.key, iv);
      d.setAAD(chunkAAD(r.image, r.session, m.i, r.total));
      d.setAuthTag(ct.subarray(ct.length - 16));
      plain = Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
    } catch {
      throw new KeyError(`state chunk ${m.i} does not open (altered, moved, or from another session)`);
    }
    this.note(m.ct.length + ct.length + plain.length);
    const { header, data } = decodePlain(plain);
    this.take(r, header, data);
    r.next++;
    r.bytes += Buffer.byteLength(data);
    if (r.next < r.total) return { session: r.session, next: r.next, total: r.total, done: false };
    return this.install(r);
  }

  // take adds one chunk's piece to the record it belongs to.
  take(r, h, data) {
    if (!h || !Number.isSafeInteger(h.r) || (h.kind !== 'key' && h.kind !== 'code')) throw new KeyError('state chunk header is malformed');
    if (!r.cur) {
      if (!h.meta && h.kind === 'code') throw new KeyError('state chunk starts a record without its metadata');
      r.cur = { r: h.r, kind: h.kind, meta: h.meta || null, parts: [] };
    } else if (r.cur.r !== h.r) {
      throw new KeyError('state chunk belongs to another record than the one being received');
    }
    r.cur.parts.push(data);
    if (!h.end) return;
    const text = r.cur.parts.join('');
    const { kind, meta } = r.cur;
    r.cur = null;
    if (kind === 'key') {
      if (r.keyBody !== null) throw new KeyError('state holds two key records');
      r.keyBody = text;
      return;
    }
    if (!meta || typeof meta.ck !== 'string' || typeof meta.kid !== 'string' || typeof meta.sha256 !== 'string') {
      throw new KeyError('state code record metadata is malformed');
    }
    if (crypto.createHash('sha256').update(text).digest('hex') !== meta.sha256) throw new KeyError('state code record does not match its hash');
    r.entries.push([meta.ck, { kid: meta.kid, code: text, sha256: meta.sha256 }]);
  }

  // install adopts the key (keys.adopt: checked against the sender's evidence,
  // sealed to this owner's key directory) and fills the code cache.
  install(r) {
    this.receiving = null;
    if (r.cur || r.keyBody === null) throw new KeyError('state ended inside a record or without the key');
    const kid = this.keys.adopt(r.keyBody, r.peerKid);
    if (this.cache) for (const [ck, e] of r.entries) this.cache.set(ck, e);
    this.log('info', 'state transfer received', { session: r.session, kid, chunks: r.total, bytes: r.bytes, entries: r.entries.length });
    return { session: r.session, next: r.next, total: r.total, done: true, kid, entries: r.entries.length, bytes: r.bytes,
      peakBytes: this.peak, rss: rss() };
  }
}

module.exports = { StateTransfer, CHUNK_BYTES, MAX_BATCH, SESSION_TTL_MS, STATE_INFO, pieces };
