// The activation bootstrap (trusted side), in two parts.
//
// This file is not a module: the owner reads it as text and runs it in every NEW
// isolate as that isolate's first main script (CommonJS-like: `require` loads
// builtins only; user code is loaded with a require made by module.createRequire).
// isolates.js puts trusted/caps.js (the capability set of an activation) in front
// of it as `caps`: the prelude installs it, activate() hands it the run's settings.
//
//   prelude  the top level of this file. It depends on no request and runs no
//            tenant code: it loads the builtins, gives process.stdout/stderr
//            streams whose writes go into the log capture, points console.*
//            there directly,
//            guards process.exit/abort/chdir, tracks timers, takes over
//            uncaught errors and installs the capability set (caps.js). The isolate addon runs it while it PREPARES an
//            environment (before any request exists, off the request path on a
//            prewarmed slot); the worker fallback runs it at the start of its
//            Worker. It ends by returning `activate` (with activate.warm, which
//            the addon calls only when it prepares ahead of any request).
//   activate(requestText, deliver, onlog)
//            the request path, called once per environment: parses the request,
//            sets process.env, loads the action, calls main and hands the result
//            to deliver(text) exactly once. onlog, when given,
//            receives each accepted log line as it is written, so the owner keeps
//            the logs of a run it has to kill (worker).
//
// Every environment serves exactly one activation: a second call of activate is
// refused, so what the prelude built is only ever seen by one tenant's code.
//
// Request: {action:{kind:'code', source, filename} | {kind:'dir', dir},
//           main, value, env, logLimitBytes,
//           caps:{codeDir, scratchDir, quotaBytes, network, egressAllow, denyHosts}}
// Result:  two JSON texts joined by one newline (JSON text never contains a raw
//          one): {outcome:'success'|'application'|'developer', logs, runMs}, then
//          the result value. The value is serialised once, here, and the owner
//          validates it and forwards that very text in its reply instead of
//          encoding it again. A returned object carrying `error` is reported as
//          'success' here; the owner, which parses the value anyway, classes it
//          as 'application' (OpenWhisk's rule).
// The texts of errors follow OpenWhisk's Node.js runtime.
'use strict';
const { createRequire } = require('module');
const path = require('path');
const vm = require('vm');
const timers = require('timers');
// `inWorker` comes from isolates.js with `caps`: true only in the Worker fallback.
// Asking worker_threads (isMainThread) would load it and the stream stack with
// it, ~5 ms of CPU in every new environment.
const isMainThread = !inWorker;

// Per-activation state; nothing in it is set before activate() runs.
let activated = false;
let started = 0;
let finished = false;
let deliverResult = null;
let onlog = null;
const logs = [];
let logBytes = 0;
let truncated = false;
let logLimit = 10 * 1024 * 1024;
const partial = { stdout: null, stderr: null };
const pending = new Set(); // the activation's timers, cancelled after the answer

// finish delivers the outcome. resultText, when given, is the result already
// serialised (what main returned); otherwise `result` (an error object built
// here) is serialised.
function finish(outcome, result, resultText) {
  if (!activated || finished) return;
  finished = true;
  flushPartial('stdout');
  flushPartial('stderr');
  if (truncated) {
    const entry = {
      stream: 'stderr',
      time: stamp(),
      line: `Logs were truncated because the total bytes size exceeds the limit of ${logLimit} bytes.`,
    };
    logs.push(entry);
    if (onlog) onlog(entry);
  }
  let text;
  try {
    text = `${JSON.stringify({ outcome, logs, runMs: performance.now() - started })}\n${
      resultText === undefined ? JSON.stringify(result) : resultText}`;
  } catch (e) {
    text = `${JSON.stringify({ outcome: 'developer', logs, runMs: performance.now() - started })}\n${
      JSON.stringify({ error: `An error has occurred: ${String(e)}` })}`;
  }
  // Lingering timers would keep the event loop alive after the answer is known;
  // OpenWhisk answers as soon as main settles, so they are cancelled here.
  for (const t of pending) {
    clearTimeout(t);
    clearInterval(t);
    clearImmediate(t);
  }
  pending.clear();
  deliverResult(text);
}

// ---- logs ---------------------------------------------------------------------

// stamp is the time of a write's log lines: ISO 8601 with six decimals, strictly
// increasing from one call to the next in the activation. stdout and stderr reach
// the invoker on two pipes, and the record orders their lines by this time
// (stably); within one millisecond the last three digits count the writes, so that
// writes of the same millisecond on the two streams keep the order in which they
// were made. The lines of one write share its time (one stream, one pipe).
let lastStamp = 0;
function stamp() {
  const us = Math.max(Date.now() * 1000, lastStamp + 1);
  lastStamp = us;
  return `${new Date(Math.floor(us / 1000)).toISOString().slice(0, 23)}${String(us % 1000).padStart(3, '0')}Z`;
}

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
  // Before activate() nothing is the tenant's: whatever the prelude itself
  // writes (warming the console up) is dropped. Once the limit is reached the
  // rest is dropped at once: 100 MB of output costs no more than the limit.
  if (!activated || finished || truncated) return;
  const now = stamp();
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
  // A line without its newline yet is kept, but never more of it than could still
  // be logged (a string's length is at most its UTF-8 size).
  if (p && p.text.length > logLimit - logBytes) {
    truncated = true;
    p = null;
  }
  partial[stream] = p;
}

function flushPartial(stream) {
  const p = partial[stream];
  partial[stream] = null;
  if (p) accept(stream, p.time, p.text);
}

function toText(chunk) {
  if (typeof chunk === 'string') return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  return String(chunk);
}

// captureStream routes process[name] into the log capture (console.* goes there
// directly: captureConsole). write() captures
// synchronously, so stdout and stderr lines keep the order and the time in which
// they were written.
//
// In an addon environment the isolate never gets Node's real stdout/stderr
// streams: making those opens a libuv handle on the owner's own fd 1/2 (shared by
// every isolate, and through `_handle` a way around the capture) and loads the
// net/tty stream stack (~2-6 ms). It gets a Writable of its own instead, made on
// first use: loading the stream module costs ~4 ms of CPU in a new environment,
// which only an action that uses process.stdout/stderr itself pays. A Worker's
// stdio streams are already its own (messages to the owner, which drops them) and
// Node's worker internals call into them, so there only write() is replaced.
// lazyStreams[name] is the getter captureStream installs while it has not made
// the stream (captureConsole's sinks look at it).
const lazyStreams = {};
function captureStream(name, fd) {
  const write = function write(chunk, encoding, cb) {
    if (typeof encoding === 'function') cb = encoding;
    capture(name, toText(chunk));
    if (typeof cb === 'function') process.nextTick(cb);
    return true;
  };
  if (!isMainThread) {
    Object.defineProperty(process[name], 'write', { value: write, writable: true, configurable: true });
    return;
  }
  let s = null;
  const get = function get() {
    if (s) return s;
    lazyStreams[name] = null;
    const { Writable } = require('stream');
    s = new Writable({
      decodeStrings: false,
      write(chunk, encoding, cb) { // only reached through Writable's internals
        capture(name, toText(chunk));
        cb();
      },
    });
    Object.defineProperty(s, 'write', { value: write, writable: true, configurable: true });
    s.fd = fd;
    s.isTTY = false;
    return s;
  };
  lazyStreams[name] = get;
  Object.defineProperty(process, name, { configurable: true, enumerable: true, get });
}

// captureConsole points console.* straight at the log capture. Node's global
// console binds to process.stdout on its first call, and making that stream
// loads the stream module: +3.1 ms on the request path of every activation that
// logs (bench/README.md, "An action that logs"). The console is Node's own
// Console class (the same formatting, and table, time, count, group, dir,
// trace, assert), over two plain sinks that capture synchronously, so console
// and process.stdout/stderr lines keep their order. Once the action has reached
// for process.stdout (or stderr) itself, or put another stream there, the sink
// writes through it as Node's console would, so a patched write() still sees the
// console's output. Its methods replace the global console's in place, so
// require('console') is the same object. A Worker's console already writes to
// its own stdio (captureStream).
function captureConsole() {
  if (!isMainThread) return;
  const untouched = (name) => {
    const d = Object.getOwnPropertyDescriptor(process, name);
    return Boolean(d && lazyStreams[name] && d.get === lazyStreams[name]);
  };
  const sink = (name) => ({
    write(chunk) {
      if (untouched(name)) {
        capture(name, toText(chunk));
        return true;
      }
      try {
        return process[name].write(chunk);
      } catch {
        // Node's console swallows what its stream throws (ignoreErrors); so does this one.
        return true;
      }
    },
  });
  // ignoreErrors false: a sink that cannot fail needs no 'error' listeners
  // (which only a stream has).
  const c = new console.Console({ stdout: sink('stdout'), stderr: sink('stderr'), ignoreErrors: false, colorMode: false });
  for (const k of Object.keys(console)) {
    if (typeof console[k] === 'function' && typeof c[k] === 'function' && k !== 'Console') console[k] = c[k];
  }
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

// ---- the prelude's own work ---------------------------------------------------------
captureStream('stdout', 1);
captureStream('stderr', 2);
captureConsole();
// The isolate shares the process with other tenants: ending it, aborting it or
// moving its working directory would hit every activation, so these end only
// this activation.
process.exit = function exit(code) {
  finish('developer', { error: `An error has occurred: the action called process.exit(${code === undefined ? '' : code}).` });
  throw new Error('TeeMate: process.exit is not available to actions in a shared enclave');
};
process.reallyExit = process.exit;
process.abort = function abort() {
  finish('developer', { error: 'An error has occurred: the action called process.abort().' });
  throw new Error('TeeMate: process.abort is not available to actions in a shared enclave');
};
process.chdir = function chdir() {
  throw new Error('TeeMate: process.chdir is not available to actions in a shared enclave');
};

for (const name of ['setTimeout', 'setInterval', 'setImmediate']) {
  const orig = globalThis[name];
  globalThis[name] = function trackedTimer(...args) {
    const t = Reflect.apply(orig, this, args);
    if (!finished) pending.add(t);
    return t;
  };
  // require('timers') gives the same tracked functions as the globals.
  timers[name] = globalThis[name];
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

// The capability set (caps.js), installed last: the prelude's own work above
// needs nothing it refuses. Patched in place in this environment's builtins;
// beginCaps(settings) gives it the run's settings on the request path.
const beginCaps = caps.install({ stderr: (text) => capture('stderr', text), inWorker });

// ---- the request path ---------------------------------------------------------------
// (Parenthesised so V8 compiles it with the prelude, not on its first call.)
const activate = (function activate(requestText, deliver, log) {
  if (activated) throw new Error('this environment already served an activation');
  if (typeof deliver !== 'function') throw new TypeError('activate needs a deliver function');
  activated = true;
  started = performance.now();
  deliverResult = deliver;
  onlog = typeof log === 'function' ? log : null;

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
  // The action's /tmp is its private scratch directory (caps.js maps the paths).
  if (req.caps && req.caps.scratchDir) env.TMPDIR = '/tmp';
  process.env = env;
  // From here on the action's capabilities are this run's: before any of its code runs.
  beginCaps(req.caps, env.__OW_API_HOST);

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
    // One serialisation, no parse: the text goes to the owner as it is. An
    // object whose toJSON yields no object is not a dictionary either.
    let text;
    try {
      text = JSON.stringify(value);
    } catch (e) {
      finish('developer', { error: `An error has occurred: ${String(e)}` });
      return;
    }
    if (typeof text !== 'string' || (text[0] !== '{' && text[0] !== '[')) {
      finish('developer', { error: 'The action did not return a dictionary.' });
      return;
    }
    finish('success', undefined, text);
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
});

// warm() is called by the isolate addon only when it prepares an environment ahead
// of any request (a hot slot): the first performance timer read, vm compile and
// createRequire each load and initialise parts of Node, which would otherwise
// happen inside the tenant's activation. Measured in slot-thread CPU (node-isolate-patch
// bench/activation-cpu.js): it costs ~2.2 ms ahead and saves ~1.9 ms of the request
// path, so it about pays for itself and keeps a hot request at ~0.5 ms. The first
// console write is not warmed: it no longer loads the stream module
// (captureConsole), and what it still compiles (about 0.4 ms on the path of an
// action that logs) would be paid ahead by every activation. On a cold slot
// nobody calls it: there it would only add to the request path. It compiles only a
// constant and resolves nothing of any tenant.
activate.warm = function warm() {
  performance.now();
  vm.runInThisContext('0', { filename: 'teemate-prelude' });
  createRequire(path.join(process.cwd(), 'teemate-prelude.js'));
};
return activate;
