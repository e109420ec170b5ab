package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Running is an invoker that Start runs in this process.
type Running struct {
	cancel  context.CancelFunc
	exited  chan struct{}
	err     error // RunWithBackends' result, set before exited closes
	stopped atomic.Bool
	// drain, when positive, replaces Config.DrainTimeout for the shutdown StopWithin asks for;
	// Run reads it through its context (drainKey).
	drain atomic.Int64
}

// drainKey is the context key under which Start hands Run the Running's drain override.
type drainKey struct{}

// drainTimeout is how long shutdown waits for in-flight activations: def, unless the invoker was
// started by Start and stopped with StopWithin.
func drainTimeout(ctx context.Context, def time.Duration) time.Duration {
	if v, ok := ctx.Value(drainKey{}).(*atomic.Int64); ok {
		if d := time.Duration(v.Load()); d > 0 {
			return d
		}
	}
	return def
}

// Start runs an invoker in this process (RunWithBackends with cfg and b) and returns once it
// consumes and pings, or with the error that stopped it before. The controller-adapter's
// standalone mode runs its invoker this way. cfg.Ready, when set, is still called.
func Start(cfg Config, b Backends) (*Running, error) {
	r := &Running{exited: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), drainKey{}, &r.drain))
	r.cancel = cancel
	ready := make(chan struct{})
	var once sync.Once
	user := cfg.Ready
	cfg.Ready = func(i Info) {
		if user != nil {
			user(i)
		}
		once.Do(func() { close(ready) })
	}
	go func() {
		defer close(r.exited)
		r.err = RunWithBackends(ctx, cfg, b)
	}()
	select {
	case <-ready:
		return r, nil
	case <-r.exited:
		cancel()
		if r.err == nil {
			return nil, errors.New("stopped before it was ready")
		}
		return nil, r.err
	}
}

// Done is closed once the invoker has stopped, by Stop or by itself.
func (r *Running) Done() <-chan struct{} { return r.exited }

// Unexpected says, once Done is closed, why the invoker stopped without Stop; nil after Stop.
func (r *Running) Unexpected() error {
	if r.stopped.Load() {
		return nil
	}
	if r.err == nil {
		return errors.New("stopped unexpectedly")
	}
	return r.err
}

// StopWithin is Stop waiting at most d (instead of Config.DrainTimeout) for in-flight activations
// before abandoning them: a caller with its own shutdown deadline passes what is left of it.
func (r *Running) StopWithin(d time.Duration) error {
	// A deadline already past still stops gracefully, briefly: a zero would mean the default.
	r.drain.Store(int64(max(d, time.Millisecond)))
	return r.Stop()
}

// Stop ends the invoker and waits for it to drain; it returns the error the invoker stopped with.
// It is idempotent.
func (r *Running) Stop() error {
	r.stopped.Store(true)
	r.cancel()
	<-r.exited
	return r.err
}
