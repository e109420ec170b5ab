'use strict';
// partial-sums: the math-partial-sums computation of SunSpider 1.0.2, written for this project. For
// n = from, 2*from, ..., to it sums nine series over k = 1..n and adds a6 + a7 + a8 + a9 (the series that
// use only +, -, *, /, which IEEE 754 rounds exactly) into a total. The pow/sin/cos series are computed
// and returned too, but ECMAScript leaves their precision to the engine, so only a total built from
// exactly rounded operations can be compared bit for bit: 60.08994194659945 for from = 1024, to = 16384.
//
// Params: from (default 1024), to (default 16384); both >= 1, from <= to, to <= 2^24. No Node API is used.

const MAX_N = 1 << 24;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

function series(n) {
  const twoThirds = 2 / 3;
  let a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, a9 = 0;
  let sign = -1;
  for (let k = 1; k <= n; k++) {
    const k2 = k * k;
    const k3 = k2 * k;
    const sk = Math.sin(k);
    const ck = Math.cos(k);
    sign = -sign; // +1 for odd k: (-1)^(k+1)
    a1 += Math.pow(twoThirds, k - 1);
    a2 += Math.pow(k, -0.5);
    a3 += 1 / (k * (k + 1));
    a4 += 1 / (k3 * sk * sk);
    a5 += 1 / (k3 * ck * ck);
    a6 += 1 / k;
    a7 += 1 / k2;
    a8 += sign / k;
    a9 += sign / (2 * k - 1);
  }
  return { n, a1, a2, a3, a4, a5, a6, a7, a8, a9 };
}

function intParam(params, name, def) {
  const v = params[name];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_N) {
    throw new RangeError(`${name} must be an integer in [1, ${MAX_N}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function main(params) {
  params = params || {};
  let from, to;
  try {
    from = intParam(params, 'from', 1024);
    to = intParam(params, 'to', 16384);
    if (from > to) throw new RangeError(`from (${from}) must not exceed to (${to})`);
  } catch (e) {
    return { error: `partial-sums: ${e.message}` };
  }
  const t0 = now();
  let total = 0;
  const sums = [];
  for (let n = from; n <= to; n *= 2) {
    const s = series(n);
    total += s.a6 + s.a7 + s.a8 + s.a9;
    sums.push(s);
  }
  return { total, sums, measurement: { compute_ms: now() - t0 } };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
