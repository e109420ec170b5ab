'use strict';
// The cryptographic primitives of the sealed path (trusted side): X25519, HMAC-SHA256,
// SHA-256, AES-256-GCM and Ed25519 signing, each behind one function, for hpke.js and
// sealed.js. Two implementations with the same contract:
//
//   native  teemate_sealcrypto.node (node-isolate-patch/src/sealcrypto.cc): one call
//           each into the OpenSSL Node links, with private keys imported once
//   node    node:crypto (KeyObjects, Hmac, Cipheriv): the fallback when the addon is
//           not built
//
// Why two: a sealed activation makes about a dozen of these calls on the owner's main
// thread, on the request path, and there they run cold between isolate preparations.
// Through node:crypto each is a JS object graph run at several times its warm cost
// (bench/README.md, "Sealed vs unsealed"); natively each is the primitive.
//
// The native one is used when it loads; TEEMATE_SEALCRYPTO=node forces node:crypto
// and TEEMATE_SEALCRYPTO_ADDON names another addon file (tests). use(name) switches at
// run time (tests, benches). enclave-runtime/test/primitives.test.js holds both to the
// same results.
//
// Keys are KeyObjects either way (keys.js makes them); the native side keeps one handle
// per private KeyObject (a WeakMap: the handle goes with the key). The image keys are
// imported once; a key used once (a v1 reply's or a key transfer's ephemeral) pays its
// import, one more scalar multiplication, off the v2 path that matters.

const crypto = require('crypto');
const path = require('path');

const DEFAULT_ADDON = path.join(__dirname, '..', '..', 'node-isolate-patch', 'build', 'teemate_sealcrypto.node');

// PrimitiveError is the one failure callers tell apart: 'x25519' (the peer key is
// no usable X25519 key, or a small-order point) or 'gcm' (the ciphertext does not
// open). Anything else is a programming error and thrown as it is.
class PrimitiveError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = 'PrimitiveError';
    this.kind = kind;
  }
}

// rawPrivate is the raw 32 bytes of an X25519 or Ed25519 private key: the end of its
// PKCS#8 DER (a fixed 16-byte header, RFC 8410). Not a JWK export: Node 20's JWK
// export of an OKP key can deadlock with a garbage collection (hpke.rawPublic).
function rawPrivate(key) {
  return key.export({ type: 'pkcs8', format: 'der' }).subarray(-32);
}

// ---- node:crypto ------------------------------------------------------------------------------
const node = {
  name: 'node',
  x25519(privateKey, peerRaw) {
    let pub;
    try {
      pub = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peerRaw.toString('base64url') }, format: 'jwk' });
    } catch {
      throw new PrimitiveError('x25519', 'the peer key is not an X25519 key');
    }
    let z;
    try {
      z = crypto.diffieHellman({ privateKey, publicKey: pub });
    } catch {
      throw new PrimitiveError('x25519', 'the peer key is a small-order point');
    }
    return z;
  },
  hmacSha256(key, data) {
    return crypto.createHmac('sha256', key).update(data).digest();
  },
  sha256(data) {
    return crypto.createHash('sha256').update(data).digest();
  },
  gcmSeal(key, iv, aad, plaintext) {
    const c = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    c.setAAD(aad);
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  },
  gcmOpen(key, iv, aad, ct) {
    if (ct.length < 16) throw new PrimitiveError('gcm', 'the ciphertext is shorter than its tag');
    const d = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(ct.subarray(ct.length - 16));
    try {
      return Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]);
    } catch {
      throw new PrimitiveError('gcm', 'the ciphertext does not open');
    }
  },
  ed25519Sign(privateKey, message) {
    return crypto.sign(null, message, privateKey);
  },
};

// ---- the addon ------------------------------------------------------------------------------------
function nativeOver(addon) {
  const handles = new WeakMap(); // private KeyObject -> addon handle
  const handle = (key, make) => {
    let h = handles.get(key);
    if (!h) {
      h = make(rawPrivate(key));
      handles.set(key, h);
    }
    return h;
  };
  const rethrow = (e, code, kind) => {
    if (e && e.code === code) throw new PrimitiveError(kind, e.message);
    throw e;
  };
  return {
    name: 'native',
    x25519(privateKey, peerRaw) {
      const h = handle(privateKey, addon.x25519Private);
      try {
        return addon.x25519(h, peerRaw);
      } catch (e) {
        return rethrow(e, 'ERR_TEEMATE_X25519', 'x25519');
      }
    },
    hmacSha256: (key, data) => addon.hmacSha256(key, data),
    sha256: (data) => addon.sha256(data),
    gcmSeal: (key, iv, aad, plaintext) => addon.gcmSeal(key, iv, aad, plaintext),
    gcmOpen(key, iv, aad, ct) {
      try {
        return addon.gcmOpen(key, iv, aad, ct);
      } catch (e) {
        return rethrow(e, 'ERR_TEEMATE_GCM', 'gcm');
      }
    },
    ed25519Sign(privateKey, message) {
      return addon.ed25519Sign(handle(privateKey, addon.ed25519Private), message);
    },
    // A whole HPKE open (hpke.js): one call instead of the dozen above and their JS
    // glue, which run cold on the owner's main thread once per sealed activation.
    // An addon built before it was added has none (hpke.js composes it then).
    hpkeOpen: typeof addon.hpkeOpen !== 'function' ? undefined : (privateKey, pkRaw, enc, context, aad, ct) => {
      const h = handle(privateKey, addon.x25519Private);
      try {
        return addon.hpkeOpen(h, pkRaw, enc, context, aad, ct);
      } catch (e) {
        if (e && e.code === 'ERR_TEEMATE_X25519') throw new PrimitiveError('x25519', e.message);
        return rethrow(e, 'ERR_TEEMATE_GCM', 'gcm');
      }
    },
  };
}

// loadNative returns the native implementation, or null with the reason.
function loadNative(file = process.env.TEEMATE_SEALCRYPTO_ADDON || DEFAULT_ADDON) {
  try {
    return { impl: nativeOver(require(file)), reason: '', file }; // eslint-disable-line global-require, import/no-dynamic-require
  } catch (e) {
    return { impl: null, reason: `cannot load ${file}: ${e.message}`, file: '' };
  }
}

const loaded = process.env.TEEMATE_SEALCRYPTO === 'node' ? { impl: null, reason: 'TEEMATE_SEALCRYPTO=node' } : loadNative();
let active = loaded.impl || node;

// use selects an implementation by name ('native' or 'node') and returns it; 'native'
// throws when the addon did not load.
function use(name) {
  if (name === 'node') active = node;
  else if (name === 'native' && loaded.impl) active = loaded.impl;
  else throw new Error(`sealed primitives: no implementation ${JSON.stringify(name)} (${loaded.reason || 'unknown name'})`);
  return active;
}

// Strings are hashed and keyed as their UTF-8 bytes.
const bytes = (v) => (typeof v === 'string' ? Buffer.from(v) : v);

module.exports = {
  PrimitiveError,
  DEFAULT_ADDON,
  rawPrivate,
  use,
  // which() is the active implementation's name; whyNotNative() why the addon is not
  // loaded ('' when it is).
  which: () => active.name,
  whyNotNative: () => loaded.reason,
  // nativeFile() is the addon file that loaded ('' when none did), measured by the
  // simulated evidence (keys.measurement) whichever implementation is active.
  nativeFile: () => loaded.file || '',
  x25519: (privateKey, peerRaw) => active.x25519(privateKey, peerRaw),
  hmacSha256: (key, data) => active.hmacSha256(key, data),
  sha256: (data) => active.sha256(bytes(data)),
  gcmSeal: (key, iv, aad, plaintext) => active.gcmSeal(key, iv, bytes(aad), bytes(plaintext)),
  gcmOpen: (key, iv, aad, ct) => active.gcmOpen(key, iv, bytes(aad), ct),
  ed25519Sign: (privateKey, message) => active.ed25519Sign(privateKey, bytes(message)),
  // hpkeOpenInOne() is the active implementation's one-call HPKE open,
  // (privateKey, pkRaw, enc, context, aad, ct) -> plaintext (context: mode_base's key
  // schedule context), or null when it has none (node:crypto): hpke.js composes it.
  hpkeOpenInOne: () => active.hpkeOpen || null,
};
