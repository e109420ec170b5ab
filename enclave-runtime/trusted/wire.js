'use strict';
// Wire constants of the gate protocol (../PROTOCOL.md) on the trusted side: the
// protocol version, frame limits, run limits and outcomes. The Go package
// invoker/internal/wire owns these values; its test parses this file and fails when
// a value here differs, so edit both together (one `NAME: value` per line below).

const PROTOCOL_VERSION = 1;
const MAX_FRAME = 64 * 1024 * 1024; // any frame (an init may carry a zipped action)
const MAX_SMALL_FRAME = 2 * 1024 * 1024; // every type other than init

// Ranges of a run's limits, inclusive.
const LIMITS = Object.freeze({
  timeoutMs: [100, 600000],
  memoryMB: [64, 4096],
  logLimitBytes: [0, 64 * 1024 * 1024],
});

// Outcomes of a run (the result's `outcome`).
const OUTCOME = Object.freeze({
  SUCCESS: 'success',
  APPLICATION: 'application',
  DEVELOPER: 'developer',
  TIMEOUT: 'timeout',
  MEMORY: 'memory',
});

module.exports = { PROTOCOL_VERSION, MAX_FRAME, MAX_SMALL_FRAME, LIMITS, OUTCOME };
