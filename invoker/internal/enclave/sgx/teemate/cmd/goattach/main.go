// Command goattach is a test program for the VM tests of kmod/ (kmod/vm/run.sh): it attaches to a share
// made by the C selftest owner through the Go wrappers, reads one byte of the owner's enclave memory at
// the owner's address, checks it, takes and cleanly releases a TCS, and exits 0 on success.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "goattach:", err)
		os.Exit(1)
	}
}

func run() error {
	id := flag.Uint64("id", 0, "share id")
	tokenHex := flag.String("token", "", "share token (hex)")
	addrStr := flag.String("addr", "", "address to read (inside the share)")
	wantStr := flag.String("want", "", "expected byte (hex)")
	flag.Parse()

	token, err := teemate.ParseToken(*tokenHex)
	if err != nil {
		return err
	}
	addr, err := strconv.ParseUint(*addrStr, 0, 64)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	want, err := strconv.ParseUint(*wantStr, 16, 8)
	if err != nil {
		return fmt.Errorf("-want: %w", err)
	}

	dev, err := teemate.Open(teemate.DevicePath)
	if err != nil {
		return err
	}
	defer dev.Close() //nolint:errcheck // exiting closes it anyway; the test reads the outcome from stdout and the exit code
	att, err := dev.Attach(*id, token, teemate.AttachPopulate)
	if err != nil {
		return err
	}
	if addr < att.Start || addr >= att.End {
		return fmt.Errorf("address %#x outside attached [%#x,%#x)", addr, att.Start, att.End)
	}
	// The enclave memory lives outside the Go heap at a fixed address chosen by the owner.
	got := *(*byte)(unsafe.Add(unsafe.Pointer(nil), uintptr(addr)))
	if uint64(got) != want {
		return fmt.Errorf("byte at %#x: got %#02x, want %#02x", addr, got, want)
	}
	if _, err := dev.Attach(*id, token, 0); !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("second attach on one session: want EBUSY, got %v", err)
	}
	tcs, err := dev.AcquireTCS(0, true)
	if err != nil {
		return err
	}
	if err := dev.ReleaseTCS(tcs, true); err != nil {
		return err
	}
	info, err := dev.Info(*id)
	if err != nil {
		return err
	}
	if info.NrAttached != 1 || info.NrOwned != 0 {
		return fmt.Errorf("info: attached %d owned %d, want 1 and 0", info.NrAttached, info.NrOwned)
	}
	fmt.Printf("goattach: read %#02x at %#x, %d pages populated, TCS slot %d\n", got, addr, att.PagesPopulated, tcs.Slot)
	return nil
}
