package attach

import (
	"errors"
	"fmt"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

// ErrHardwareOnly: the operation needs SGX hardware and a binary built with -tags sgx.
var ErrHardwareOnly = errors.New("attach: needs SGX hardware (build with -tags sgx on an SGX host)")

// ErrOCALL: the enclave asked the host for a system call while serving the join; this in-process entry
// serves none (the patched loader's `join` mode would, with Gramine's OCALL table). The enclave thread
// is left inside an OCALL, so its TCS is not clean.
type ErrOCALL struct{ Number uintptr }

func (e ErrOCALL) Error() string {
	return fmt.Sprintf("attach: enclave requested OCALL %d during a join; use the loader's join mode", e.Number)
}

// leftCleanly reports whether the TCS can go back to the free pool after an Enter that returned err:
// yes when the thread left by EEXIT at our return point (err is nil or the enclave's own refusal) or
// never entered (argument errors, ErrHardwareOnly); no when the enclave stopped for an OCALL this
// entry does not serve.
func leftCleanly(err error) bool {
	var o ErrOCALL
	return !errors.As(err, &o)
}

// Device is the part of a /dev/teemate session the attach path uses; *teemate.Device implements it.
type Device interface {
	Attach(id uint64, token teemate.Token, flags uint32) (teemate.Attachment, error)
	AcquireTCS(shareID uint64, nonblock bool) (teemate.TCS, error)
	ReleaseTCS(t teemate.TCS, clean bool) error
}

const pageSize = 4096

// Attachment is the owner's enclave mapped into this process.
type Attachment struct {
	ShareID        uint64
	Start, End     uint64
	Ranges         uint32
	PagesPopulated uint64

	dev Device
}

// Attach maps the share into this process (pre-faulting the ranges the owner flagged) and checks what
// the kernel reports. One session attaches once; a process attaches once in its life.
func Attach(dev Device, shareID uint64, token teemate.Token) (Attachment, error) {
	if shareID == 0 {
		return Attachment{}, fmt.Errorf("attach: share id 0")
	}
	a, err := dev.Attach(shareID, token, teemate.AttachPopulate)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach: %w", err)
	}
	if err := checkSpan(a.Start, a.End, a.Ranges); err != nil {
		return Attachment{}, fmt.Errorf("attach share %d: %w", shareID, err)
	}
	return Attachment{ShareID: shareID, Start: a.Start, End: a.End, Ranges: a.Ranges, PagesPopulated: a.PagesPopulated, dev: dev}, nil
}

func checkSpan(start, end uint64, ranges uint32) error {
	switch {
	case ranges == 0 || ranges > teemate.MaxRanges:
		return fmt.Errorf("kernel reported %d ranges", ranges)
	case start%pageSize != 0 || end%pageSize != 0 || start >= end:
		return fmt.Errorf("kernel reported span [%#x,%#x)", start, end)
	}
	return nil
}

// TCS is an enclave thread this process holds.
type TCS struct {
	teemate.TCS
}

// AcquireTCS takes a free TCS of the attached share; with nonblock it fails at once (EAGAIN) when
// none is free, otherwise it waits. A TCS outside the attached span is given back and refused.
func (a Attachment) AcquireTCS(nonblock bool) (TCS, error) {
	t, err := a.dev.AcquireTCS(0, nonblock)
	if err != nil {
		return TCS{}, fmt.Errorf("attach: %w", err)
	}
	if t.Addr%pageSize != 0 || t.Addr < a.Start || t.Addr >= a.End {
		// Never entered, so the slot is clean; a release error adds nothing to the refusal.
		_ = a.dev.ReleaseTCS(t, true)
		return TCS{}, fmt.Errorf("attach: kernel gave TCS %#x outside [%#x,%#x)", t.Addr, a.Start, a.End)
	}
	return TCS{t}, nil
}

// Release gives the TCS back. clean must be true only when the last Enter returned normally (the
// thread left the enclave by EEXIT); otherwise the kernel quarantines the slot until the owner's
// runtime has reset it.
func (a Attachment) Release(t TCS, clean bool) error {
	if err := a.dev.ReleaseTCS(t.TCS, clean); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return nil
}

// MaxRequest bounds what Enter hands to the enclave (the gate's largest frame, an init with a zip).
const MaxRequest = 64 << 20

func checkRequest(t TCS, req []byte) error {
	switch {
	case t.Addr == 0 || t.Addr%pageSize != 0:
		return fmt.Errorf("attach: enter: bad TCS %#x", t.Addr)
	case len(req) == 0:
		return fmt.Errorf("attach: enter: empty request")
	case len(req) > MaxRequest:
		return fmt.Errorf("attach: enter: request of %d bytes (max %d)", len(req), MaxRequest)
	}
	return nil
}
