package attach

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
)

// fakeDev stands in for a /dev/teemate session: the ioctls themselves are exercised against the real
// module in kmod's VM test; here the decisions around them are.
type fakeDev struct {
	att      teemate.Attachment
	attErr   error
	tcs      teemate.TCS
	tcsErr   error
	released []bool
}

func (f *fakeDev) Attach(id uint64, tok teemate.Token, flags uint32) (teemate.Attachment, error) {
	if flags != teemate.AttachPopulate {
		return teemate.Attachment{}, unix.EINVAL
	}
	return f.att, f.attErr
}
func (f *fakeDev) AcquireTCS(uint64, bool) (teemate.TCS, error) { return f.tcs, f.tcsErr }
func (f *fakeDev) ReleaseTCS(_ teemate.TCS, clean bool) error {
	f.released = append(f.released, clean)
	return nil
}

var good = teemate.Attachment{Start: 0x10000, End: 0x40000000, Ranges: 5, EnclFD: -1}

func TestAttach(t *testing.T) {
	cases := []struct {
		name string
		dev  fakeDev
		id   uint64
		want string
	}{
		{name: "ok", dev: fakeDev{att: good}, id: 7},
		{name: "id 0", dev: fakeDev{att: good}, want: "share id 0"},
		{name: "wrong token", dev: fakeDev{attErr: unix.EACCES}, id: 7, want: "permission denied"},
		{name: "no ranges", dev: fakeDev{att: teemate.Attachment{Start: 0x10000, End: 0x20000}}, id: 7, want: "0 ranges"},
		{name: "inverted span", dev: fakeDev{att: teemate.Attachment{Start: 0x20000, End: 0x10000, Ranges: 1}}, id: 7, want: "span"},
		{name: "unaligned", dev: fakeDev{att: teemate.Attachment{Start: 0x10001, End: 0x20000, Ranges: 1}}, id: 7, want: "span"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Attach(&c.dev, c.id, teemate.Token{1})
			if c.want == "" {
				if err != nil || a.Start != good.Start || a.End != good.End || a.ShareID != 7 {
					t.Fatalf("%+v %v", a, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

func TestAcquireTCS(t *testing.T) {
	dev := &fakeDev{att: good, tcs: teemate.TCS{ShareID: 7, Addr: 0x3ff00000, Slot: 2}}
	a, err := Attach(dev, 7, teemate.Token{1})
	if err != nil {
		t.Fatal(err)
	}
	tcs, err := a.AcquireTCS(true)
	if err != nil || tcs.Slot != 2 {
		t.Fatalf("%+v %v", tcs, err)
	}
	if err := a.Release(tcs, false); err != nil || len(dev.released) != 1 || dev.released[0] {
		t.Fatalf("release: %v %v", err, dev.released)
	}
	// A TCS outside the attached span is given back (clean: never entered) and refused.
	dev.tcs.Addr = 0x50000000
	if _, err := a.AcquireTCS(true); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("err %v", err)
	}
	if len(dev.released) != 2 || !dev.released[1] {
		t.Fatalf("out-of-span TCS not released clean: %v", dev.released)
	}
	dev.tcsErr = unix.EAGAIN
	if _, err := a.AcquireTCS(true); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("err %v", err)
	}
}

func TestEnterChecksArguments(t *testing.T) {
	tcs := TCS{teemate.TCS{Addr: 0x3ff00000}}
	for name, c := range map[string]struct {
		t   TCS
		req []byte
	}{
		"no tcs":    {TCS{}, []byte("{}")},
		"unaligned": {TCS{teemate.TCS{Addr: 0x3ff00010}}, []byte("{}")},
		"empty":     {tcs, nil},
		"oversize":  {tcs, make([]byte, MaxRequest+1)},
	} {
		if _, err := Enter(c.t, c.req); err == nil || errors.Is(err, ErrHardwareOnly) {
			t.Errorf("%s: err %v, want an argument error", name, err)
		}
	}
}
