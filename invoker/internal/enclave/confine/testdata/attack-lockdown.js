'use strict';
// What JS code that reached the owner's Node builtins (no capability layer in the way) tries once
// the owner has locked itself down. Run by attack_test.go through the launcher, like an owner.
// One line per attempt on stdout: "<id>\t<observed>".
//
//   node attack-lockdown.js LOCKDOWN_JS HOST_PID
const fs = require('fs');
const cp = require('child_process');
const { Worker } = require('worker_threads');

const [lockdownJS, hostPid] = process.argv.slice(2);
const out = (id, v) => process.stdout.write(`${id}\t${v}\n`);
const refused = (e) => `refused: ${e.code || e.message}`;

const report = require(lockdownJS).apply();
out('node: lockdown.js apply()', `Seccomp ${report.seccomp}, ${report.filters} filters (launcher's + lockdown's)`);
try {
  cp.execSync('id');
  out('node: child_process.execSync after lockdown', 'ALLOWED');
} catch (e) { out('node: child_process.execSync after lockdown', refused(e)); }
try {
  const r = cp.spawnSync('/bin/sh', ['-c', 'true']);
  out('node: child_process.spawnSync after lockdown', r.error ? refused(r.error) : 'ALLOWED');
} catch (e) { out('node: child_process.spawnSync after lockdown', refused(e)); }
try {
  process.kill(Number(hostPid), 'SIGKILL');
  out('node: process.kill of a host pid', 'ALLOWED');
} catch (e) { out('node: process.kill of a host pid', refused(e)); }
try {
  const n = fs.readFileSync('/etc/shadow').length;
  out('node: fs.readFileSync /etc/shadow', n === 0 ? 'refused: masked (reads 0 bytes)' : `ALLOWED: ${n} bytes`);
} catch (e) { out('node: fs.readFileSync /etc/shadow', refused(e)); }
try {
  fs.writeFileSync('/usr/lib/teemate-attack', 'x');
  out('node: fs.writeFileSync under /usr', 'ALLOWED');
} catch (e) { out('node: fs.writeFileSync under /usr', refused(e)); }
out('node: Buffer.allocUnsafe(4096) is zero-filled', Buffer.allocUnsafe(4096).every((b) => b === 0) ? 'yes (--zero-fill-buffers)' : 'NO');
const w = new Worker(`
  const { parentPort } = require('worker_threads');
  try { require('child_process').execFileSync('/bin/true'); parentPort.postMessage('ALLOWED'); }
  catch (e) { parentPort.postMessage('refused: ' + (e.code || e.message)); }`, { eval: true });
w.on('message', (m) => { out('node: execFileSync in a worker thread after lockdown', m); process.exit(0); });
w.on('error', (e) => { out('node: execFileSync in a worker thread after lockdown', `worker failed: ${e.message}`); process.exit(1); });
