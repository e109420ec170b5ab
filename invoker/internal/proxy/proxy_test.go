package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestNewTargets(t *testing.T) {
	for _, ok := range []string{"/tmp/x.sock", "unix:///tmp/x.sock", "http://127.0.0.1:8080"} {
		if _, err := New(ok); err != nil {
			t.Errorf("New(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "x.sock", "https://h:1", "unix://", "http://"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestClientAgainstUnixServer(t *testing.T) {
	sock := filepath.Join(shortDir(t), "p.sock")
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Not listening yet: WaitReady gives up at the deadline.
	if err := c.WaitReady(context.Background(), time.Now().Add(30*time.Millisecond)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("WaitReady without server: %v", err)
	}

	var gotInit map[string]json.RawMessage
	mux := http.NewServeMux()
	mux.HandleFunc("POST /init", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &gotInit)
		w.Header().Set(wire.HeaderTimings, `{"attachMs":1.5,"tcsMs":0.25,"initMs":3}`)
		w.Write([]byte(`{"OK":true}`))
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]json.RawMessage
		_ = json.NewDecoder(r.Body).Decode(&body)
		switch string(body["value"]) {
		case `{"big":true}`:
			w.Write([]byte(`{"x":"` + strings.Repeat("a", 100) + `"}`))
		case `{"slow":true}`:
			time.Sleep(300 * time.Millisecond)
			w.Write([]byte(`{}`))
		default:
			w.Header().Set(wire.HeaderOutcome, string(wire.OutcomeSuccess))
			w.Write(body["value"])
		}
	})
	srv := &http.Server{Handler: mux}
	started := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond) // WaitReady must poll until the socket appears
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		close(started)
		srv.Serve(ln)
	}()
	defer srv.Close()
	if err := c.WaitReady(context.Background(), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	<-started

	r, err := c.Init(context.Background(), map[string]any{"code": "x", "main": "main"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.Timings.AttachMs != 1.5 || r.Timings.TCSMs != 0.25 || r.Timings.InitMs != 3 {
		t.Fatalf("init reply %+v", r)
	}
	if string(gotInit["value"]) != `{"code":"x","main":"main"}` {
		t.Fatalf("init body value %s", gotInit["value"])
	}
	r, err = c.Run(context.Background(), map[string]any{"value": map[string]string{"name": "Bob"}}, time.Second)
	if err != nil || string(r.Body) != `{"name":"Bob"}` || r.Outcome != wire.OutcomeSuccess {
		t.Fatalf("run %+v %v", r, err)
	}
	c.MaxResponse = 50
	r, err = c.Run(context.Background(), map[string]any{"value": map[string]bool{"big": true}}, time.Second)
	if err != nil || !r.Truncated || r.Length != 108 || len(r.Body) != 50 {
		t.Fatalf("big run: truncated %v length %d body %d err %v", r.Truncated, r.Length, len(r.Body), err)
	}
	_, err = c.Run(context.Background(), map[string]any{"value": map[string]bool{"slow": true}}, 50*time.Millisecond)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("slow run: %v", err)
	}
}

// An action proxy serves its activation on one connection: WaitReady's connection carries /init
// and /run, and one WaitReady left unused is closed by Close.
func TestWaitReadyConnectionCarriesTheRequests(t *testing.T) {
	sock := filepath.Join(shortDir(t), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	accepted, closed := make(chan net.Conn, 8), make(chan net.Conn, 8)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				accepted <- c
			case http.StateClosed:
				closed <- c
			}
		},
	}
	go srv.Serve(ln)
	defer srv.Close()

	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(context.Background(), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Init(context.Background(), map[string]any{"code": "x"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(context.Background(), map[string]any{"value": map[string]any{}}, time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := len(accepted); n != 1 {
		t.Fatalf("the proxy accepted %d connections for WaitReady, /init and /run, want 1", n)
	}

	// Unused: Close hangs it up, so the proxy is not left holding it.
	c2, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.WaitReady(context.Background(), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	<-accepted // the first client's
	var second net.Conn
	select {
	case second = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the second WaitReady's connection never reached the proxy")
	}
	c2.Close()
	for {
		select {
		case gone := <-closed:
			if gone == second {
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close left WaitReady's unused connection open")
		}
	}
}

// pipeSandbox writes lines to two pipes like a sandbox's stdout and stderr.
type pipeSandbox struct {
	outR, errR *io.PipeReader
	outW, errW *io.PipeWriter
}

func newPipes() *pipeSandbox {
	p := &pipeSandbox{}
	p.outR, p.outW = io.Pipe()
	p.errR, p.errW = io.Pipe()
	return p
}

func (p *pipeSandbox) close() { p.outW.Close(); p.errW.Close() }

func fixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 60000, time.UTC) }

func testCfg(limit int64) LogConfig {
	// Idle is generous: a closed stream ends collection at once, and a short idle limit would fire
	// before a writer goroutine runs on a loaded machine. The idle test sets its own.
	return LogConfig{LimitBytes: limit, Idle: 5 * time.Second, Total: 10 * time.Second,
		DrainAfterError: 30 * time.Millisecond, Now: fixedNow}
}

func TestFormatLine(t *testing.T) {
	got := FormatLine(fixedNow(), "stdout", "hello")
	want := "2026-01-02T03:04:05.000060000Z stdout: hello"
	if got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := FormatLine(time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), "stderr", ""); got != "2026-01-02T02:04:05.000000000Z stderr: " {
		t.Fatalf("%q", got)
	}
}

func TestCollectorSentinelsBothStreams(t *testing.T) {
	p := newPipes()
	c := Collect(p.outR, p.errR, testCfg(1000))
	go func() {
		io.WriteString(p.outW, "one\n")
		io.WriteString(p.errW, "two\r\n")
		io.WriteString(p.outW, wire.LogSentinel+"\n")
		io.WriteString(p.errW, wire.LogSentinel+"\n")
		// Output after the sentinels belongs to no activation and must not block the writer.
		io.WriteString(p.outW, "later\n")
		p.close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	if logs.Sentinels != 2 || logs.Incomplete || logs.Truncated {
		t.Fatalf("%+v", logs)
	}
	want := map[string]bool{
		"2026-01-02T03:04:05.000060000Z stdout: one": true,
		"2026-01-02T03:04:05.000060000Z stderr: two": true,
	}
	if len(logs.Lines) != 2 || !want[logs.Lines[0]] || !want[logs.Lines[1]] {
		t.Fatalf("lines %q", logs.Lines)
	}
}

// The streams are read apart, so a stream's lines after its sentinel can be queued before the
// other stream's sentinel; they still belong to no activation.
func TestCollectorIgnoresAStreamAfterItsSentinel(t *testing.T) {
	out := strings.NewReader("one\n" + wire.LogSentinel + "\nlater\n")
	errR, errW := io.Pipe()
	c := Collect(out, errR, testCfg(1000))
	for queued := false; !queued; time.Sleep(time.Millisecond) { // stdout read to its end first
		c.mu.Lock()
		queued = len(c.queue) == 4
		c.mu.Unlock()
	}
	go func() {
		io.WriteString(errW, "two\n"+wire.LogSentinel+"\n")
		errW.Close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	want := []string{"2026-01-02T03:04:05.000060000Z stdout: one", "2026-01-02T03:04:05.000060000Z stderr: two"}
	if logs.Sentinels != 2 || !slices.Equal(logs.Lines, want) {
		t.Fatalf("%+v", logs)
	}
}

func TestCollectorLimitAndTruncation(t *testing.T) {
	p := newPipes()
	c := Collect(p.outR, p.errR, testCfg(10))
	go func() {
		io.WriteString(p.outW, "abcd\n")  // 5 bytes counted
		io.WriteString(p.outW, "efgh\n")  // 10
		io.WriteString(p.outW, "ijklm\n") // over: dropped
		io.WriteString(p.outW, wire.LogSentinel+"\n")
		io.WriteString(p.errW, wire.LogSentinel+"\n")
		p.close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	if !logs.Truncated || len(logs.Lines) != 3 {
		t.Fatalf("%+v", logs)
	}
	if !strings.HasSuffix(logs.Lines[2], "stderr: Logs were truncated because the total bytes size exceeds the limit of 10 bytes.") {
		t.Fatalf("truncation line %q", logs.Lines[2])
	}
}

func TestCollectorMissingSentinelIdle(t *testing.T) {
	p := newPipes()
	defer p.close()
	cfg := testCfg(1000)
	cfg.Idle = time.Second
	c := Collect(p.outR, p.errR, cfg)
	go func() {
		io.WriteString(p.outW, "only stdout\n")
		io.WriteString(p.outW, wire.LogSentinel+"\n")
	}()
	start := time.Now()
	logs := c.Wait(context.Background(), false, nil)
	if logs.Sentinels != 1 || !logs.Incomplete || len(logs.Lines) != 1 {
		t.Fatalf("%+v", logs)
	}
	if time.Since(start) < cfg.Idle {
		t.Fatal("returned before the idle limit without both sentinels")
	}
}

func TestCollectorTotalLimit(t *testing.T) {
	p := newPipes()
	defer p.close()
	cfg := testCfg(1 << 20)
	cfg.Total = 150 * time.Millisecond
	c := Collect(p.outR, p.errR, cfg)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a chatty sandbox that never ends: only the total limit stops collection
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				if _, err := io.WriteString(p.outW, "tick\n"); err != nil {
					return
				}
			}
		}
	}()
	logs := c.Wait(context.Background(), false, nil)
	if !logs.Incomplete || len(logs.Lines) == 0 {
		t.Fatalf("%+v", logs)
	}
}

func TestCollectorDeveloperErrorAndExit(t *testing.T) {
	p := newPipes()
	c := Collect(p.outR, p.errR, testCfg(1000))
	exited := make(chan struct{})
	go func() {
		io.WriteString(p.errW, "crash\n")
		p.close()
		close(exited)
	}()
	logs := c.Wait(context.Background(), true, exited)
	if len(logs.Lines) != 2 || !strings.HasSuffix(logs.Lines[0], "stderr: crash") ||
		!strings.HasSuffix(logs.Lines[1], "stderr: "+whisk.MsgLogWarningDeveloperError) {
		t.Fatalf("%q", logs.Lines)
	}
}

func TestCollectorDisabledAndLongLine(t *testing.T) {
	p := newPipes()
	c := Collect(p.outR, p.errR, testCfg(0))
	go func() {
		io.WriteString(p.outW, strings.Repeat("x", 3*maxLine)+"\n") // must be drained, not block
		p.close()
	}()
	if logs := c.Wait(context.Background(), false, nil); len(logs.Lines) != 0 {
		t.Fatalf("collection with limit 0 returned %d lines", len(logs.Lines))
	}

	p2 := newPipes()
	c = Collect(p2.outR, p2.errR, testCfg(4*maxLine))
	go func() {
		io.WriteString(p2.outW, strings.Repeat("y", 2*maxLine)+"\nshort\n")
		p2.close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	if len(logs.Lines) != 2 || len(logs.Lines[0]) > maxLine+100 || !strings.HasSuffix(logs.Lines[1], "stdout: short") {
		t.Fatalf("%d lines, first %d bytes", len(logs.Lines), len(logs.Lines[0]))
	}
}

// rawProxy serves each accepted connection: for each request it reads, it writes the reply next
// gives, as given, and hangs up after a reply without a length (its end is the connection's) or
// when next has none. It counts the connections.
func rawProxy(tb testing.TB, next func(done <-chan struct{}) (string, bool)) (sock string, conns func() int) {
	tb.Helper()
	sock = filepath.Join(tb.TempDir(), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { ln.Close(); close(done) })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body) // the test's requests are small and whole
					reply, ok := next(done)
					if !ok {
						return
					}
					if _, err := io.WriteString(c, reply); err != nil {
						return
					}
					if strings.Contains(reply, "Connection: close") || !strings.Contains(reply, "Content-Length") && !strings.Contains(reply, "chunked") {
						return
					}
				}
			}()
		}
	}()
	return sock, func() int { return int(n.Load()) }
}

// inOrder gives the replies one by one, then waits for the test's end.
func inOrder(replies ...string) func(done <-chan struct{}) (string, bool) {
	q := make(chan string, len(replies))
	for _, r := range replies {
		q <- r
	}
	return func(done <-chan struct{}) (string, bool) {
		select {
		case r := <-q:
			return r, true
		case <-done:
			return "", false
		}
	}
}

// The client reads every framing of an HTTP/1.1 reply, and reuses the connection only when the
// reply's end was not the connection's.
func TestClientReplyFraming(t *testing.T) {
	sock, conns := rawProxy(t, inOrder(
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"b\":2}",
		"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"c\":3}",
		"HTTP/1.1 200 OK\r\n\r\n{\"d\":4}", // delimited by the close
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
	))
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range []struct {
		status int
		body   string
		conns  int
	}{{200, `{"a":1}`, 1}, {200, `{"b":2}`, 1}, {502, `{"c":3}`, 1}, {200, `{"d":4}`, 2}, {200, `{}`, 3}} {
		r, err := c.Run(context.Background(), map[string]any{"value": i}, 5*time.Second)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if r.Status != want.status || string(r.Body) != want.body {
			t.Fatalf("call %d: status %d body %q, want %d %q", i, r.Status, r.Body, want.status, want.body)
		}
		if got := conns(); got != want.conns {
			t.Fatalf("call %d went over connection %d, want %d", i, got, want.conns)
		}
	}
}

// A proxy that sends endless headers gets an error once they pass the bound, not the
// invoker's memory.
func TestClientBoundsReplyHeaders(t *testing.T) {
	sock := filepath.Join(shortDir(t), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		line := []byte("X-Pad: " + strings.Repeat("p", 1000) + "\r\n")
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		for { // until the client hangs up
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	}()
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Init(context.Background(), map[string]any{"code": "x"}, 10*time.Second)
	if !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("endless headers: %v, want %v", err, errHeaderTooLarge)
	}
}

// A call the caller ends reports the caller's cause, not a timeout of the action.
func TestClientCallerCancel(t *testing.T) {
	sock, _ := rawProxy(t, inOrder()) // accepts, never answers
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cause := errors.New("the owner died")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, err = c.Run(ctx, map[string]any{}, 10*time.Second)
	if !errors.Is(err, cause) || errors.Is(err, ErrTimeout) {
		t.Fatalf("cancelled call: %v, want the cause %v", err, cause)
	}
}

// A client closed while a call is in flight closes that call's connection when it ends, instead
// of keeping it for a next call that will not come.
func TestClientClosedDuringACall(t *testing.T) {
	release := make(chan struct{})
	sock, _ := rawProxy(t, func(done <-chan struct{}) (string, bool) {
		select {
		case <-release:
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", true
		case <-done:
			return "", false
		}
	})
	c, err := New(sock)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), map[string]any{}, 10*time.Second)
		ended <- err
	}()
	time.Sleep(50 * time.Millisecond) // the call is waiting for its reply
	c.Close()
	close(release)
	if err := <-ended; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	c.mu.Lock()
	kept := c.idle
	c.mu.Unlock()
	if kept != nil {
		t.Fatal("a closed client kept the connection of the call that ended after Close")
	}
}
