package enclave_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
)

// breaking is a real owner's gate as a state sender whose connection breaks once, after n chunks:
// the move must resume where the receiver says.
type breaking struct {
	*enclave.GateSource
	n, sent int
	broken  bool
}

func (b *breaking) Chunks(ctx context.Context, session string, from, count int) (*gate.StateChunks, error) {
	if !b.broken && b.sent >= b.n {
		b.broken = true
		b.GateSource.Close() // the connection goes; the next call dials anew
		return nil, errors.New("relay broke")
	}
	r, err := b.GateSource.Chunks(ctx, session, from, count)
	if err == nil {
		b.sent += len(r.Chunks)
	}
	return r, err
}

func startOwner(t *testing.T, b enclave.Backend, id, mode string) enclave.Owner {
	t.Helper()
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: id, Image: "nodejs:20", Dir: filepath.Join(t.TempDir(), id), Slots: 1, KeyMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := o.Stop(ctx); err != nil {
			t.Log(err)
		}
	})
	return o
}

func endpoint(o enclave.Owner) gate.KeyEndpoint {
	e := gate.KeyEndpoint{Socket: o.GateSocket()}
	if k, ok := o.(gate.KeyHolder); ok {
		e.Key = k.GateKey()
	}
	return e
}

// TestMoveStateResumes: a state move whose sender connection breaks (before its first chunk: an
// owner without opened code has a one-chunk state; transfer.test.js breaks one half way) resumes in the
// same session and ends with the sender's kid.
func TestMoveStateResumes(t *testing.T) {
	b := keyBackend(t)
	from := startOwner(t, b, "from-0", enclave.KeyGenerate)
	to := startOwner(t, b, "to-0", enclave.KeyAwait)
	src := &breaking{GateSource: &enclave.GateSource{Ep: endpoint(from)}, n: 0}
	defer src.Close()
	mv, err := enclave.MoveState(context.Background(), endpoint(to), src)
	if err != nil {
		t.Fatal(err)
	}
	if !src.broken || mv.Resumes != 1 {
		t.Fatalf("broken %v, resumes %d", src.broken, mv.Resumes)
	}
	if want := kid(t, from.GateSocket()); mv.Kid != want || kid(t, to.GateSocket()) != want {
		t.Fatalf("moved kid %q, receiver %q, sender %q", mv.Kid, kid(t, to.GateSocket()), want)
	}
	if mv.SenderPeak <= 0 || mv.SenderRSS <= 0 || mv.SenderPeak*100 > mv.SenderRSS {
		t.Fatalf("sender peak %d bytes of RSS %d: want under 1%%", mv.SenderPeak, mv.SenderRSS)
	}
	var offer map[string]json.RawMessage
	if json.Unmarshal(mv.Offer, &offer) != nil || offer["ct"] == nil {
		t.Fatalf("offer %s", mv.Offer)
	}
}

// TestMoveStateRefusesAnotherMeasurement: an owner of another runtime build (one trusted file
// differs, so its measurement does) gets no state, with the reason.
func TestMoveStateRefusesAnotherMeasurement(t *testing.T) {
	b := keyBackend(t)
	from := startOwner(t, b, "from-0", enclave.KeyGenerate)
	// A copy of the runtime with one trusted file changed.
	wd, _ := os.Getwd()
	js, err := findOwnerJS(wd)
	if err != nil {
		t.Fatal(err)
	}
	other := otherBuild(t, filepath.Dir(filepath.Dir(js)))
	ob := keyBackendAt(t, filepath.Join(other, "trusted", "owner.js"))
	to := startOwner(t, ob, "to-0", enclave.KeyAwait)
	src := &enclave.GateSource{Ep: endpoint(from)}
	defer src.Close()
	_, err = enclave.MoveState(context.Background(), endpoint(to), src)
	if !gate.IsClass(err, gate.ClassKey) || !strings.Contains(err.Error(), "peer measurement") {
		t.Fatalf("err = %v, want a key refusal naming the measurement", err)
	}
	if k := kid(t, to.GateSocket()); k != "" {
		t.Fatalf("the refused owner holds kid %q", k)
	}
}

func findOwnerJS(wd string) (string, error) { return direct.FindOwnerJS(wd) }

// otherBuild copies the runtime directory rt (enclave-runtime) with one trusted file changed.
func otherBuild(t *testing.T, rt string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "enclave-runtime")
	src := filepath.Join(rt, "trusted")
	if err := os.MkdirAll(filepath.Join(dst, "trusted"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "wire.js" {
			b = append(b, "// another build\n"...)
		}
		if err := os.WriteFile(filepath.Join(dst, "trusted", e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The native parts (lockdown, isolates) are the repository's.
	if err := os.Symlink(filepath.Join(filepath.Dir(rt), "node-isolate-patch"), filepath.Join(filepath.Dir(dst), "node-isolate-patch")); err != nil {
		t.Fatal(err)
	}
	return dst
}
