package enclave_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
)

// evidenceLog records what Hooks.Evidence received; it fails the offers while fail is set.
type evidenceLog struct {
	mu    sync.Mutex
	got   [][]byte
	fail  int // how many of the next offers to refuse
	calls int
}

func (l *evidenceLog) hook(_ context.Context, image string, ev []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if image != "nodejs:20" {
		return fmt.Errorf("image %q", image)
	}
	if l.fail > 0 {
		l.fail--
		return errors.New("controller unreachable")
	}
	l.got = append(l.got, bytes.Clone(ev))
	return nil
}

func (l *evidenceLog) snapshot() (got [][]byte, calls int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.got...), l.calls
}

func (l *evidenceLog) waitFor(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, _ := l.snapshot(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, calls := l.snapshot()
	t.Fatalf("%d evidence deliveries after %d calls, want %d", len(got), calls, n)
	return nil
}

// standInOwner writes an owner.js that speaks the gate's framing (the runtime's own frame.js)
// and answers ping, and evidence from the file evFile (unavailable while it is absent): the
// manager's decisions of when to offer evidence are tested against it, since the runtime's
// keys are not what is tested here.
func standInOwner(t *testing.T) (ownerJS, evFile string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	realOwner, err := direct.FindOwnerJS(wd)
	if err != nil {
		t.Skipf("enclave-runtime/trusted/owner.js: %v", err)
	}
	dir, err := os.MkdirTemp("", "ev")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Confined owners run under another uid: the stand-in and its evidence must be readable.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A confined owner sees the directory of its owner.js only: the framing goes beside it.
	for _, f := range []string{"frame.js", "wire.js"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(realOwner), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	evFile = filepath.Join(dir, "evidence.json")
	js := fmt.Sprintf(`'use strict';
const fs = require('fs');
const net = require('net');
const { encode, encodeText, Decoder } = require('./frame');
const args = process.argv.slice(2);
const sock = args[args.indexOf('--socket') + 1];
try { fs.unlinkSync(sock); } catch { /* none */ }
net.createServer((s) => {
  const d = new Decoder();
  s.on('error', () => {});
  s.on('data', (chunk) => {
    for (const m of d.push(chunk).messages) {
      if (m.type === 'ping') { s.write(encode({ type: 'pong', slots: 1, free: 1 })); continue; }
      let ev = '';
      try { ev = fs.readFileSync(%q, 'utf8'); } catch { /* no key yet */ }
      if (m.type === 'evidence' && ev) s.write(encodeText('{"type":"evidence","evidence":' + ev + '}'));
      else s.write(encode({ type: 'error', class: 'unavailable', message: 'no image key yet' }));
    }
  });
}).listen(sock, () => { fs.chmodSync(sock, 0o666); process.stdout.write('{"ready":true}\n'); });
process.on('SIGTERM', () => process.exit(0));
`, evFile)
	ownerJS = filepath.Join(dir, "owner.js")
	if err := os.WriteFile(ownerJS, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	return ownerJS, evFile
}

func writeEvidence(t *testing.T, file, doc string) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// TestEvidenceOfferedWhenNewAndAgainAfterAFailure: no evidence while the owner has no key; the
// owner's evidence byte for byte once it has one; the same evidence again after the hook failed;
// nothing more while it is unchanged; the new evidence after it changed (a rotated key).
func TestEvidenceOfferedWhenNewAndAgainAfterAFailure(t *testing.T) {
	ownerJS, evFile := standInOwner(t)
	b := realBackend(t, ownerJS)
	log := &evidenceLog{fail: 1}
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: 30 * time.Millisecond,
		Prestart: []string{"nodejs:20"}, Hooks: enclave.Hooks{Evidence: log.hook}})
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	time.Sleep(150 * time.Millisecond) // a few pings without a key
	if got, calls := log.snapshot(); len(got) != 0 || calls != 0 {
		t.Fatalf("offered %d times without evidence", calls)
	}

	first := `{"v":1, "kid":"first"}` // the spacing is the owner's: kept
	writeEvidence(t, evFile, first)
	got := log.waitFor(t, 1)
	if string(got[0]) != first {
		t.Fatalf("delivered %q, want %q", got[0], first)
	}
	_, calls := log.snapshot()
	if calls != 2 {
		t.Fatalf("%d calls: want the refused offer and its retry", calls)
	}
	time.Sleep(150 * time.Millisecond)
	if got, calls := log.snapshot(); len(got) != 1 || calls != 2 {
		t.Fatalf("unchanged evidence offered again: %d deliveries, %d calls", len(got), calls)
	}

	second := `{"v":1,"kid":"second"}`
	writeEvidence(t, evFile, second)
	got = log.waitFor(t, 2)
	if string(got[1]) != second {
		t.Fatalf("after the change: %q", got[1])
	}
}

// TestEvidenceOfTheRealOwner: the real runtime's answer to evidence reaches the hook byte for byte
// when the owner holds an image key (trusted/keys.js), and nothing does while it answers
// unavailable.
func TestEvidenceOfTheRealOwner(t *testing.T) {
	b := realBackend(t, "")
	log := &evidenceLog{}
	m := newManager(t, b, enclave.ManagerConfig{SlotsPerOwner: 1, HealthInterval: 30 * time.Millisecond,
		Hooks: enclave.Hooks{Evidence: log.hook}})
	l, err := m.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := gate.Evidence(ctx, l.GateSocket())
	switch {
	case gate.IsClass(err, gate.ClassUnavailable):
		time.Sleep(150 * time.Millisecond)
		if _, calls := log.snapshot(); calls != 0 {
			t.Fatalf("hook called %d times for an owner without a key", calls)
		}
		t.Logf("the owner holds no image key: %v", err)
	case err != nil:
		t.Fatal(err)
	default:
		got := log.waitFor(t, 1)
		if !bytes.Equal(got[0], ev) || !strings.Contains(string(ev), `"image":"nodejs:20"`) {
			t.Fatalf("delivered %s, owner serves %s", got[0], ev)
		}
	}
}
