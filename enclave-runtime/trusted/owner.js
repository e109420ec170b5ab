'use strict';
// The enclave owner (trusted side): the Node program that runs inside the shared
// enclave. It serves the gate protocol v1 (../PROTOCOL.md) on a unix socket, keeps
// the TCS table, and runs every activation in a NEW isolate on the slot's thread.
//
// Everything that arrives on the gate is untrusted: sizes, types and message order
// are checked here, and a caller is known only by the slot bound to its connection.
//
//   node owner.js --socket PATH --slots N --image nodejs:20 --enclave ID
//                 [--isolate addon|worker|auto] [--prewarm K|all] [--work-dir DIR] [--mode direct|sgx]
//                 [--scratch-dir DIR] [--scratch-quota-mb N] [--egress-allow host:port,...]
//                 [--deny-hosts ip[/prefix],...] [--lockdown none|seccomp] [--gate-key stdin]
//                 [--key-dir DIR] [--key-mode generate|await] [--isolate-reuse none|tenant]
//                 [--page-pool-mb N]
//
// --gate-key stdin: the invoker writes this owner's gate key on standard input;
// every attach then needs a token (trusted/gateauth.js).
// --key-dir DIR: the image key is sealed to DIR/image-key.sealed (trusted/keys.js);
// in direct mode the sealing key is the next line of standard input (after the
// gate key's). --key-mode await: start without an image key and wait for one
// from a live peer (key-request / key-import); generate (the default) unseals
// the key in --key-dir or makes a new one.
// --isolate-reuse tenant (isolate addon only; none by default): each slot keeps
// its isolate for one tenant's activations, each still in a new context and Node
// environment (node-isolate-patch/src/activation.h, KeptIsolate). The tenant is
// the namespace of the gate token; sealed activations and callers without a
// token never share an isolate.
// --page-pool-mb N (isolate addon only; its default, 16, when absent): the budget
// of the addon's page pool, which hands a torn-down isolate's heap pages, zeroed,
// to the next isolate (node-isolate-patch/README.md, "The page pool"); 0 turns it
// off, for an operator who prefers fresh heap addresses for every isolate.

const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const { Decoder, ProtocolError, encode, encodeText } = require('./frame');
const { TcsTable } = require('./tcs');
const { prepareCode, ZipActions, InitError } = require('./prepare');
const isolates = require('./isolates');
const { GateAuth, AuthError, parseKey } = require('./gateauth');
const sealed = require('./sealed');
const primitives = require('./primitives');
const { PROTOCOL_VERSION, LIMITS, OUTCOME } = require('./wire');
const { ImageKeys, KeyError, parseSealingKey } = require('./keys');
const { StateTransfer } = require('./transfer');

const DEFAULTS = { timeoutMs: 60000, memoryMB: 256, logLimitBytes: 10 * 1024 * 1024 };
// Slots that keep a prepared isolate environment while idle when --prewarm is not
// given. Each costs ~4.4 MiB of resident memory whether or not traffic comes, so
// the budget is small and fixed instead of growing with --slots; the lowest slots
// get it because the TCS table hands those out first.
const DEFAULT_PREWARM = 4;
// Bytes an activation may write into its scratch directory (its /tmp).
const DEFAULT_SCRATCH_QUOTA_MB = 64;
// OpenWhisk's limit on an action's result; a larger one is the action's error.
const MAX_RESULT_BYTES = 1024 * 1024;

function log(level, msg, fields) {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

// ---- arguments ----------------------------------------------------------------------
function parseArgs(argv) {
  const opts = { isolate: 'auto', mode: 'direct', workDir: '', scratchDir: '', lockdown: 'none', keyDir: '', keyMode: 'generate',
    isolateReuse: 'none' };
  const names = { '--socket': 'socket', '--slots': 'slots', '--image': 'image', '--enclave': 'enclave',
    '--isolate': 'isolate', '--work-dir': 'workDir', '--mode': 'mode', '--prewarm': 'prewarm',
    '--scratch-dir': 'scratchDir', '--scratch-quota-mb': 'scratchQuotaMB', '--egress-allow': 'egressAllow',
    '--deny-hosts': 'denyHosts', '--lockdown': 'lockdown', '--gate-key': 'gateKey',
    '--key-dir': 'keyDir', '--key-mode': 'keyMode', '--isolate-reuse': 'isolateReuse',
    '--page-pool-mb': 'pagePoolMB' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const key = names[a];
    if (!key) throw new Error(`unknown argument ${a}`);
    if (v === undefined) {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      v = argv[++i];
    }
    opts[key] = v;
  }
  for (const k of ['socket', 'slots', 'image', 'enclave']) {
    if (!opts[k]) throw new Error(`--${k} is required`);
  }
  const n = Number(opts.slots);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`--slots must be 1..1024, got ${opts.slots}`);
  opts.slots = n;
  opts.prewarm = parsePrewarm(opts.prewarm, n);
  if (!['addon', 'worker', 'auto'].includes(opts.isolate)) throw new Error(`--isolate must be addon, worker or auto`);
  if (!['direct', 'sgx'].includes(opts.mode)) throw new Error(`--mode must be direct or sgx`);
  if (!['none', 'seccomp'].includes(opts.lockdown)) throw new Error('--lockdown must be none or seccomp');
  if (opts.gateKey !== undefined && opts.gateKey !== 'stdin') throw new Error('--gate-key must be stdin');
  if (!['generate', 'await'].includes(opts.keyMode)) throw new Error('--key-mode must be generate or await');
  if (!['none', 'tenant'].includes(opts.isolateReuse)) throw new Error('--isolate-reuse must be none or tenant');
  if (opts.isolateReuse === 'tenant' && opts.isolate === 'worker') throw new Error('--isolate-reuse tenant needs the isolate addon');
  if (opts.pagePoolMB !== undefined) {
    const pool = /^[0-9]+$/.test(opts.pagePoolMB) ? Number(opts.pagePoolMB) : NaN;
    if (!Number.isInteger(pool) || pool > 4096) throw new Error('--page-pool-mb must be an integer from 0 to 4096');
    opts.pagePoolMB = pool;
  }
  const mb = opts.scratchQuotaMB === undefined ? DEFAULT_SCRATCH_QUOTA_MB
    : /^[0-9]+$/.test(opts.scratchQuotaMB) ? Number(opts.scratchQuotaMB) : NaN;
  if (!Number.isInteger(mb) || mb < 1 || mb > 65536) throw new Error('--scratch-quota-mb must be an integer from 1 to 65536');
  opts.scratchQuotaBytes = mb * 1024 * 1024;
  delete opts.scratchQuotaMB;
  opts.egressAllow = parseEgressAllow(opts.egressAllow);
  opts.denyHosts = parseDenyHosts(opts.denyHosts);
  return opts;
}

function listOf(v) {
  return v === undefined || v === '' ? [] : v.split(',').map((x) => x.trim()).filter(Boolean);
}

// --egress-allow host:port[,...] ("[v6]:port" for IPv6): reachable by actions with
// network even when the address is one the deny rules refuse.
function parseEgressAllow(v) {
  return listOf(v).map((e) => {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):([0-9]{1,5})$/.exec(e);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) throw new Error(`--egress-allow entries must be host:port, got ${JSON.stringify(e)}`);
    return e;
  });
}

// --deny-hosts ip[/prefix][,...]: the host's own addresses, refused to actions on
// top of loopback, link-local and unspecified.
function parseDenyHosts(v) {
  return listOf(v).map((e) => {
    const [ip, prefix] = e.split('/');
    const fam = net.isIP(ip);
    const max = fam === 4 ? 32 : 128;
    if (!fam || (prefix !== undefined && !(/^[0-9]+$/.test(prefix) && Number(prefix) <= max))) {
      throw new Error(`--deny-hosts entries must be IP addresses (optionally /prefix), got ${JSON.stringify(e)}`);
    }
    return e;
  });
}

// parsePrewarm turns --prewarm into the number of slots (the lowest ones) that keep
// a prepared environment: an integer from 0 to slots, or "all". Absent: the default
// budget, capped at the slot count.
function parsePrewarm(v, slots) {
  if (v === undefined) return Math.min(DEFAULT_PREWARM, slots);
  if (v === 'all') return slots;
  const k = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(k) || k > slots) {
    throw new Error(`--prewarm must be an integer from 0 to --slots (${slots}) or "all", got ${JSON.stringify(v)}`);
  }
  return k;
}

// ---- message checks (pure) -------------------------------------------------------------
function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkEnv(env, what) {
  if (env === undefined) return {};
  if (!isPlainObject(env)) throw new ProtocolError(`${what}.env must be an object`);
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string') throw new ProtocolError(`${what}.env["${k}"] must be a string`);
  }
  return env;
}

function intIn(msg, key) {
  const v = msg[key] === undefined ? DEFAULTS[key] : msg[key];
  const [lo, hi] = LIMITS[key];
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new ProtocolError(`run.${key} must be an integer from ${lo} to ${hi}`);
  }
  return v;
}

function checkInit(msg) {
  const out = {};
  for (const k of ['name', 'main', 'code']) {
    if (msg[k] !== undefined && typeof msg[k] !== 'string') throw new ProtocolError(`init.${k} must be a string`);
  }
  if (msg.binary !== undefined && typeof msg.binary !== 'boolean') throw new ProtocolError('init.binary must be a boolean');
  out.name = msg.name || 'action';
  out.main = msg.main || 'main';
  out.code = msg.code;
  out.binary = msg.binary === true;
  out.env = checkEnv(msg.env, 'init');
  return out;
}

function checkRun(msg) {
  const v = msg.value === undefined ? {} : msg.value;
  if (v === null || typeof v !== 'object') throw new ProtocolError('run.value must be an object or an array');
  if (msg.network !== undefined && typeof msg.network !== 'boolean') throw new ProtocolError('run.network must be a boolean');
  return {
    network: msg.network === true,
    value: v,
    timeoutMs: intIn(msg, 'timeoutMs'),
    memoryMB: intIn(msg, 'memoryMB'),
    logLimitBytes: intIn(msg, 'logLimitBytes'),
    env: checkEnv(msg.env, 'run'),
  };
}

// What an isolate may report; timeout and memory are the owner's own findings.
const OUTCOMES = new Set([OUTCOME.SUCCESS, OUTCOME.APPLICATION, OUTCOME.DEVELOPER]);
const STREAMS = new Set(['stdout', 'stderr']);

// limitLogs re-applies the log limit on the owner's side: the lines come out of an
// isolate that ran user code, so their shape and size are checked again here.
function limitLogs(entries, limit) {
  const out = [];
  let bytes = 0;
  let truncated = false;
  for (const e of Array.isArray(entries) ? entries : []) {
    if (!e || !STREAMS.has(e.stream) || typeof e.time !== 'string' || typeof e.line !== 'string') continue;
    if (e.line.startsWith('Logs were truncated because')) { truncated = true; continue; }
    const n = Buffer.byteLength(e.line, 'utf8') + 1;
    if (bytes + n > limit) { truncated = true; break; }
    bytes += n;
    out.push({ stream: e.stream, time: e.time.slice(0, 40), line: e.line });
  }
  if (truncated) {
    out.push({ stream: 'stderr', time: new Date().toISOString(),
      line: `Logs were truncated because the total bytes size exceeds the limit of ${limit} bytes.` });
  }
  return out;
}

// outcomeOf turns what an isolate backend reported into the `result` message body.
// A delivered result is two JSON texts joined by a newline (activation.js): the
// header {outcome, logs} and the result value. Both come out of an isolate that ran
// user code, so both are parsed and checked here; the value's text is then kept as
// msg.resultText (not enumerable) so the reply can carry it without encoding the
// value again (replyFrame).
function outcomeOf(r, run) {
  const timings = r.timings || { isolateMs: 0, runMs: 0, teardownMs: 0 };
  if (r.kind === 'result') {
    const text = typeof r.text === 'string' ? r.text : '';
    const nl = text.indexOf('\n');
    let head = null;
    let result = null;
    let resultText = '';
    if (nl > 0) {
      resultText = text.slice(nl + 1);
      try {
        head = JSON.parse(text.slice(0, nl));
        result = JSON.parse(resultText);
      } catch {
        head = null;
      }
    }
    if (!isPlainObject(head) || !OUTCOMES.has(head.outcome) || result === null || typeof result !== 'object') {
      return { type: 'result', outcome: OUTCOME.DEVELOPER,
        result: { error: 'An error has occurred: the action produced a malformed result.' },
        logs: limitLogs(r.logs, run.logLimitBytes), timings };
    }
    const size = Buffer.byteLength(resultText, 'utf8');
    if (size > MAX_RESULT_BYTES) {
      return { type: 'result', outcome: OUTCOME.DEVELOPER,
        result: { error: `The action produced a response that exceeded the allowed length: ${size} > ${MAX_RESULT_BYTES} bytes.` },
        logs: limitLogs(head.logs, run.logLimitBytes), timings };
    }
    // OpenWhisk: a returned dictionary that carries `error` is an application error.
    const outcome = head.outcome === OUTCOME.SUCCESS && !Array.isArray(result) &&
      Object.prototype.hasOwnProperty.call(result, 'error') ? OUTCOME.APPLICATION : head.outcome;
    const msg = { type: 'result', outcome, result, logs: limitLogs(head.logs, run.logLimitBytes), timings };
    Object.defineProperty(msg, 'resultText', { value: resultText });
    return msg;
  }
  const logs = limitLogs(r.logs, run.logLimitBytes);
  if (r.kind === 'timeout') {
    return { type: 'result', outcome: OUTCOME.TIMEOUT,
      result: { error: `The action exceeded its time limits of ${run.timeoutMs} milliseconds.` }, logs, timings };
  }
  if (r.kind === 'memory') {
    return { type: 'result', outcome: OUTCOME.MEMORY,
      result: { error: 'The action exhausted its memory and was aborted.' }, logs, timings };
  }
  return { type: 'result', outcome: OUTCOME.DEVELOPER,
    result: { error: 'An error has occurred: the action ended without returning a result.' }, logs, timings };
}

// replyFrame encodes a `result` message. When outcomeOf kept the validated text of
// the result value, that text is spliced in as it is: JSON.parse accepted it as one
// object or array, so it is a well-formed JSON value, and the value is not encoded
// a second time (~10 ms per MiB of result saved on the owner's thread).
function replyFrame(msg) {
  if (typeof msg.resultText !== 'string') return encode(msg);
  return encodeText(`{"type":"result","outcome":${JSON.stringify(msg.outcome)},"result":${msg.resultText},` +
    `"logs":${JSON.stringify(msg.logs)},"timings":${JSON.stringify(msg.timings)}}`);
}

// runtimeModules is the real path of the modules offered to every action, or ''.
function runtimeModules() {
  try {
    return fs.realpathSync(path.join(__dirname, '..', 'modules', 'node_modules'));
  } catch {
    return '';
  }
}

// prepareSealedSpare makes the ephemeral key pair the next sealed reply takes
// (sealed.prepareSpare), off the request path. A failure only means the next reply
// makes its own.
function prepareSealedSpare() {
  try {
    sealed.prepareSpare();
  } catch (e) {
    log('warn', 'making a spare ephemeral key failed', { error: e.message });
  }
}

// nativeFiles lists the native code this owner runs besides node, for the simulated
// measurement (keys.measurement): the isolate addon when the backend is it, the
// sealed-crypto addon when it loaded, the lockdown addon when --lockdown seccomp is
// asked for (it loads after the keys exist; its bytes are the ones it will load).
function nativeFiles(backend, lockdownMode) {
  const files = [];
  if (backend && backend.name === 'addon') files.push(isolates.addonPath());
  if (primitives.nativeFile()) files.push(primitives.nativeFile());
  if (lockdownMode === 'seccomp') files.push(require('./lockdown').addonFile()); // eslint-disable-line global-require
  return files;
}

// ---- the owner -------------------------------------------------------------------------
class Owner {
  constructor(opts, backend) {
    this.opts = opts;
    this.backend = backend;
    this.tcs = new TcsTable(opts.slots);
    // --isolate-reuse tenant: the tenant each slot's isolate is kept for ('' none).
    this.slotTenants = new Array(opts.slots).fill('');
    this.conns = new Set();
    this.seq = 0;
    this.codeDir = path.join(opts.workDir, 'code');
    this.zipCache = path.join(opts.workDir, 'actions');
    fs.mkdirSync(this.codeDir, { recursive: true });
    fs.mkdirSync(this.zipCache, { recursive: true });
    // The action's capabilities name real paths (caps.js compares them as text,
    // and the module loader reports files by their real path).
    this.zipCache = fs.realpathSync(this.zipCache);
    this.scratch = new Scratch(opts.scratchDir || path.join(opts.workDir, 'scratch'), opts.scratchQuotaBytes);
    // The npm modules every action may require, read-only, as OpenWhisk's Node.js
    // runtime offers its own (the openwhisk client): ../modules/node_modules,
    // which `make build` installs; none without it.
    this.libDir = runtimeModules();
    this.zipActions = new ZipActions(this.zipCache);
    // opts.key: the gate key main() read (--gate-key), or none.
    this.auth = new GateAuth(opts.key || null);
    // The image key (trusted/keys.js), before the gate listens: unsealed from
    // --key-dir, made, or (--key-mode await) left to a key-import. A sealed key
    // that does not open stops the start here (KeyError).
    this.keys = new ImageKeys({ image: opts.image, keyDir: opts.keyDir, sealingKey: opts.sealingKey || null,
      attestationDir: opts.attestationDir, natives: nativeFiles(backend, opts.lockdown), log });
    const kid = this.keys.start(opts.keyMode || 'generate');
    log('info', kid ? 'image key ready' : 'awaiting the image key from a peer',
      { kid, evidence: this.keys.type, sealed: opts.keyDir ? 'to --key-dir' : 'no: in memory only' });
    // Nonces of the sealed envelopes opened within their time window (sealed.js).
    this.replay = new sealed.ReplayCache();
    // Sealed code opened once per action for the owner's lifetime (sealed.js).
    this.sealedCode = new sealed.CodeCache();
    // The key and the opened code moving to or from another owner (transfer.js).
    this.state = new StateTransfer({ keys: this.keys, cache: this.sealedCode, log });
    prepareSealedSpare();
  }

  // slotPreference ranks the free slots for an activation of tenant (TcsTable.acquire):
  // with --isolate-reuse tenant first a prepared slot whose isolate is kept for that
  // tenant, then a prepared one kept for nobody (another tenant's would have to make
  // a new isolate on the request path); otherwise any prepared slot.
  slotPreference(prepared, tenant) {
    if (!prepared) return undefined;
    const ready = (i) => prepared[i] === true;
    if (this.opts.isolateReuse !== 'tenant') return ready;
    return [
      (i) => ready(i) && tenant !== '' && this.slotTenants[i] === tenant,
      (i) => ready(i) && this.slotTenants[i] === '',
      ready,
    ];
  }

  // noteIsolate records whom slot's isolate is now kept for ('' nobody), as the
  // addon reported with the activation's outcome.
  noteIsolate(slot, tenant) {
    if (slot < 0 || slot >= this.slotTenants.length || this.slotTenants[slot] === tenant) return;
    this.slotTenants[slot] = tenant;
    // Only on a change: a namespace is no secret to the host, which names it.
    log('info', tenant ? 'slot isolate kept for a tenant' : 'slot isolate kept for nobody', { tcs: slot, tenant });
  }

  listen() {
    return new Promise((resolve, reject) => {
      removeStaleSocket(this.opts.socket);
      this.server = net.createServer((s) => this.accept(s));
      this.server.on('error', reject);
      this.server.listen(this.opts.socket, () => {
        // Sandboxes connect under their own uids; the gate trusts no caller anyway.
        try { fs.chmodSync(this.opts.socket, 0o666); } catch { /* best effort */ }
        resolve();
      });
    });
  }

  accept(socket) {
    const c = new Conn(this, socket, ++this.seq);
    this.conns.add(c);
  }

  pong() {
    const st = this.tcs.stats();
    const prepared = this.backend.prepared();
    return { type: 'pong', slots: st.slots, free: st.free, quarantined: st.quarantined, isolate: this.backend.name,
      prewarm: this.backend.prewarm, prepared: prepared ? prepared.filter((p) => p === true).length : 0,
      auth: this.auth.required, authRefused: this.auth.refused, kid: this.keys.ready() ? this.keys.current().kid : null };
  }

  // keyAuth checks the proof a key message carries when the owner has a gate key:
  // only the invoker (which holds the key) may start or end a transfer or rotate.
  // auth = hex(HMAC-SHA256(gate key, "teemate-keys-v1\n" + type)).
  keyAuth(m) {
    const key = this.auth.key;
    if (!key) return;
    const want = crypto.createHmac('sha256', key).update(`teemate-keys-v1\n${m.type}`).digest();
    const got = typeof m.auth === 'string' && /^[0-9a-f]{64}$/.test(m.auth) ? Buffer.from(m.auth, 'hex') : Buffer.alloc(32);
    if (!crypto.timingSafeEqual(want, got)) throw new AuthError(`${m.type} needs the invoker's proof (auth)`);
  }

  // onKey handles the key messages (PROTOCOL.md, "Image key"); a refusal is
  // error class `key` and the connection stays open.
  onKey(conn, m) {
    this.keyAuth(m);
    const k = this.keys;
    try {
      switch (m.type) {
        case 'key-request':
          return conn.send({ type: 'key-request', request: k.request() });
        case 'key-offer':
          return conn.send({ type: 'key-offer', offer: k.offer(m.request) });
        case 'key-import': {
          const kid = k.importOffer(m.offer);
          log('info', 'image key imported from a peer', { kid });
          return conn.send({ type: 'key-imported', kid });
        }
        case 'state-offer':
          return conn.send({ type: 'state-offer', offer: this.state.offer(m.request) });
        case 'state-open':
          return conn.send({ type: 'state-status', ...this.state.open(m.offer) });
        case 'state-chunks':
          return conn.send({ type: 'state-chunks', ...this.state.chunks(m) });
        case 'state-chunk':
          return conn.send({ type: 'state-status', ...this.state.accept(m) });
        case 'state-status':
          return conn.send({ type: 'state-status', ...this.state.status(m) });
        default: {
          const previous = k.current().kid;
          const kid = k.rotate();
          log('info', 'image key rotated', { kid, previous });
          return conn.send({ type: 'key-rotated', kid, previous });
        }
      }
    } catch (e) {
      if (!(e instanceof KeyError)) throw e;
      log('warn', 'key message refused', { type: m.type, error: e.message });
      return conn.error('key', e.message);
    }
  }

  close() {
    for (const c of this.conns) c.socket.destroy();
    if (this.server) this.server.close();
    try { fs.unlinkSync(this.opts.socket); } catch { /* already gone */ }
    this.backend.stop();
    this.scratch.removeReady();
  }
}

class Conn {
  constructor(owner, socket, id) {
    this.owner = owner;
    this.socket = socket;
    this.id = id;
    this.decoder = new Decoder();
    this.hello = false;
    this.sandbox = '';
    // The credentials hello presented (gateauth.js), null without a key.
    this.ticket = null;
    this.sealedHint = false; // hello.sealed
    this.codeSealed = false; // the action's code arrived sealed (onInit)
    this.closed = false;
    this.resetAcquisition();
    this.slot = -1;
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('end', () => {
      const err = this.decoder.end();
      if (err) this.protocolError(err);
      else socket.end();
    });
    socket.on('error', () => {}); // a vanished peer is handled by 'close'
    socket.on('close', () => this.onClose());
  }

  resetAcquisition() {
    this.initState = 'none'; // none | pending | ok | failed
    this.action = null;
    this.initEnv = {};
    this.initCode = '';
    this.initCodeSha256 = '';
    this.ran = false;
    this.running = false;
  }

  send(msg) {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(encode(msg));
  }

  sendFrame(frame) {
    if (this.closed || this.socket.destroyed) return;
    this.socket.write(frame);
  }

  error(cls, message, close = false) {
    this.send({ type: 'error', class: cls, message });
    if (close) {
      this.closed = true;
      this.socket.end();
      this.socket.destroySoon?.();
    }
  }

  // authError refuses the caller (already counted by GateAuth) and closes.
  authError(err) {
    log('warn', 'gate caller refused', { conn: this.id, sandbox: this.sandbox, error: err.message });
    if (this.slot >= 0 && !this.running) {
      this.owner.tcs.release(this.slot, this);
      this.slot = -1;
    }
    this.error('auth', err.message, true);
  }

  protocolError(err) {
    log('warn', 'gate protocol error', { conn: this.id, sandbox: this.sandbox, error: err.message });
    this.error('protocol', err.message, err.close !== false);
  }

  onData(chunk) {
    if (this.closed) return;
    const { messages, error } = this.decoder.push(chunk);
    for (const m of messages) {
      if (this.closed) return;
      try {
        this.handle(m);
      } catch (e) {
        if (e instanceof ProtocolError) this.protocolError(e);
        else if (e instanceof AuthError) this.authError(e);
        else {
          log('error', 'gate handler failed', { conn: this.id, error: e.stack || String(e) });
          this.error('internal', `the runtime failed: ${e.message}`);
        }
      }
    }
    if (error && !this.closed) this.protocolError(error);
  }

  onClose() {
    this.closed = true;
    this.owner.conns.delete(this);
    if (this.slot >= 0) {
      const state = this.owner.tcs.release(this.slot, this);
      if (state === 'quarantined') {
        log('warn', 'connection closed during a run; slot quarantined', { conn: this.id, tcs: this.slot });
      }
      this.slot = -1;
    }
  }

  handle(m) {
    switch (m.type) {
      case 'ping': return this.send(this.owner.pong());
      case 'evidence': return this.onEvidence();
      case 'hello': return this.onHello(m);
      case 'acquire': return this.onAcquire();
      case 'init': return this.onInit(m);
      case 'run': return this.onRun(m);
      case 'release': return this.onRelease();
      case 'key-request':
      case 'key-offer':
      case 'key-import':
      case 'key-rotate':
      case 'state-offer':
      case 'state-open':
      case 'state-chunks':
      case 'state-chunk':
      case 'state-status':
        return this.owner.onKey(this, m);
      default:
        throw new ProtocolError(`unknown message type "${String(m.type).slice(0, 64)}"`, { close: false });
    }
  }

  // onEvidence serves the evidence of the image key (owner.keys, trusted/keys.js): allowed on any
  // connection, before or instead of hello, without a token, like ping. Evidence is public: it
  // binds the key's public halves to this enclave's measurement, and clients verify it
  // themselves. An owner without a key (none made yet, or waiting for a transfer) says so.
  onEvidence() {
    const keys = this.owner.keys;
    // keys.ready() is false while an owner started with --key-mode await waits for a transfer.
    if (!keys || typeof keys.evidence !== 'function' || (typeof keys.ready === 'function' && !keys.ready())) {
      return this.error('unavailable', 'this enclave holds no image key yet: no evidence to serve');
    }
    return this.send({ type: 'evidence', evidence: keys.evidence() });
  }

  onHello(m) {
    if (this.hello) return this.error('state', 'hello was already received on this connection');
    if (typeof m.version !== 'number') throw new ProtocolError('hello.version must be a number');
    if (m.sandbox !== undefined && typeof m.sandbox !== 'string') throw new ProtocolError('hello.sandbox must be a string');
    if (m.sealed !== undefined && typeof m.sealed !== 'boolean') throw new ProtocolError('hello.sealed must be a boolean');
    if (m.version !== PROTOCOL_VERSION) {
      return this.error('version', `protocol version ${m.version} is not supported; this runtime speaks ${PROTOCOL_VERSION}`, true);
    }
    this.sandbox = (m.sandbox || '').slice(0, 256);
    // The invoker's hint that this activation is sealed: only the slot ranking uses it (a sealed
    // activation shares no isolate); what the activation is decides everything else.
    this.sealedHint = m.sealed === true;
    this.ticket = this.owner.auth.hello(m);
    this.hello = true;
    const o = this.owner;
    return this.send({
      type: 'welcome', version: PROTOCOL_VERSION, enclave: o.opts.enclave, image: o.opts.image,
      mode: o.opts.mode, isolate: o.backend.name, slots: o.tcs.size, free: o.tcs.stats().free,
      attestation: o.keys.ready() ? { type: o.keys.type, kid: o.keys.current().kid } : null,
    });
  }

  // tenant is whose isolate this connection's activation may share with
  // --isolate-reuse tenant: the namespace its gate token was issued for, '' without
  // a token (nothing then says whose it is) or without the mode.
  tenant() {
    if (this.owner.opts.isolateReuse !== 'tenant' || !this.ticket) return '';
    return typeof this.ticket.namespace === 'string' ? this.ticket.namespace : '';
  }

  onAcquire() {
    if (!this.hello) return this.error('state', 'hello must come before acquire');
    if (this.slot >= 0) return this.error('state', `this connection already holds TCS slot ${this.slot}`);
    // A free slot whose fresh environment is already prepared runs the activation
    // at once; the others (a hot slot still refilling, a cold slot) make it first.
    const prepared = this.owner.backend.prepared();
    const slot = this.owner.tcs.acquire(this, this.owner.slotPreference(prepared, this.sealedHint ? '' : this.tenant()));
    if (slot < 0) return this.error('busy', `all ${this.owner.tcs.size} TCS slots are taken`);
    this.slot = slot;
    // The token is spent by the slot it takes (authError frees the slot on refusal).
    this.owner.auth.spend(this.ticket);
    this.resetAcquisition();
    return this.send({ type: 'acquired', tcs: slot });
  }

  onInit(m) {
    if (this.slot < 0) return this.error('state', 'acquire a TCS slot before init');
    if (this.initState !== 'none') return this.error('state', 'Cannot initialize the action more than once.');
    const a = checkInit(m);
    if (!a.code) {
      this.initState = 'failed';
      return this.error('init', 'Missing main/no code to execute.');
    }
    // Sealed code (sealed.js) is opened here, in the owner, and only its plaintext
    // goes on to be prepared; the image key never reaches the isolate.
    const sealedCode = sealed.isSealedCode(a.code);
    this.codeSealed = sealedCode;
    if (sealedCode) {
      try {
        const opened = sealed.openCode(this.owner.keys, a.code, a.env, this.owner.sealedCode);
        a.code = opened.code;
        this.initCodeSha256 = opened.sha256;
      } catch (e) {
        this.initState = 'failed';
        const refusal = e instanceof sealed.SealedError ? e : new sealed.SealedError('the sealed code could not be opened');
        log('warn', 'sealed code refused', { conn: this.id, sandbox: this.sandbox, error: refusal.message });
        return this.error('init', refusal.message);
      }
    }
    // The code as it runs, hashed into a sealed activation's receipt.
    this.initCode = a.code;
    this.initState = 'pending';
    const t0 = performance.now();
    const done = (action) => {
      if (this.closed) return;
      this.action = action;
      this.initEnv = a.env;
      this.initState = 'ok';
      this.send({ type: 'initialized', ms: Math.round((performance.now() - t0) * 1000) / 1000 });
    };
    const failed = (e) => {
      this.initState = 'failed';
      // The reason may quote sealed code (a syntax error's token, an entry's name).
      if (sealedCode && e instanceof InitError) {
        return this.error('init', 'Initialization has failed due to: the sealed code could not be prepared (the reason is withheld: it may quote the code).');
      }
      if (e instanceof InitError) return this.error('init', e.message);
      log('error', 'init failed', { conn: this.id, error: e.stack || String(e) });
      return this.error('internal', `could not prepare the action: ${e.message}`);
    };
    if (!a.binary) {
      try {
        return done({ ...prepareCode(a, this.owner.codeDir), main: a.main });
      } catch (e) {
        return failed(e);
      }
    }
    this.owner.zipActions.prepare(a).then((action) => done({ ...action, main: a.main }), failed);
    return undefined;
  }

  onRun(m) {
    if (this.slot < 0) return this.error('state', 'acquire a TCS slot before run');
    if (this.initState === 'pending') return this.error('state', 'init has not finished');
    if (this.initState !== 'ok') return this.error('state', 'System not initialized.');
    if (this.ran) return this.error('state', 'the action already ran on this acquisition');
    const run = checkRun(m);
    this.owner.auth.run(this.ticket, { ...this.initEnv, ...run.env });
    this.ran = true;
    // A sealed activation (sealed.js): its envelope is opened here, outside the
    // isolate; a refused one ends the activation before any isolate is made.
    let seal = null;
    if (sealed.isEnvelope(run.value)) {
      try {
        const opened = sealed.openEnvelope(this.owner.keys, run.value, { ...this.initEnv, ...run.env }, this.owner.replay);
        run.value = opened.params;
        seal = opened.ctx;
      } catch (e) {
        const refusal = e instanceof sealed.SealedError ? e : new sealed.SealedError('the envelope could not be opened');
        log('warn', 'sealed envelope refused', { conn: this.id, sandbox: this.sandbox, error: refusal.message });
        return this.send(sealed.refusedOutcome(refusal));
      }
    }
    this.running = true;
    const slot = this.slot;
    const tcs = this.owner.tcs;
    tcs.beginRun(slot, this);
    const { main, ...action } = this.action;
    let scratchDir;
    try {
      scratchDir = this.owner.scratch.make();
    } catch (e) {
      tcs.endRun(slot);
      this.running = false;
      log('error', 'could not make a scratch directory', { conn: this.id, tcs: slot, error: e.message });
      return this.error('internal', `could not make the activation's scratch directory: ${e.message}`);
    }
    const o = this.owner.opts;
    const request = {
      action: action.kind === 'code' ? { kind: 'code', source: action.source, filename: action.filename }
        : { kind: 'dir', dir: action.dir },
      main,
      value: run.value,
      env: { ...this.initEnv, ...run.env },
      logLimitBytes: run.logLimitBytes,
      // What this activation may reach (caps.js): its own code read-only, its
      // scratch dir as /tmp, network only when the run says so.
      caps: {
        codeDir: action.kind === 'dir' ? action.dir : '',
        libDir: this.owner.libDir,
        scratchDir,
        quotaBytes: this.owner.scratch.quotaBytes,
        network: run.network,
        egressAllow: o.egressAllow,
        denyHosts: o.denyHosts,
      },
    };
    // The reply is sent from inside the backend's completion callback (not a
    // promise continuation): the addon's slot thread waits for that callback to
    // return before it frees the used isolate and prepares the next one.
    // --isolate-reuse tenant: whose isolate this activation may share. Sealed ones
    // share with no one (their namespace is the host's word, see isolateTenant).
    const tenant = seal || this.codeSealed ? '' : this.tenant();
    this.owner.backend.run(slot, {
      requestJSON: JSON.stringify(request), timeoutMs: run.timeoutMs, memoryMB: run.memoryMB, tenant,
    }, (r) => {
      try {
        this.owner.noteIsolate(slot, r.isolateKept ? tenant : '');
        // The isolate is gone: a quarantined slot is reset and freed now.
        const after = tcs.endRun(slot);
        this.running = false;
        if (r.kind === 'internal') {
          log('error', 'isolate failed', { conn: this.id, tcs: slot, error: r.message });
          this.error('internal', r.message || 'the isolate failed');
        } else if (after === 'free') {
          log('info', 'quarantined slot reset', { tcs: slot });
        } else if (seal) {
          this.sendFrame(replyFrame(this.sealReply(seal, outcomeOf(r, run))));
          // The next v1 reply's ephemeral key, made now that this one is out (a v2
          // reply needs none).
          if (seal.v === 1) setImmediate(prepareSealedSpare);
        } else {
          this.sendFrame(replyFrame(outcomeOf(r, run)));
        }
      } catch (e) {
        log('error', 'run bookkeeping failed', { conn: this.id, tcs: slot, error: e.stack || String(e) });
      }
      // After the reply: the activation ended, its /tmp goes.
      this.owner.scratch.remove(scratchDir);
    });
    // While the isolate runs on its slot thread, the half of sealing the result
    // that does not depend on it (sealed.prepareReply) is done here, off the reply's
    // path. A failure leaves it to sealReply, which reports it.
    if (seal) {
      try {
        sealed.prepareReply(seal);
      } catch (e) {
        log('warn', 'preparing the sealed reply failed', { conn: this.id, error: e.message });
      }
    }
    return undefined;
  }

  // sealReply seals the reply of a sealed activation (sealed.js). If that fails,
  // the host gets an error that carries nothing of the activation's own output.
  sealReply(ctx, msg) {
    try {
      if (!this.initCodeSha256) this.initCodeSha256 = sealed.sha256hex(this.initCode || '');
      return sealed.sealOutcome(this.owner.keys, ctx, msg, this.initCodeSha256);
    } catch (e) {
      log('error', 'sealing a result failed', { conn: this.id, error: e.message });
      return { type: 'result', outcome: OUTCOME.DEVELOPER,
        result: { error: `${sealed.INTEGRITY}: the result could not be sealed` }, logs: [], timings: msg.timings };
    }
  }

  onRelease() {
    if (this.slot < 0) return this.error('state', 'no TCS slot is held');
    if (this.running) return this.error('state', 'a run is in progress');
    this.owner.tcs.release(this.slot, this);
    this.slot = -1;
    this.resetAcquisition();
    return this.send({ type: 'released' });
  }
}

// Scratch holds the per-activation scratch directories (each action's /tmp),
// named run-<owner pid>-<counter>: each is used by one activation and removed
// when it ended. A few empty ones are made ahead, off the request path (a mkdir
// costs ~0.1 ms under load); removal happens after the reply. Leftovers of an
// owner that is gone (a crash) are removed at start.
const SCRATCH_AHEAD = 4;
class Scratch {
  constructor(parent, quotaBytes) {
    fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
    this.parent = fs.realpathSync(parent);
    this.quotaBytes = quotaBytes;
    this.seq = 0;
    this.ready = [];
    this.refilling = false;
    for (const name of fs.readdirSync(this.parent)) {
      const m = /^run-([0-9]+)-[0-9]+$/.exec(name);
      if (m && !alive(Number(m[1]))) fs.rmSync(path.join(this.parent, name), { recursive: true, force: true });
    }
    this.refill();
  }

  next() {
    return path.join(this.parent, `run-${process.pid}-${++this.seq}`);
  }

  // make hands out an empty directory of this owner's, made ahead when possible.
  make() {
    let dir = this.ready.shift();
    if (!dir) {
      dir = this.next();
      fs.mkdirSync(dir, { mode: 0o700 });
    }
    // Refilled after the reply (remove), not now: even an asynchronous mkdir
    // costs this thread ~0.05 ms to start, which the run would wait for.
    return dir;
  }

  refill() {
    if (this.refilling || this.ready.length >= SCRATCH_AHEAD) return;
    this.refilling = true;
    const dir = this.next();
    fs.mkdir(dir, { mode: 0o700 }, (err) => {
      this.refilling = false;
      if (err) {
        log('error', 'could not make a scratch directory ahead', { dir, error: err.message });
        return; // make() falls back to making one on the request path
      }
      this.ready.push(dir);
      this.refill();
    });
  }

  // remove is asynchronous: nobody waits for the disk. Called after the reply,
  // it also makes the next directories ahead.
  // Most activations leave their /tmp empty, and one rmdir removes an empty
  // directory in one trip to libuv's thread pool, where fs.rm's recursive walk
  // takes three (lstat, lstat, rmdir), each waking a pool thread; the walk only
  // runs when the rmdir finds something left.
  remove(dir) {
    fs.rmdir(dir, (err) => {
      if (!err || err.code === 'ENOENT') return;
      fs.rm(dir, { recursive: true, force: true, maxRetries: 2 }, (err2) => {
        if (err2) log('error', 'could not remove a scratch directory', { dir, error: err2.message });
      });
    });
    this.refill();
  }

  // removeReady removes the directories made ahead (at stop).
  removeReady() {
    for (const dir of this.ready.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function removeStaleSocket(p) {
  let st;
  try { st = fs.lstatSync(p); } catch { return; }
  if (!st.isSocket()) throw new Error(`${p} exists and is not a socket`);
  fs.unlinkSync(p);
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    log('error', 'bad arguments', { error: e.message });
    process.exit(2);
  }
  // Standard input holds the gate key's line (--gate-key stdin), then direct mode's
  // sealing key's line (--key-dir). Read before any isolate thread exists; keys
  // never enter the environment (whose original block stays readable in
  // /proc/PID/environ) or the arguments.
  const sealOnStdin = opts.keyDir !== '' && !fs.existsSync('/dev/attestation');
  if (opts.gateKey === 'stdin' || sealOnStdin) {
    const lines = fs.readFileSync(0, 'utf8').split('\n');
    try {
      if (opts.gateKey === 'stdin') opts.key = parseKey(lines.shift());
    } catch (e) {
      log('error', 'bad gate key on standard input', { error: e.message });
      process.exit(2);
    }
    try {
      if (sealOnStdin) opts.sealingKey = parseSealingKey(lines.shift() || '');
    } catch (e) {
      log('error', 'bad sealing key on standard input (--key-dir in direct mode needs it after the gate key)', { error: e.message });
      process.exit(2);
    }
  }
  delete opts.gateKey;
  let tmpWork = '';
  if (!opts.workDir) {
    tmpWork = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-enclave-'));
    opts.workDir = tmpWork;
  }
  fs.mkdirSync(opts.workDir, { recursive: true });
  const { backend, note } = isolates.choose(opts.isolate, opts.slots, opts.prewarm, opts.isolateReuse, opts.pagePoolMB);
  if (note) log('warn', 'isolate addon unavailable; using worker threads', { reason: note });
  if (opts.isolateReuse === 'tenant' && backend.reuse !== 'tenant') {
    throw new Error(`--isolate-reuse tenant needs the isolate addon (${note || 'not in use'})`);
  }
  const owner = new Owner(opts, backend);
  if (opts.lockdown === 'seccomp') {
    // The OS-level layer (trusted/lockdown.js): applied once the isolate backend
    // has started (its slot threads exist and are covered) and before the gate
    // listens (no request is ever served without it).
    let lockdown;
    try {
      lockdown = require('./lockdown'); // eslint-disable-line global-require
    } catch (e) {
      throw new Error(`--lockdown seccomp needs trusted/lockdown.js: ${e.message}`);
    }
    lockdown.apply();
    log('info', 'lockdown applied', { lockdown: opts.lockdown });
  }
  await owner.listen();
  log('info', 'gate listening', { socket: opts.socket, slots: opts.slots, isolate: backend.name, mode: opts.mode,
    prewarm: backend.prewarm, isolateReuse: backend.reuse || 'none', pagePool: backend.pagePool || 'none (worker threads)',
    auth: owner.auth.required ? 'token required' : 'none: any caller may attach',
    modules: owner.libDir || 'none: actions cannot require openwhisk (make build installs it)',
    sealedCrypto: primitives.which() === 'native' ? 'native' : `node:crypto (${primitives.whyNotNative()})` });
  process.stdout.write(`${JSON.stringify({ ready: true, socket: opts.socket, enclave: opts.enclave,
    image: opts.image, isolate: backend.name, slots: opts.slots, prewarm: backend.prewarm, pid: process.pid })}\n`);
  const stop = (sig) => {
    log('info', 'stopping', { signal: sig });
    owner.close();
    if (tmpWork) fs.rmSync(tmpWork, { recursive: true, force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) {
  main().catch((e) => {
    // A refused image key is a clear condition, not a bug: its message says it all.
    log('error', 'owner failed to start', { error: e instanceof KeyError ? e.message : e.stack || String(e) });
    process.exit(1);
  });
}

module.exports = { parseArgs, parsePrewarm, parseEgressAllow, parseDenyHosts, DEFAULT_PREWARM, MAX_RESULT_BYTES, Scratch, checkInit, checkRun, limitLogs, outcomeOf, replyFrame,
  Owner };
