'use strict';
// primitives.js: the native implementation (teemate_sealcrypto.node) and node:crypto give the
// same results on the published vectors and on random inputs, refuse the same things with the
// same kind of error, and either can seal what the other opens; HPKE over each interoperates.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const P = require('../trusted/primitives');
const hpke = require('../trusted/hpke');
const need = require('./need');

const built = fs.existsSync(P.DEFAULT_ADDON) && process.env.TEEMATE_SEALCRYPTO !== 'node';
const skip = need.skip(!built && 'the sealed-crypto addon is not built (make build)');
const hex = (s) => Buffer.from(s, 'hex');

// each runs fn once per implementation, with that one active, and restores the default.
function each(fn) {
  const before = P.which();
  try {
    for (const name of ['node', 'native']) fn(P.use(name).name);
  } finally {
    P.use(before);
  }
}

function x25519Pair() {
  const p = crypto.generateKeyPairSync('x25519');
  return { privateKey: p.privateKey, raw: hpke.rawPublic(p.publicKey) };
}

test('the native implementation is the default when the addon is built', { skip }, () => {
  assert.equal(P.which(), 'native');
  assert.equal(P.whyNotNative(), '');
});

test('SHA-256 and HMAC-SHA256: the published vectors (FIPS 180-2, RFC 4231 cases 1, 2 and 6)', { skip }, () => {
  each((name) => {
    assert.equal(P.sha256('abc').toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', name);
    assert.equal(P.sha256(Buffer.alloc(0)).toString('hex'), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', name);
    assert.equal(P.hmacSha256(Buffer.alloc(20, 0x0b), Buffer.from('Hi There')).toString('hex'),
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7', name);
    assert.equal(P.hmacSha256(Buffer.from('Jefe'), Buffer.from('what do ya want for nothing?')).toString('hex'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', name);
    // A key longer than the block is hashed first.
    assert.equal(P.hmacSha256(Buffer.alloc(131, 0xaa), Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First')).toString('hex'),
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54', name);
  });
});

test('HMAC-SHA256 and SHA-256 agree on random keys and data of every length around the block', { skip }, () => {
  for (const keyLen of [0, 1, 32, 63, 64, 65, 200]) {
    for (const dataLen of [0, 1, 55, 56, 64, 1000]) {
      const key = crypto.randomBytes(keyLen);
      const data = crypto.randomBytes(dataLen);
      const want = crypto.createHmac('sha256', key).update(data).digest('hex');
      each((name) => assert.equal(P.hmacSha256(key, data).toString('hex'), want, `${name} key ${keyLen} data ${dataLen}`));
      each((name) => assert.equal(P.sha256(data).toString('hex'), crypto.createHash('sha256').update(data).digest('hex'), name));
    }
  }
});

test('X25519: the RFC 7748 vector, agreement with node:crypto, small-order keys refused alike', { skip }, () => {
  // RFC 7748 section 6.1: Alice's private key with Bob's public key.
  const alice = crypto.createPrivateKey({ key: Buffer.concat([hex('302e020100300506032b656e04220420'),
    hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')]), format: 'der', type: 'pkcs8' });
  const bob = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
  each((name) => assert.equal(P.x25519(alice, bob).toString('hex'),
    '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742', name));
  for (let i = 0; i < 20; i++) {
    const a = x25519Pair();
    const b = x25519Pair();
    const want = P.use('node').x25519(a.privateKey, b.raw).toString('hex');
    each((name) => assert.equal(P.x25519(a.privateKey, b.raw).toString('hex'), want, name));
    each((name) => assert.equal(P.x25519(b.privateKey, a.raw).toString('hex'), want, name));
  }
  P.use('native');
  // Points of small order (0 and 1; 0xe0eb7a7c...: order 8): the shared secret would be all zeros.
  for (const bad of ['00'.repeat(32), `01${'00'.repeat(31)}`, 'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800']) {
    each((name) => assert.throws(() => P.x25519(alice, hex(bad)), (e) => e instanceof P.PrimitiveError && e.kind === 'x25519', `${name} ${bad}`));
  }
});

test('AES-256-GCM: what one implementation seals the other opens; any change to key, IV, AAD, ciphertext or tag is refused', { skip }, () => {
  for (const len of [0, 1, 16, 17, 1000, 70000]) {
    const key = crypto.randomBytes(32);
    const iv = crypto.randomBytes(12);
    const aad = `aad-${len}`;
    const pt = crypto.randomBytes(len);
    const ct = P.use('native').gcmSeal(key, iv, Buffer.from(aad), pt);
    assert.equal(ct.length, len + 16);
    assert.deepEqual(P.use('node').gcmSeal(key, iv, Buffer.from(aad), pt), ct, 'the same ciphertext and tag');
    each((name) => {
      assert.deepEqual(P.gcmOpen(key, iv, aad, ct), pt, name);
      const refused = (e) => e instanceof P.PrimitiveError && e.kind === 'gcm';
      const flipped = Buffer.from(ct);
      flipped[flipped.length - 1] ^= 1;
      assert.throws(() => P.gcmOpen(key, iv, aad, flipped), refused, `${name}: tag`);
      if (len > 0) {
        const body = Buffer.from(ct);
        body[0] ^= 0x80;
        assert.throws(() => P.gcmOpen(key, iv, aad, body), refused, `${name}: ciphertext`);
      }
      assert.throws(() => P.gcmOpen(key, iv, `${aad}!`, ct), refused, `${name}: aad`);
      assert.throws(() => P.gcmOpen(crypto.randomBytes(32), iv, aad, ct), refused, `${name}: key`);
      assert.throws(() => P.gcmOpen(key, crypto.randomBytes(12), aad, ct), refused, `${name}: iv`);
      assert.throws(() => P.gcmOpen(key, iv, aad, ct.subarray(0, 15)), refused, `${name}: shorter than the tag`);
    });
  }
  P.use('native');
});

test('Ed25519: the RFC 8032 vectors, and signatures node:crypto verifies', { skip }, () => {
  const key = (seed) => crypto.createPrivateKey({ key: Buffer.concat([hex('302e020100300506032b657004220420'), hex(seed)]),
    format: 'der', type: 'pkcs8' });
  // RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2.
  const t1 = key('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
  const t2 = key('4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb');
  each((name) => {
    assert.equal(P.ed25519Sign(t1, Buffer.alloc(0)).toString('hex'),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b', name);
    assert.equal(P.ed25519Sign(t2, hex('72')).toString('hex'),
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00', name);
  });
  const pair = crypto.generateKeyPairSync('ed25519');
  each((name) => {
    const msg = `teemate-receipt-v1\n{"n":${name.length}}`;
    assert.ok(crypto.verify(null, Buffer.from(msg), pair.publicKey, P.ed25519Sign(pair.privateKey, msg)), name);
  });
});

test('HPKE over either implementation opens what the other sealed, and refuses a tampered message alike', { skip }, () => {
  const r = x25519Pair();
  for (const [from, to] of [['native', 'node'], ['node', 'native'], ['native', 'native']]) {
    P.use(from);
    const { enc, ct } = hpke.seal(r.raw, 'info', 'aad', Buffer.from(`from ${from}`));
    P.use(to);
    assert.equal(hpke.open(r, 'info', 'aad', enc, ct).toString(), `from ${from}`);
    const bad = Buffer.from(ct);
    bad[0] ^= 1;
    assert.throws(() => hpke.open(r, 'info', 'aad', enc, bad), (e) => e instanceof hpke.HpkeError && e.kind === 'open');
    assert.throws(() => hpke.open(r, 'info', 'aad', Buffer.alloc(32), ct), (e) => e instanceof hpke.HpkeError && e.kind === 'key');
  }
  P.use('native');
});

test('the native HPKE open in one call gives what the composed one gives, on any info, AAD and length', { skip }, () => {
  P.use('native');
  assert.equal(typeof P.hpkeOpenInOne(), 'function', 'the native implementation opens in one call');
  assert.equal(P.use('node') && P.hpkeOpenInOne(), null, 'node:crypto composes it');
  const r = x25519Pair();
  for (const n of [0, 1, 15, 16, 17, 64, 1000, 70000]) {
    const info = crypto.randomBytes(n % 40).toString('hex');
    const aad = crypto.randomBytes(n % 300);
    const pt = crypto.randomBytes(n);
    P.use('node');
    const { enc, ct } = hpke.seal(r.raw, info, aad, pt);
    const composed = hpke.open(r, info, aad, enc, ct);
    P.use('native');
    assert.deepEqual(hpke.open(r, info, aad, enc, ct), composed, `length ${n}`);
    assert.deepEqual(composed, pt);
    assert.throws(() => hpke.open(r, `${info}x`, aad, enc, ct), (e) => e instanceof hpke.HpkeError && e.kind === 'open', 'another info');
    assert.throws(() => hpke.open(x25519Pair(), info, aad, enc, ct), (e) => e instanceof hpke.HpkeError && e.kind === 'open', 'another key');
  }
  P.use('native');
});

test('the addon refuses arguments of the wrong size or kind with a TypeError, and keeps working', { skip }, () => {
  const addon = require(P.DEFAULT_ADDON); // eslint-disable-line global-require, import/no-dynamic-require
  const x = addon.x25519Private(crypto.randomBytes(32));
  const ed = addon.ed25519Private(crypto.randomBytes(32));
  assert.throws(() => addon.x25519Private(crypto.randomBytes(31)), TypeError);
  assert.throws(() => addon.x25519(x, crypto.randomBytes(33)), TypeError);
  assert.throws(() => addon.x25519(ed, crypto.randomBytes(32)), TypeError, 'an Ed25519 handle is not an X25519 key');
  assert.throws(() => addon.ed25519Sign(x, Buffer.alloc(1)), TypeError, 'and the other way round');
  assert.throws(() => addon.ed25519Sign({}, Buffer.alloc(1)), TypeError);
  assert.throws(() => addon.gcmSeal(Buffer.alloc(16), Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(1)), TypeError, 'AES-128 key');
  assert.throws(() => addon.gcmSeal(Buffer.alloc(32), Buffer.alloc(16), Buffer.alloc(0), Buffer.alloc(1)), TypeError, '16-byte IV');
  assert.throws(() => addon.hmacSha256('key', Buffer.alloc(1)), TypeError, 'a string');
  assert.throws(() => addon.sha256(), TypeError);
  const k32 = crypto.randomBytes(32);
  assert.throws(() => addon.hpkeOpen(x, k32, crypto.randomBytes(31), Buffer.alloc(65), Buffer.alloc(0), Buffer.alloc(16)), TypeError, '31-byte enc');
  assert.throws(() => addon.hpkeOpen(ed, k32, k32, Buffer.alloc(65), Buffer.alloc(0), Buffer.alloc(16)), TypeError, 'an Ed25519 handle');
  assert.throws(() => addon.hpkeOpen(x, k32, k32, Buffer.alloc(65), Buffer.alloc(0)), TypeError, 'five arguments');
  assert.throws(() => addon.hpkeOpen(x, k32, k32, Buffer.alloc(65), Buffer.alloc(0), Buffer.alloc(15)), (e) => e.code === 'ERR_TEEMATE_GCM', 'shorter than the tag');
  assert.throws(() => addon.hpkeOpen(x, k32, Buffer.alloc(32), Buffer.alloc(65), Buffer.alloc(0), Buffer.alloc(16)), (e) => e.code === 'ERR_TEEMATE_X25519', 'a small-order enc');
  assert.equal(addon.ed25519Sign(ed, Buffer.alloc(1)).length, 64);
  assert.equal(addon.sha256(new Uint8Array(3)).length, 32);
});

test('use() names what it cannot switch to', () => {
  assert.throws(() => P.use('openssl'), /no implementation "openssl"/);
  assert.equal(P.use(P.which()).name, P.which());
});

test('without the addon, node:crypto serves and says why; TEEMATE_SEALCRYPTO=node forces it', () => {
  const { spawnSync } = require('child_process'); // eslint-disable-line global-require
  const script = `const P = require(${JSON.stringify(require.resolve('../trusted/primitives'))});
    const hpke = require(${JSON.stringify(require.resolve('../trusted/hpke'))});
    const crypto = require('crypto');
    const p = crypto.generateKeyPairSync('x25519');
    const r = { privateKey: p.privateKey, raw: hpke.rawPublic(p.publicKey) };
    const { enc, ct } = hpke.seal(r.raw, 'i', 'a', Buffer.from('ok'));
    console.log(JSON.stringify({ which: P.which(), why: P.whyNotNative(), opened: hpke.open(r, 'i', 'a', enc, ct).toString() }));`;
  for (const [env, why] of [[{ TEEMATE_SEALCRYPTO_ADDON: '/nonexistent/teemate_sealcrypto.node' }, /cannot load \/nonexistent\/teemate_sealcrypto.node/],
    [{ TEEMATE_SEALCRYPTO: 'node' }, /TEEMATE_SEALCRYPTO=node/]]) {
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.which, 'node');
    assert.match(out.why, why);
    assert.equal(out.opened, 'ok');
  }
});
