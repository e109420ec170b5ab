'use strict';
// Post-start lockdown of the enclave owner (trusted side): after start, the owner process may
// never execute another program. The launcher that confines the owner (teemate-confine) cannot
// forbid execve itself, since it has to exec node; so the owner forbids it here, once its own
// modules are loaded, with a second seccomp filter installed on every thread
// (../../node-isolate-patch/src/lockdown.cc, same list as the launcher's plus execve/execveat).
//
// apply() loads the addon, installs the filter, and verifies it: /proc/self/status must say
// "Seccomp: 2" (filter mode) and "NoNewPrivs: 1", and an execve probe must now fail with EPERM.
// Anything else throws an Error naming the failed step: an owner asked to lock down must not run
// without it. owner.js calls it for `--lockdown seccomp`.
//
// TEEMATE_LOCKDOWN_ADDON overrides the addon's path (tests).

const fs = require('fs');
const path = require('path');

const DEFAULT_ADDON = path.join(__dirname, '..', '..', 'node-isolate-patch', 'build', 'teemate_lockdown.node');

let applied = null;

// addonFile is the addon apply() loads.
function addonFile(opts = {}) {
  return opts.addon || process.env.TEEMATE_LOCKDOWN_ADDON || DEFAULT_ADDON;
}

function statusField(status, name) {
  const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status);
  return m ? m[1].trim() : undefined;
}

// apply installs and verifies the lockdown; calling it again is a no-op returning the same report.
function apply(opts = {}) {
  if (applied) return applied;
  const file = addonFile(opts);
  let addon;
  try {
    addon = require(file); // eslint-disable-line global-require, import/no-dynamic-require
  } catch (e) {
    throw new Error(`lockdown: cannot load ${file} (make build): ${e.message}`);
  }
  let insns;
  try {
    insns = addon.lockdown();
  } catch (e) {
    throw new Error(`lockdown: installing the seccomp filter failed: ${e.message}`);
  }
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const seccomp = statusField(status, 'Seccomp');
  const nnp = statusField(status, 'NoNewPrivs');
  if (seccomp !== '2') throw new Error(`lockdown: /proc/self/status says Seccomp: ${seccomp}, want 2 (filter)`);
  if (nnp !== '1') throw new Error(`lockdown: /proc/self/status says NoNewPrivs: ${nnp}, want 1`);
  const probe = addon.probeExecve();
  if (probe !== addon.EPERM) {
    throw new Error(`lockdown: execve probe returned errno ${probe}, want EPERM (${addon.EPERM}): the filter is not in force`);
  }
  applied = { seccomp: Number(seccomp), filters: Number(statusField(status, 'Seccomp_filters') || 0), insns };
  return applied;
}

module.exports = { apply, addonFile, DEFAULT_ADDON };
