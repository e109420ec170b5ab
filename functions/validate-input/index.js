'use strict';
// validate-input: the string-validate-input computation of SunSpider 1.0.2, written for this project.
// It makes up e-mail addresses (6 random letters, then "@mac.com" for odd k or "(at)mac.com" for even k)
// and ZIP codes (4 random digits 0-8, then "xyz" for odd s or "7" for even s), validates each with a
// regular expression or a character scan, and appends one report line per finding to a growing string.
//
// SunSpider draws from Math.random, so it has no check value. Here the draws come from a seeded
// xorshift32 generator, which makes the report reproducible: the validator replays it and compares the
// FNV-1a hash of the report. Whatever the seed, emails = zips = 4000 gives 12 000 lines and 462 000
// characters.
//
// Params: seed (integer in [0, 2^32), default 0), emails (default 4000), zips (default 4000). No Node
// API is used.

const MAX_COUNT = 1000000;
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const EMAIL = /^[a-zA-Z0-9\-._]+@[a-zA-Z0-9\-_]+(\.?[a-zA-Z0-9\-_]*)\.[a-zA-Z]{2,3}$/;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// newRandom returns a generator of doubles in [0, 1). The seed is scrambled so that seed 0 (an absorbing
// state of xorshift) is usable.
function newRandom(seed) {
  let x = (Math.imul(seed | 0, 0x9e3779b1) ^ 0x6d2b79f5) >>> 0;
  if (x === 0) x = 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

function fnv1a32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

function intParam(params, name, def, min, max) {
  const v = params[name];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function main(params) {
  params = params || {};
  let seed, emails, zips;
  try {
    seed = intParam(params, 'seed', 0, 0, 4294967295);
    emails = intParam(params, 'emails', 4000, 0, MAX_COUNT);
    zips = intParam(params, 'zips', 4000, 0, MAX_COUNT);
  } catch (e) {
    return { error: `validate-input: ${e.message}` };
  }
  const t0 = now();
  const random = newRandom(seed);
  const tally = { valid_emails: 0, invalid_emails: 0, valid_zips: 0, letter_lines: 0, long_zips: 0 };
  let report = '';
  let lines = 0;
  const add = (line) => {
    report += '\n' + line;
    lines++;
  };

  for (let k = 0; k < emails; k++) {
    let user = '';
    for (let i = 0; i < 6; i++) user += LETTERS.charAt(Math.floor(26 * random()));
    const email = k % 2 ? user + '@mac.com' : user + '(at)mac.com';
    if (EMAIL.test(email)) {
      tally.valid_emails++;
      add(email + ' appears to be a valid email address.');
    } else {
      tally.invalid_emails++;
      add(email + ' does NOT appear to be a valid email address.');
    }
  }

  for (let s = 0; s < zips; s++) {
    let zip = '';
    for (let i = 0; i < 4; i++) zip += String(Math.floor(9 * random()));
    zip += s % 2 ? 'xyz' : '7';
    let good = true;
    for (let i = 0; i < zip.length; i++) {
      const ch = zip.charAt(i);
      if (ch < '0' || ch > '9') {
        good = false;
        tally.letter_lines++;
        add(zip + ' contains letters.');
      }
    }
    if (good && zip.length > 5) {
      good = false;
      tally.long_zips++;
      add(zip + ' is longer than five characters.');
    }
    if (good) {
      tally.valid_zips++;
      add(zip + ' appears to be a valid ZIP code.');
    }
  }

  const computeMs = now() - t0;
  return {
    lines,
    length: report.length,
    hash: fnv1a32(report),
    ...tally,
    measurement: { compute_ms: computeMs },
  };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
