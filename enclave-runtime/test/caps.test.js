'use strict';
// The capability set of an activation (trusted/caps.js), tested from the outside:
// a real owner (addon backend, and the worker backend where it applies) runs
// actions that try every escape path we know of, and each case asserts the
// refusal text and that nothing leaked (canary files, other tenants' code and
// fds, loopback services, process-wide state, the owner itself).
//
// The addon run also GENERATES the table of escape attempts in SECURITY.md
// (between <!-- escapes:js:begin --> and <!-- escapes:js:end -->). Run normally,
// the suite fails when that section differs from what it observed; with
// TEEMATE_UPDATE_SECURITY=1 it rewrites the section.
//
//   cd enclave-runtime && node --test test/caps.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

// Everything of the test (the owner's work dir, the canary) lives outside /tmp: an
// action's /tmp is its own scratch dir, so a path under the host's /tmp never
// reaches the host's file at all (see the 'host /tmp' case).
const BASE = fs.mkdtempSync(path.join(fs.existsSync('/var/tmp') ? '/var/tmp' : os.homedir(), 'tm-caps-'));
process.env.TMPDIR = BASE; // os.tmpdir() of this process, used by startOwner
const HOST_TMP_FILE = '/tmp/teemate-caps-host-tmp.txt';

const { startOwner, activate, zipStored, ADDON } = require('./gate-client');
const need = require('./need');

const SECURITY_MD = path.join(__dirname, '..', '..', 'SECURITY.md');
const BEGIN = '<!-- escapes:js:begin -->';
const END = '<!-- escapes:js:end -->';
const QUOTA_MB = 1;

// ---- the world around the owner -----------------------------------------------
// Loopback services: ALLOWED is in --egress-allow, API stands for __OW_API_HOST,
// OTHER is a host service no action may reach (it counts connections).
const servers = {};
function listen(name, greeting) {
  return new Promise((resolve) => {
    const s = net.createServer((c) => {
      s.connections += 1;
      c.end(greeting);
    });
    s.connections = 0;
    s.listen(0, '127.0.0.1', () => { servers[name] = s; resolve(); });
  });
}
const port = (name) => servers[name].address().port;

const outside = fs.mkdtempSync(path.join(BASE, 'outside-'));
const CANARY_TEXT = `CANARY-${crypto.randomBytes(8).toString('hex')}`;
const CANARY = path.join(outside, 'canary.txt');
fs.writeFileSync(CANARY, CANARY_TEXT);

// Tenant B's zipped action: its extracted code is what tenant A must not read or change.
const OTHER_SECRET = `TENANT-B-SECRET-${crypto.randomBytes(4).toString('hex')}`;
const OTHER_ZIP = zipStored([{ name: 'index.js', data: `exports.main = () => ({ secret: '${OTHER_SECRET}' });\n` }]);

// ---- actions --------------------------------------------------------------------
// Every attempt runs as the body of an async function inside the action; the
// action returns {ok: value} or {refused: message, code}. HELPERS are in scope
// (not shown in the table).
const HELPERS = `const fs = require('fs');
const connect = (o) => new Promise((resolve, reject) => {
  const s = require('net').connect(o);
  s.on('error', reject);
  let got = '';
  s.on('data', (d) => { got += d; });
  s.on('close', () => resolve(got || 'connected'));
});
const httpGet = (o) => new Promise((resolve, reject) => {
  require('http').get(o, (r) => { r.resume(); resolve(r.statusCode); }).on('error', reject);
});`;

function wrap(body, { zip = false } = {}) {
  const fn = `async function main(params) {
  ${HELPERS}
  try {
    const v = await (async () => { ${body}
    })();
    return { ok: v === undefined ? null : v };
  } catch (e) {
    return { refused: String(e && e.message !== undefined ? e.message : e), code: (e && e.code) || null };
  }
}`;
  return zip ? `exports.main = ${fn};\n` : fn;
}

// ---- the cases ------------------------------------------------------------------------
// attempt: what is tried; body: what the action ran ($NAMES are substituted);
// expect: a RegExp the observed text must match, or {addon, worker}; network /
// env / zip: how the action runs; check(ctx, observed, res): extra leak checks.
const REFUSED = (what) => new RegExp(`^refused: TeeMate: ${what}`);
const FS_REFUSED = /^refused: TeeMate: fs\.\S+ of \S+ is refused: actions reach only their own code and their \/tmp$/;
const LOOPBACK = /^refused: TeeMate: connecting to .* is refused: the host's own, loopback and link-local addresses are not reachable from actions$/;
const NO_NETWORK = /^refused: TeeMate: network is not available to this action \(it was not given network access\)$/;

const CASES = [
  // -- processes and the builtins that make them
  { attempt: 'child_process by require', body: `return require('child_process').execSync('id').toString()`, expect: REFUSED('child_process is not available to actions in a shared enclave$') },
  { attempt: 'node: prefix', body: `return require('node:child_process').spawnSync('id')`, expect: REFUSED('child_process is not') },
  { attempt: 'fork', body: `return require('child_process').fork('/bin/true')`, expect: REFUSED('child_process is not') },
  { attempt: 'module._load', body: `return require('module')._load('child_process')`, expect: REFUSED('child_process is not') },
  { attempt: 'Module._resolveFilename', body: `return require('module')._resolveFilename('node:child_process', null)`, expect: REFUSED('child_process is not') },
  { attempt: 'require.resolve of a denied builtin', body: `return require.resolve('child_process')`, expect: REFUSED('child_process is not') },
  { attempt: 'createRequire', body: `return require('module').createRequire('/')('child_process')`, expect: REFUSED('child_process is not') },
  { attempt: 'process.mainModule', body: `return process.mainModule === undefined ? 'no main module' : process.mainModule.require('child_process')`, expect: /^ok: "no main module"$|^refused: TeeMate: child_process is not/ },
  { attempt: 'module.constructor', zip: true, body: `return module.constructor._load('child_process', module)`, expect: REFUSED('child_process is not') },
  { attempt: 'process.getBuiltinModule', body: `return process.getBuiltinModule('node:child_process')`, expect: REFUSED('child_process is not') },
  { attempt: "Function('return this')()", body: `return Function('return this')().process.binding('spawn_sync')`, expect: REFUSED('process.binding is not') },
  { attempt: 'constructor chain', body: `return ({}).constructor.constructor('return process')().getBuiltinModule('child_process')`, expect: REFUSED('child_process is not') },
  { attempt: 'process captured as a module', body: `return require('process').binding('fs')`, expect: REFUSED('process.binding is not') },
  { attempt: 'process.binding', body: `return process.binding('spawn_sync').spawn({ file: '/usr/bin/id', args: ['id'], stdio: [] })`, expect: REFUSED('process.binding is not') },
  { attempt: 'process._linkedBinding', body: `return process._linkedBinding('spawn_sync')`, expect: REFUSED('process._linkedBinding is not') },
  { attempt: 'dynamic import() of a builtin', body: `return (await import('node:child_process')).execSync('id')`,
    expect: { addon: REFUSED("import\\(\\) is not available to actions in a shared enclave \\(import\\('node:child_process'\\)\\); use require\\(\\)$"),
      worker: /^refused: A dynamic import callback was not specified\.$/ } },
  { attempt: 'dynamic import() of a file outside', body: `return await import('$CANARY')`,
    expect: { addon: REFUSED('import\\(\\) is not available'), worker: /^refused: A dynamic import callback was not specified\.$/ } },
  { attempt: 'dynamic import() in a zipped action', zip: true, body: `return Object.keys(await import('$OTHER_CODE/index.js'))`,
    expect: { addon: REFUSED('import\\(\\) is not available'), worker: /^ok: \["default","main"\]$/ }, backends: ['addon'] },
  { attempt: 'ChildProcess by hand', body: `const { ChildProcess } = require('child_process'); return new ChildProcess().spawn({ file: 'id', args: ['id'] })`, expect: REFUSED('child_process is not') },
  { attempt: 'cluster', body: `return require('cluster').fork()`, expect: REFUSED('cluster is not') },
  { attempt: 'worker_threads', body: `return new (require('worker_threads').Worker)('1', { eval: true })`, expect: REFUSED('worker_threads is not') },
  { attempt: 'inspector', body: `return require('inspector').open(9229)`, expect: REFUSED('inspector is not') },
  { attempt: 'repl', body: `return require('repl').start()`, expect: REFUSED('repl is not') },
  { attempt: 'trace_events', body: `return require('trace_events').createTracing({ categories: ['v8'] })`, expect: REFUSED('trace_events is not') },
  { attempt: 'wasi', body: `return new (require('wasi').WASI)({ version: 'preview1', preopens: { '/': '/' } })`, expect: REFUSED('wasi is not') },
  { attempt: 'dgram', body: `return require('dgram').createSocket('udp4')`, expect: REFUSED('dgram is not') },
  { attempt: 'node:test (runs files in child processes)', body: `return require('node:test').run({ files: ['/etc/passwd'] })`, expect: REFUSED('test is not') },
  { attempt: 'module.register (loader hooks thread)', body: `return require('module').register('data:text/javascript,', 'file:///')`, expect: REFUSED('module.register') },
  { attempt: 'process.dlopen', body: `return process.dlopen({ exports: {} }, '/usr/lib/x86_64-linux-gnu/libc.so.6')`, expect: REFUSED('process.dlopen') },
  { attempt: 'native addon through the loader', body: `return require('module')._extensions['.node']({ exports: {} }, '/tmp/evil.node')`, expect: REFUSED('the native addon /tmp/evil.node cannot be loaded') },
  // -- process-wide state and signals
  { attempt: 'kill the platform', body: `return process.kill(process.ppid, 'SIGTERM')`, expect: REFUSED('process.kill \\(signals\\) is not') },
  { attempt: 'kill the owner', body: `return process.kill(process.pid, 'SIGKILL')`, expect: REFUSED('process.kill \\(signals\\) is not') },
  { attempt: 'signal by _debugProcess', body: `return process._debugProcess(process.pid)`, expect: REFUSED('process._debugProcess') },
  { attempt: 'setuid family', body: `const out = []; for (const f of ['setuid', 'setgid', 'seteuid', 'setegid', 'setgroups', 'initgroups']) { try { process[f](0, 0); out.push(f + ' ran'); } catch (e) { out.push(e.message.replace(/ is not available.*/, '')); } } return out`,
    expect: /^ok: \["TeeMate: process.setuid \(credentials\)","TeeMate: process.setgid \(credentials\)","TeeMate: process.seteuid \(credentials\)","TeeMate: process.setegid \(credentials\)","TeeMate: process.setgroups \(credentials\)","TeeMate: process.initgroups \(credentials\)"\]$/ },
  { attempt: 'umask(0)', body: `return process.umask(0)`, expect: REFUSED("process.umask\\(mask\\) \\(the process's file mode mask\\) is not") },
  { attempt: 'umask() read', body: `return typeof process.umask()`, expect: /^ok: "number"$/ },
  { attempt: 'chdir', body: `return process.chdir('/')`, expect: REFUSED('process.chdir is not') },
  { attempt: 'process.cwd', body: `return process.cwd()`, expect: /^ok: "\$SCRATCH"$/ },
  { attempt: '_rawDebug to the owner\'s stderr', body: `process._rawDebug('RAW-TO-THE-OWNER'); return 'written'`, expect: /^ok: "written"$/,
    check: (ctx, obs, res) => {
      assert.deepEqual(res.logs.map((l) => `${l.stream}:${l.line}`), ['stderr:RAW-TO-THE-OWNER'], 'it lands in the activation\'s own log');
      assert.ok(!ctx.owner.stderr.join('').includes('RAW-TO-THE-OWNER'), 'not on the owner\'s stderr');
    } },
  { attempt: 'process.report file', body: `return process.report.writeReport('/tmp/report.json')`, expect: REFUSED('process.report') },
  { attempt: 'process.report of the process', body: `return process.report.getReport().environmentVariables`, expect: REFUSED('process.report') },
  { attempt: 'os.setPriority', body: `return require('os').setPriority(0, 19)`, expect: REFUSED('os.setPriority is not') },
  { attempt: 'v8.setFlagsFromString', body: `return require('v8').setFlagsFromString('--allow-natives-syntax')`, expect: REFUSED('v8.setFlagsFromString is not') },
  { attempt: 'v8 through getBuiltinModule', body: `return process.getBuiltinModule('v8').setFlagsFromString('--allow-natives-syntax')`, expect: REFUSED('v8.setFlagsFromString is not') },
  { attempt: 'v8.writeHeapSnapshot', body: `return require('v8').writeHeapSnapshot('/tmp/h.heapsnapshot')`, expect: REFUSED('v8.writeHeapSnapshot is not') },
  { attempt: 'v8.setHeapSnapshotNearHeapLimit', body: `return require('v8').setHeapSnapshotNearHeapLimit(1)`, expect: REFUSED('v8.setHeapSnapshotNearHeapLimit is not') },
  { attempt: 'process.loadEnvFile', body: `return process.loadEnvFile('/etc/passwd')`, expect: REFUSED('process.loadEnvFile') },
  { attempt: 'crypto.setEngine (loads a library)', body: `return require('crypto').setEngine('/tmp/evil.so')`, expect: REFUSED('crypto.setEngine is not') },
  { attempt: 'tty stream on the owner\'s fd', body: `return new (require('tty').WriteStream)(1)`, expect: REFUSED('tty.WriteStream is not') },
  { attempt: 'process.stdin (the owner\'s fd 0)', body: `return await new Promise((r) => { let n = 0; process.stdin.on('data', (c) => { n += c.length; }).on('end', () => r(n)); })`, expect: /^ok: 0$/ },
  { attempt: 'process.env write', body: `process.env.LEAKED = 'yes'; return process.env.LEAKED`, expect: /^ok: "yes"$/ },
  { attempt: 'process.exit', body: `process.exit(3)`, expect: /^developer: An error has occurred: the action called process.exit\(3\)\.$/ },
  // -- files
  { attempt: '/etc/shadow', body: `return fs.readFileSync('/etc/shadow', 'utf8')`, expect: FS_REFUSED },
  { attempt: '/proc/self/mem', body: `return fs.openSync('/proc/self/mem', 'r')`, expect: FS_REFUSED },
  { attempt: 'the host\'s /tmp', body: `return fs.readFileSync('${HOST_TMP_FILE}', 'utf8')`, expect: /^refused: ENOENT: no such file or directory, open '\$SCRATCH\/teemate-caps-host-tmp.txt'$/ },
  { attempt: 'a platform file outside', body: `return fs.readFileSync('$CANARY', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'the owner\'s work dir', body: `return fs.readdirSync('$OWNER_WORK')`, expect: FS_REFUSED },
  { attempt: 'another tenant\'s code', body: `return fs.readFileSync('$OTHER_CODE/index.js', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'another tenant\'s code by require', body: `return require('$OTHER_CODE/index.js').main()`, expect: REFUSED("require of '\\$OTHER_CODE/index.js' is refused: actions load only builtins and their own code") },
  { attempt: 'relative path up', body: `return fs.readFileSync('../../../../../../../etc/passwd', 'utf8')`, expect: FS_REFUSED },
  { attempt: '/tmp/.. traversal', body: `return fs.readFileSync('/tmp/../etc/passwd', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'file: URL', body: `return fs.readFileSync(new URL('file:///etc/passwd'), 'utf8')`, expect: FS_REFUSED },
  { attempt: 'Buffer path', body: `return fs.readFileSync(Buffer.from('/etc/passwd'), 'utf8')`, expect: FS_REFUSED },
  { attempt: 'URL-like object whose href changes', body: `let n = 0; fs.writeFileSync('/tmp/x', 'own'); const u = { get href() { return n++ ? 'file:///etc/passwd' : 'file:///tmp/x'; } }; return fs.readFileSync(u, 'utf8')`, expect: /^ok: "own"$/ },
  { attempt: 'fs.promises', body: `return await fs.promises.readFile('/etc/passwd', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'fs/promises', body: `return await require('fs/promises').readFile('/etc/passwd', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'FileHandle', body: `const fh = await require('fs/promises').open('/etc/passwd'); return (await fh.read()).bytesRead`, expect: FS_REFUSED },
  { attempt: 'fs.openAsBlob', body: `return (await fs.openAsBlob('/etc/passwd')).size`, expect: FS_REFUSED },
  { attempt: 'createReadStream', body: `return await new Promise((res, rej) => fs.createReadStream('/etc/passwd').on('data', (d) => res(String(d))).on('error', rej))`, expect: FS_REFUSED },
  { attempt: 'ReadStream on an fd', body: `return await new Promise((res, rej) => new fs.ReadStream(null, { fd: 0 }).on('data', (d) => res(String(d))).on('error', rej))`, expect: REFUSED('fs.read of file descriptor 0 is refused: it was not opened by this action') },
  { attempt: 'fs.readSync of an fd not its own', body: `return fs.readSync(3, Buffer.alloc(16))`, expect: REFUSED('fs.readSync of file descriptor 3 is refused: it was not opened by this action$') },
  { attempt: 'fs.writeSync to the owner\'s stdout', body: `return fs.writeSync(1, 'to the owner')`, expect: REFUSED('fs.writeSync of file descriptor 1 is refused') },
  { attempt: 'loader reads a file outside', body: `const M = require('module'); const m = new M('$CANARY'); M._extensions['.js'](m, '$CANARY'); return m.exports`, expect: FS_REFUSED },
  { attempt: 'Module.prototype.load outside', body: `const M = require('module'); const m = new M('x'); m.load('/etc/passwd'); return m.exports`, expect: FS_REFUSED },
  { attempt: 'require of a path outside', body: `return require('/etc/passwd')`, expect: REFUSED("require of '/etc/passwd' is refused") },
  { attempt: 'require.resolve of a path outside', body: `return require.resolve('/etc/passwd')`, expect: REFUSED("require of '/etc/passwd' is refused") },
  { attempt: 'probing paths with the loader\'s internals', body: `const M = require('module'); return [M._findPath('passwd', ['/etc']), M._findPath('/etc/passwd', []), M._findPath('../../../../../../etc/passwd', [process.cwd()]), M._stat('/etc/passwd'), M._stat('/etc')]`,
    expect: /^ok: \[false,false,false,-2,-2\]$/ },
  // Its own node_modules, then the runtime's (the openwhisk client, when make build installed it).
  { attempt: 'node_modules search paths', zip: true, body: `return require.resolve.paths('left-pad')`, expect: /^ok: \["\$OWN_CODE\/node_modules"(,"\$RUNTIME_MODULES")?\]$/ },
  { attempt: 'overwrite another tenant\'s code', body: `return fs.writeFileSync('$OTHER_CODE/index.js', 'exports.main = () => ({ owned: true })')`, expect: FS_REFUSED,
    check: (ctx) => assert.ok(fs.readFileSync(path.join(ctx.otherCode, 'index.js'), 'utf8').includes(OTHER_SECRET)) },
  { attempt: 'write outside', body: `return fs.writeFileSync('$OUTSIDE/written', 'x')`, expect: FS_REFUSED,
    check: (ctx) => assert.ok(!fs.existsSync(path.join(outside, 'written'))) },
  { attempt: 'rename out of /tmp', body: `fs.writeFileSync('/tmp/a', 'x'); return fs.renameSync('/tmp/a', '$OUTSIDE/a')`, expect: FS_REFUSED },
  { attempt: 'own code is read-only', zip: true, body: `return fs.writeFileSync(__dirname + '/index.js', 'x')`, expect: REFUSED("fs.writeFileSync of \\$OWN_CODE/index.js is refused: the action's own code is read-only$") },
  { attempt: 'zipped action reads its own code', zip: true, body: `return fs.readFileSync(__dirname + '/index.js', 'utf8').length > 0`, expect: /^ok: true$/ },
  { attempt: 'zipped action requires out of its dir', zip: true, body: `return require('../$OTHER_SHA/index.js')`, expect: REFUSED("require of '../\\$OTHER_SHA/index.js' is refused") },
  { attempt: 'symlink', body: `return fs.symlinkSync('/etc/passwd', '/tmp/link')`, expect: REFUSED('creating symbolic links is not') },
  { attempt: 'hard link', body: `return fs.linkSync('$OTHER_CODE/index.js', '/tmp/link')`, expect: REFUSED('creating hard links is not') },
  { attempt: 'fs.cp', body: `return fs.cpSync('/etc', '/tmp/etc', { recursive: true })`, expect: REFUSED('fs.cp \\(copying trees\\) is not') },
  { attempt: 'its /tmp', body: `fs.mkdirSync('/tmp/d/e', { recursive: true }); fs.writeFileSync('/tmp/d/e/note', 'mine'); return [fs.readFileSync('/tmp/d/e/note', 'utf8'), require('os').tmpdir(), process.env.TMPDIR, fs.realpathSync('/tmp/d')]`,
    expect: /^ok: \["mine","\/tmp","\/tmp","\$SCRATCH\/d"\]$/ },
  { attempt: 'scratch quota, one write', body: `return fs.writeFileSync('/tmp/big', Buffer.alloc(2 * 1024 * 1024))`, expect: REFUSED('fs.writeFileSync: the scratch quota of 1048576 bytes is exhausted$') },
  { attempt: 'scratch quota, a stream', body: `const s = fs.createWriteStream('/tmp/s'); for (let i = 0; i < 40; i++) s.write(Buffer.alloc(64 * 1024)); return await new Promise((res, rej) => { s.on('error', rej); s.on('finish', () => res('all written')); s.end(); })`, expect: REFUSED('fs.writev?: the scratch quota of 1048576 bytes is exhausted$') },
  { attempt: 'scratch quota, many files', body: `for (let i = 0; i < 5000; i++) fs.writeFileSync('/tmp/f' + i, ''); return 'all written'`, expect: REFUSED('fs.writeFileSync: the scratch quota of 1048576 bytes is exhausted$') },
  { attempt: 'scratch quota, FileHandle', body: `const fh = await fs.promises.open('/tmp/h', 'w'); try { for (let i = 0; i < 40; i++) await fh.write(Buffer.alloc(64 * 1024)); } finally { await fh.close(); } return 'all written'`, expect: REFUSED('filehandle.write: the scratch quota of 1048576 bytes is exhausted$') },
  // -- tampering with what the checks use
  { attempt: 'replaced String/Array/path primitives', body: `String.prototype.startsWith = () => true; Array.prototype[Symbol.iterator] = function* () {}; require('path').resolve = () => '/tmp/x'; Set.prototype.has = () => true; Map.prototype.get = () => true; return fs.readFileSync('/etc/passwd', 'utf8')`, expect: FS_REFUSED },
  { attempt: 'CallSite.getFunction from a callback', body: `return await new Promise((r) => fs.stat('/tmp', () => { Error.prepareStackTrace = (e, cs) => cs.map((c) => c.getFunction()).filter((f) => typeof f === 'function').map((f) => f.name || 'anonymous'); const s = new Error().stack; Error.prepareStackTrace = undefined; r(s); }))`,
    expect: /^ok: \["anonymous"\]$/ },
  // -- network
  { attempt: 'client socket without network', body: `return await connect({ host: '203.0.113.1', port: 80 })`, expect: NO_NETWORK },
  { attempt: 'host loopback service', network: true, body: `return await connect({ host: '127.0.0.1', port: $OTHER_PORT })`, expect: LOOPBACK,
    check: () => assert.equal(servers.other.connections, 0) },
  { attempt: 'loopback by name', network: true, body: `return await connect({ host: 'localhost', port: $OTHER_PORT })`, expect: LOOPBACK },
  { attempt: 'IPv6 loopback', network: true, body: `return await connect({ host: '::1', port: $OTHER_PORT })`, expect: LOOPBACK },
  { attempt: 'IPv4-mapped loopback', network: true, body: `return await connect({ host: '::ffff:127.0.0.1', port: $OTHER_PORT })`, expect: LOOPBACK },
  { attempt: 'link-local metadata service', network: true, body: `return await connect({ host: '169.254.169.254', port: 80 })`, expect: LOOPBACK },
  { attempt: 'unspecified address', network: true, body: `return await connect({ host: '0.0.0.0', port: $OTHER_PORT })`, expect: LOOPBACK },
  { attempt: 'a host address from --deny-hosts', network: true, body: `return await connect({ host: '192.0.2.10', port: 80 })`, expect: LOOPBACK },
  { attempt: '--egress-allow host:port', network: true, body: `return await connect({ host: '127.0.0.1', port: $ALLOWED_PORT })`, expect: /^ok: "allowed-service"$/ },
  { attempt: '__OW_API_HOST', network: true, env: { __OW_API_HOST: 'http://127.0.0.1:$API_PORT' }, body: `return await connect({ host: '127.0.0.1', port: $API_PORT })`, expect: /^ok: "api-host"$/ },
  { attempt: 'port that changes after the check', network: true, body: `let n = 0; return await connect({ host: '127.0.0.1', get port() { return n++ ? $OTHER_PORT : $ALLOWED_PORT; } })`,
    // Node itself reads the port before the check; what is checked is what is used either way.
    expect: new RegExp(`^ok: "allowed-service"$|${LOOPBACK.source}`),
    check: () => assert.equal(servers.other.connections, 0) },
  { attempt: 'fetch to loopback', network: true, body: `try { return await fetch('http://127.0.0.1:$OTHER_PORT/'); } catch (e) { throw e.cause || e; }`, expect: LOOPBACK },
  { attempt: 'http.get to loopback', network: true, body: `return await httpGet('http://127.0.0.1:$OTHER_PORT/')`, expect: LOOPBACK },
  { attempt: 'tls.connect to loopback', network: true, body: `return await new Promise((res, rej) => require('tls').connect({ host: '127.0.0.1', port: $OTHER_PORT }).on('error', rej).on('secureConnect', () => res('connected')))`, expect: LOOPBACK },
  { attempt: 'the gate socket', network: true, body: `return await connect({ path: '$GATE' })`, expect: REFUSED('connecting to unix sockets is not') },
  { attempt: 'http over a unix socket', network: true, body: `return await httpGet({ socketPath: '$GATE', path: '/' })`, expect: REFUSED('connecting to unix sockets is not') },
  { attempt: 'socket on an existing fd (the gate\'s among them)', body: `let wrapped = 0; let refused = 0; for (let fd = 0; fd < 64; fd++) { try { new (require('net').Socket)({ fd }); wrapped++; } catch (e) { if (/^TeeMate: wrapping an existing file descriptor as a socket is not available/.test(e.message)) refused++; } } return { wrapped, refused: refused > 0 }`,
    expect: /^ok: \{"wrapped":0,"refused":true\}$/ },
  { attempt: 'net server', network: true, body: `return require('net').createServer().listen(0)`, expect: REFUSED('listening sockets \\(server.listen\\) is not') },
  { attempt: 'http server', network: true, body: `return require('http').createServer().listen(0)`, expect: REFUSED('listening sockets \\(server.listen\\) is not') },
  { attempt: 'net through tls\'s prototype chain', network: true, body: `const P = Object.getPrototypeOf(require('tls').TLSSocket.prototype); const s = new P.constructor(); return await new Promise((res, rej) => { s.on('error', rej).on('connect', () => res('connected')); P.connect.call(s, { host: '127.0.0.1', port: $OTHER_PORT }); })`, expect: LOOPBACK },
  { attempt: 'http.Agent.createConnection', network: true, body: `return await new Promise((res, rej) => new (require('http').Agent)().createConnection({ host: '127.0.0.1', port: $OTHER_PORT }).on('error', rej).on('connect', () => res('connected')))`, expect: LOOPBACK },
  { attempt: 'dns/promises without network', body: `return await require('dns/promises').resolve4('example.com')`, expect: REFUSED('dns.promises.resolve4 \\(network\\) is not available|dns resolve4 \\(network\\) is not available') },
  { attempt: 'DNS without network', body: `return await require('dns').promises.lookup('localhost')`, expect: REFUSED('dns.promises.lookup \\(network\\) is not available to this action') },
];

// ---- running a case ---------------------------------------------------------------------
function substitute(text, ctx, scratch = '') {
  return text
    .replaceAll('$CANARY', CANARY)
    .replaceAll('$OUTSIDE', outside)
    .replaceAll('$OWNER_WORK', ctx.work)
    .replaceAll('$OTHER_CODE', ctx.otherCode)
    .replaceAll('$OTHER_SHA', ctx.otherSha)
    .replaceAll('$OTHER_PORT', String(port('other')))
    .replaceAll('$ALLOWED_PORT', String(port('allowed')))
    .replaceAll('$API_PORT', String(port('api')))
    .replaceAll('$GATE', ctx.owner.sock)
    .replaceAll('$SCRATCH', scratch);
}

// The modules every action may require (owner.js, runtimeModules), by their real path.
const RUNTIME_MODULES = (() => {
  try { return fs.realpathSync(path.join(__dirname, '..', 'modules', 'node_modules')); } catch { return '\0none'; }
})();

// sanitize turns what was observed into text that does not depend on this run's
// temporary directories, ports and activations (the table must be stable).
function sanitize(text, ctx) {
  let s = text;
  const pairs = [[ctx.otherCode, '$OTHER_CODE'], [ctx.work, '$OWNER_WORK'], [CANARY, '$CANARY'],
    [outside, '$OUTSIDE'], [ctx.owner.sock, '$GATE'], [`:${port('other')}`, ':$OTHER_PORT'],
    [`:${port('allowed')}`, ':$ALLOWED_PORT'], [`:${port('api')}`, ':$API_PORT'], [ctx.otherSha, '$OTHER_SHA'],
    [RUNTIME_MODULES, '$RUNTIME_MODULES']];
  s = s.replace(/[^\s"']*\/scratch\/run-[0-9]+-[0-9]+/g, '$SCRATCH');
  s = s.replace(new RegExp(`${escapeRe(path.join(ctx.work, 'actions'))}/[0-9a-f]{64}`, 'g'), (m) => (m === ctx.otherCode ? m : '$OWN_CODE'));
  for (const [from, to] of pairs) s = s.replaceAll(from, to);
  return s;
}

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function observe(res) {
  if (!res || res.type !== 'result') return `gate: ${JSON.stringify(res)}`;
  if (res.outcome !== 'success') return `${res.outcome}: ${res.result && res.result.error}`;
  if (res.result && typeof res.result.refused === 'string') return `refused: ${res.result.refused}`;
  return `ok: ${JSON.stringify(res.result.ok)}`;
}

async function runCase(ctx, c) {
  const body = substitute(c.body, ctx);
  const env = {};
  for (const [k, v] of Object.entries(c.env || {})) env[k] = substitute(v, ctx);
  const init = c.zip
    ? { code: zipStored([{ name: 'index.js', data: wrap(body, { zip: true }) }]).toString('base64'), binary: true }
    : { code: wrap(body) };
  const res = await activate(ctx.owner, init, { network: c.network === true, env });
  const observed = sanitize(observe(res), ctx);
  return { res, observed };
}

async function setup(isolate) {
  const owner = await startOwner({ slots: 4, isolate, args: ['--prewarm', '2', '--scratch-quota-mb', String(QUOTA_MB),
    '--egress-allow', `127.0.0.1:${port('allowed')}`, '--deny-hosts', '192.0.2.10,198.51.100.0/24'] });
  const work = fs.realpathSync(path.join(owner.dir, 'work'));
  fs.writeFileSync(path.join(work, 'platform-secret.txt'), CANARY_TEXT);
  // Tenant B's action is extracted once (its own init), so its code is on disk.
  const b = await activate(owner, { code: OTHER_ZIP.toString('base64'), binary: true }, {});
  assert.equal(b.outcome, 'success', JSON.stringify(b));
  const otherSha = crypto.createHash('sha256').update(OTHER_ZIP).digest('hex');
  const otherCode = path.join(work, 'actions', otherSha);
  assert.ok(fs.existsSync(path.join(otherCode, 'index.js')));
  return { owner, work, otherCode, otherSha };
}

// Checks that hold after every case: nothing secret came back, the owner serves.
function assertNoLeak(res) {
  const text = JSON.stringify(res);
  assert.ok(!text.includes(CANARY_TEXT), 'the canary leaked');
  assert.ok(!text.includes(OTHER_SECRET), 'another tenant\'s code leaked');
  assert.ok(!/root:[^:]*:0:0:/.test(text), '/etc/passwd leaked');
}

function expectFor(c, isolate) {
  return c.expect instanceof RegExp ? c.expect : c.expect[isolate];
}

function table(rows) {
  const cell = (s) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const out = [
    '<!-- generated by enclave-runtime/test/caps.test.js (addon backend); rerun with TEEMATE_UPDATE_SECURITY=1 -->',
    '| attempt | what the action ran | result observed |',
    '| --- | --- | --- |',
  ];
  for (const r of rows) out.push(`| ${cell(r.attempt)}${r.how ? ` (${r.how})` : ''} | \`${cell(r.body)}\` | ${cell(r.observed)} |`);
  return out.join('\n');
}

function checkSecurityMd(rows) {
  const text = fs.readFileSync(SECURITY_MD, 'utf8');
  const b = text.indexOf(BEGIN);
  const e = text.indexOf(END);
  assert.ok(b >= 0 && e > b, `SECURITY.md lacks the markers ${BEGIN} ... ${END}`);
  const want = `${BEGIN}\n${table(rows)}\n${END}`;
  const have = text.slice(b, e + END.length);
  if (have === want) return;
  if (process.env.TEEMATE_UPDATE_SECURITY === '1') {
    fs.writeFileSync(SECURITY_MD, text.slice(0, b) + want + text.slice(e + END.length));
    return;
  }
  assert.fail('SECURITY.md\'s table of JS escape attempts differs from what this run observed; ' +
    'rerun with TEEMATE_UPDATE_SECURITY=1 to rewrite it (and review the diff)');
}

before(async () => {
  await listen('allowed', 'allowed-service');
  await listen('api', 'api-host');
  await listen('other', 'SECRET-host-service');
  fs.writeFileSync(HOST_TMP_FILE, CANARY_TEXT);
});

after(() => {
  for (const s of Object.values(servers)) s.close();
  fs.rmSync(BASE, { recursive: true, force: true });
  fs.rmSync(HOST_TMP_FILE, { force: true });
});

for (const isolate of ['addon', 'worker']) {
  const skip = need.skip(isolate === 'addon' && !fs.existsSync(ADDON) && `the isolate addon is not built (${ADDON}); make -C node-isolate-patch`);
  test(`escape attempts are refused (${isolate})`, { skip }, async (t) => {
    const ctx = await setup(isolate);
    const rows = [];
    try {
      const before = await activate(ctx.owner, { code: 'function main() { return { umask: process.umask() }; }' }, {});
      for (const c of CASES) {
        if (c.backends && !c.backends.includes(isolate)) continue;
        await t.test(c.attempt, async () => {
          const { res, observed } = await runCase(ctx, c);
          assertNoLeak(res);
          assert.match(observed, expectFor(c, isolate));
          if (c.check) await c.check(ctx, observed, res);
          rows.push({ attempt: c.attempt, how: [c.zip && 'zipped', c.network && 'with network',
            ...Object.entries(c.env || {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean).join(', '),
            body: c.body, observed });
        });
      }

      await t.test('process-wide state is what it was', async () => {
        const now = await activate(ctx.owner, { code: `function main() {
          let natives = 'off';
          try { eval('%IsSmi(1)'); natives = 'on'; } catch (e) {}
          return { umask: process.umask(), natives, leaked: process.env.LEAKED || null };
        }` }, {});
        assert.deepEqual(now.result, { umask: before.result.umask, natives: 'off', leaked: null });
      });

      await t.test('another tenant\'s open fd is not readable', async () => {
        // A holds a file open in its /tmp while B scans every fd number.
        const holder = activate(ctx.owner, { code: `async function main() {
          const fs = require('fs');
          fs.writeFileSync('/tmp/held', 'HELD-BY-A');
          const fd = fs.openSync('/tmp/held', 'r');
          await new Promise((r) => setTimeout(r, 1500));
          return { fd, read: fs.readFileSync(fd, 'utf8') };
        }` }, {});
        await new Promise((r) => setTimeout(r, 400));
        const scan = await activate(ctx.owner, { code: `function main() {
          const fs = require('fs');
          const readable = [];
          for (let fd = 0; fd < 1024; fd++) {
            try { const b = Buffer.alloc(64); fs.readSync(fd, b, 0, 64, 0); readable.push(fd); } catch (e) {
              if (!/TeeMate: fs.readSync of file descriptor/.test(e.message)) readable.push('?' + fd);
            }
          }
          return { readable };
        }` }, {});
        const a = await holder;
        assert.equal(a.outcome, 'success', JSON.stringify(a));
        assert.equal(a.result.read, 'HELD-BY-A', 'A reads its own fd');
        assert.deepEqual(scan.result, { readable: [] }, 'B reads no fd it did not open, A\'s included');
        assert.ok(!JSON.stringify(scan).includes('HELD-BY-A'));
      });

      await t.test('scratch dirs are private and removed at the end', async () => {
        const a = await activate(ctx.owner, { code: `function main() {
          require('fs').writeFileSync('/tmp/mine', 'A-SCRATCH-SECRET');
          return { real: require('fs').realpathSync('/tmp/mine') };
        }` }, {});
        const real = a.result.real;
        assert.match(real, /\/scratch\/run-[0-9]+-[0-9]+\/mine$/);
        const b = await activate(ctx.owner, { code: wrap(`return fs.readFileSync(${JSON.stringify(real)}, 'utf8')`) }, {});
        assert.match(b.result.refused, /^TeeMate: fs.readFileSync of .* is refused/);
        for (let i = 0; i < 50 && fs.existsSync(path.dirname(real)); i++) await new Promise((r) => setTimeout(r, 20));
        assert.ok(!fs.existsSync(path.dirname(real)), 'the scratch dir is removed once the activation ended');
      });

      await t.test('a native addon in a zip is refused at init', async () => {
        const z = zipStored([{ name: 'index.js', data: 'exports.main = () => require("./build/x.node")' },
          { name: 'build/x.node', data: '\x7fELF' }]);
        const r = await activate(ctx.owner, { code: z.toString('base64'), binary: true }, {});
        assert.equal(r.stage, 'init');
        assert.equal(r.msg.class, 'init');
        assert.equal(r.msg.message, 'Initialization has failed due to: TeeMate: the native addon "build/x.node" in the ' +
          'action\'s archive cannot be loaded: native addons are not available to actions in a shared enclave');
        rows.push({ attempt: 'native addon in the zip', how: 'init', body: 'a zip holding build/x.node', observed: `init error: ${r.msg.message}` });
      });

      await t.test('a zipped action still loads its own node_modules', async () => {
        const z = zipStored([
          { name: 'package.json', data: '{"main":"lib/main.js"}' },
          { name: 'lib/main.js', data: 'const pad = require("pad-lib"); exports.main = () => ({ padded: pad("x", 3), tmp: require("os").tmpdir() });' },
          { name: 'node_modules/pad-lib/package.json', data: '{"main":"index.js"}' },
          { name: 'node_modules/pad-lib/index.js', data: 'module.exports = (s, n) => s.padStart(n, "-");' },
        ]);
        const r = await activate(ctx.owner, { code: z.toString('base64'), binary: true }, {});
        assert.deepEqual(r.result, { padded: '--x', tmp: '/tmp' });
      });

      await t.test('the owner still serves a benign run', async () => {
        const r = await activate(ctx.owner, { code: 'function main(p) { return { fine: true }; }' }, {});
        assert.deepEqual(r.result, { fine: true });
        assert.equal(ctx.owner.child.exitCode, null);
        assert.equal(servers.other.connections, 0, 'no action reached the host-only service');
      });

      if (isolate === 'addon') {
        await t.test('SECURITY.md table', () => checkSecurityMd(rows));
      }
    } finally {
      await ctx.owner.stop();
    }
  });
}

module.exports = { CASES, wrap };
