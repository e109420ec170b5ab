package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Running is an invoker that Start runs in this process.
type Running struct {
	cancel  context.CancelFunc
	exited  chan struct{}
	err     error // RunWithBackends' result, set before exited closes
	stopped atomic.Bool
}

// Start runs an invoker in this process (RunWithBackends with cfg and b) and returns once it
// consumes and pings, or with the error that stopped it before. The controller-adapter's
// standalone mode runs its invoker this way. cfg.Ready, when set, is still called.
func Start(cfg Config, b Backends) (*Running, error) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, exited: make(chan struct{})}
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

// Stop ends the invoker and waits for it to drain; it returns the error the invoker stopped with.
// It is idempotent.
func (r *Running) Stop() error {
	r.stopped.Store(true)
	r.cancel()
	<-r.exited
	return r.err
}
