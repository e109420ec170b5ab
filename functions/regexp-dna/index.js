'use strict';
// regexp-dna: the regexp-dna computation of SunSpider 1.0.2, written for this project. The input is the
// output of the Computer Language Benchmarks Game "fasta" program (three sequences: a repeated ALU
// fragment, IUB ambiguity codes, and Homo sapiens nucleotides drawn with a seeded LCG); for n = 10 000 it
// is the 101 745-byte text SunSpider embeds (MD5 3550678d7ae37f4369a20f5e0e95ab04). The action generates
// it, concatenates `copies` of it, strips headers and newlines, counts nine case-insensitive variant
// patterns and substitutes the first occurrence of each IUB code by its alternation, as SunSpider does.
//
// Params: n (fasta size, default 10000), copies (default 3). With the defaults the counts are
// 0, 9, 27, 24, 30, 9, 12, 9, 15 and the final sequence has 300 056 characters. No Node API is used.

const MAX_N = 200000;
const MAX_COPIES = 10;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// --- fasta input ---------------------------------------------------------------------------------------

const ALU =
  'GGCCGGGCGCGGTGGCTCACGCCTGTAATCCCAGCACTTTGG' +
  'GAGGCCGAGGCGGGCGGATCACCTGAGGTCAGGAGTTCGAGA' +
  'CCAGCCTGGCCAACATGGTGAAACCCCGTCTCTACTAAAAAT' +
  'ACAAAAATTAGCCGGGCGTGGTGGCGCGCGCCTGTAATCCCA' +
  'GCTACTCGGGAGGCTGAGGCAGGAGAATCGCTTGAACCCGGG' +
  'AGGCGGAGGTTGCAGTGAGCCGAGATCGCGCCACTGCACTCC' +
  'AGCCTGGGCGACAGAGCGAGACTCCGTCTCAAAAA';

const IUB = [
  ['a', 0.27], ['c', 0.12], ['g', 0.12], ['t', 0.27],
  ['B', 0.02], ['D', 0.02], ['H', 0.02], ['K', 0.02], ['M', 0.02], ['N', 0.02],
  ['R', 0.02], ['S', 0.02], ['V', 0.02], ['W', 0.02], ['Y', 0.02],
];

const HOMO_SAPIENS = [
  ['a', 0.3029549426680], ['c', 0.1979883004921], ['g', 0.1975473066391], ['t', 0.3015094502008],
];

const LINE = 60;

function repeatFasta(out, header, src, count) {
  out.push(header);
  let pos = 0;
  for (let left = count; left > 0; left -= LINE) {
    const len = Math.min(LINE, left);
    let line = '';
    for (let i = 0; i < len; i++) {
      line += src.charAt(pos);
      pos = (pos + 1) % src.length;
    }
    out.push(line);
  }
}

function randomFasta(out, header, table, count, rng) {
  out.push(header);
  // Cumulative probabilities, summed in table order.
  const symbols = table.map((e) => e[0]);
  const cumulative = [];
  let acc = 0;
  for (const e of table) {
    acc += e[1];
    cumulative.push(acc);
  }
  for (let left = count; left > 0; left -= LINE) {
    const len = Math.min(LINE, left);
    let line = '';
    for (let i = 0; i < len; i++) {
      const r = rng();
      let j = 0;
      while (j < cumulative.length - 1 && r >= cumulative[j]) j++;
      line += symbols[j];
    }
    out.push(line);
  }
}

// fasta returns the generator's text for size n; every line, headers included, ends in "\n".
function fasta(n) {
  let seed = 42;
  const rng = () => {
    seed = (seed * 3877 + 29573) % 139968;
    return seed / 139968;
  };
  const out = [];
  repeatFasta(out, '>ONE Homo sapiens alu', ALU, 2 * n);
  randomFasta(out, '>TWO IUB ambiguity codes', IUB, 3 * n, rng);
  randomFasta(out, '>THREE Homo sapiens frequency', HOMO_SAPIENS, 5 * n, rng);
  return out.join('\n') + '\n';
}

// --- the benchmark proper ------------------------------------------------------------------------------

const VARIANTS = [
  'agggtaaa|tttaccct',
  '[cgt]gggtaaa|tttaccc[acg]',
  'a[act]ggtaaa|tttacc[agt]t',
  'ag[act]gtaaa|tttac[agt]ct',
  'agg[act]taaa|ttta[agt]cct',
  'aggg[acg]aaa|ttt[cgt]ccct',
  'agggt[cgt]aa|tt[acg]accct',
  'agggta[cgt]a|t[acg]taccct',
  'agggtaa[cgt]|[acg]ttaccct',
];

const SUBSTITUTIONS = [
  ['B', '(c|g|t)'], ['D', '(a|g|t)'], ['H', '(a|c|t)'], ['K', '(g|t)'],
  ['M', '(a|c)'], ['N', '(a|c|g|t)'], ['R', '(a|g)'], ['S', '(c|t)'],
  ['V', '(a|c|g)'], ['W', '(a|t)'], ['Y', '(c|t)'],
];

function countMatches(seq, pattern) {
  const re = new RegExp(pattern, 'ig');
  let count = 0;
  while (re.exec(seq) !== null) count++;
  return count;
}

// replaceFirst substitutes only the first occurrence, as SunSpider's string-pattern replace does.
function replaceFirst(seq, needle, replacement) {
  const at = seq.indexOf(needle);
  if (at < 0) return seq;
  return seq.slice(0, at) + replacement + seq.slice(at + needle.length);
}

// fnv1a32 hashes UTF-16 code units; the validator recomputes it to check the final sequence without
// shipping 300 kB back in the activation result.
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
  let n, copies;
  try {
    n = intParam(params, 'n', 10000, 1, MAX_N);
    copies = intParam(params, 'copies', 3, 1, MAX_COPIES);
  } catch (e) {
    return { error: `regexp-dna: ${e.message}` };
  }
  const tGen = now();
  const input = fasta(n);
  const t0 = now();
  const all = input.repeat(copies);
  const seq = all.replace(/>.*\n|\n/g, '');
  const counts = VARIANTS.map((pattern) => ({ pattern, count: countMatches(seq, pattern) }));
  let final = seq;
  for (const [code, alt] of SUBSTITUTIONS) final = replaceFirst(final, code, alt);
  const computeMs = now() - t0;
  return {
    counts,
    output: counts.map((c) => `${c.pattern} ${c.count}\n`).join(''),
    input_length: all.length,
    cleaned_length: seq.length,
    final_length: final.length,
    final_fnv1a: fnv1a32(final),
    input_fnv1a: fnv1a32(input),
    measurement: { generate_ms: t0 - tGen, compute_ms: computeMs },
  };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
