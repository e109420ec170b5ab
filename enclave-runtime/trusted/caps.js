// The capability set of one activation (trusted side).
//
// Every activation of a warm enclave runs in its own Node environment, but all of
// them share one process with the owner and with each other: one fd table, one
// file system view, one uid, one set of process-wide V8 flags, one network
// namespace. What an action may reach of that shared process is decided here, and
// only here:
//
//   granted  its parameters and __OW_* environment (activation.js), console,
//            timers, crypto, Buffer, URL, TextEncoder, the pure-JS builtins;
//            `require` of its own code and of node_modules inside its zip
//            (read-only); a private scratch directory seen as /tmp, bounded in
//            bytes written; client sockets (net/tls/http/https/fetch) when the run
//            says the action has network, never to the host's loopback,
//            link-local, unspecified or own addresses (--deny-hosts), except the
//            host:port of __OW_API_HOST and the operator's --egress-allow list
//   refused  everything else, with an Error whose message names the capability
//            ("TeeMate: child_process is not available to actions in a shared
//            enclave"): the builtins in DENIED_BUILTINS, process.binding and the
//            other process-wide or process-ending process methods, native
//            addons, v8/os/crypto calls that change the whole process or write
//            files, file paths outside the two roots, fds the action did not open,
//            links, listening sockets, unix sockets
//
// How: install() runs in the bootstrap's prelude (while an environment is
// prepared, before any request) and patches IN PLACE the exports objects of the
// builtins concerned. Every way to a builtin inside one environment (require,
// node: prefixes, module._load, createRequire, process.mainModule, ESM
// namespaces, Node's own internals calling through the exports object at call
// time) sees that same object, so one patch closes every path to the same
// function. The CommonJS loader gets an allow-list (Module._load,
// Module._resolveFilename). Dynamic import() is refused by the isolate addon
// (node-isolate-patch, RefuseDynamicImport); the worker fallback cannot hook it
// (see README). begin(settings) is the request path: it only stores the run's
// settings (roots, quota, network) that the installed checks read.
//
// The checks run while tenant code may have replaced globals (String.prototype,
// Array.prototype[Symbol.iterator], path.resolve, ...): everything they use is
// captured here before any tenant code exists, loops are index loops, and the
// arguments a check approved are copied before the original function sees them
// (no getter can answer the check one thing and Node another).
'use strict';

// Patched in every environment: fs and module (loaded by Node's bootstrap anyway).
// The others are patched when first loaded (LAZY below): loading them all here
// cost every cold activation ~20 ms, and most actions never use them.
const fs = require('fs');
const path = require('path');
const Module = require('module');
const { fileURLToPath } = require('url');

// ---- primordials: captured before any tenant code runs -----------------------
const ReflectApply = Reflect.apply;
const ObjectDefineProperty = Object.defineProperty;
const ObjectKeys = Object.keys;
const ObjectHasOwn = Object.hasOwn;
const ObjectGetOwnPropertyNames = Object.getOwnPropertyNames;
const ObjectFreeze = Object.freeze;
const ObjectGetPrototypeOf = Object.getPrototypeOf;
const ArrayIsArray = Array.isArray;
const NumberIsInteger = Number.isInteger;
const PromiseReject = Promise.reject.bind(Promise);
const uncurry = (fn) => (self, ...args) => ReflectApply(fn, self, args);
const StringStartsWith = uncurry(String.prototype.startsWith);
const StringSlice = uncurry(String.prototype.slice);
const StringIndexOf = uncurry(String.prototype.indexOf);
const StringLastIndexOf = uncurry(String.prototype.lastIndexOf);
const StringToLowerCase = uncurry(String.prototype.toLowerCase);
const SetHas = uncurry(Set.prototype.has);
const SetAdd = uncurry(Set.prototype.add);
const MapGet = uncurry(Map.prototype.get);
const MapSet = uncurry(Map.prototype.set);
const MapDelete = uncurry(Map.prototype.delete);
const MapHas = uncurry(Map.prototype.has);
const WeakRefDeref = uncurry(WeakRef.prototype.deref);
const ArrayPush = uncurry(Array.prototype.push);
const PromiseThen = uncurry(Promise.prototype.then);
const pathResolve = path.resolve;
const pathDirname = path.dirname;
const bufferByteLength = Buffer.byteLength;
const BufferIsBuffer = Buffer.isBuffer;
const BufferToString = uncurry(Buffer.prototype.toString);
const isArrayBufferView = ArrayBuffer.isView;
// From net, captured when net is first loaded (guardNet): no tenant code can
// reach net's exports before that.
let netIsIP;
let netNormalizeArgs;
let BlockList;
let blockListCheck;
let blockListAddSubnet;
let blockListAddAddress;
const nextTick = process.nextTick;
const processBinding = process.binding; // for guardNet, before guardProcess refuses it
// Loads a builtin past the guarded loader (the bootstrap's `require` is the
// guarded CommonJS one in a Worker): for the lazy patches below.
const getBuiltinModule = process.getBuiltinModule;
const loadBuiltin = (name) => (typeof getBuiltinModule === 'function'
  ? ReflectApply(getBuiltinModule, process, [name]) : require(name));
const fsStatSync = fs.statSync;
const isBuiltin = Module.isBuiltin;
const { O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND } = fs.constants;
const WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;

// Builtins an action cannot load at all: they start processes or threads, open
// a debugger or REPL on the process, trace or sandbox it process-wide, or bind
// datagram sockets (which the connect checks below do not cover). `test` runs
// files in child processes.
const DENIED_BUILTINS = ['child_process', 'cluster', 'worker_threads', 'inspector', 'inspector/promises',
  'repl', 'trace_events', 'wasi', 'dgram', 'test', 'test/reporters'];
const DENIED = new Set(DENIED_BUILTINS);

// Each created file or directory is charged this many bytes on top of what is
// written into it: a loop creating empty files is bounded too.
const ENTRY_BYTES = 512;

// Device files a library may reasonably open; nothing else outside the roots.
const DEVICES_READ = new Set(['/dev/null', '/dev/zero', '/dev/urandom', '/dev/random']);
const DEVICES_WRITE = new Set(['/dev/null']);

// ---- errors -----------------------------------------------------------------------
// refused builds the error every refusal throws (or passes to a callback, or
// rejects with). The message names the capability; code tells programs apart.
function refused(what, why = 'is not available to actions in a shared enclave', code = 'ERR_TEEMATE_REFUSED') {
  const e = new Error(`TeeMate: ${what} ${why}`);
  e.code = code;
  return e;
}

// Why a socket or a DNS query is refused to an action that has no network.
const NO_NETWORK = 'is not available to this action (it was not given network access)';

function denyFn(what) {
  return function refusedCapability() { throw refused(what); };
}

// ---- the run's settings: set by begin(), read by every check ---------------------
const run = {
  active: false,
  codeRoot: '',      // read-only: the action's extracted zip ('' for plain code)
  libRoot: '',       // read-only: the runtime's node_modules offered to every action (openwhisk)
  scratch: '',       // read-write, seen as /tmp
  quota: 0,          // bytes the action may write into scratch
  written: 0,
  network: false,
  allow: [],         // [{host, port}] reachable even if their address is denied
  denyHosts: [],     // --deny-hosts
  deny: null,        // BlockList of addresses refused (built at the first connect)
};
// fds this action opened: number -> true (fs.open*) or a WeakRef to the FileHandle
// (fs.promises.open), which closes itself on its own (close(), garbage collection).
const ownFds = new Map();

// ---- paths ------------------------------------------------------------------------
function inside(root, p) {
  if (!root) return false;
  return p === root || StringStartsWith(p, root + '/');
}

// readOnly: code the action may read and load but never write, its own and the
// runtime's modules.
function readOnly(p) {
  return inside(run.codeRoot, p) || inside(run.libRoot, p);
}

// toPath turns a path argument (string, Buffer, file: URL) into an absolute path
// string, /tmp mapped onto the scratch directory. Relative paths are resolved
// against the action's own directory (process.cwd() inside the activation), and
// the absolute result is what the original function receives, so the kernel opens
// exactly the path that was checked.
function toPath(p) {
  let s;
  if (typeof p === 'string') s = p;
  else if (BufferIsBuffer(p)) s = BufferToString(p, 'utf8');
  else if (p instanceof Uint8Array) s = BufferToString(Buffer.from(p), 'utf8');
  else if (p !== null && typeof p === 'object') {
    // A URL (or anything URL-like): its href is read once and converted here;
    // Node gets the resulting string, never the object (whose getters could
    // answer the check one thing and Node another).
    const href = p.href;
    if (typeof href !== 'string' || !StringStartsWith(href, 'file:')) {
      throw refused('a path that is not a string, Buffer or file: URL', 'is refused', 'ERR_INVALID_ARG_TYPE');
    }
    s = href;
  } else {
    return null; // a number, undefined, ...: Node's own validation reports it
  }
  if (StringStartsWith(s, 'file:')) s = fileURLToPath(s);
  s = pathResolve(cwd(), s);
  if (readOnly(s) || inside(run.scratch, s)) return s;
  if (run.scratch && (s === '/tmp' || StringStartsWith(s, '/tmp/'))) return run.scratch + StringSlice(s, 4);
  return s;
}

// checkPath returns the path to hand to the original function, or throws.
function checkPath(p, write, fnName) {
  const s = toPath(p);
  if (s === null) return p; // not a path: Node's own validation reports it
  if (write) {
    if (inside(run.scratch, s) || SetHas(DEVICES_WRITE, s)) return s;
    if (inside(run.codeRoot, s)) {
      throw refused(`${fnName} of ${s}`, 'is refused: the action\'s own code is read-only', 'EACCES');
    }
    if (inside(run.libRoot, s)) {
      throw refused(`${fnName} of ${s}`, 'is refused: the runtime\'s modules are read-only', 'EACCES');
    }
  } else if (inside(run.scratch, s) || readOnly(s) || SetHas(DEVICES_READ, s)) {
    return s;
  }
  throw refused(`${fnName} of ${s}`, 'is refused: actions reach only their own code and their /tmp', 'EACCES');
}

function checkFd(fd, fnName) {
  const own = MapGet(ownFds, fd);
  if (own === true) return fd;
  if (own !== undefined) {
    const fh = WeakRefDeref(own);
    if (fh !== undefined && fh.fd === fd) return fd;
    MapDelete(ownFds, fd);
  }
  throw refused(`${fnName} of file descriptor ${fd}`, 'is refused: it was not opened by this action', 'EBADF');
}

function writeIntent(flags) {
  if (flags === undefined || flags === null) return false;
  if (typeof flags === 'number') return (flags & WRITE_FLAGS) !== 0;
  if (typeof flags === 'string') return !(flags === 'r' || flags === 'rs' || flags === 'sr');
  throw refused('a file open with flags that are not a string or number', 'is refused', 'EINVAL');
}

function charge(bytes, fnName) {
  if (!(bytes >= 0)) return;
  if (run.written + bytes > run.quota) {
    throw refused(`${fnName}: the scratch quota of ${run.quota} bytes`, 'is exhausted', 'ENOSPC');
  }
  run.written += bytes;
}

function dataBytes(data, encoding) {
  if (typeof data === 'string') return bufferByteLength(data, typeof encoding === 'string' ? encoding : 'utf8');
  if (isArrayBufferView(data)) return data.byteLength;
  return -1; // not known up front
}

// ---- fs: one table of what each function's arguments are --------------------------
//   r/w   a path read / written      f  an fd the action opened
//   rf/wf a path or an fd            o  open: path, flags decide r or w
// `quota(args)` returns the bytes a call writes (charged before it runs).
const optsFlag = (o) => (o !== null && typeof o === 'object' ? o.flag : undefined);
const FS_TABLE = {
  access: ['r'], exists: ['r'], stat: ['r'], lstat: ['r'], statfs: ['r'], readdir: ['r'], opendir: ['r'],
  readlink: ['r'], realpath: ['r'], openAsBlob: ['r'], watch: ['r'], watchFile: ['r'], unwatchFile: ['r'],
  readFile: ['rf'], open: ['o'],
  chmod: ['w'], lchmod: ['w'], chown: ['w'], lchown: ['w'], utimes: ['w'], lutimes: ['w'],
  rm: ['w'], rmdir: ['w'], unlink: ['w'], rename: ['w', 'w'],
  mkdir: ['w'], mkdtemp: ['w'],
  copyFile: ['r', 'w'],
  truncate: ['wf'], writeFile: ['wf'], appendFile: ['wf'],
  close: ['f'], fchmod: ['f'], fchown: ['f'], fdatasync: ['f'], fstat: ['f'], fsync: ['f'], futimes: ['f'],
  ftruncate: ['f'], read: ['f'], readv: ['f'], write: ['f'], writev: ['f'],
};
const FS_QUOTA = {
  mkdir: () => ENTRY_BYTES,
  mkdtemp: () => ENTRY_BYTES,
  copyFile: (a) => fsStatSync(a[0]).size + ENTRY_BYTES,
  truncate: (a) => (typeof a[1] === 'number' ? a[1] : 0),
  ftruncate: (a) => (typeof a[1] === 'number' ? a[1] : 0),
  writeFile: (a) => withEntry(dataBytes(a[1], a[2] && typeof a[2] === 'object' ? a[2].encoding : a[2])),
  appendFile: (a) => withEntry(dataBytes(a[1], a[2] && typeof a[2] === 'object' ? a[2].encoding : a[2])),
  write: (a) => (typeof a[1] === 'string' ? dataBytes(a[1], typeof a[3] === 'string' ? a[3] : a[2])
    : typeof a[3] === 'number' ? a[3] : dataBytes(a[1])),
  writev: (a) => {
    let n = 0;
    const bufs = a[1];
    if (!ArrayIsArray(bufs)) return -1;
    for (let i = 0; i < bufs.length; i++) n += dataBytes(bufs[i]);
    return n;
  },
};
function withEntry(bytes) {
  return bytes < 0 ? bytes : bytes + ENTRY_BYTES;
}

// Refused outright: links make one path reach another file (a hard link to a file
// outside, a symlink the checks above would have to follow); cp walks trees with
// Node's internal functions, past the checks.
const FS_REFUSED = { link: 'creating hard links', symlink: 'creating symbolic links', cp: 'fs.cp (copying trees)' };

// checkArgs applies the table to one call and returns the arguments to pass on.
function checkArgs(name, display, args) {
  const spec = FS_TABLE[name];
  const out = [];
  for (let i = 0; i < args.length; i++) out[i] = args[i];
  for (let i = 0; i < spec.length; i++) {
    const kind = spec[i];
    const a = out[i];
    if (kind === 'f' || ((kind === 'rf' || kind === 'wf') && typeof a === 'number')) {
      out[i] = checkFd(a, display);
    } else if ((kind === 'rf' || kind === 'wf') && a !== null && typeof a === 'object' && !BufferIsBuffer(a) &&
        typeof a.fd === 'number' && a.href === undefined) {
      checkFd(a.fd, display); // a FileHandle (fs.promises.readFile(handle)): must be one of ours
    } else if (kind === 'o') {
      out[i] = checkPath(a, writeIntent(openFlags(out)), display);
    } else if (kind === 'rf') {
      out[i] = checkPath(a, writeIntent(optsFlag(out[1])), display);
    } else {
      out[i] = checkPath(a, kind !== 'r', display);
    }
  }
  const q = FS_QUOTA[name];
  if (q) {
    let bytes = q(out);
    if (bytes < 0) {
      if (name === 'writeFile' || name === 'appendFile') bytes = 0; // streamed data: see writeStreamed
      else throw refused(`${display} of data whose size is not known`, 'is refused (scratch quota)');
    }
    charge(bytes, display);
  }
  if (name === 'open' && writeIntent(openFlags(out))) charge(ENTRY_BYTES, display);
  return out;
}

// open(path[, flags[, mode]], cb): the flags, when given.
function openFlags(args) {
  return typeof args[1] === 'function' ? undefined : args[1];
}

function lastFn(args) {
  const f = args.length ? args[args.length - 1] : undefined;
  return typeof f === 'function' ? f : null;
}

function trackFd(fd) {
  if (NumberIsInteger(fd)) MapSet(ownFds, fd, true);
}

function trackHandle(fh) {
  if (fh && NumberIsInteger(fh.fd)) MapSet(ownFds, fh.fd, new WeakRef(fh));
  patchFileHandle(fh);
  return fh;
}

// FileHandle is not exported; its prototype is patched the first time the action
// gets one. Its methods act on the handle's own fd, opened through the checked
// open(), so only the bytes written need counting (and close untracks the fd).
let fileHandlePatched = false;
function patchFileHandle(fh) {
  if (fileHandlePatched || !fh) return;
  fileHandlePatched = true;
  const proto = ObjectGetPrototypeOf(fh);
  const counted = {
    write: (a) => (typeof a[0] === 'string' ? dataBytes(a[0], typeof a[2] === 'string' ? a[2] : a[1])
      : typeof a[2] === 'number' ? a[2] : dataBytes(a[0])),
    writev: (a) => FS_QUOTA.writev([null, a[0]]),
    writeFile: (a) => dataBytes(a[0], a[1] && typeof a[1] === 'object' ? a[1].encoding : a[1]),
    appendFile: (a) => dataBytes(a[0], a[1] && typeof a[1] === 'object' ? a[1].encoding : a[1]),
    truncate: (a) => (typeof a[0] === 'number' ? a[0] : 0),
  };
  const names = ObjectKeys(counted);
  for (let i = 0; i < names.length; i++) { // not for-of: tenant code may have replaced the array iterator
    const name = names[i];
    const orig = proto[name];
    if (typeof orig !== 'function') continue;
    proto[name] = function countedWrite(...args) {
      try {
        const n = counted[name](args);
        if (n < 0) throw refused(`filehandle.${name} of data whose size is not known`, 'is refused (scratch quota)');
        charge(n, `filehandle.${name}`);
      } catch (e) {
        return PromiseReject(e);
      }
      return ReflectApply(orig, this, args);
    };
  }
  const close = proto.close;
  proto.close = function close_(...args) {
    MapDelete(ownFds, this.fd);
    return ReflectApply(close, this, args);
  };
}

function guardFs() {
  const names = ObjectKeys(FS_TABLE);
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    // callback form
    if (typeof fs[name] === 'function') {
      const orig = fs[name];
      const display = `fs.${name}`;
      let wrapped;
      if (name === 'exists') {
        wrapped = function exists(p, cb) {
          let args;
          try { args = checkArgs(name, display, [p]); } catch { if (typeof cb === 'function') nextTick(cb, false); return; }
          ReflectApply(orig, this, [args[0], cb]);
        };
      } else {
        wrapped = function guarded(...args) {
          let out;
          try {
            out = checkArgs(name, display, args);
          } catch (e) {
            const cb = lastFn(args);
            if (cb && name !== 'watch' && name !== 'watchFile' && name !== 'unwatchFile') { nextTick(cb, e); return undefined; }
            throw e;
          }
          const cb = lastFn(out);
          if (name === 'open' && cb) {
            out[out.length - 1] = function opened(err, fd) { if (!err) trackFd(fd); return ReflectApply(cb, this, [err, fd]); };
          } else if (name === 'close' && NumberIsInteger(out[0])) {
            MapDelete(ownFds, out[0]);
          }
          return ReflectApply(orig, this, out);
        };
      }
      if (typeof orig.native === 'function') wrapped.native = guardSimple(orig.native, `${display}.native`, (a) => checkArgs(name, display, a));
      if (orig[Symbol.for('nodejs.util.promisify.custom')]) {
        const custom = orig[Symbol.for('nodejs.util.promisify.custom')];
        wrapped[Symbol.for('nodejs.util.promisify.custom')] = function promisified(...args) {
          try { args = checkArgs(name, display, args); } catch (e) { return PromiseReject(e); }
          return ReflectApply(custom, this, args);
        };
      }
      fs[name] = wrapped;
    }
    // sync form
    const sync = `${name}Sync`;
    if (typeof fs[sync] === 'function') {
      const orig = fs[sync];
      const display = `fs.${sync}`;
      const wrappedSync = function guardedSync(...args) {
        let out;
        if (name === 'exists') {
          try { out = checkArgs(name, display, args); } catch { return false; }
          return ReflectApply(orig, this, out);
        }
        out = checkArgs(name, display, args);
        if (name === 'close' && NumberIsInteger(out[0])) MapDelete(ownFds, out[0]);
        const ret = ReflectApply(orig, this, out);
        if (name === 'open') trackFd(ret);
        return ret;
      };
      if (typeof orig.native === 'function') {
        wrappedSync.native = guardSimple(orig.native, `${display}.native`, (a) => checkArgs(name, display, a));
      }
      fs[sync] = wrappedSync;
    }
  }
  const refusedNames = ObjectKeys(FS_REFUSED);
  for (let i = 0; i < refusedNames.length; i++) {
    const name = refusedNames[i];
    const what = FS_REFUSED[name];
    fs[name] = denyFn(what);
    fs[`${name}Sync`] = denyFn(what);
  }
  // fs.promises (the object `fs/promises` exports) is made on first use by a
  // getter; it is patched then (LAZY['fs/promises']), before anyone gets it.
  const promisesGetter = Object.getOwnPropertyDescriptor(fs, 'promises').get;
  ObjectDefineProperty(fs, 'promises', {
    configurable: true,
    enumerable: true,
    get() {
      const p = ReflectApply(promisesGetter, fs, []);
      patchLazy('fs/promises');
      return p;
    },
  });
  // Streams open their file through fs.open (patched above); an fd given in the
  // options is checked here so the refusal comes at once, not as a stream error.
  for (const name of ['createReadStream', 'createWriteStream']) {
    const orig = fs[name];
    const write = name === 'createWriteStream';
    fs[name] = function guardedStream(p, options) {
      let opts = options;
      if (opts !== null && typeof opts === 'object') {
        opts = { ...opts };
        if (typeof opts.fd === 'number') checkFd(opts.fd, `fs.${name}`);
      }
      const q = p === null || p === undefined ? p : checkPath(p, write || writeIntent(opts && opts.flags), `fs.${name}`);
      return ReflectApply(orig, this, [q, opts]);
    };
  }
}

// guardFsPromises patches fs.promises (= require('fs/promises')) in place, with
// the same table as the callback and sync forms.
function guardFsPromises(p) {
  const names = ObjectKeys(FS_TABLE);
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (typeof p[name] !== 'function') continue;
    const orig = p[name];
    const display = `fs.promises.${name}`;
    p[name] = function guardedPromise(...args) {
      let out;
      try { out = checkArgs(name, display, args); } catch (e) { return PromiseReject(e); }
      if ((name === 'writeFile' || name === 'appendFile') && dataBytes(args[1]) < 0 &&
          args[1] !== null && typeof args[1] === 'object') {
        return writeStreamed(name === 'appendFile' ? 'a' : 'w', out[0], args[1], display);
      }
      const ret = ReflectApply(orig, this, out);
      return name === 'open' ? PromiseThen(ret, trackHandle) : ret;
    };
  }
  const refusedNames = ObjectKeys(FS_REFUSED);
  for (let i = 0; i < refusedNames.length; i++) {
    const what = FS_REFUSED[refusedNames[i]];
    p[refusedNames[i]] = function refusedPromise() { return PromiseReject(refused(what)); };
  }
}

// writeStreamed writes an async iterable or stream through a checked FileHandle,
// so every chunk is counted against the quota.
async function writeStreamed(flag, p, data, display) {
  const fh = await fs.promises.open(p, flag);
  try {
    for await (const chunk of data) await fh.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk));
  } catch (e) {
    if (e && e.code === 'ENOSPC') e.message = `${e.message} (${display})`;
    throw e;
  } finally {
    await fh.close();
  }
}

function guardSimple(orig, display, check) {
  return function guarded(...args) {
    const out = check(args);
    return ReflectApply(orig, this, out);
  };
}

// ---- the CommonJS loader -------------------------------------------------------------
function builtinName(id) {
  return StringStartsWith(id, 'node:') ? StringSlice(id, 5) : id;
}

function checkBuiltin(id) {
  const name = builtinName(id);
  if (SetHas(DENIED, name)) throw refused(name);
}

function guardLoader() {
  const load = Module._load;
  const resolveFilename = Module._resolveFilename;
  Module._load = function _load(request, parent, isMain) {
    if (typeof request === 'string' && isBuiltin(request)) beforeLoad(request);
    return ReflectApply(load, this, [request, parent, isMain]);
  };
  Module._resolveFilename = function _resolveFilename(request, parent, isMain, options) {
    if (typeof request === 'string' && isBuiltin(request)) {
      checkBuiltin(request);
      return ReflectApply(resolveFilename, this, [request, parent, isMain, options]);
    }
    // A path request is checked before the loader looks at the file system, so
    // nothing outside is even probed; a package name resolves among the action's
    // own node_modules (see _nodeModulePaths) and the result is checked again.
    if (typeof request === 'string' && (StringStartsWith(request, '/') || StringStartsWith(request, './') ||
        StringStartsWith(request, '../') || request === '.' || request === '..')) {
      const base = parent && typeof parent.filename === 'string' ? pathDirname(parent.filename) : cwd();
      const target = pathResolve(base, request);
      if (!readOnly(target)) throw outsideCode(request);
    }
    const filename = ReflectApply(resolveFilename, this, [request, parent, isMain, options]);
    if (!readOnly(filename)) throw outsideCode(request);
    return filename;
  };
  // Where a package name is looked for: only the folders inside the action's code
  // (not the parents of its directory, not the global ~/.node_modules or
  // $PREFIX/lib/node), so nothing outside is even probed; then the runtime's
  // modules, as OpenWhisk's Node.js runtime offers its node_modules (openwhisk)
  // below the action's own.
  const resolveLookupPaths = Module._resolveLookupPaths;
  Module._resolveLookupPaths = function _resolveLookupPaths(request, parent) {
    const all = ReflectApply(resolveLookupPaths, this, [request, parent]);
    if (!ArrayIsArray(all)) return all;
    const out = [];
    let lib = false;
    for (let i = 0; i < all.length; i++) {
      if (!readOnly(all[i])) continue;
      ArrayPush(out, all[i]);
      if (all[i] === run.libRoot) lib = true;
    }
    const bare = typeof request === 'string' && request !== '' && request[0] !== '.' && request[0] !== '/';
    if (bare && run.libRoot && !lib) ArrayPush(out, run.libRoot);
    return out;
  };
  // The loader's own probes, callable directly: they would tell whether a path
  // outside exists. Outside the action's code they find nothing.
  const findPath = Module._findPath;
  Module._findPath = function _findPath(request, paths, isMain) {
    if (typeof request !== 'string') return false;
    const absolute = StringStartsWith(request, '/');
    if (absolute && !readOnly(pathResolve(request))) return false;
    const within = [];
    const list = ArrayIsArray(paths) ? paths : [];
    for (let i = 0; i < list.length; i++) {
      if (typeof list[i] === 'string' && readOnly(pathResolve(list[i], absolute ? '.' : request))) {
        ArrayPush(within, list[i]);
      }
    }
    return ReflectApply(findPath, this, [request, within, isMain]);
  };
  const moduleStat = Module._stat;
  if (typeof moduleStat === 'function') {
    const guardedStat = function _stat(filename) {
      if (typeof filename !== 'string' || !readOnly(pathResolve(filename))) return -2; // ENOENT
      return ReflectApply(moduleStat, this, [filename]);
    };
    ObjectDefineProperty(Module, '_stat', { configurable: true, enumerable: false, get() { return guardedStat; } });
  }
  // Native addons run machine code in the shared process: never.
  Module._extensions['.node'] = function refusedAddon(module, filename) {
    throw refused(`the native addon ${filename}`, 'cannot be loaded: native addons are not available to actions in a shared enclave');
  };
  // module.register() starts a loader-hooks thread that reads files on its own.
  if (typeof Module.register === 'function') Module.register = denyFn('module.register (loader hooks)');
  if (typeof Module.runMain === 'function') Module.runMain = denyFn('module.runMain');
}

function outsideCode(request) {
  const e = refused(`require of '${StringSlice(String(request), 0, 200)}'`,
    'is refused: actions load only builtins and their own code');
  e.code = 'MODULE_NOT_FOUND';
  return e;
}

// ---- process -----------------------------------------------------------------------
function guardProcess(hooks) {
  // Defined even where Node lacks the method (a Worker has no setuid): the action
  // gets the same refusal on every backend.
  const refuseOn = (name, what = `process.${name}`) => {
    process[name] = denyFn(what);
  };
  // Bindings and addons reach Node's C++ directly, past every check here.
  refuseOn('binding');
  refuseOn('_linkedBinding');
  refuseOn('dlopen', 'process.dlopen (native addons)');
  // Signals reach any process of the uid (the owner, the platform).
  refuseOn('kill', 'process.kill (signals)');
  refuseOn('_kill', 'process._kill (signals)');
  refuseOn('_debugProcess', 'process._debugProcess (signals)');
  refuseOn('_debugEnd');
  refuseOn('_startProfilerIdleNotifier');
  refuseOn('_stopProfilerIdleNotifier');
  // Credentials and these settings belong to the whole process (setuid in an
  // environment that does not own the process even aborts it).
  for (const n of ['setuid', 'setgid', 'seteuid', 'setegid', 'setgroups', 'initgroups']) refuseOn(n, `process.${n} (credentials)`);
  refuseOn('loadEnvFile', 'process.loadEnvFile (reads a file into the process environment)');
  refuseOn('setSourceMapsEnabled', 'process.setSourceMapsEnabled (reads source maps named by code)');
  refuseOn('openStdin', 'process.openStdin (the runtime\'s stdin)');
  const umask = process.umask;
  process.umask = function umask_(mask) {
    if (mask !== undefined) throw refused('process.umask(mask) (the process\'s file mode mask)');
    return ReflectApply(umask, process, []);
  };
  // The raw debug writer goes straight to the owner's fd 2; in an activation it
  // writes into the activation's own stderr log instead.
  process._rawDebug = function _rawDebug(...args) {
    hooks.stderr(`${args.join(' ')}\n`);
  };
  // process.report writes files and, in a report, the process's real
  // environment and command line; its settings are process-wide.
  const report = ObjectFreeze({
    writeReport: denyFn('process.report (diagnostic reports)'),
    getReport: denyFn('process.report (diagnostic reports)'),
  });
  ObjectDefineProperty(process, 'report', { configurable: false, enumerable: true, get() { return report; } });
  // getBuiltinModule is another way to a builtin, past the CommonJS loader.
  if (typeof process.getBuiltinModule === 'function') {
    const getBuiltinModule = process.getBuiltinModule;
    process.getBuiltinModule = function getBuiltinModule_(id) {
      if (typeof id === 'string') beforeLoad(id);
      return ReflectApply(getBuiltinModule, process, [id]);
    };
  }
  // stdin would open a stream on the runtime's fd 0. The stream module is
  // loaded on first use (~4 ms of CPU in a new environment).
  let stdin = null;
  ObjectDefineProperty(process, 'stdin', {
    configurable: true,
    enumerable: true,
    get() {
      if (!stdin) {
        const { Readable } = loadBuiltin('stream');
        stdin = new Readable({ read() { this.push(null); } });
        stdin.fd = 0;
      }
      return stdin;
    },
  });
  // The working directory is the process's: inside an activation cwd() names the
  // action's own directory (its code, else its /tmp), the base of relative paths.
  const realCwd = process.cwd;
  process.cwd = function cwd_() { return cwd(); };
  cwdOf = () => ReflectApply(realCwd, process, []);
}
let cwdOf = () => '/';
function cwd() {
  if (!run.active) return cwdOf();
  return run.codeRoot || run.scratch || '/';
}

// ---- builtins patched when first loaded ------------------------------------------
// An action reaches these builtins' exports only through the two gateways wrapped
// here (Module._load, process.getBuiltinModule; import() is refused by the addon),
// so each is patched in place the first time it is loaded, before the action gets
// it. Where import() cannot be hooked (the worker fallback) all are patched at
// install. Keys are builtin names; each patch runs once per environment.
const LAZY = {
  // V8 flags are process-wide (every tenant's isolate); heap snapshots and coverage write files.
  v8(v8) {
    for (const n of ['setFlagsFromString', 'writeHeapSnapshot', 'setHeapSnapshotNearHeapLimit', 'takeCoverage', 'stopCoverage']) {
      if (typeof v8[n] === 'function') v8[n] = denyFn(`v8.${n}`);
    }
  },
  os(os) {
    os.setPriority = denyFn('os.setPriority');
    // os.tmpdir() reads the process's TMPDIR; the action's /tmp is its scratch dir.
    os.tmpdir = function tmpdir() { return '/tmp'; };
  },
  // An engine is a shared library loaded into the process; FIPS mode is process-wide.
  crypto(crypto) {
    crypto.setEngine = denyFn('crypto.setEngine');
    crypto.setFips = denyFn('crypto.setFips');
  },
  // tty streams wrap an existing fd (the runtime's terminal or any other).
  tty(tty) {
    tty.ReadStream = denyFn('tty.ReadStream');
    tty.WriteStream = denyFn('tty.WriteStream');
  },
  dns: guardDns,
  net: guardNet,
  'fs/promises': guardFsPromises,
  // Denied at the loader; disarmed in place too for a path that bypasses it
  // (an ESM namespace in the worker fallback). ChildProcess.prototype.spawn is
  // where every spawn ends (exec, fork, a ChildProcess constructed by hand).
  child_process(cp) {
    cp.ChildProcess.prototype.spawn = denyFn('child_process');
    for (const k of ObjectKeys(cp)) if (typeof cp[k] === 'function') cp[k] = denyFn('child_process');
  },
};
LAZY['dns/promises'] = () => patchLazy('dns');
const patched = new Set();

// Builtins that neither load net nor hand out sockets (checked: none of them
// loads net). Loading any other builtin patches net first: http, https, tls,
// http2, tty and the legacy _http_*/_tls_* modules all build on it, and a socket
// prototype must never be reachable unpatched.
const NO_NET = new Set(['fs', 'fs/promises', 'path', 'path/posix', 'path/win32', 'os', 'util', 'util/types',
  'crypto', 'events', 'buffer', 'url', 'querystring', 'string_decoder', 'assert', 'assert/strict', 'zlib',
  'stream', 'stream/promises', 'stream/web', 'stream/consumers', 'timers', 'timers/promises', 'vm', 'module',
  'process', 'console', 'perf_hooks', 'async_hooks', 'diagnostics_channel', 'punycode', 'constants', 'sys', 'v8',
  'domain', 'readline', 'readline/promises', 'dns', 'dns/promises']);

// beforeLoad runs at each gateway to a builtin (Module._load, getBuiltinModule):
// refuses the denied ones, patches what the builtin needs patched.
function beforeLoad(id) {
  checkBuiltin(id);
  const name = builtinName(id);
  if (!SetHas(NO_NET, name)) patchLazy('net');
  patchLazy(name);
}

// patchLazy patches builtin `name` (node: prefix or not) if it has a lazy patch
// not applied yet in this environment.
function patchLazy(name) {
  if (!ObjectHasOwn(LAZY, name) || SetHas(patched, name)) return;
  SetAdd(patched, name);
  LAZY[name](loadBuiltin(name));
}

function patchAllLazy() {
  const names = ObjectKeys(LAZY);
  for (let i = 0; i < names.length; i++) patchLazy(names[i]);
  // Only in a Worker, where worker_threads is loaded anyway (the bootstrap's
  // messages to the owner go through it).
  loadBuiltin('worker_threads').Worker = denyFn('worker_threads');
}

// ---- network --------------------------------------------------------------------------
function ipv4Mapped(ip) {
  // ::ffff:a.b.c.d and ::ffff:hhhh:hhhh are IPv4 addresses in disguise.
  const low = StringToLowerCase(ip);
  if (!StringStartsWith(low, '::ffff:')) return ip;
  const rest = StringSlice(low, 7);
  if (netIsIP(rest) === 4) return rest;
  const colon = StringIndexOf(rest, ':');
  if (colon < 0) return ip;
  const hi = parseInt(StringSlice(rest, 0, colon), 16);
  const lo = parseInt(StringSlice(rest, colon + 1), 16);
  if (!(hi >= 0 && hi <= 0xffff && lo >= 0 && lo <= 0xffff)) return ip;
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

function addressDenied(ip) {
  const a = ipv4Mapped(ip);
  const fam = netIsIP(a);
  if (fam === 0) return true;
  // Built on first use: only a connecting action (net loaded) needs it.
  if (!run.deny) run.deny = buildDenyList(run.denyHosts);
  return blockListCheck(run.deny, a, fam === 4 ? 'ipv4' : 'ipv6');
}

function allowedPair(host, port) {
  for (let i = 0; i < run.allow.length; i++) {
    const e = run.allow[i];
    if (e.port === port && StringToLowerCase(e.host) === StringToLowerCase(host)) return true;
  }
  return false;
}

function buildDenyList(denyHosts) {
  const b = new BlockList();
  blockListAddSubnet(b, '127.0.0.0', 8, 'ipv4');    // loopback
  blockListAddSubnet(b, '0.0.0.0', 8, 'ipv4');      // unspecified / "this host"
  blockListAddSubnet(b, '169.254.0.0', 16, 'ipv4'); // link-local (cloud metadata)
  blockListAddAddress(b, '::1', 'ipv6');
  blockListAddAddress(b, '::', 'ipv6');
  blockListAddSubnet(b, 'fe80::', 10, 'ipv6');
  for (let i = 0; i < denyHosts.length; i++) {
    const d = String(denyHosts[i]);
    const slash = StringIndexOf(d, '/');
    const ip = slash < 0 ? d : StringSlice(d, 0, slash);
    const fam = netIsIP(ip);
    if (!fam) continue; // the owner validated its flag; nothing else gets here
    const type = fam === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) blockListAddAddress(b, ip, type);
    else blockListAddSubnet(b, ip, Number(StringSlice(d, slash + 1)), type);
  }
  return b;
}

function guardNet(net) {
  netIsIP = net.isIP;
  netNormalizeArgs = net._normalizeArgs;
  BlockList = net.BlockList;
  blockListCheck = uncurry(BlockList.prototype.check);
  blockListAddSubnet = uncurry(BlockList.prototype.addSubnet);
  blockListAddAddress = uncurry(BlockList.prototype.addAddress);
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function connect_(...args) {
    // Node's own callers pass an already normalized [options, cb] array.
    const normalized = ArrayIsArray(args[0]) ? args[0] : netNormalizeArgs(args);
    const given = normalized[0];
    const cb = normalized[1];
    // A copy: what was checked is what Node connects to.
    const options = given !== null && typeof given === 'object' ? { ...given } : {};
    const fail = (e) => {
      nextTick(() => this.destroy(e));
      return this;
    };
    if (options.path !== undefined && options.path !== null) {
      return fail(refused('connecting to unix sockets', 'is not available to actions in a shared enclave'));
    }
    if (!run.network) return fail(refused('network', NO_NETWORK));
    const host = typeof options.host === 'string' && options.host ? options.host : 'localhost';
    options.host = host;
    const port = Number(options.port);
    if (allowedPair(host, port)) return ReflectApply(connect, this, [options, cb]);
    if (netIsIP(host)) {
      if (addressDenied(host)) return fail(deniedAddressError(host, port));
      return ReflectApply(connect, this, [options, cb]);
    }
    // A name: the address it resolves to is checked before Node connects to it.
    // Whatever lookup resolves the name (the action's own, or dns.lookup even if
    // replaced), the addresses it yields are checked.
    const lookup = typeof options.lookup === 'function' ? options.lookup : loadBuiltin('dns').lookup;
    options.lookup = function checkedLookup(hostname, opts, callback) {
      if (typeof opts === 'function') { callback = opts; opts = {}; }
      ReflectApply(lookup, this, [hostname, opts, (err, address, family) => {
        if (err) return callback(err, address, family);
        const list = ArrayIsArray(address) ? address : [{ address }];
        for (let i = 0; i < list.length; i++) {
          const ip = list[i] && list[i].address;
          if (typeof ip !== 'string' || (!allowedPair(ip, port) && addressDenied(ip))) {
            return callback(deniedAddressError(`${hostname} (${ip})`, port));
          }
        }
        return callback(null, address, family);
      }]);
    };
    return ReflectApply(connect, this, [options, cb]);
  };
  // Listening sockets would make the shared process a server on the host.
  net.Server.prototype.listen = denyFn('listening sockets (server.listen)');
  // Wrapping an existing fd (the gate's socket, the owner's stdio) as a socket:
  // every TCP/pipe handle opens an fd through these two methods.
  for (const [mod, cls] of [['tcp_wrap', 'TCP'], ['pipe_wrap', 'Pipe']]) {
    const C = ReflectApply(processBinding, process, [mod])[cls];
    C.prototype.open = function open() {
      throw refused('wrapping an existing file descriptor as a socket');
    };
  }
}

// DNS queries leave the enclave too: only with network (a lazy patch, LAZY.dns).
function guardDns(dns) {
  const guardObj = (obj, label) => {
    const keys = ObjectKeys(obj);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const f = obj[k];
      if (typeof f !== 'function' || k === 'Resolver' || k === 'getDefaultResultOrder' || k === 'getServers' ||
          StringStartsWith(k, 'set')) continue;
      obj[k] = function dnsCall(...args) {
        if (!run.network) throw refused(`${label}.${k} (network)`, NO_NETWORK);
        return ReflectApply(f, this, args);
      };
    }
  };
  guardObj(dns, 'dns');
  guardObj(dns.promises, 'dns.promises');
  const classes = [dns.Resolver, dns.promises.Resolver];
  for (let c = 0; c < classes.length; c++) {
    const proto = classes[c].prototype;
    const keys = ObjectGetOwnPropertyNames(proto);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      const f = proto[k];
      if (typeof f !== 'function' || k === 'constructor' || !(StringStartsWith(k, 'resolve') || k === 'reverse')) continue;
      proto[k] = function dnsQuery(...args) {
        if (!run.network) throw refused(`dns ${k} (network)`, NO_NETWORK);
        return ReflectApply(f, this, args);
      };
    }
  }
}

function deniedAddressError(where, port) {
  return refused(`connecting to ${where}:${port}`, 'is refused: the host\'s own, loopback and link-local addresses are not reachable from actions', 'ECONNREFUSED');
}

// ---- public -------------------------------------------------------------------------------
let installed = false;

// install patches this environment; hooks.stderr(text) writes into the
// activation's stderr log; hooks.inWorker is true in the Worker fallback (its
// import() cannot be refused, so everything is patched at once there). Returns
// begin(settings), the request path's part.
function install(hooks) {
  if (installed) throw new Error('capabilities already installed in this environment');
  installed = true;
  guardFs();
  guardLoader();
  guardProcess(hooks);
  // fetch (a global) loads its HTTP stack by itself: net is patched first.
  if (typeof globalThis.fetch === 'function') {
    const fetch = globalThis.fetch;
    globalThis.fetch = function fetch_(...args) {
      // Without network fetch would fail only inside undici, as a bare "fetch
      // failed" with the reason hidden in err.cause: refused here, at once, with
      // the reason in the message.
      if (run.active && !run.network) {
        return PromiseReject(refused('fetch (network)', 'is not available to this action: it was not given network access (the action annotation "network": true)'));
      }
      patchLazy('net');
      return ReflectApply(fetch, this, args);
    };
  }
  if (hooks.inWorker === true) {
    // A Worker (the fallback backend): its import() cannot be refused, and an
    // ESM namespace reaches a builtin past the loader, so everything is patched
    // now, and the namespaces follow the patched exports.
    patchAllLazy();
    Module.syncBuiltinESMExports();
  }
  return begin;
}

// begin sets the run's capabilities; called once, by activate(), before any
// tenant code. settings: {codeDir, scratchDir, quotaBytes, network, egressAllow:
// ["host:port"], denyHosts: ["ip" | "ip/prefix"]}; apiHost: __OW_API_HOST.
// (Parenthesised so V8 compiles it with the prelude: compiled lazily, on the
// request path, it cost ~0.15 ms of every hot activation.)
const begin = (function begin(settings, apiHost) {
  const s = settings !== null && typeof settings === 'object' ? settings : {};
  run.codeRoot = typeof s.codeDir === 'string' && s.codeDir ? s.codeDir : '';
  run.libRoot = typeof s.libDir === 'string' && s.libDir ? s.libDir : '';
  run.scratch = typeof s.scratchDir === 'string' && s.scratchDir ? s.scratchDir : '';
  run.quota = run.scratch && NumberIsInteger(s.quotaBytes) && s.quotaBytes > 0 ? s.quotaBytes : 0;
  run.network = s.network === true;
  if (run.network) {
    const allow = [];
    const list = ArrayIsArray(s.egressAllow) ? s.egressAllow : [];
    for (let i = 0; i < list.length; i++) {
      const e = parseHostPort(list[i]);
      if (e) ArrayPush(allow, e);
    }
    const api = parseApiHost(apiHost);
    if (api) ArrayPush(allow, api);
    run.allow = allow;
    run.denyHosts = ArrayIsArray(s.denyHosts) ? s.denyHosts : [];
  }
  run.active = true;
});

// "host:port" or "[v6]:port"
function parseHostPort(v) {
  if (typeof v !== 'string') return null;
  const i = StringLastIndexOf(v, ':');
  if (i <= 0) return null;
  let host = StringSlice(v, 0, i);
  const port = Number(StringSlice(v, i + 1));
  if (StringStartsWith(host, '[') && host[host.length - 1] === ']') host = StringSlice(host, 1, -1);
  if (!host || !NumberIsInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

// __OW_API_HOST is a URL (https://host[:port]) or host:port.
function parseApiHost(v) {
  if (typeof v !== 'string' || !v) return null;
  if (StringIndexOf(v, '://') < 0) return parseHostPort(v);
  try {
    const u = new URL(v);
    const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
    let host = u.hostname;
    if (StringStartsWith(host, '[')) host = StringSlice(host, 1, -1);
    return host ? { host, port } : null;
  } catch {
    return null;
  }
}

module.exports = { install, DENIED_BUILTINS, parseHostPort, parseApiHost };
