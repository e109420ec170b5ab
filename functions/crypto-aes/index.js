'use strict';
// crypto-aes: the crypto-aes computation of SunSpider 1.0.2, written for this project. AES (FIPS-197)
// is implemented here in plain JavaScript, byte by byte, and used in counter mode with a 256-bit key
// derived from a password; the text is encrypted, then decrypted, and the round trip must give the text
// back. The point is CPU work in the JIT, so node:crypto is deliberately not used.
//
// Params: plaintext (Latin-1 string, required), password (string, required), nonce (integer in
// [0, 2^53), default 0; SunSpider takes it from the clock, a fixed one makes the ciphertext checkable),
// copies (how many times the plaintext is repeated, default 1).
//
// Ciphertext format (SunSpider's): the 8 nonce bytes, then one group per 16-byte block, groups joined by
// '-', each group's characters escaped so that NUL, TAB, LF, VT, FF, CR, NBSP, ', ", ! and - become
// "!<decimal code>!".

const MAX_PLAINTEXT = 1 << 20; // the OpenWhisk parameter limit
const MAX_COPIES = 1024;
const MAX_TOTAL = 4 << 20;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// --- GF(2^8) and the S-box, derived at load time rather than tabulated -------------------------------

function xtime(b) {
  return ((b << 1) ^ (b & 0x80 ? 0x1b : 0)) & 0xff;
}

function gmul(a, b) {
  let p = 0;
  while (b) {
    if (b & 1) p ^= a;
    a = xtime(a);
    b >>>= 1;
  }
  return p;
}

const SBOX = new Uint8Array(256);
(function buildSbox() {
  // 3 generates the multiplicative group of GF(2^8): walk exp/log tables to get inverses.
  const exp = new Uint8Array(256);
  const log = new Uint8Array(256);
  let x = 1;
  for (let i = 0; i < 255; i++) {
    exp[i] = x;
    log[x] = i;
    x = gmul(x, 3);
  }
  for (let v = 0; v < 256; v++) {
    const inv = v === 0 ? 0 : exp[(255 - log[v]) % 255];
    // Affine transform: s = inv ^ rotl(inv,1) ^ rotl(inv,2) ^ rotl(inv,3) ^ rotl(inv,4) ^ 0x63.
    let s = inv;
    for (let r = 1; r <= 4; r++) s ^= ((inv << r) | (inv >>> (8 - r))) & 0xff;
    SBOX[v] = s ^ 0x63;
  }
})();

// --- the block cipher --------------------------------------------------------------------------------

// expandKey returns the (Nr+1)*16 round-key bytes for a 16-, 24- or 32-byte key.
function expandKey(key) {
  const nk = key.length / 4;
  const nr = nk + 6;
  const w = new Uint8Array(16 * (nr + 1));
  w.set(key);
  let rcon = 1;
  for (let i = nk; i < 4 * (nr + 1); i++) {
    let t0 = w[4 * i - 4], t1 = w[4 * i - 3], t2 = w[4 * i - 2], t3 = w[4 * i - 1];
    if (i % nk === 0) {
      const tmp = t0;
      t0 = SBOX[t1] ^ rcon;
      t1 = SBOX[t2];
      t2 = SBOX[t3];
      t3 = SBOX[tmp];
      rcon = xtime(rcon);
    } else if (nk > 6 && i % nk === 4) {
      t0 = SBOX[t0]; t1 = SBOX[t1]; t2 = SBOX[t2]; t3 = SBOX[t3];
    }
    const p = 4 * (i - nk);
    w[4 * i] = w[p] ^ t0;
    w[4 * i + 1] = w[p + 1] ^ t1;
    w[4 * i + 2] = w[p + 2] ^ t2;
    w[4 * i + 3] = w[p + 3] ^ t3;
  }
  return { w, nr };
}

// encryptBlock encrypts 16 bytes of input into out. The state is column-major: byte r + 4c is row r of
// column c, which is also the order of the input bytes.
function encryptBlock(input, out, ks) {
  const { w, nr } = ks;
  const s = out;
  for (let i = 0; i < 16; i++) s[i] = input[i] ^ w[i];
  for (let round = 1; round <= nr; round++) {
    for (let i = 0; i < 16; i++) s[i] = SBOX[s[i]];
    // ShiftRows: row r rotates left by r columns.
    let t = s[1]; s[1] = s[5]; s[5] = s[9]; s[9] = s[13]; s[13] = t;
    t = s[2]; s[2] = s[10]; s[10] = t; t = s[6]; s[6] = s[14]; s[14] = t;
    t = s[15]; s[15] = s[11]; s[11] = s[7]; s[7] = s[3]; s[3] = t;
    if (round !== nr) {
      for (let c = 0; c < 16; c += 4) {
        const a0 = s[c], a1 = s[c + 1], a2 = s[c + 2], a3 = s[c + 3];
        const all = a0 ^ a1 ^ a2 ^ a3;
        s[c] = a0 ^ all ^ xtime(a0 ^ a1);
        s[c + 1] = a1 ^ all ^ xtime(a1 ^ a2);
        s[c + 2] = a2 ^ all ^ xtime(a2 ^ a3);
        s[c + 3] = a3 ^ all ^ xtime(a3 ^ a0);
      }
    }
    const k = 16 * round;
    for (let i = 0; i < 16; i++) s[i] ^= w[k + i];
  }
  return out;
}

// --- counter mode with SunSpider's key derivation and text format ------------------------------------

function deriveKey(password) {
  const pw = new Uint8Array(32);
  for (let i = 0; i < 32 && i < password.length; i++) pw[i] = password.charCodeAt(i) & 0xff;
  // The key is the password's first block encrypted under the password itself, used twice.
  const half = encryptBlock(pw.subarray(0, 16), new Uint8Array(16), expandKey(pw));
  const key = new Uint8Array(32);
  key.set(half, 0);
  key.set(half, 16);
  return expandKey(key);
}

const ESCAPED = /[\0\t\n\v\f\r\xa0'"!-]/g;
function escapeCtrl(str) {
  return str.replace(ESCAPED, (c) => '!' + c.charCodeAt(0) + '!');
}
function unescapeCtrl(str) {
  return str.replace(/!\d\d?\d?!/g, (c) => String.fromCharCode(parseInt(c.slice(1, -1), 10)));
}

function setCounter(block, nonce, index) {
  const lo = nonce % 4294967296;
  const hi = Math.floor(nonce / 4294967296);
  for (let i = 0; i < 4; i++) {
    block[i] = (lo >>> (8 * i)) & 0xff;
    block[4 + i] = (hi >>> (8 * i)) & 0xff;
  }
  const ilo = index % 4294967296;
  const ihi = Math.floor(index / 4294967296);
  for (let i = 0; i < 4; i++) {
    block[15 - i] = (ilo >>> (8 * i)) & 0xff;
    block[11 - i] = (ihi >>> (8 * i)) & 0xff;
  }
}

function encryptCtr(plaintext, password, nonce) {
  const ks = deriveKey(password);
  const counter = new Uint8Array(16);
  const stream = new Uint8Array(16);
  setCounter(counter, nonce, 0);
  let head = '';
  for (let i = 0; i < 8; i++) head += String.fromCharCode(counter[i]);
  const parts = [escapeCtrl(head)];
  const blocks = Math.ceil(plaintext.length / 16);
  for (let b = 0; b < blocks; b++) {
    setCounter(counter, nonce, b);
    encryptBlock(counter, stream, ks);
    const end = Math.min(plaintext.length, 16 * b + 16);
    let group = '';
    for (let i = 16 * b; i < end; i++) group += String.fromCharCode(plaintext.charCodeAt(i) ^ stream[i - 16 * b]);
    parts.push(escapeCtrl(group));
  }
  return parts.join('-');
}

function decryptCtr(ciphertext, password) {
  const ks = deriveKey(password);
  const parts = ciphertext.split('-');
  const head = unescapeCtrl(parts[0]);
  const counter = new Uint8Array(16);
  const stream = new Uint8Array(16);
  for (let i = 0; i < 8; i++) counter[i] = head.charCodeAt(i) & 0xff;
  const out = [];
  for (let b = 1; b < parts.length; b++) {
    const index = b - 1;
    for (let i = 0; i < 4; i++) {
      counter[15 - i] = (index >>> (8 * i)) & 0xff;
      counter[11 - i] = 0;
    }
    encryptBlock(counter, stream, ks);
    const group = unescapeCtrl(parts[b]);
    let plain = '';
    for (let i = 0; i < group.length; i++) plain += String.fromCharCode(group.charCodeAt(i) ^ stream[i]);
    out.push(plain);
  }
  return out.join('');
}

function main(params) {
  params = params || {};
  const { plaintext, password } = params;
  if (typeof plaintext !== 'string') return { error: 'crypto-aes: plaintext must be a string' };
  if (typeof password !== 'string' || password.length === 0) return { error: 'crypto-aes: password must be a non-empty string' };
  if (plaintext.length > MAX_PLAINTEXT) return { error: `crypto-aes: plaintext longer than ${MAX_PLAINTEXT} characters` };
  for (const [name, s] of [['plaintext', plaintext], ['password', password]]) {
    for (let i = 0; i < s.length; i++) {
      if (s.charCodeAt(i) > 0xff) return { error: `crypto-aes: ${name} must be 8-bit (Latin-1); character ${i} is not` };
    }
  }
  const nonce = params.nonce === undefined ? 0 : params.nonce;
  if (typeof nonce !== 'number' || !Number.isSafeInteger(nonce) || nonce < 0) {
    return { error: `crypto-aes: nonce must be a non-negative safe integer, got ${JSON.stringify(params.nonce)}` };
  }
  const copies = params.copies === undefined ? 1 : params.copies;
  if (typeof copies !== 'number' || !Number.isInteger(copies) || copies < 1 || copies > MAX_COPIES) {
    return { error: `crypto-aes: copies must be an integer in [1, ${MAX_COPIES}], got ${JSON.stringify(params.copies)}` };
  }
  if (plaintext.length * copies > MAX_TOTAL) return { error: `crypto-aes: plaintext times copies exceeds ${MAX_TOTAL} characters` };

  const t0 = now();
  const text = plaintext.repeat(copies);
  const ciphertext = encryptCtr(text, password, nonce);
  const decrypted = decryptCtr(ciphertext, password);
  const computeMs = now() - t0;
  const ok = decrypted === text;
  if (!ok) return { error: 'crypto-aes: decrypt(encrypt(plaintext)) differs from plaintext' };
  return {
    ciphertext,
    ciphertext_length: ciphertext.length,
    blocks: Math.ceil(text.length / 16),
    plaintext_length: text.length,
    roundtrip_ok: ok,
    measurement: { compute_ms: computeMs },
  };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
