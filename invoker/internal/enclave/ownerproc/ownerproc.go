package ownerproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/reap"
)

// Options describe the owner a Proc supervises.
type Options struct {
	// ID names the owner in errors (enclave.StartSpec.ID).
	ID string
	// GateSocket is the host path of the owner's gate socket, pinged by WaitGate.
	GateSocket string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	// Log receives the owner's stderr lines.
	Log *zap.Logger
	// Level picks the level a stderr line is logged at; JSONLevel when nil.
	Level func(line string) zapcore.Level
	// OnExit, when set, runs once after the process has been reaped and before Done closes: the
	// backend releases what it set up around the process (e.g. its confinement), so that nothing
	// is left once Stop returns or Done closes. An error it returns is logged.
	OnExit func() error
	// RecordDir, when set, keeps a record of the running owner (its pid and start time, named by
	// ID; package reap) from Start until it has been reaped, so that an invoker restarted after a
	// crash kills an owner its predecessor left (reap.Kill). It must be writable by the invoker
	// only.
	RecordDir string
	// Background starts the owner at background CPU priority (background.go) until Foreground.
	// Where the host has no cpu cgroup controller to do it with, the owner runs at normal priority
	// and the reason is logged.
	Background bool
}

// Proc is one running owner process. It provides the process part of enclave.Owner (ID, GateSocket,
// Done, Err, Stop); a backend embeds it and adds Mode and its own extras.
type Proc struct {
	id          string
	sock        string
	cmd         *exec.Cmd
	done        chan struct{}
	stopTimeout time.Duration

	mu       sync.Mutex
	err      error
	lastLine string
	stopping bool
	bg       *bgGroup // while at background priority
	bgLimit  *time.Timer
}

// Start starts cmd in a process group of its own (Stop signals the whole group), forwards its stderr
// through opts.Log and reaps it in the background. The caller sets everything else on cmd (path,
// arguments, environment, stdout, extra files) before; an error is returned as is, for the caller to
// give it context.
func Start(cmd *exec.Cmd, opts Options) (*Proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if opts.RecordDir != "" {
		if err := reap.Record(opts.RecordDir, opts.ID, cmd.Process.Pid); err != nil {
			// Unrecorded, a crash of the invoker would leak it: refuse the owner.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH: it is gone already
			_ = cmd.Wait()                                      // reaps it; its status says nothing now
			return nil, err
		}
	}
	level := opts.Level
	if level == nil {
		level = JSONLevel
	}
	p := &Proc{id: opts.ID, sock: opts.GateSocket, cmd: cmd, done: make(chan struct{}), stopTimeout: opts.StopTimeout}
	if opts.Background {
		h, err := cpuHierarchyOnce()
		if err == nil {
			p.bg, err = moveToBackground(h, cmd.Process.Pid)
		}
		if err != nil {
			// A slower start for the others is all it costs: the owner itself is sound.
			opts.Log.Warn("the enclave owner runs at normal CPU priority", zap.String("enclave", opts.ID), zap.Error(err))
		} else {
			limit := bgLimit
			timer := time.AfterFunc(limit, func() {
				if !p.Background() {
					return
				}
				if err := p.Foreground(); err != nil {
					opts.Log.Warn("moving a starved background enclave owner to normal CPU priority failed",
						zap.String("enclave", opts.ID), zap.Error(err))
					return
				}
				opts.Log.Info("the background enclave owner moved to normal CPU priority after the limit",
					zap.String("enclave", opts.ID), zap.Duration("limit", limit))
			})
			p.mu.Lock()
			p.bgLimit = timer
			p.mu.Unlock()
		}
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		p.logStderr(stderr, opts.Log, level)
	}()
	go func() {
		<-logged // Wait closes the pipe; read it to the end first
		err := cmd.Wait()
		if opts.RecordDir != "" {
			if ferr := reap.Forget(opts.RecordDir, opts.ID); ferr != nil {
				opts.Log.Warn("removing the enclave owner's process record failed", zap.Error(ferr))
			}
		}
		if opts.OnExit != nil {
			if rerr := opts.OnExit(); rerr != nil {
				opts.Log.Warn("releasing what surrounded the enclave owner failed", zap.Error(rerr))
			}
		}
		p.mu.Lock()
		if p.bgLimit != nil {
			p.bgLimit.Stop()
		}
		if p.bg != nil {
			if rerr := p.bg.remove(); rerr != nil {
				opts.Log.Warn("removing the enclave owner's background cpu group failed", zap.Error(rerr))
			}
			p.bg = nil
		}
		if p.stopping {
			p.err = fmt.Errorf("%w: %s stopped", enclave.ErrOwnerDied, p.id)
		} else {
			p.err = fmt.Errorf("%w: %s exited: %v (last output: %s)", enclave.ErrOwnerDied, p.id, err, p.lastLine)
		}
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Foreground moves an owner started with Options.Background to normal CPU priority, with every
// thread and process it has; it is idempotent, and a no-op for an owner that never was in the
// background or has exited.
func (p *Proc) Foreground() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bgLimit != nil {
		p.bgLimit.Stop()
	}
	if p.bg == nil {
		return nil
	}
	err := p.bg.foreground()
	p.bg = nil
	if err != nil {
		return fmt.Errorf("owner %s: %w", p.id, err)
	}
	return nil
}

// JoinBackground puts pid, a helper process of the owner's (its egress), into the owner's
// background group while the owner is in it, so that Foreground moves both; a no-op otherwise.
func (p *Proc) JoinBackground(pid int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bg == nil {
		return nil
	}
	if err := writeProcs(p.bg.dir, pid); err != nil {
		return fmt.Errorf("owner %s: join its background cpu group: %w", p.id, err)
	}
	return nil
}

// Background says whether the owner runs at background CPU priority.
func (p *Proc) Background() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bg != nil
}

// ID is the owner's id.
func (p *Proc) ID() string { return p.id }

// GateSocket is the host path of the owner's gate socket.
func (p *Proc) GateSocket() string { return p.sock }

// Pid is the owner process id (for operators and tests).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped; Err then says why.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is why the process exited (wrapping enclave.ErrOwnerDied), or nil while it runs.
func (p *Proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Exited reports whether Done is closed.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// HostEnv is the default environment of an owner process: only PATH and HOME of the invoker, so
// nothing else of the host's environment reaches the owner.
func HostEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// JSONLevel is the level of one of owner.js's JSON log lines: error and warn as they say, the rest
// debug.
func JSONLevel(line string) zapcore.Level {
	switch {
	case strings.Contains(line, `"level":"error"`):
		return zapcore.ErrorLevel
	case strings.Contains(line, `"level":"warn"`):
		return zapcore.WarnLevel
	default:
		return zapcore.DebugLevel
	}
}

// logStderr forwards the owner's stderr lines to zap, keeping the last one for Err.
func (p *Proc) logStderr(r io.Reader, log *zap.Logger, level func(string) zapcore.Level) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.lastLine = line
		p.mu.Unlock()
		log.Log(level(line), "enclave owner", zap.String("line", line))
	}
	if err := sc.Err(); err != nil {
		log.Warn("reading enclave owner stderr failed", zap.Error(err))
		_, _ = io.Copy(io.Discard, r) // keep the pipe drained so the owner never blocks
	}
}

// WaitGate pings the gate, backing off up to 50 ms between tries, until it answers, the process
// exits (its Err is returned) or ctx ends.
func (p *Proc) WaitGate(ctx context.Context) error {
	delay := time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := gate.Ping(pctx, p.sock)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.Err()
		case <-ctx.Done():
			return fmt.Errorf("gate did not answer a ping: %w (last: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// Stop sends SIGTERM to the owner's process group, then SIGKILL after the stop timeout (or when ctx
// ends), and waits for the exit. Err then reports the owner as stopped rather than died.
func (p *Proc) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if p.Exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop owner %s: %w", p.id, err)
	}
	t := time.NewTimer(p.stopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill owner %s: %w", p.id, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop owner %s: still running after SIGKILL", p.id)
	}
}
