package httpstop

import (
	"net"
	"net/http"
	"sync"
)

// CloseFresh makes srv close, when it shuts down, the connections that have not begun a request.
// It sets srv.ConnState (chaining any already set) and registers with srv.RegisterOnShutdown, so
// call it once, before Serve. A request about to start on such a connection fails as it would on
// a stopped server; one already being read is not in StateNew and is waited for as usual.
func CloseFresh(srv *http.Server) {
	f := &fresh{conns: map[net.Conn]struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.track(c, st)
		if prev != nil {
			prev(c, st)
		}
	}
	srv.RegisterOnShutdown(f.closeAll)
}

type fresh struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (f *fresh) track(c net.Conn, st http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

// closeAll closes the connections still without a request; the listener is closed by then.
func (f *fresh) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close() // an error means it is closed already, which is what was wanted
		delete(f.conns, c)
	}
}
