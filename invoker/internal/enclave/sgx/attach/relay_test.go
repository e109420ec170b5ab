package attach

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/wire"
)

// enclaveStandIn answers gate frames the way the trusted runtime would, by type; "ocall" makes the
// entry stop for an OCALL, "refuse" makes the enclave refuse the join. It stands in for EENTER, which
// cannot run here; the relay, the session and the TCS decisions around it are the real code.
func enclaveStandIn(entered *[]string) EnterFunc {
	return func(t TCS, req []byte) ([]byte, error) {
		if err := checkRequest(t, req); err != nil {
			return nil, err
		}
		var m struct{ Type string }
		if err := json.Unmarshal(req, &m); err != nil {
			return nil, err
		}
		*entered = append(*entered, m.Type)
		switch m.Type {
		case "hello":
			return []byte(`{"type":"welcome","version":1,"mode":"sgx"}`), nil
		case "acquire":
			return []byte(`{"type":"acquired","tcs":2}`), nil
		case "release":
			return []byte(`{"type":"released"}`), nil
		case "ocall":
			return nil, ErrOCALL{Number: 7}
		case "refuse":
			return nil, errors.New("attach: enter: enclave refused the join: invalid argument")
		case "empty":
			return nil, nil
		}
		return []byte(`{"type":"error","class":"protocol","message":"unknown type"}`), nil
	}
}

// socketpair is a real unix stream connection: the shim's end and the relay's end.
func socketpair(t *testing.T) (shim, relay *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	shim, relay = os.NewFile(uintptr(fds[0]), "shim"), os.NewFile(uintptr(fds[1]), "relay")
	t.Cleanup(func() {
		// Either end may already be closed by the test; a second close's error means nothing here.
		_ = shim.Close()
		_ = relay.Close()
	})
	return shim, relay
}

type relayRun struct {
	dev     *fakeDev
	entered []string
	joins   int
	done    chan error
}

func startRelay(t *testing.T, dev *fakeDev) (*relayRun, *os.File) {
	shim, relay := socketpair(t)
	r := &relayRun{dev: dev, done: make(chan error, 1)}
	go func() {
		r.done <- Serve(relay, func() (Conn, error) {
			r.joins++
			s, err := Join(dev, Ticket{ShareID: 7, Token: teemate.Token{1}}, enclaveStandIn(&r.entered))
			if err != nil {
				return nil, err
			}
			return s, nil
		})
		relay.Close()
	}()
	return r, shim
}

func send(t *testing.T, shim io.Writer, typ string) {
	t.Helper()
	if err := gate.WriteFrame(shim, map[string]string{"type": typ}, wire.MaxInitFrame); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, shim io.Reader) map[string]any {
	t.Helper()
	body, err := gate.ReadFrame(shim, wire.MaxReplyFrame)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestServeConversation(t *testing.T) {
	dev := &fakeDev{att: good, tcs: teemate.TCS{ShareID: 7, Addr: 0x3ff00000, Slot: 2}}
	r, shim := startRelay(t, dev)
	for _, x := range [][2]string{{"hello", "welcome"}, {"acquire", "acquired"}, {"release", "released"}} {
		send(t, shim, x[0])
		if got := recv(t, shim); got["type"] != x[1] {
			t.Fatalf("%s: got %v, want %s", x[0], got, x[1])
		}
	}
	shim.Close()
	if err := <-r.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if r.joins != 1 || len(r.entered) != 3 {
		t.Fatalf("joins %d, entered %v", r.joins, r.entered)
	}
	if len(dev.released) != 1 || !dev.released[0] {
		t.Fatalf("TCS not released clean: %v", dev.released)
	}
}

func TestServeRefusals(t *testing.T) {
	cases := []struct {
		name      string
		dev       fakeDev
		frames    []string
		raw       []byte // sent instead of frames
		class     string
		message   string
		entered   int
		released  []bool
		wantJoins int
	}{
		{name: "no free TCS", dev: fakeDev{att: good, tcsErr: unix.EAGAIN}, frames: []string{"hello"},
			class: "busy", message: "no free TCS", wantJoins: 1},
		{name: "wrong token", dev: fakeDev{attErr: unix.EACCES}, frames: []string{"hello"},
			class: "internal", message: "permission denied", wantJoins: 1},
		{name: "OCALL leaves the TCS dirty", dev: fakeDev{att: good, tcs: teemate.TCS{Addr: 0x3ff00000}}, frames: []string{"hello", "ocall"},
			class: "internal", message: "OCALL 7", entered: 2, released: []bool{false}, wantJoins: 1},
		{name: "enclave refuses: still clean", dev: fakeDev{att: good, tcs: teemate.TCS{Addr: 0x3ff00000}}, frames: []string{"refuse"},
			class: "internal", message: "refused the join", entered: 1, released: []bool{true}, wantJoins: 1},
		{name: "empty reply", dev: fakeDev{att: good, tcs: teemate.TCS{Addr: 0x3ff00000}}, frames: []string{"empty"},
			class: "internal", message: "reply of 0 bytes", entered: 1, released: []bool{true}, wantJoins: 1},
		{name: "zero-length frame: no join", dev: fakeDev{att: good}, raw: []byte{0, 0, 0, 0},
			class: "protocol", message: "too large"},
		{name: "oversize frame: no join", dev: fakeDev{att: good}, raw: []byte{0x7f, 0, 0, 0},
			class: "protocol", message: "exceeds the limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, shim := startRelay(t, &c.dev)
			var last map[string]any
			if c.raw != nil {
				if _, err := shim.Write(c.raw); err != nil {
					t.Fatal(err)
				}
				last = recv(t, shim)
			}
			for _, f := range c.frames {
				send(t, shim, f)
				last = recv(t, shim)
			}
			if last["type"] != "error" || last["class"] != c.class || !strings.Contains(last["message"].(string), c.message) {
				t.Fatalf("last reply %v, want error class %s with %q", last, c.class, c.message)
			}
			if err := <-r.done; err == nil || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("Serve: %v, want an error with %q", err, c.message)
			}
			if r.joins != c.wantJoins || len(r.entered) != c.entered {
				t.Fatalf("joins %d entered %v", r.joins, r.entered)
			}
			if len(c.dev.released) != len(c.released) || (len(c.released) == 1 && c.dev.released[0] != c.released[0]) {
				t.Fatalf("released %v, want %v", c.dev.released, c.released)
			}
		})
	}
}

// TestServeShimLeavesEarly: a shim that connects and closes costs no join and no TCS.
func TestServeShimLeavesEarly(t *testing.T) {
	dev := &fakeDev{att: good}
	r, shim := startRelay(t, dev)
	shim.Close()
	if err := <-r.done; err != nil || r.joins != 0 {
		t.Fatalf("Serve: %v, joins %d", err, r.joins)
	}
}

func TestSessionAfterDirtyEntry(t *testing.T) {
	dev := &fakeDev{att: good, tcs: teemate.TCS{Addr: 0x3ff00000}}
	var entered []string
	s, err := Join(dev, Ticket{ShareID: 7, Token: teemate.Token{1}}, enclaveStandIn(&entered))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RoundTrip([]byte(`{"type":"ocall"}`)); !errors.As(err, new(ErrOCALL)) {
		t.Fatalf("err %v", err)
	}
	if _, err := s.RoundTrip([]byte(`{"type":"hello"}`)); err == nil || !strings.Contains(err.Error(), "abnormally") {
		t.Fatalf("second entry after a dirty one: %v", err)
	}
	if err := s.Close(); err != nil || len(dev.released) != 1 || dev.released[0] {
		t.Fatalf("close: %v released %v", err, dev.released)
	}
	if err := s.Close(); err != nil || len(dev.released) != 1 {
		t.Fatalf("second close: %v released %v", err, dev.released)
	}
	if _, err := s.RoundTrip([]byte(`{"type":"hello"}`)); err == nil {
		t.Fatal("entry after close accepted")
	}
}

// TestSessionHardwareOnly: the default build's Enter never enters, so the TCS stays clean.
func TestSessionHardwareOnly(t *testing.T) {
	dev := &fakeDev{att: good, tcs: teemate.TCS{Addr: 0x3ff00000}}
	s, err := Join(dev, Ticket{ShareID: 7, Token: teemate.Token{1}}, func(t TCS, req []byte) ([]byte, error) {
		if err := checkRequest(t, req); err != nil {
			return nil, err
		}
		return nil, ErrHardwareOnly
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RoundTrip([]byte(`{"type":"hello"}`)); !errors.Is(err, ErrHardwareOnly) {
		t.Fatalf("err %v", err)
	}
	if err := s.Close(); err != nil || len(dev.released) != 1 || !dev.released[0] {
		t.Fatalf("close: %v released %v", err, dev.released)
	}
}

func TestTicketEnv(t *testing.T) {
	tk := Ticket{ShareID: 42, Token: teemate.Token{0xab, 1}}
	env := map[string]string{}
	for _, kv := range tk.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	got, err := TicketFromEnv(func(k string) string { return env[k] })
	if err != nil || got != tk {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no share":  {map[string]string{}, "TEEMATE_SHARE_ID is not set"},
		"share 0":   {map[string]string{EnvShareID: "0"}, "not a share id"},
		"bad share": {map[string]string{EnvShareID: "x"}, "not a share id"},
		"no token":  {map[string]string{EnvShareID: "1"}, "TEEMATE_TOKEN"},
		"bad token": {map[string]string{EnvShareID: "1", EnvToken: strings.Repeat("z", 64)}, "TEEMATE_TOKEN"},
	} {
		if _, err := TicketFromEnv(func(k string) string { return c.env[k] }); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
}
