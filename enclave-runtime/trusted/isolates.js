'use strict';
// Isolate backends (trusted side). Each activation runs the bootstrap
// (activation.js) in a NEW isolate on its own thread and the isolate is torn down
// afterwards; nothing of one activation survives into the next.
//
//   addon   a fresh Node environment on the slot's parked thread, made by
//           node-isolate-patch (what the SGX build uses: the thread that entered the
//           enclave runs the isolate). The bootstrap's prelude (everything that does
//           not depend on the request) is the addon's per-environment prelude: it
//           runs while the environment is prepared, so on a prewarmed slot the
//           request path only calls activate()
//   worker  a fresh worker_threads Worker per activation (Node makes the thread);
//           the fallback when the addon is not built
//
// run(slot, {requestJSON, timeoutMs, memoryMB}, done) calls done exactly once with
// one of
//   {kind:'result', text, logs, timings}   the bootstrap delivered its result
//   {kind:'timeout'|'memory'|'exited', logs, timings}
//   {kind:'internal', message}             the isolate could not be made
// `logs` are the lines streamed out before the end (worker only), for the runs the
// owner has to kill. The addon calls done from inside its own result callback, so
// the owner's reply is written before the slot thread starts freeing the used
// environment and preparing the next one (it waits for that callback to return).
// timings: {isolateMs, runMs, teardownMs[, lastTeardownMs]}, in ms.
// teardownMs is null when the isolate is torn down after the answer (addon): it is
// not known yet, and it is not on the request path. lastTeardownMs is then the
// teardown of the previous activation on the same slot, when there was one.
//
// prepared() returns, per slot, whether a fresh environment waits there (addon with
// a prewarm budget), or null when the backend has no such notion (worker).

const fs = require('fs');
const path = require('path');
const { Worker } = require('worker_threads');

const BOOTSTRAP_PATH = path.join(__dirname, 'activation.js');
const CAPS_PATH = path.join(__dirname, 'caps.js');
const DEFAULT_ADDON = path.join(__dirname, '..', '..', 'node-isolate-patch', 'build', 'teemate_isolate.node');

function addonPath() {
  return process.env.TEEMATE_ISOLATE_ADDON || DEFAULT_ADDON;
}

// loadBootstrap returns the one text every isolate runs: caps.js (the capability
// set, a CommonJS-style file) wrapped as the value `caps`, then activation.js,
// which installs it in its prelude. One text because the addon takes one
// prelude; strict mode for all of it (first directive), so no stack-trace
// CallSite can hand tenant code one of these functions. `inWorker` tells the
// text which backend runs it (asking worker_threads would load it, and the
// stream stack, in every addon environment).
function loadBootstrap(inWorker = false) {
  const caps = fs.readFileSync(CAPS_PATH, 'utf8');
  const activation = fs.readFileSync(BOOTSTRAP_PATH, 'utf8');
  return `'use strict';
const inWorker = ${inWorker === true};
const caps = (function (require, module) {
${caps}
return module.exports;
}(require, { exports: {} }));
${activation}`;
}

// The worker runs the very same bootstrap text: its prelude as a function (the
// text ends with a top-level `return activate`), then activate() with the request
// from workerData, delivering the result and streaming log lines by postMessage.
function workerSource(bootstrap) {
  return `'use strict';
const { workerData: __tmData, parentPort: __tmPort } = require('worker_threads');
const __tmActivate = (function (require) {
${bootstrap}
}(require));
__tmActivate(__tmData,
  (text) => __tmPort.postMessage({ kind: 'result', text: String(text) }),
  (entry) => __tmPort.postMessage({ kind: 'log', entry }));
`;
}

class WorkerBackend {
  constructor(bootstrap) {
    this.name = 'worker';
    this.prewarm = 0; // a Worker is made per run; nothing is prepared ahead
    this.source = workerSource(bootstrap);
  }

  info() { return { backend: 'worker', node: process.version }; }

  prepared() { return null; }

  stop() {}

  run(slot, { requestJSON, timeoutMs, memoryMB }, done) {
    const t0 = performance.now();
    let tOnline = t0;
    let tEnd = 0;
    let ended = null; // {kind, text?}
    const logs = [];
    let worker;
    try {
      worker = new Worker(this.source, {
        eval: true,
        workerData: requestJSON,
        env: {},
        argv: [],
        execArgv: [],
        stdout: true,
        stderr: true,
        resourceLimits: { maxOldGenerationSizeMb: memoryMB },
      });
    } catch (e) {
      done({ kind: 'internal', message: `could not create a worker isolate: ${e.message}` });
      return;
    }
    // The bootstrap hooks stdout/stderr; whatever slips out before that is dropped.
    worker.stdout.resume();
    worker.stderr.resume();
    let failed = false; // the Worker reported an error (its exit is not an idle one)
    let exitedIdle = false; // it exited with nothing left to run and no result
    const finishWith = (kind, text) => {
      if (ended) return;
      ended = { kind, text };
      tEnd = performance.now();
      clearTimeout(timer);
      if (exitedIdle) {
        report(); // no exit event follows: the Worker is gone already
        return;
      }
      worker.terminate().catch(() => {});
    };
    const timer = setTimeout(() => finishWith('timeout'), timeoutMs);
    worker.on('online', () => { tOnline = performance.now(); });
    worker.on('message', (m) => {
      if (!m || typeof m !== 'object') return;
      if (m.kind === 'log' && !ended) logs.push(m.entry);
      else if (m.kind === 'result' && typeof m.text === 'string') finishWith('result', m.text);
    });
    worker.on('error', (e) => {
      failed = true;
      finishWith(e && e.code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'memory' : 'exited', undefined);
    });
    worker.on('exit', (code) => {
      if (!ended && code === 0 && !failed) {
        // The Worker ran out of work without a result: the action's promise never
        // settles and nothing is left that could settle it. OpenWhisk's proxy keeps
        // waiting for it, so the run ends at its time limit as a time-out.
        exitedIdle = true;
        return;
      }
      if (!ended) finishWith('exited');
      report();
    });
    const report = () => {
      const tExit = performance.now();
      done({
        kind: ended.kind,
        text: ended.text,
        logs,
        timings: {
          isolateMs: round(tOnline - t0),
          runMs: round(tEnd - tOnline),
          teardownMs: round(tExit - tEnd),
        },
      });
    };
  }
}

class AddonBackend {
  // prewarm: how many slots (0..slots-1 from the lowest) keep a prepared environment.
  // reuse: 'tenant' keeps each slot's isolate for one tenant's activations (each in
  // a new context and environment; the addon's KeptIsolate), 'none' (the default)
  // makes a new isolate for every activation. pagePoolMB (undefined: the addon's
  // default) is the budget of the addon's page pool, 0 to turn it off.
  constructor(addon, bootstrap, slots, prewarm, reuse = 'none', pagePoolMB = undefined) {
    this.name = 'addon';
    this.addon = addon;
    // The bootstrap is the environment's prelude; run() passes no source and the
    // addon calls the activate() it returned.
    const options = { prewarm, prelude: bootstrap };
    if (reuse !== 'none') options.reuse = reuse;
    if (pagePoolMB !== undefined) options.pagePoolMB = pagePoolMB;
    addon.start(slots, options);
    this.prewarm = prewarm;
    this.reuse = reuse;
    const pool = addon.info().pagePool;
    this.pagePool = pool && pool.off === undefined ? `${pool.budgetBytes / (1 << 20)} MiB` : `off (${pool && pool.off})`;
  }

  prepared() {
    if (this.prewarm === 0) return null;
    try {
      return this.addon.info().prepared;
    } catch {
      return null; // stopped: acquiring falls back to the lowest free slot
    }
  }

  info() {
    try {
      return { backend: 'addon', ...this.addon.info() };
    } catch (e) {
      return { backend: 'addon', error: e.message };
    }
  }

  stop() {
    try { this.addon.stop(); } catch { /* stopping is best effort at exit */ }
  }

  // tenant ('' or absent: none) says whose isolate the activation may share with
  // reuse 'tenant'; the outcome's isolateKept says whether its isolate stays theirs.
  run(slot, { requestJSON, timeoutMs, memoryMB, tenant = '' }, done) {
    const t0 = performance.now();
    try {
      this.addon.run(slot, null, requestJSON, timeoutMs, memoryMB, (err, text, stats) => {
        const isolateKept = Boolean(stats && stats.isolateKept);
        const timings = {
          isolateMs: round(stats && stats.setupMs),
          runMs: round(stats && stats.runMs),
          // Freed after this answer: unknown now and not on the request path.
          teardownMs: stats && typeof stats.teardownMs === 'number' ? round(stats.teardownMs) : null,
        };
        if (stats && typeof stats.lastTeardownMs === 'number') timings.lastTeardownMs = round(stats.lastTeardownMs);
        if (!stats) timings.runMs = round(performance.now() - t0);
        if (err) {
          const kind = err.code === 'TIMEOUT' ? 'timeout' : err.code === 'HEAP' ? 'memory' : 'internal';
          done({ kind, logs: [], timings, isolateKept, message: `isolate failed: ${err.message || err.code}` });
        } else if (typeof text === 'string' && text.length > 0) {
          done({ kind: 'result', text, logs: [], timings, isolateKept });
        } else {
          done({ kind: 'exited', logs: [], timings, isolateKept });
        }
      }, tenant);
    } catch (e) {
      done({ kind: 'internal', message: `could not create an isolate: ${e.message}` });
    }
  }
}

function round(ms) {
  return typeof ms === 'number' && Number.isFinite(ms) ? Math.round(ms * 1000) / 1000 : 0;
}

// choose builds the backend asked for. 'auto' takes the addon when it loads.
// prewarm is the addon's budget of prepared slots, reuse its isolate reuse,
// pagePoolMB its page pool's budget (the worker ignores all three: the owner
// refuses reuse without the addon).
// Returns {backend, note} where note explains a fallback.
function choose(kind, slots, prewarm = 0, reuse = 'none', pagePoolMB = undefined) {
  if (kind === 'worker') return { backend: new WorkerBackend(loadBootstrap(true)) };
  let addon;
  let why;
  const p = addonPath();
  try {
    addon = require(p); // eslint-disable-line global-require, import/no-dynamic-require
  } catch (e) {
    why = `isolate addon ${p} did not load: ${e.message}`;
  }
  if (addon) {
    try {
      return { backend: new AddonBackend(addon, loadBootstrap(false), slots, prewarm, reuse, pagePoolMB) };
    } catch (e) {
      why = `isolate addon ${p} did not start: ${e.message}`;
    }
  }
  if (kind === 'addon') throw new Error(why);
  return { backend: new WorkerBackend(loadBootstrap(true)), note: why };
}

module.exports = { choose, addonPath, loadBootstrap, WorkerBackend, AddonBackend, DEFAULT_ADDON };
