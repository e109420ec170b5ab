package shim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/teemate/platform/invoker/internal/gate"
)

// strawman is an enclave runtime the shim started inside its own sandbox: the paper's "one enclave
// per container" comparison model. It lives exactly as long as the sandbox's one activation.
type strawman struct {
	cmd    *exec.Cmd
	exited chan struct{}
	out    *tail
}

// startStrawman starts argv and waits until the gate socket answers a ping, the runtime exits, or
// ctx ends.
func startStrawman(ctx context.Context, argv []string, gateSocket string) (*strawman, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv(os.Environ())
	out := &tail{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	// The runtime stays in the shim's process group, which is the sandbox's: a sandbox destroyed
	// with SIGKILL to its group (the process backend) must take the runtime with it, since the
	// shim gets no chance to stop it.
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	rt := &strawman{cmd: cmd, exited: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait() // the exit is reported through exited; its status is in the output tail
		close(rt.exited)
	}()
	delay := time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := gate.Ping(pctx, gateSocket)
		cancel()
		if err == nil {
			return rt, nil
		}
		select {
		case <-rt.exited:
			return nil, fmt.Errorf("%s exited before its gate answered: %s", argv[0], strings.TrimSpace(out.String()))
		case <-ctx.Done():
			rt.stop()
			return nil, fmt.Errorf("gate %s did not answer: %w (last: %w)", gateSocket, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// stop kills the runtime and waits for it.
func (r *strawman) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL) // already gone is fine
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
	}
}

// cleanEnv drops variables that slow Node down or leak host configuration.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") || strings.HasPrefix(kv, "NODE_OPTIONS=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// tail keeps the last max bytes written, for error messages.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
