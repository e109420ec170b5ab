'use strict';
// binary-search: the access-binary-trees computation of SunSpider 1.0.2 (the "binary-trees" program of
// the Computer Language Benchmarks Game), written for this project. It allocates many short-lived full
// binary trees and checks each one, so it measures allocation and GC in a fresh isolate.
//
// Params: from (first tree size index, default 4), to (last, default 7), repeat (whole run count,
// default 1). With the defaults one run returns ret = -4 and allocates 42 072 nodes (the SunSpider check).
// The action uses no Node API, so it runs unchanged in a bare V8 context.

const MIN_DEPTH = 4;
const MAX_TO = 16; // depth 17 stretch tree = 262 143 nodes; bounds memory per activation
const MAX_REPEAT = 10000;

class TreeNode {
  constructor(left, right, item) {
    this.left = left;
    this.right = right;
    this.item = item;
  }
}

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

// buildTree returns a full tree of the given depth whose node items are item, 2*item-1, 2*item, ...
function buildTree(item, depth, stats) {
  stats.nodes++;
  if (depth === 0) return new TreeNode(null, null, item);
  return new TreeNode(buildTree(2 * item - 1, depth - 1, stats), buildTree(2 * item, depth - 1, stats), item);
}

// checkTree folds a tree into item + check(left) - check(right).
function checkTree(node) {
  if (node.left === null) return node.item;
  return node.item + checkTree(node.left) - checkTree(node.right);
}

function runOnce(from, to, stats) {
  let ret = 0;
  for (let n = from; n <= to; n++) {
    const maxDepth = Math.max(MIN_DEPTH + 2, n);
    // The stretch tree is built, checked and dropped before the long-lived one exists.
    stats.stretchCheck += checkTree(buildTree(0, maxDepth + 1, stats));
    const longLived = buildTree(0, maxDepth, stats);
    for (let depth = MIN_DEPTH; depth <= maxDepth; depth += 2) {
      const iterations = 1 << (maxDepth - depth + MIN_DEPTH);
      let check = 0;
      for (let i = 1; i <= iterations; i++) {
        check += checkTree(buildTree(i, depth, stats));
        check += checkTree(buildTree(-i, depth, stats));
      }
      stats.iterationCheck += check;
    }
    ret += checkTree(longLived);
  }
  return ret;
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
  let from, to, repeat;
  try {
    from = intParam(params, 'from', 4, 0, MAX_TO);
    to = intParam(params, 'to', 7, 0, MAX_TO);
    repeat = intParam(params, 'repeat', 1, 1, MAX_REPEAT);
    if (from > to) throw new RangeError(`from (${from}) must not exceed to (${to})`);
  } catch (e) {
    return { error: `binary-search: ${e.message}` };
  }
  const t0 = now();
  let ret = 0;
  let stats;
  for (let r = 0; r < repeat; r++) {
    stats = { nodes: 0, stretchCheck: 0, iterationCheck: 0 };
    const got = runOnce(from, to, stats);
    if (r > 0 && got !== ret) {
      return { error: `binary-search: run ${r} returned ${got}, run 0 returned ${ret}` };
    }
    ret = got;
  }
  return {
    ret,
    nodes: stats.nodes,
    stretch_check: stats.stretchCheck,
    iteration_check: stats.iterationCheck,
    repeat,
    measurement: { compute_ms: now() - t0 },
  };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
