'use strict';
// crypto-md5: the crypto-md5 computation of SunSpider 1.0.2, written for this project: RFC 1321 MD5 in
// plain JavaScript over a string of 8-bit characters (each UTF-16 code unit must be <= 0xFF), so the
// work is integer arithmetic in the JIT rather than a call into OpenSSL.
//
// Params: text (string, required), doublings (how often the text is concatenated with itself before
// hashing, default 0). With the Prince's speech from Romeo and Juliet I.1 and doublings = 4 the digest is
// a831e91e0f70eddcb70dc61c6f82f6cd, the SunSpider check value. No Node API is used.

const MAX_TEXT = 1 << 20; // 1 MiB: the OpenWhisk parameter limit
const MAX_HASHED = 64 << 20; // bound on text after doubling

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// Per-step constants K[i] = floor(|sin(i+1)| * 2^32) and the rotation amounts of RFC 1321 section 3.4.
const K = new Int32Array(64);
for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;
const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];

// toWords packs the message plus MD5 padding into little-endian 32-bit words.
function toWords(str) {
  const len = str.length;
  const nWords = (((len + 8) >>> 6) + 1) * 16;
  const w = new Int32Array(nWords);
  for (let i = 0; i < len; i++) w[i >>> 2] |= (str.charCodeAt(i) & 0xff) << ((i & 3) * 8);
  w[len >>> 2] |= 0x80 << ((len & 3) * 8);
  // Bit length as a 64-bit little-endian integer; lengths here stay below 2^32 bits.
  const bits = len * 8;
  w[nWords - 2] = bits | 0;
  w[nWords - 1] = Math.floor(bits / 4294967296) | 0;
  return w;
}

function md5Words(w) {
  let a0 = 0x67452301 | 0;
  let b0 = 0xefcdab89 | 0;
  let c0 = 0x98badcfe | 0;
  let d0 = 0x10325476 | 0;
  for (let off = 0; off < w.length; off += 16) {
    let a = a0, b = b0, c = c0, d = d0;
    for (let i = 0; i < 64; i++) {
      let f, g;
      const round = i >>> 4;
      if (round === 0) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (round === 1) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (round === 2) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const sum = (a + f + K[i] + w[off + g]) | 0;
      const s = S[(round << 2) | (i & 3)];
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << s) | (sum >>> (32 - s)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  return [a0, b0, c0, d0];
}

const HEX = '0123456789abcdef';
function wordsToHex(words) {
  let out = '';
  for (const word of words) {
    for (let byte = 0; byte < 4; byte++) {
      const v = (word >>> (byte * 8)) & 0xff;
      out += HEX.charAt(v >>> 4) + HEX.charAt(v & 15);
    }
  }
  return out;
}

function md5Hex(str) {
  return wordsToHex(md5Words(toWords(str)));
}

function main(params) {
  params = params || {};
  const text = params.text;
  if (typeof text !== 'string') return { error: 'crypto-md5: text must be a string' };
  if (text.length > MAX_TEXT) return { error: `crypto-md5: text longer than ${MAX_TEXT} characters` };
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) return { error: `crypto-md5: text must be 8-bit (Latin-1); character ${i} is not` };
  }
  let doublings = params.doublings === undefined ? 0 : params.doublings;
  if (typeof doublings !== 'number' || !Number.isInteger(doublings) || doublings < 0 || doublings > 26) {
    return { error: `crypto-md5: doublings must be an integer in [0, 26], got ${JSON.stringify(params.doublings)}` };
  }
  if (text.length * Math.pow(2, doublings) > MAX_HASHED) {
    return { error: `crypto-md5: text after ${doublings} doublings exceeds ${MAX_HASHED} characters` };
  }
  const t0 = now();
  let input = text;
  for (let i = 0; i < doublings; i++) input += input;
  const digest = md5Hex(input);
  return { digest, length: input.length, measurement: { compute_ms: now() - t0 } };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
