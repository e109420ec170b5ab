'use strict';
// The image key (trusted/keys.js): generation, evidence, sealing to disk, transfer
// between two instances, refusals, rotation; then the same through real owner
// processes and the gate's key messages.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { rawPrivate } = require('../trusted/hpke'); // a JWK export can deadlock Node 20 (hpke.rawPublic)
const { ImageKeys, KeyError, measurement, reportData, kidOf, hpkeSeal, ROTATE_GRACE_MS, SEALED_FILE } = require('../trusted/keys');
const { startOwner } = require('./gate-client');

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-keys-test-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

// direct mode without a stand-in /dev/attestation (attestationDir '').
function keys(opts = {}) {
  return new ImageKeys({ image: 'nodejs:20', attestationDir: '', ...opts });
}

test('generate: key shapes and kid', () => {
  const k = keys();
  assert.equal(k.ready(), false);
  const kid = k.start();
  const c = k.current();
  assert.equal(c.kid, kid);
  assert.match(kid, /^[0-9a-f]{32}$/);
  assert.equal(c.kem.raw.length, 32);
  assert.equal(c.sig.raw.length, 32);
  assert.equal(c.kem.privateKey.asymmetricKeyType, 'x25519');
  assert.equal(c.sig.privateKey.asymmetricKeyType, 'ed25519');
  assert.equal(kid, crypto.createHash('sha256').update(c.kem.raw).update(c.sig.raw).digest('hex').slice(0, 32));
  assert.equal(k.byKid(kid), c);
  assert.equal(k.byKid('00'.repeat(16)), null);
  assert.notEqual(keys().start(), kid, 'each generation is a new key');
});

test('evidence fields (simulated)', () => {
  const k = keys();
  k.start();
  const c = k.current();
  const ev = k.evidence();
  assert.deepEqual(Object.keys(ev).sort(), ['image', 'keys', 'kid', 'reportData', 'simulated', 'type', 'v']);
  assert.equal(ev.v, 1);
  assert.equal(ev.type, 'simulated');
  assert.equal(ev.image, 'nodejs:20');
  assert.equal(ev.kid, c.kid);
  assert.equal(ev.keys.kem, c.kem.raw.toString('base64'));
  assert.equal(ev.keys.sig, c.sig.raw.toString('base64'));
  const want = crypto.createHash('sha256').update('teemate-evidence-v1\n').update(c.kem.raw).update(c.sig.raw).digest('hex') + '00'.repeat(32);
  assert.equal(ev.reportData, want);
  assert.equal(reportData(c.kem.raw, c.sig.raw).toString('hex'), want);
  assert.equal(ev.simulated.note, 'simulated: no hardware root of trust');
  assert.match(ev.simulated.measurement, /^[0-9a-f]{64}$/);
  assert.equal(ev.simulated.measurement, measurement());
  assert.equal(k.evidenceSha256(), crypto.createHash('sha256').update(JSON.stringify(ev)).digest('hex'));
  assert.equal(ev.quote, undefined);
});

test('measurement covers every trusted source', (t) => {
  const d = tmpdir(t);
  fs.writeFileSync(path.join(d, 'a.js'), 'x');
  fs.writeFileSync(path.join(d, 'notes.txt'), 'ignored');
  const m1 = measurement(d);
  fs.writeFileSync(path.join(d, 'notes.txt'), 'still ignored');
  assert.equal(measurement(d), m1);
  fs.writeFileSync(path.join(d, 'a.js'), 'y');
  assert.notEqual(measurement(d), m1);
});

test('measurement covers the native code the owner loads, in order', (t) => {
  const d = tmpdir(t);
  fs.writeFileSync(path.join(d, 'a.js'), 'x');
  const addon = path.join(d, 'teemate_isolate.node');
  const other = path.join(d, 'teemate_sealcrypto.node');
  fs.writeFileSync(addon, 'native one');
  fs.writeFileSync(other, 'native two');
  const none = measurement(d);
  const both = measurement(d, [addon, other]);
  assert.notEqual(both, none, 'a loaded addon changes the measurement');
  assert.equal(measurement(d, [addon, other]), both);
  assert.notEqual(measurement(d, [other, addon]), both, 'the order is part of it');
  // A host that swaps an addon's bytes (same name, same size) changes the measurement.
  fs.writeFileSync(addon, 'native 0ne');
  assert.notEqual(measurement(d, [addon, other]), both);
  // A file the owner would load but cannot read is an error, not a silent omission.
  assert.throws(() => measurement(d, [path.join(d, 'missing.node')]), /ENOENT/);
  // The evidence of a holder given natives carries that measurement.
  const k = keys({ natives: [addon] });
  assert.equal(k.measurement, measurement(undefined, [addon]));
  assert.notEqual(k.measurement, measurement());
});

test('sealed to disk: a restart comes back with the same key', (t) => {
  const dir = tmpdir(t);
  const sealingKey = crypto.randomBytes(32);
  const a = keys({ keyDir: dir, sealingKey });
  const kid = a.start();
  const file = path.join(dir, SEALED_FILE);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const text = fs.readFileSync(file, 'utf8');
  for (const secret of [a.current().kem.privateKey, a.current().sig.privateKey]) {
    const d = rawPrivate(secret).toString('base64url');
    assert.ok(!text.includes(d) && !text.includes(Buffer.from(d, 'base64url').toString('base64')), 'no private key in the clear');
  }
  const b = keys({ keyDir: dir, sealingKey });
  assert.equal(b.start(), kid);
  const fresh = path.join(dir, 'new', 'dir');
  keys({ keyDir: fresh, sealingKey }).start();
  assert.equal(fs.statSync(fresh).mode & 0o777, 0o700);
  const awaiting = keys({ keyDir: path.join(dir, 'await'), sealingKey });
  awaiting.start('await');
  awaiting.importOffer(a.offer(awaiting.request()));
  assert.equal(keys({ keyDir: path.join(dir, 'await'), sealingKey }).start(), kid, 'an imported key is sealed too');
  assert.deepEqual(b.evidence().keys, a.evidence().keys);
  // Without a sealing key direct mode cannot seal.
  assert.throws(() => keys({ keyDir: tmpdir(t) }).start(), /needs a sealing key/);
});

test('a tampered sealed key refuses the start and is left in place', (t) => {
  const dir = tmpdir(t);
  const sealingKey = crypto.randomBytes(32);
  keys({ keyDir: dir, sealingKey }).start();
  const file = path.join(dir, SEALED_FILE);
  const s = JSON.parse(fs.readFileSync(file, 'utf8'));
  const ct = Buffer.from(s.ct, 'base64');
  ct[10] ^= 1;
  const tampered = `${JSON.stringify({ ...s, ct: ct.toString('base64') })}\n`;
  fs.writeFileSync(file, tampered);
  assert.throws(() => keys({ keyDir: dir, sealingKey }).start(),
    (e) => e instanceof KeyError && /integrity check failed/.test(e.message) && /refuses to start/.test(e.message));
  assert.equal(fs.readFileSync(file, 'utf8'), tampered, 'no new key was written over it');
  // The kid in the clear is bound too; so are the image and the sealing key.
  fs.writeFileSync(file, `${JSON.stringify({ ...s, kid: '11'.repeat(16) })}\n`);
  assert.throws(() => keys({ keyDir: dir, sealingKey }).start(), /integrity check failed/);
  fs.writeFileSync(file, `${JSON.stringify(s)}\n`);
  assert.throws(() => keys({ keyDir: dir, sealingKey: crypto.randomBytes(32) }).start(), /integrity check failed/);
  assert.throws(() => keys({ keyDir: dir, sealingKey, image: 'python:3' }).start(), /sealed for image "nodejs:20"/);
  fs.writeFileSync(file, 'garbage');
  assert.throws(() => keys({ keyDir: dir, sealingKey }).start(), /not JSON/);
});

test('a key sealed by another runtime build is moved aside with a warning', (t) => {
  const dir = tmpdir(t);
  const sealingKey = crypto.randomBytes(32);
  const old = keys({ keyDir: dir, sealingKey, measurement: 'aa'.repeat(32) });
  const oldKid = old.start();
  const warnings = [];
  const k = keys({ keyDir: dir, sealingKey, log: (level, msg, f) => warnings.push({ level, msg, f }) });
  const kid = k.start();
  assert.notEqual(kid, oldKid);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0].level, 'warn');
  assert.match(warnings[0].msg, /ANOTHER RUNTIME BUILD MOVED ASIDE/);
  assert.ok(fs.existsSync(warnings[0].f.movedTo));
  assert.equal(keys({ keyDir: dir, sealingKey }).start(), kid);
});

test('transfer between two live instances', () => {
  const a = keys();
  a.start();
  const b = keys();
  assert.equal(b.start('await'), null);
  assert.throws(() => b.current(), /no image key yet/);
  const req = b.request();
  assert.equal(req.evidence.type, 'simulated');
  const offer = a.offer(req);
  // What the host relays holds no private key material in the clear.
  const relayed = JSON.stringify({ req, offer });
  for (const p of [a.current().kem.privateKey, a.current().sig.privateKey]) {
    const d = rawPrivate(p);
    for (const enc of ['base64', 'base64url', 'hex']) assert.ok(!relayed.includes(d.toString(enc)));
  }
  assert.equal(b.importOffer(offer), a.current().kid);
  assert.deepEqual(b.evidence(), a.evidence());
  assert.throws(() => b.importOffer(offer), /no key request is pending/);
});

test('transfer refusals', async (t) => {
  const a = keys();
  a.start();
  await t.test('another measurement', () => {
    const b = keys({ measurement: 'bb'.repeat(32) });
    b.start('await');
    assert.throws(() => a.offer(b.request()), (e) => e instanceof KeyError && /peer measurement .* is not this enclave's/.test(e.message));
    const c = keys({ measurement: 'bb'.repeat(32) });
    c.start('await');
    const b2 = keys();
    b2.start('await');
    const offer = a.offer(b2.request());
    assert.throws(() => c.importOffer(offer), /no key request is pending/);
    c.request();
    assert.throws(() => c.importOffer(offer), /peer measurement/);
  });
  await t.test('another image', () => {
    const b = keys({ image: 'python:3' });
    b.start('await');
    assert.throws(() => a.offer(b.request()), /peer evidence is for image "python:3"/);
  });
  await t.test('simulated only between simulated', () => {
    const b = keys();
    b.start('await');
    const req = b.request();
    assert.throws(() => a.offer({ ...req, evidence: { ...req.evidence, type: 'sgx-dcap' } }), /simulated only between simulated/);
  });
  await t.test('evidence not bound to its keys, or a pub that is not the evidence key', () => {
    const b = keys();
    b.start('await');
    const req = b.request();
    const other = keys();
    other.start();
    assert.throws(() => a.offer({ ...req, pub: other.evidence().keys.kem }), /pub is not the key its evidence binds/);
    assert.throws(() => a.offer({ ...req, evidence: { ...req.evidence, kid: other.current().kid } }), /not bound to its keys/);
    assert.throws(() => a.offer({ pub: 1 }), /malformed/);
    // A low-order X25519 point in a peer's offer is refused as a key error, not a crash.
    const c = keys();
    c.start('await');
    const creq = c.request();
    const good = a.offer(creq);
    assert.throws(() => c.importOffer({ ...good, enc: Buffer.alloc(32).toString('base64') }),
      (e) => e instanceof KeyError && /X25519 with the peer's key failed/.test(e.message));
  });
  await t.test('a host that swaps the key in an offer is caught', () => {
    const b = keys();
    b.start('await');
    const req = b.request();
    const mallory = keys();
    mallory.start();
    // The host keeps a's (public) evidence but seals a key of its own to b's ephemeral key.
    const forged = mallory.offer(req);
    assert.throws(() => b.importOffer({ ...forged, evidence: a.evidence() }), /HPKE open failed|not the key of the peer evidence/);
    const aad = Buffer.from(`teemate-transfer-v1\nnodejs:20\n${a.current().kid}\n${req.evidence.kid}`);
    const body = { key: { kid: mallory.current().kid,
      kem: { d: rawPrivate(mallory.current().kem.privateKey).toString('base64url'), x: mallory.current().kem.raw.toString('base64url') },
      sig: { d: rawPrivate(mallory.current().sig.privateKey).toString('base64url'), x: mallory.current().sig.raw.toString('base64url') } } };
    const { enc, ct } = hpkeSeal(Buffer.from(req.pub, 'base64'), 'teemate-transfer-v1', aad, Buffer.from(JSON.stringify(body)));
    assert.throws(() => b.importOffer({ evidence: a.evidence(), enc: enc.toString('base64'), ct: ct.toString('base64') }),
      /offered key is not the key of the peer evidence/);
    const good = a.offer(req);
    const ctb = Buffer.from(good.ct, 'base64');
    ctb[0] ^= 1;
    assert.throws(() => b.importOffer({ ...good, ct: ctb.toString('base64') }), /HPKE open failed/);
    assert.equal(b.importOffer(good), a.current().kid);
  });
});

test('rotation keeps the previous key for its grace, sealed and transferred', (t) => {
  let now = 1_000_000;
  const dir = tmpdir(t);
  const sealingKey = crypto.randomBytes(32);
  const a = keys({ keyDir: dir, sealingKey, now: () => now });
  const old = a.start();
  const evOld = a.evidence();
  const kid = a.rotate();
  assert.notEqual(kid, old);
  assert.equal(a.evidence().kid, kid, 'evidence shows the current key');
  assert.notDeepEqual(a.evidence(), evOld);
  assert.equal(a.byKid(old).kid, old);
  // A restart within the grace keeps both; a transferred copy too.
  const r = keys({ keyDir: dir, sealingKey, now: () => now });
  assert.equal(r.start(), kid);
  assert.equal(r.byKid(old).kid, old);
  const b = keys({ now: () => now });
  b.start('await');
  b.importOffer(a.offer(b.request()));
  assert.equal(b.byKid(old).kid, old);
  now += ROTATE_GRACE_MS - 1;
  assert.ok(a.byKid(old));
  now += 1;
  assert.equal(a.byKid(old), null);
  assert.equal(b.byKid(old), null);
  assert.equal(a.byKid(kid).kid, kid);
  // An owner that held a key and imports another keeps its own for the grace.
  const c = keys({ now: () => now });
  const cOld = c.start();
  c.importOffer(a.offer(c.request()));
  assert.equal(c.current().kid, kid);
  assert.equal(c.byKid(cOld).kid, cOld);
});

test('sgx-dcap evidence and sealing through a stand-in /dev/attestation', (t) => {
  const dev = tmpdir(t);
  const mrenclave = crypto.randomBytes(32);
  // Gramine's pseudo-files: writing user_report_data makes the next quote carry it.
  // The stand-in quote is written by the test after each write (see quoteFor).
  fs.mkdirSync(path.join(dev, 'keys'));
  fs.writeFileSync(path.join(dev, 'keys', '_sgx_mrenclave'), crypto.randomBytes(16));
  const quoteFor = (rd) => {
    const q = Buffer.alloc(48 + 384 + 64);
    q.writeUInt16LE(3, 0);
    mrenclave.copy(q, 48 + 64);
    rd.copy(q, 48 + 320);
    return q;
  };
  const realWrite = fs.writeFileSync;
  t.mock.method(fs, 'writeFileSync', (file, data, ...rest) => {
    realWrite(file, data, ...rest);
    if (file === path.join(dev, 'user_report_data')) realWrite(path.join(dev, 'quote'), quoteFor(Buffer.from(data)));
  });
  const k = new ImageKeys({ image: 'nodejs:20', attestationDir: dev, keyDir: tmpdir(t) });
  assert.equal(k.type, 'sgx-dcap');
  assert.equal(k.measurement, mrenclave.toString('hex'));
  const kid = k.start();
  const ev = k.evidence();
  assert.equal(ev.type, 'sgx-dcap');
  assert.equal(ev.simulated, undefined);
  const q = Buffer.from(ev.quote, 'base64');
  assert.equal(q.subarray(48 + 320, 48 + 384).toString('hex'), ev.reportData);
  assert.equal(fs.readFileSync(path.join(dev, 'user_report_data')).toString('hex'), ev.reportData);
  const again = new ImageKeys({ image: 'nodejs:20', attestationDir: dev, keyDir: k.keyDir });
  assert.equal(again.start(), kid, 'unsealed with the MRENCLAVE sealing key');
  // Without an in-enclave quote verifier an sgx owner refuses transfers.
  const b = new ImageKeys({ image: 'nodejs:20', attestationDir: dev });
  b.start('await');
  assert.throws(() => k.offer(b.request()), /needs an in-enclave DCAP quote verifier/);
  const sim = keys();
  sim.start();
  assert.throws(() => sim.offer(b.request()), /simulated only between simulated/);
});

test('kidOf', () => {
  assert.equal(kidOf(Buffer.alloc(32), Buffer.alloc(32)),
    crypto.createHash('sha256').update(Buffer.alloc(64)).digest('hex').slice(0, 32));
});

// ---- real owners ---------------------------------------------------------------------------
const GATE_KEY = 'ab'.repeat(32);
const SEAL_KEY = 'cd'.repeat(32);

function keyAuth(type) {
  return crypto.createHmac('sha256', Buffer.from(GATE_KEY, 'hex')).update(`teemate-keys-v1\n${type}`).digest('hex');
}

async function kidOf_(owner) {
  const c = await owner.connect();
  const pong = await c.request({ type: 'ping' });
  c.close();
  return pong.kid;
}

test('owners: sealed key survives a restart, a tampered one stops the start, transfer over the gate', { concurrency: false }, async (t) => {
  const keyDir = tmpdir(t);
  const args = ['--gate-key', 'stdin', '--key-dir', keyDir];
  const stdin = `${GATE_KEY}\n${SEAL_KEY}\n`;
  const first = await startOwner({ args, stdin });
  const kid = await kidOf_(first);
  assert.match(kid, /^[0-9a-f]{32}$/);
  await first.stop();
  const second = await startOwner({ args, stdin });
  t.after(() => second.stop());
  assert.equal(await kidOf_(second), kid, 'a restarted owner has the same kid');

  // A second owner of the image awaits its key and gets it from the live one.
  const third = await startOwner({ args: ['--gate-key', 'stdin', '--key-mode', 'await'], stdin: `${GATE_KEY}\n` });
  t.after(() => third.stop());
  assert.equal(await kidOf_(third), null);
  const c2 = await second.connect();
  const c3 = await third.connect();
  const refused = await c3.request({ type: 'key-request' });
  assert.equal(refused.class, 'auth');
  const c3b = await third.connect();
  const req = await c3b.request({ type: 'key-request', auth: keyAuth('key-request') });
  assert.equal(req.type, 'key-request');
  const offer = await c2.request({ type: 'key-offer', request: req.request, auth: keyAuth('key-offer') });
  assert.equal(offer.type, 'key-offer', JSON.stringify(offer));
  const bad = await c3b.request({ type: 'key-import', offer: { ...offer.offer, ct: Buffer.alloc(40).toString('base64') }, auth: keyAuth('key-import') });
  assert.equal(bad.type, 'error');
  assert.equal(bad.class, 'key');
  const imported = await c3b.request({ type: 'key-import', offer: offer.offer, auth: keyAuth('key-import') });
  assert.deepEqual(imported, { type: 'key-imported', kid });
  assert.equal(await kidOf_(third), kid);
  const rot = await c2.request({ type: 'key-rotate', auth: keyAuth('key-rotate') });
  assert.equal(rot.type, 'key-rotated');
  assert.equal(rot.previous, kid);
  assert.notEqual(rot.kid, kid);
  c2.close();
  c3b.close();
  await second.stop();

  // Tamper with the sealed key: the next owner refuses to start, the file stays.
  const file = path.join(keyDir, SEALED_FILE);
  const s = JSON.parse(fs.readFileSync(file, 'utf8'));
  const ct = Buffer.from(s.ct, 'base64');
  ct[ct.length - 1] ^= 0x80;
  const tampered = JSON.stringify({ ...s, ct: ct.toString('base64') });
  fs.writeFileSync(file, tampered);
  await assert.rejects(startOwner({ args, stdin }), /exited with 1.*integrity check failed/s);
  assert.equal(fs.readFileSync(file, 'utf8'), tampered);
  await assert.rejects(startOwner({ args, stdin: `${GATE_KEY}\n` }), /exited with 2.*bad sealing key/s);
});
