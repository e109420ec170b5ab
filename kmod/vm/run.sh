#!/bin/sh
# Boots the Debian kernel matching the headers under QEMU/TCG with a busybox
# initramfs holding both modules and the selftests; fails on any test
# failure or any kernel warning/BUG/Oops in the console log.
# Inputs (from kmod/Makefile): KVER VMLINUZ OUT SRC, optional GOATTACH.
set -eu

fail() { echo "vm-test: $*" >&2; exit 1; }
# A missing tool skips the run with the reason, except under CI=true where it fails (make deps
# installs them all).
missing() {
	[ "${CI:-}" != true ] || fail "CI=true but $*"
	echo "vm-test: SKIP: $*" >&2
	exit 0
}

[ -r "$VMLINUZ" ] || missing "no kernel image $VMLINUZ (apt-get install linux-image-amd64 matching linux-headers-amd64, kernel $KVER)"
command -v qemu-system-x86_64 >/dev/null || missing "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
BUSYBOX=$(command -v busybox) || missing "busybox missing (apt-get install busybox-static)"
file_static() { ! readelf -l "$1" 2>/dev/null | grep -q "program interpreter"; }
file_static "$BUSYBOX" || missing "$BUSYBOX is not static (apt-get install busybox-static)"

ROOT="$OUT/initrd"
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/lib" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp "$SRC/vm/init" "$ROOT/init"
chmod 755 "$ROOT/init"
cp "$SRC/teemate.ko" "$SRC/fake/teemate_fake_encl.ko" "$ROOT/lib/"
cp "$OUT/teemate_test" "$OUT/print_ioctls" "$ROOT/bin/"
if [ -n "${GOATTACH:-}" ]; then
	cp "$GOATTACH" "$ROOT/bin/goattach"
fi
(cd "$ROOT" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) | gzip -1 > "$OUT/initrd.gz"

LOG="$OUT/console.log"
echo "vm-test: booting $VMLINUZ (log: $LOG)"
# panic=-1 reboots at once on a panic and -no-reboot turns that into exit.
timeout 100 qemu-system-x86_64 -accel tcg -cpu max -m 512M -smp 1 \
	-nographic -no-reboot -kernel "$VMLINUZ" -initrd "$OUT/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 oops=panic" \
	</dev/null >"$LOG" 2>&1 || echo "vm-test: qemu exited with $?" >&2
tr -d '\r' <"$LOG" | grep -v '^TEEMATE-VM: dmesg' | sed -n '/TEEMATE-VM: up/,$p' | grep -E '^(ok|not ok|#|TAP|1\.\.|TEEMATE|sizeof_|offsetof_|goattach)' || true

status=0
grep -q 'TEEMATE-VM-RESULT: rc=0' "$LOG" || { echo "vm-test: selftests failed or did not finish" >&2; status=1; }
if grep -nE 'WARNING:|BUG:|Oops|Call Trace|general protection|Kernel panic|refcount_t|list_(add|del) corruption|UBSAN|KASAN|soft lockup|hung_task|rcu_sched self-detected' "$LOG"; then
	echo "vm-test: kernel warning/BUG/Oops in the log" >&2
	status=1
fi
[ "$status" = 0 ] && echo "vm-test: PASS"
exit "$status"
