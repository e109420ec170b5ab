package attach

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// EnterFunc runs one gate request on a held TCS and returns the enclave's reply; Enter is the real
// one (EENTER with -tags sgx, ErrHardwareOnly otherwise).
type EnterFunc func(TCS, []byte) ([]byte, error)

// Session is one sandbox's join: the enclave attached into this process and one TCS held for the
// whole gate conversation (hello .. release), every frame entering on that TCS. The enclave knows
// the sandbox by that TCS, as the gate socket's runtime knows it by its connection.
type Session struct {
	att   Attachment
	tcs   TCS
	enter EnterFunc
	dirty bool // an Enter did not leave by EEXIT: the TCS must not go back to the free pool
	done  bool
}

// ErrTCSBusy: every TCS of the share is held; the gate answers this as class "busy".
var ErrTCSBusy = errors.New("attach: no free TCS")

// Join attaches the share of t into this process and takes a TCS without waiting (a sandbox that
// finds none answers "busy" at once, like the gate's own acquire). A process joins once.
func Join(dev Device, t Ticket, enter EnterFunc) (*Session, error) {
	if enter == nil {
		return nil, fmt.Errorf("attach: join: no enter function")
	}
	a, err := Attach(dev, t.ShareID, t.Token)
	if err != nil {
		return nil, err
	}
	tcs, err := a.AcquireTCS(true)
	if err != nil {
		if isAgain(err) {
			return nil, fmt.Errorf("%w: %w", ErrTCSBusy, err)
		}
		return nil, err
	}
	return &Session{att: a, tcs: tcs, enter: enter}, nil
}

// Slot is the kernel's slot number of the held TCS (informational: the enclave derives it itself).
func (s *Session) Slot() uint32 { return s.tcs.Slot }

// RoundTrip enters the enclave with one gate frame body and returns the reply frame body. After an
// Enter that did not leave cleanly the session refuses further frames.
func (s *Session) RoundTrip(req []byte) ([]byte, error) {
	switch {
	case s.done:
		return nil, fmt.Errorf("attach: session closed")
	case s.dirty:
		return nil, fmt.Errorf("attach: TCS %#x left the enclave abnormally; no further entries", s.tcs.Addr)
	}
	resp, err := s.enter(s.tcs, req)
	if err != nil {
		if !leftCleanly(err) {
			s.dirty = true
		}
		return nil, err
	}
	return resp, nil
}

// Close gives the TCS back: clean unless an Enter left it inside the enclave, in which case the
// kernel quarantines it until the owner's runtime has reset it. Closing twice is a no-op.
func (s *Session) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	return s.att.Release(s.tcs, !s.dirty)
}

func isAgain(err error) bool { return errors.Is(err, unix.EAGAIN) }
