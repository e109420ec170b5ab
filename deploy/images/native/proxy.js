'use strict';
// The native model's action proxy: OpenWhisk's action-container protocol for Node.js
// actions, run as a plain (non-enclave) process inside a fresh container per request.
// It is untrusted host-side code, the baseline the teemate and strawman models are
// compared with. No npm dependencies: only Node's built-in modules.
//
//   POST /init {"value":{"name","main","code","binary","env"}}  once per container
//   POST /run  {"value":{...},"namespace","action_name",...}    runs main(value)
//
// It accepts on the already-listening descriptor $TEEMATE_PROXY_FD when the sandbox backend
// bound the socket for it, else listens on the unix socket $TEEMATE_PROXY_SOCKET when set (the
// container then needs no network), otherwise on TCP port $PORT or 8080. After every failed init and every run
// it prints the sentinel line on stdout and on stderr, as OpenWhisk's log collector
// expects.

const http = require('http');
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { createRequire } = require('module');

const SENTINEL = 'XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX';
const MAX_BODY = 48 * 1024 * 1024;

let handler = null; // the action's main once /init succeeded
let running = 0;
let broken = false; // an uncaught action error ends this container's service

function sentinels() {
  process.stdout.write(`${SENTINEL}\n`);
  process.stderr.write(`${SENTINEL}\n`);
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// serializeError turns a rejection value into JSON the way OpenWhisk's Node runtime
// reports it: own enumerable fields plus name/message/stack of Error objects.
function serializeError(err, seen = new Set()) {
  if (err === null || err === undefined || typeof err !== 'object') {
    return typeof err === 'function' ? `[Function: ${err.name || 'anonymous'}]` : err;
  }
  if (seen.has(err)) return '[Circular]';
  seen.add(err);
  const out = Array.isArray(err) ? [] : {};
  for (const k of Object.keys(err)) out[k] = serializeError(err[k], seen);
  if (err instanceof Error) {
    for (const k of ['name', 'message', 'stack']) if (typeof err[k] === 'string') out[k] = err[k];
  }
  seen.delete(err);
  return out;
}

function envString(v) {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

// load compiles the action as a CommonJS module and finds its entry point: a function
// named main in the code's scope, or module.exports[main], or module.exports itself.
function load(value) {
  const mainName = typeof value.main === 'string' && value.main ? value.main : 'main';
  if (value.binary) {
    throw new Error('binary (zip) actions are not supported by this runtime');
  }
  const filename = path.join(process.cwd() === '/' ? '/tmp' : process.cwd(), 'action.js');
  const simple = /^[A-Za-z_$][\w$]*$/.test(mainName);
  // The trailer reads a top-level function declaration named like main, if there is one.
  const trailer = simple ? `\n;return typeof ${mainName} === 'undefined' ? undefined : ${mainName};` : '\n;return undefined;';
  const source = `(function (exports, require, module, __filename, __dirname) {${value.code}${trailer}\n})`;
  const wrapper = vm.runInThisContext(source, { filename });
  const mod = { exports: {} };
  const userRequire = createRequire(filename);
  const fromScope = wrapper.call(mod.exports, mod.exports, userRequire, mod, filename, path.dirname(filename));
  let fn = fromScope;
  if (typeof fn !== 'function') {
    let v = mod.exports;
    for (const part of mainName.split('.')) v = v == null ? undefined : v[part];
    fn = v;
    if (typeof fn !== 'function' && typeof mod.exports === 'function' && mainName === 'main') fn = mod.exports;
  }
  if (typeof fn !== 'function') throw `Action entrypoint '${mainName}' is not a function.`;
  return fn;
}

function doInit(res, msg) {
  if (handler) {
    reply(res, 403, { error: 'Cannot initialize the action more than once.' });
    return;
  }
  const value = msg && typeof msg === 'object' ? msg.value : undefined;
  if (!value || typeof value !== 'object' || typeof value.code !== 'string' || value.code === '') {
    sentinels();
    reply(res, 403, { error: 'Missing main/no code to execute.' });
    return;
  }
  try {
    if (value.env && typeof value.env === 'object') {
      for (const [k, v] of Object.entries(value.env)) process.env[k] = envString(v);
    }
    handler = load(value);
  } catch (e) {
    sentinels();
    reply(res, 502, { error: `Initialization has failed due to: ${String(e)}` });
    return;
  }
  reply(res, 200, { OK: true });
}

async function doRun(res, msg) {
  if (!handler) {
    sentinels();
    reply(res, 403, { error: 'System not initialized.' });
    return;
  }
  if (running > 0 && process.env.__OW_ALLOW_CONCURRENT !== 'true') {
    sentinels();
    reply(res, 403, { error: 'System not ready.' });
    return;
  }
  const body = msg && typeof msg === 'object' && !Array.isArray(msg) ? msg : {};
  for (const [k, v] of Object.entries(body)) {
    if (k !== 'value' && typeof v === 'string') process.env[`__OW_${k.toUpperCase()}`] = v;
  }
  const value = body.value === undefined ? {} : body.value;
  let status = 200;
  let out;
  running++;
  try {
    let ret;
    try {
      ret = handler(value);
    } catch (e) {
      // A synchronous exception is a developer error and, as in OpenWhisk's runtime, the
      // proxy stops serving.
      broken = true;
      status = 502;
      out = { error: `An error has occurred: ${String(e)}` };
      return;
    }
    let result;
    try {
      result = await ret;
    } catch (err) {
      // A rejected promise is an application error carrying the rejection value.
      out = { error: err ? serializeError(err) : {} };
      return;
    }
    if (result === undefined) result = {};
    let plain = null;
    try {
      plain = result === null || typeof result !== 'object' ? null : JSON.parse(JSON.stringify(result));
    } catch (e) {
      status = 502;
      out = { error: `An error has occurred: ${String(e)}` };
      return;
    }
    if (plain === null || typeof plain !== 'object') {
      status = 502;
      out = { error: 'The action did not return a dictionary.' };
      return;
    }
    out = plain;
  } finally {
    running--;
    // Sentinels first: when the reply arrives, the activation's logs are complete.
    sentinels();
    reply(res, status, out);
  }
}

function serve(req, res) {
  if (broken) {
    reply(res, 503, { error: 'The action container is not serving after an action error.' });
    return;
  }
  if (req.method !== 'POST' || (req.url !== '/init' && req.url !== '/run')) {
    reply(res, 404, { error: `no handler for ${req.method} ${req.url}` });
    return;
  }
  const chunks = [];
  let size = 0;
  let over = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) over = true;
    if (!over) chunks.push(c);
  });
  req.on('end', () => {
    if (over) {
      sentinels();
      reply(res, 413, { error: `The request body exceeds ${MAX_BODY} bytes.` });
      return;
    }
    let msg;
    try {
      msg = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
    } catch (e) {
      sentinels();
      reply(res, 400, { error: `Malformed JSON request: ${e.message}` });
      return;
    }
    if (req.url === '/init') doInit(res, msg);
    else doRun(res, msg);
  });
}

process.on('uncaughtException', (e) => {
  process.stderr.write(`An error has occurred: ${String(e)}\n`);
});

const server = http.createServer(serve);
const sock = process.env.TEEMATE_PROXY_SOCKET;
const inherited = Number(process.env.TEEMATE_PROXY_FD);
if (Number.isInteger(inherited) && inherited >= 3) {
  server.listen({ fd: inherited });
} else if (sock) {
  try { fs.unlinkSync(sock); } catch (e) { if (e.code !== 'ENOENT') throw e; }
  server.listen(sock);
} else {
  server.listen(Number(process.env.PORT) || 8080);
}
server.on('error', (e) => {
  process.stderr.write(`action proxy: ${e.message}\n`);
  process.exit(1);
});
