package ownerproc

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/reap"
)

func TestJSONLevel(t *testing.T) {
	for _, c := range []struct {
		line string
		want zapcore.Level
	}{
		{`{"level":"error","msg":"x"}`, zapcore.ErrorLevel},
		{`{"level":"warn","msg":"x"}`, zapcore.WarnLevel},
		{`{"level":"info","msg":"x"}`, zapcore.DebugLevel},
		{`error: not json`, zapcore.DebugLevel},
		{``, zapcore.DebugLevel},
	} {
		if got := JSONLevel(c.line); got != c.want {
			t.Errorf("JSONLevel(%q) = %s, want %s", c.line, got, c.want)
		}
	}
}

func start(t *testing.T, script string, log *zap.Logger) *Proc {
	t.Helper()
	if log == nil {
		log = zap.NewNop()
	}
	p, err := Start(exec.Command("sh", "-c", script), Options{ID: "o-1", GateSocket: filepath.Join(t.TempDir(), "gate.sock"),
		StopTimeout: 100 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

// An owner that exits before its gate answers: WaitGate returns the exit, which carries the last
// stderr line; every line went to the log at its level.
func TestExitBeforeGateCarriesLastLine(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	p := start(t, `echo '{"level":"warn","msg":"w"}' >&2; echo 'last words' >&2; exit 3`, zap.New(core))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.WaitGate(ctx)
	if !errors.Is(err, enclave.ErrOwnerDied) || !strings.Contains(err.Error(), "o-1 exited") || !strings.Contains(err.Error(), "last output: last words") {
		t.Fatalf("WaitGate: %v", err)
	}
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("exited %v err %v", p.Exited(), p.Err())
	}
	if got := logs.FilterLevelExact(zapcore.WarnLevel).Len(); got != 1 {
		t.Errorf("%d warn lines, want 1", got)
	}
	if got := logs.FilterField(zap.String("line", "last words")).FilterLevelExact(zapcore.DebugLevel).Len(); got != 1 {
		t.Errorf("%d debug lines 'last words', want 1", got)
	}
}

func TestWaitGateEndsWithCtx(t *testing.T) {
	p := start(t, `exec sleep 30`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitGate(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitGate: %v", err)
	}
	if p.Exited() {
		t.Fatal("the owner exited on its own")
	}
}

// Stop reaches the whole process group, and kills what ignores SIGTERM: the shell and its child
// both ignore it and the child holds stderr open, so Done closes only if both are killed.
func TestStopKillsGroupAfterTimeout(t *testing.T) {
	p := start(t, `trap '' TERM; sleep 30 & wait`, nil)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the owner was reaped")
	}
	if err := p.Err(); !errors.Is(err, enclave.ErrOwnerDied) || !strings.Contains(err.Error(), "o-1 stopped") {
		t.Fatalf("err %v", err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartFailure(t *testing.T) {
	if _, err := Start(exec.Command("/nonexistent/owner"), Options{ID: "x", Log: zap.NewNop()}); err == nil {
		t.Fatal("a missing binary started")
	}
}

func TestHostEnvKeepsOnlyPathAndHome(t *testing.T) {
	t.Setenv("PATH", "/p")
	t.Setenv("HOME", "/h")
	t.Setenv("TEEMATE_SECRET", "x")
	if got := HostEnv(); len(got) != 2 || got[0] != "PATH=/p" || got[1] != "HOME=/h" {
		t.Fatalf("HostEnv() = %q", got)
	}
}

// With a record directory, a running owner is recorded (pid and start time) until it is reaped,
// so that a restarted invoker can kill one its predecessor left.
func TestRecordWhileRunning(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(exec.Command("sleep", "60"), Options{ID: "o-rec", GateSocket: filepath.Join(t.TempDir(), "gate.sock"),
		StopTimeout: 100 * time.Millisecond, Log: zap.NewNop(), RecordDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := reap.Records(dir)
	if err != nil || len(recs) != 1 || recs[0].Name != "o-rec" || recs[0].Pid != p.Pid() || !recs[0].Alive() {
		t.Fatalf("records while running: %+v %v", recs, err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs, err := reap.Records(dir); err != nil || len(recs) != 0 {
		t.Fatalf("records after the stop: %+v %v", recs, err)
	}
}
