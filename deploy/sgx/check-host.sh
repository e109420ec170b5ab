#!/bin/sh
# Checks whether this host can run the invoker with --enclave sgx. Prefers the invoker's own preflight
# (`invoker --enclave sgx --preflight`, the same checks the backend runs at start); falls back to the
# same checks in shell when the binary has no such flag. Exit 0: ready; 1: not ready (reasons printed).
set -u
QUIET=0
[ "${1:-}" = "--quiet" ] && QUIET=1
ROOT=${TEEMATE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
INVOKER=${INVOKER:-$ROOT/bin/invoker}

if [ -x "$INVOKER" ] && "$INVOKER" -h 2>&1 | grep -q -- '-preflight'; then
	exec "$INVOKER" --enclave sgx --preflight --repo "$ROOT"
fi

fail=0
say() { [ "$QUIET" = 1 ] || echo "$@"; }
need() { # name ok detail
	if [ "$2" = 0 ]; then say "ok   $1 $3"; else echo "FAIL $1 $3"; fail=1; fi
}
flags=$(awk -F: '/^flags/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)
has() { case " $flags " in *" $1 "*) echo 0 ;; *) echo 1 ;; esac; }

need "sgx device" "$([ -e /dev/sgx_enclave ]; echo $?)" "/dev/sgx_enclave (in-kernel driver, Linux >= 5.11, SGX on in BIOS)"
need "cpu sgx" "$(has sgx)" "'sgx' in /proc/cpuinfo"
need "cpu sgx_lc" "$(has sgx_lc)" "'sgx_lc' (flexible launch control) in /proc/cpuinfo"
say "info sgx2 $( [ "$(has sgx2)" = 0 ] && echo listed || echo 'not listed') (not needed: sgx.edmm_enable = false)"
need "teemate device" "$([ -e /dev/teemate ]; echo $?)" "/dev/teemate (insmod teemate.ko, no allow_fake_enclave)"
need "no fake enclave" "$([ ! -e /dev/teemate_fake_enclave ]; echo $?)" "teemate_fake_encl.ko must not be loaded"
if [ -r /sys/module/teemate/parameters/allow_fake_enclave ]; then
	need "module params" "$(grep -q '^[N0]' /sys/module/teemate/parameters/allow_fake_enclave; echo $?)" "allow_fake_enclave off"
fi
for t in gramine-sgx gramine-manifest gramine-sgx-sign; do
	need "$t" "$(command -v "$t" >/dev/null; echo $?)" "$(command -v "$t" || echo 'not in PATH')"
done
KEY=${TEEMATE_SIGNING_KEY:-$HOME/.config/gramine/enclave-key.pem}
need "signing key" "$([ -r "$KEY" ]; echo $?)" "$KEY"
need "owner.js" "$([ -r "$ROOT/enclave-runtime/trusted/owner.js" ]; echo $?)" "$ROOT/enclave-runtime/trusted/owner.js"
need "isolate addon" "$([ -r "$ROOT/node-isolate-patch/build/teemate_isolate.node" ]; echo $?)" "$ROOT/node-isolate-patch/build/teemate_isolate.node"
need "sealed-crypto addon" "$([ -r "$ROOT/node-isolate-patch/build/teemate_sealcrypto.node" ]; echo $?)" "$ROOT/node-isolate-patch/build/teemate_sealcrypto.node"
need "manifest template" "$([ -r "$ROOT/enclave-runtime/manifest/nodejs-owner.manifest.template" ]; echo $?)" "enclave-runtime/manifest/nodejs-owner.manifest.template"
NODE=${TEEMATE_NODE:-/usr/bin/node}
need "node" "$([ -x "$NODE" ]; echo $?)" "$NODE (the patched build, node-isolate-patch/README.md)"
if command -v is-sgx-available >/dev/null 2>&1; then
	say "info is-sgx-available:"; [ "$QUIET" = 1 ] || is-sgx-available 2>&1 | sed 's/^/     /'
fi
[ "$fail" = 0 ] && say "host ready for --enclave sgx"
exit "$fail"
