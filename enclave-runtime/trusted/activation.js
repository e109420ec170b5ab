// The per-activation bootstrap (trusted side).
//
// This file is not a module: the owner reads it as text and runs it as the first
// script of every NEW isolate, either a Node environment the isolate addon creates on
// the slot's thread, or a worker_threads Worker (the fallback). In both it sees:
//   globalThis.__teemate_request  the request as a JSON string (built by the owner)
//   globalThis.__teemate_onlog    optional: called with each accepted log line, so
//                                 the owner keeps the logs of a run it has to kill
// and it must assign globalThis.__teemate_result (a JSON string) exactly once before
// its event loop drains. `require` may load builtins only; user code is loaded with
// a require made by module.createRequire.
//
// Request: {action:{kind:'code', source, filename, base} | {kind:'dir', dir, main},
//           main, value, env, logLimitBytes}
// Result:  {outcome:'success'|'application'|'developer', result, logs, runMs}
// The texts of errors follow OpenWhisk's Node.js runtime.
(function teemateActivation() {
  'use strict';
  const started = performance.now();
  const { createRequire } = require('module');
  const path = require('path');
  const vm = require('vm');

  const onlog = typeof globalThis.__teemate_onlog === 'function' ? globalThis.__teemate_onlog : null;
  const requestText = globalThis.__teemate_request;
  delete globalThis.__teemate_onlog;
  delete globalThis.__teemate_request;

  let finished = false;
  const logs = [];
  let logBytes = 0;
  let truncated = false;
  let logLimit = 10 * 1024 * 1024;
  const partial = { stdout: null, stderr: null };
  const timers = new Set();

  function finish(outcome, result) {
    if (finished) return;
    finished = true;
    flushPartial('stdout');
    flushPartial('stderr');
    if (truncated) {
      const entry = {
        stream: 'stderr',
        time: new Date().toISOString(),
        line: `Logs were truncated because the total bytes size exceeds the limit of ${logLimit} bytes.`,
      };
      logs.push(entry);
      if (onlog) onlog(entry);
    }
    let text;
    try {
      text = JSON.stringify({ outcome, result, logs, runMs: performance.now() - started });
    } catch (e) {
      text = JSON.stringify({
        outcome: 'developer',
        result: { error: `An error has occurred: ${String(e)}` },
        logs,
        runMs: performance.now() - started,
      });
    }
    globalThis.__teemate_result = text;
    // Lingering timers would keep the event loop alive after the answer is known;
    // OpenWhisk answers as soon as main settles, so they are cancelled here.
    for (const t of timers) {
      clearTimeout(t);
      clearInterval(t);
      clearImmediate(t);
    }
    timers.clear();
  }

  // ---- logs -------------------------------------------------------------------
  function accept(stream, time, line) {
    if (truncated) return;
    const n = Buffer.byteLength(line, 'utf8') + 1;
    if (logBytes + n > logLimit) {
      truncated = true;
      return;
    }
    logBytes += n;
    const entry = { stream, time, line };
    logs.push(entry);
    if (onlog) onlog(entry);
  }

  function capture(stream, text) {
    if (finished) return;
    const now = new Date().toISOString();
    let p = partial[stream];
    let rest = text;
    for (;;) {
      const nl = rest.indexOf('\n');
      if (nl < 0) break;
      const piece = rest.slice(0, nl);
      if (p) {
        accept(stream, p.time, p.text + piece);
        p = null;
      } else {
        accept(stream, now, piece);
      }
      rest = rest.slice(nl + 1);
    }
    if (rest.length) p = p ? { time: p.time, text: p.text + rest } : { time: now, text: rest };
    partial[stream] = p;
  }

  function flushPartial(stream) {
    const p = partial[stream];
    partial[stream] = null;
    if (p) accept(stream, p.time, p.text);
  }

  function hookStream(name) {
    const s = process[name];
    const write = function write(chunk, encoding, cb) {
      if (typeof encoding === 'function') cb = encoding;
      let text;
      if (typeof chunk === 'string') text = chunk;
      else if (chunk instanceof Uint8Array) text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
      else text = String(chunk);
      capture(name, text);
      if (typeof cb === 'function') process.nextTick(cb);
      return true;
    };
    // console.* writes through these stream objects, so one hook catches both the
    // console and direct process.stdout/stderr writes, and nothing reaches the
    // owner's own stdio.
    Object.defineProperty(s, 'write', { value: write, writable: true, configurable: true });
  }

  // ---- errors in the style of OpenWhisk's Node.js runtime ------------------------
  function serializeError(err, seen = new Set()) {
    if (err === null || err === undefined) return err;
    if (typeof err === 'function') return `[Function: ${err.name || 'anonymous'}]`;
    if (typeof err !== 'object') return err;
    if (seen.has(err)) return '[Circular]';
    seen.add(err);
    const out = Array.isArray(err) ? [] : {};
    for (const k of Object.keys(err)) {
      const v = err[k];
      out[k] = v !== null && typeof v === 'object' || typeof v === 'function' ? serializeError(v, seen) : v;
    }
    if (err instanceof Error) {
      for (const k of ['name', 'message', 'stack']) {
        if (typeof err[k] === 'string') out[k] = err[k];
      }
    }
    seen.delete(err);
    return out;
  }

  // ---- request --------------------------------------------------------------------
  let req;
  try {
    req = JSON.parse(requestText);
  } catch (e) {
    finish('developer', { error: `An error has occurred: bad activation request: ${String(e)}` });
    return;
  }
  if (Number.isInteger(req.logLimitBytes) && req.logLimitBytes >= 0) logLimit = req.logLimitBytes;

  // process.env becomes a plain object holding only this run's variables: nothing of
  // the owner's environment is visible, and writes stay inside this isolate.
  const env = {};
  for (const [k, v] of Object.entries(req.env || {})) env[k] = String(v);
  process.env = env;

  hookStream('stdout');
  hookStream('stderr');

  // The isolate shares the process with other tenants: ending it, aborting it or
  // moving its working directory would hit every activation, so these end only
  // this activation.
  process.exit = function exit(code) {
    finish('developer', { error: `An error has occurred: the action called process.exit(${code === undefined ? '' : code}).` });
    throw new Error('process.exit is not available to actions');
  };
  process.reallyExit = process.exit;
  process.abort = function abort() {
    finish('developer', { error: 'An error has occurred: the action called process.abort().' });
    throw new Error('process.abort is not available to actions');
  };
  process.chdir = function chdir() {
    throw new Error('process.chdir is not available to actions');
  };

  for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
    const orig = globalThis[name];
    globalThis[name] = function trackedTimer(...args) {
      const t = orig.apply(this, args);
      if (!finished) timers.add(t);
      return t;
    };
  }

  // The bootstrap owns uncaught errors: like OpenWhisk's runtime they end the
  // activation as a developer error. A listener the isolate's host installed before
  // us (the addon reports uncaught errors as INTERNAL) would override that outcome,
  // so ours replaces it; the result then always comes from here.
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', (e) => {
    finish('developer', { error: `An error has occurred: ${String(e)}` });
  });
  process.on('unhandledRejection', (e) => {
    finish('developer', { error: `An error has occurred: ${String(e)}` });
  });

  // ---- load the action ---------------------------------------------------------------
  let handler;
  const mainName = typeof req.main === 'string' && req.main ? req.main : 'main';
  try {
    const a = req.action;
    if (a.kind === 'code') {
      // source is the action wrapped as a CommonJS module function by the owner at
      // init (and already compiled there once to report syntax errors early).
      const wrapper = vm.runInThisContext(a.source, { filename: a.filename });
      const mod = { exports: {} };
      const userRequire = createRequire(a.filename);
      mod.require = userRequire;
      const fromScope = wrapper.call(mod.exports, mod.exports, userRequire, mod, a.filename, path.dirname(a.filename));
      handler = fromScope !== undefined ? fromScope
        : (mod.exports && mod.exports[mainName]) !== undefined ? mod.exports[mainName]
          : (typeof mod.exports === 'function' && mainName === 'main' ? mod.exports : undefined);
    } else if (a.kind === 'dir') {
      const userRequire = createRequire(path.join(a.dir, '__teemate_loader.js'));
      let v = userRequire(a.dir);
      for (const part of mainName.split('.')) v = v == null ? undefined : v[part];
      handler = v;
    } else {
      throw new Error(`unknown action kind ${a.kind}`);
    }
    if (typeof handler !== 'function') {
      throw `Action entrypoint '${mainName}' is not a function.`;
    }
  } catch (e) {
    finish('developer', { error: `Initialization has failed due to: ${String(e)}` });
    return;
  }

  // ---- run main --------------------------------------------------------------------
  function settle(value) {
    if (value === undefined) value = {};
    if (value === null || typeof value !== 'object') {
      finish('developer', { error: 'The action did not return a dictionary.' });
      return;
    }
    let plain;
    try {
      plain = JSON.parse(JSON.stringify(value));
    } catch (e) {
      finish('developer', { error: `An error has occurred: ${String(e)}` });
      return;
    }
    if (plain === null || typeof plain !== 'object') {
      finish('developer', { error: 'The action did not return a dictionary.' });
      return;
    }
    const app = !Array.isArray(plain) && Object.prototype.hasOwnProperty.call(plain, 'error');
    finish(app ? 'application' : 'success', plain);
  }

  let ret;
  try {
    ret = handler(req.value);
  } catch (e) {
    finish('developer', { error: `An error has occurred: ${String(e)}` });
    return;
  }
  Promise.resolve(ret).then(settle, (err) => {
    if (!err) {
      finish('application', { error: {} });
      return;
    }
    let payload;
    try {
      payload = JSON.parse(JSON.stringify({ error: serializeError(err) }));
    } catch (e) {
      payload = { error: String(err) };
    }
    finish('application', payload);
  }).catch((e) => {
    finish('developer', { error: `An error has occurred: ${String(e)}` });
  });
}());
