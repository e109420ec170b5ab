'use strict';
// What a test does when the machine lacks something it needs (a program, the isolate addon that
// `make build` makes): locally it is skipped with the reason; under CI=true it fails, so CI cannot
// go green by skipping. The Go tests do the same through internal/testtool.
const test = require('node:test');

const CI = process.env.CI === 'true';
const failed = new Set();

// skip(reason) is a test's `skip` option: false when nothing is missing (reason is false or
// empty), else the reason. Under CI=true a missing thing also adds one failing test that names it.
function skip(reason) {
  if (!reason) return false;
  if (CI && !failed.has(reason)) {
    failed.add(reason);
    test(`CI=true but ${reason}`, () => { throw new Error(`CI=true but ${reason}`); });
  }
  return reason;
}

// missing(t, reason), inside a running test: skips it locally, fails it under CI=true.
function missing(t, reason) {
  if (CI) throw new Error(`CI=true but ${reason}`);
  t.skip(reason);
}

module.exports = { skip, missing, CI };
