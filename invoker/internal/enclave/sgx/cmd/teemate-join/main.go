// Command teemate-join is the sandbox's side of the sgx join, in Go: started by the shim inside a
// per-activation sandbox, it attaches the image's warm enclave through /dev/teemate at the owner's
// addresses, takes a TCS, and relays the gate protocol between the shim (on the descriptor named by
// TEEMATE_GATE_FD, 3 by default) and the enclave, one EENTER per frame. The share comes from
// TEEMATE_SHARE_ID and TEEMATE_TOKEN, which the invoker puts into the sandbox's environment.
//
// EENTER needs SGX hardware and a build with -tags sgx; built without it (as `make build` does on a
// machine without SGX) every entry fails with attach.ErrHardwareOnly and the shim gets a gate error
// saying so. Even on hardware this entry serves no OCALL, so it can only run joins that make none; the
// production joiner is the patched Gramine loader's join mode (invoker/internal/enclave/sgx/gramine,
// design only), which takes the same place with the same environment and descriptor.
//
// Exit status: 0 when the shim closed the conversation, 1 when the join or an entry failed (the shim
// was told why in an error frame), 2 on a bad environment.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/attach"
	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

func main() {
	device := flag.String("device", teemate.DevicePath, "the /dev/teemate device")
	flag.Parse()
	gate, tk, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "teemate-join:", err)
		os.Exit(2)
	}
	if err := run(gate, tk, *device); err != nil {
		fmt.Fprintln(os.Stderr, "teemate-join:", err)
		os.Exit(1)
	}
}

func setup() (*os.File, attach.Ticket, error) {
	tk, err := attach.TicketFromEnv(os.Getenv)
	if err != nil {
		return nil, attach.Ticket{}, err
	}
	fd := 3
	if s := os.Getenv(attach.EnvGateFD); s != "" {
		if fd, err = strconv.Atoi(s); err != nil || fd < 0 {
			return nil, attach.Ticket{}, fmt.Errorf("%s=%q is not a descriptor", attach.EnvGateFD, s)
		}
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, attach.Ticket{}, fmt.Errorf("%s: descriptor %d: %w", attach.EnvGateFD, fd, err)
	}
	return os.NewFile(uintptr(fd), "gate"), tk, nil
}

func run(gate *os.File, tk attach.Ticket, device string) (err error) {
	defer func() {
		if cerr := gate.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close gate: %w", cerr))
		}
	}()
	var dev *teemate.Device
	defer func() {
		if dev != nil {
			// Closing the session after the release is what the kernel expects; a TCS still held
			// here (the release failed) is quarantined by that close.
			if cerr := dev.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
	}()
	return attach.Serve(gate, func() (attach.Conn, error) {
		d, err := teemate.Open(device)
		if err != nil {
			return nil, err
		}
		dev = d
		s, err := attach.Join(d, tk, attach.Enter)
		if err != nil {
			return nil, err // not s: a nil *Session in a Conn would not compare equal to nil
		}
		return s, nil
	})
}
