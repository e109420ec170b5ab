'use strict';
// sleep: the SeBS 010.sleep function, written for this project: it waits params.sleep seconds on a timer
// and returns. Unlike SeBS HEAD, whose handler creates the timer promise without awaiting it, this one
// really waits (as SeBS v1.1 did). It measures the platform's cost around an idle activation.
//
// Params: sleep (seconds, number in [0, 3600], required). Result: {result, sleep, slept_ms}; result
// repeats the input as SeBS's validator expects.

const MAX_SLEEP_S = 3600;

function now() {
  return typeof performance !== 'undefined' && performance.now ? performance.now() : Date.now();
}

async function main(params) {
  params = params || {};
  const sleep = params.sleep;
  if (typeof sleep !== 'number' || !Number.isFinite(sleep) || sleep < 0 || sleep > MAX_SLEEP_S) {
    return { error: `sleep: sleep must be a number of seconds in [0, ${MAX_SLEEP_S}], got ${JSON.stringify(sleep)}` };
  }
  if (typeof setTimeout !== 'function') {
    return { error: 'sleep: this runtime has no setTimeout' };
  }
  const t0 = now();
  await new Promise((resolve) => setTimeout(resolve, sleep * 1000));
  const slept = now() - t0;
  return { result: sleep, sleep, slept_ms: slept, measurement: { compute_ms: slept } };
}

if (typeof exports === 'object' && exports !== null) exports.main = main;
