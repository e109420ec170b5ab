package httpstop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// FreshGrace is how long Quiesce gives the connections that have not begun a request to begin
// one. A client that has just connected is usually writing its request.
const FreshGrace = 250 * time.Millisecond

// Fresh tracks a server's connections that have not begun a request.
type Fresh struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	none  chan struct{} // closed when conns empties, while Quiesce waits for it
}

// CloseFresh makes srv close, when it shuts down, the connections that have not begun a request.
// It sets srv.ConnState (chaining any already set) and registers with srv.RegisterOnShutdown, so
// call it once, before Serve. A request already being read is not in StateNew and is waited for
// as usual. The Fresh it returns lets the server's owner Quiesce before Shutdown.
func CloseFresh(srv *http.Server) *Fresh {
	f := &Fresh{conns: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.track(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
	srv.RegisterOnShutdown(f.closeAll)
	return f
}

func (f *Fresh) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.conns[c] = struct{}{}
		return
	}
	delete(f.conns, c)
	if len(f.conns) == 0 && f.none != nil {
		close(f.none)
		f.none = nil
	}
}

// Quiesce closes ln, so that no connection comes any more, then waits up to grace (or until ctx
// ends) for the connections accepted so far that have not begun a request to begin one. Call it
// before Shutdown: net/http closes a connection unanswered when it reads a request after
// Shutdown began, so a request a client was writing on a connection it had just opened would
// break, and the client cannot tell that from a failure after its request was taken. A request
// begun within the grace is served as usual. Serve(ln) returns an error wrapping net.ErrClosed
// once ln is closed; wait for that return before Shutdown, which otherwise may close ln again and
// report it. The error Quiesce returns is only ln's Close.
func (f *Fresh) Quiesce(ctx context.Context, ln net.Listener, grace time.Duration) error {
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close the listener: %w", err)
	}
	f.mu.Lock()
	if len(f.conns) == 0 {
		f.mu.Unlock()
		return nil
	}
	none := make(chan struct{})
	f.none = none
	f.mu.Unlock()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-none:
	case <-timer.C:
	case <-ctx.Done():
	}
	f.mu.Lock()
	f.none = nil
	f.mu.Unlock()
	return nil
}

// closeAll closes the connections still without a request; the listener is closed by then.
func (f *Fresh) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close() // an error means it is closed already, which is what was wanted
		delete(f.conns, c)
	}
}
