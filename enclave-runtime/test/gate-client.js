'use strict';
// A small gate client and owner launcher for the tests: speaks PROTOCOL.md framing
// over a unix socket and starts trusted/owner.js as a real child process.

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const readline = require('readline');

const OWNER = path.join(__dirname, '..', 'trusted', 'owner.js');
const ADDON = process.env.TEEMATE_ISOLATE_ADDON ||
  path.join(__dirname, '..', '..', 'node-isolate-patch', 'build', 'teemate_isolate.node');

function frame(obj) {
  const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

class GateClient {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.queue = [];
    this.waiters = [];
    this.closed = false;
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 4) {
        const n = this.buf.readUInt32BE(0);
        if (this.buf.length < 4 + n) break;
        const msg = JSON.parse(this.buf.subarray(4, 4 + n).toString('utf8'));
        this.buf = this.buf.subarray(4 + n);
        this.deliver(msg);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w.resolve(null);
    });
  }

  static connect(sockPath) {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(sockPath, () => resolve(new GateClient(s)));
      s.once('error', reject);
    });
  }

  deliver(msg) {
    const w = this.waiters.shift();
    if (w) w.resolve(msg);
    else this.queue.push(msg);
  }

  // next resolves to the next message, or null when the connection closed.
  next(timeoutMs = 30000) {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const w = { resolve: (m) => { clearTimeout(t); resolve(m); } };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error('no gate message within the time limit'));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(obj) { this.socket.write(frame(obj)); }

  writeRaw(buf) { this.socket.write(buf); }

  request(obj, timeoutMs) {
    this.send(obj);
    return this.next(timeoutMs);
  }

  // waitClosed resolves once the runtime closed the connection.
  waitClosed() {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', resolve));
  }

  close() { this.socket.destroy(); }

  // attach runs hello + acquire and returns the acquired message.
  async attach() {
    const w = await this.request({ type: 'hello', version: 1, sandbox: 'test' });
    if (!w || w.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(w)}`);
    return this.request({ type: 'acquire' });
  }
}

// startOwner launches owner.js and resolves once it printed its ready line.
// args are extra owner arguments (e.g. ['--prewarm', '2']); stdin, when given, is
// written to the owner's standard input (e.g. a gate key with --gate-key stdin).
// nodeArgs are Node options put before owner.js (e.g. ['--zero-fill-buffers'], as the
// invoker's direct backend starts it).
function startOwner({ slots = 4, isolate = 'worker', env = {}, args = [], stdin, nodeArgs = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'teemate-rt-test-'));
  const sock = path.join(dir, 'gate.sock');
  const childEnv = { ...process.env, ...env };
  delete childEnv.NODE_EXTRA_CA_CERTS;
  delete childEnv.NODE_TEST_CONTEXT; // the child is not a test file
  const child = spawn(process.execPath, [...nodeArgs, OWNER, '--socket', sock, '--slots', String(slots), '--image', 'nodejs:20',
    '--enclave', 'test-0', '--isolate', isolate, '--work-dir', path.join(dir, 'work'), ...args], {
    env: childEnv, stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (stdin !== undefined) child.stdin.end(stdin);
  const stderr = [];
  child.stderr.on('data', (d) => stderr.push(d.toString()));
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => {
      let ready;
      try { ready = JSON.parse(line); } catch (e) { reject(new Error(`bad ready line ${line}`)); return; }
      resolve({
        child, sock, dir, ready, stderr,
        connect: () => GateClient.connect(sock),
        async stop() {
          if (child.exitCode === null) {
            const gone = new Promise((r) => child.once('exit', r));
            child.kill('SIGTERM');
            await gone;
          }
          fs.rmSync(dir, { recursive: true, force: true });
        },
      });
    });
    child.once('exit', (code) => {
      fs.rmSync(dir, { recursive: true, force: true });
      reject(new Error(`owner exited with ${code}: ${stderr.join('')}`));
    });
  });
}

// activate runs one whole activation on a new connection and returns the result message.
async function activate(owner, init, run) {
  const c = await owner.connect();
  try {
    const acq = await c.attach();
    if (acq.type !== 'acquired') return { stage: 'acquire', msg: acq };
    const ini = await c.request({ type: 'init', name: 'a', main: 'main', binary: false, ...init });
    if (ini.type !== 'initialized') return { stage: 'init', msg: ini };
    const res = await c.request({ type: 'run', value: {}, timeoutMs: 10000, memoryMB: 128, ...run });
    const rel = await c.request({ type: 'release' });
    if (!rel || rel.type !== 'released') throw new Error(`expected released, got ${JSON.stringify(rel)}`);
    return res;
  } finally {
    c.close();
  }
}

// zipStored builds a zip archive. files: [{name, data, mode?, deflate?, usize?}] where
// mode is an optional unix mode (e.g. 0o120777 for a link), deflate compresses the
// entry and usize overrides the declared uncompressed size (to forge a bomb).
function zipStored(files) {
  const zlib = require('zlib');
  const crc32 = zlib.crc32;
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const plain = Buffer.isBuffer(f.data) ? f.data : Buffer.from(f.data || '', 'utf8');
    const crc = crc32(plain) >>> 0;
    const data = f.deflate ? zlib.deflateRawSync(plain) : plain;
    const method = f.deflate ? 8 : 0;
    const usize = f.usize !== undefined ? f.usize : plain.length;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(usize, 22);
    lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE((3 << 8) | 20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(usize, 24);
    ch.writeUInt16LE(name.length, 28);
    const mode = f.mode !== undefined ? f.mode : (f.name.endsWith('/') ? 0o040755 : 0o100644);
    ch.writeUInt32LE((mode << 16) >>> 0, 38);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, data);
    centrals.push(ch, name);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

module.exports = { GateClient, startOwner, activate, frame, zipStored, ADDON, OWNER };
