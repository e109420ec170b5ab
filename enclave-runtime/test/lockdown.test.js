'use strict';
// lockdown.js: after apply() the process can no longer execute programs, on any thread, and
// a missing addon is a clear error. Each case runs in a child node (a lockdown is for life).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { DEFAULT_ADDON } = require('../trusted/lockdown');
const need = require('./need');

const LOCKDOWN = path.join(__dirname, '..', 'trusted', 'lockdown.js');

function run(script, env = {}) {
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
}

test('apply forbids execve on every thread and verifies itself', { skip: need.skip(!fs.existsSync(DEFAULT_ADDON) && 'the lockdown addon is not built (make build)') }, () => {
  const r = run(`
    const report = require(${JSON.stringify(LOCKDOWN)}).apply();
    let exec = 'ran';
    try { require('child_process').execFileSync('/bin/true'); } catch (e) { exec = e.code; }
    const { Worker } = require('worker_threads');
    const w = new Worker("const {parentPort}=require('worker_threads'); let r='ran'; try { require('child_process').execFileSync('/bin/true') } catch (e) { r = e.code } parentPort.postMessage(r)", { eval: true });
    w.on('message', (m) => { console.log(JSON.stringify({ report, exec, worker: m })); process.exit(0); });
  `);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.report.seccomp, 2);
  assert.equal(out.exec, 'EPERM');
  assert.equal(out.worker, 'EPERM');
});

test('a missing addon is a clear error', () => {
  const r = run(`require(${JSON.stringify(LOCKDOWN)}).apply()`, { TEEMATE_LOCKDOWN_ADDON: '/nonexistent/x.node' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /lockdown: cannot load \/nonexistent\/x.node/);
});
