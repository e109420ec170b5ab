package httpstop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// serve starts srv on a free loopback port and returns its address; the server is shut down at
// the end of the test whatever happens.
func serve(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close() // already shut down by the test in the usual case
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// shutdownWithIdleDial dials srv without sending a request, then shuts it down with a 2 s
// deadline and reports how long Shutdown took and its error.
func shutdownWithIdleDial(t *testing.T, srv *http.Server) (time.Duration, error) {
	t.Helper()
	addr := serve(t, srv)
	// One real request first, so the server is known to be serving.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = idle.Close() }()
	// Let the server accept it (StateNew) before shutting down.
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	return time.Since(start), err
}

func handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
}

func TestCloseFresh_ShutdownDoesNotWaitForAConnectionWithoutARequest(t *testing.T) {
	var mu sync.Mutex
	var states []http.ConnState
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			states = append(states, st)
		}}
	CloseFresh(srv)
	took, err := shutdownWithIdleDial(t, srv)
	if err != nil {
		t.Fatalf("Shutdown: %v after %v", err, took)
	}
	if took > time.Second {
		t.Errorf("Shutdown took %v with a connection that never sent a request", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) == 0 || states[0] != http.StateNew {
		t.Errorf("the ConnState set before was not chained: %v", states)
	}
}

// The same server without CloseFresh: Shutdown waits for the fresh connection past its deadline.
// This is what the package is for; if the standard library stops doing it, this test says so.
func TestWithoutCloseFresh_ShutdownWaitsForAFreshConnection(t *testing.T) {
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second}
	took, err := shutdownWithIdleDial(t, srv)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v after %v; expected it to wait out the 2 s deadline", err, took)
	}
}

// A client that connected just before the server stopped and sends its request within the grace
// gets its answer, not a broken connection; a new client is refused.
func TestQuiesce_ARequestJustBegunIsServed(t *testing.T) {
	fresh := make(chan struct{}, 1)
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				select {
				case fresh <- struct{}{}:
				default:
				}
			}
		}}
	f := CloseFresh(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	<-fresh // accepted, no request yet
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := f.Quiesce(ctx, ln, FreshGrace); err != nil {
			stopped <- err
			return
		}
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			stopped <- fmt.Errorf("Serve after Quiesce: %w", err)
			return
		}
		stopped <- srv.Shutdown(ctx)
	}()
	time.Sleep(FreshGrace / 5)
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		_ = c.Close()
		t.Error("a new connection was accepted after Quiesce")
	}
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a request begun within the grace: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("answer %d %q", resp.StatusCode, body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Quiesce and Shutdown: %v", err)
	}
}

// A connection that sends nothing holds Quiesce for the grace only.
func TestQuiesce_NothingSentWaitsOnlyTheGrace(t *testing.T) {
	fresh := make(chan struct{}, 1)
	srv := &http.Server{Handler: handler(), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				fresh <- struct{}{}
			}
		}}
	f := CloseFresh(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // returns net.ErrClosed once Quiesce closed ln
	t.Cleanup(func() { _ = srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	<-fresh
	start := time.Now()
	if err := f.Quiesce(context.Background(), ln, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("Quiesce took %v with a silent fresh connection and a 200 ms grace", took)
	}
}
