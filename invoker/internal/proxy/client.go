package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
)

// DefaultMaxResponse is how much of a reply is read before it counts as truncated: OpenWhisk's
// activation payload limit (whisk.activation.payload.max, 1 MiB).
const DefaultMaxResponse = 1 << 20

var (
	// ErrTimeout: the proxy did not answer within the call's time limit.
	ErrTimeout = errors.New("action proxy did not answer within the time limit")
	// ErrNotReady: the proxy never accepted a connection before the deadline.
	ErrNotReady = errors.New("action proxy not ready")
)

// Client talks to one action proxy over one kept connection. Its calls are made one at a time
// (a sandbox serves one activation: one /init, then one /run); concurrent calls are safe but
// serialized.
//
// It speaks HTTP/1.1 itself rather than through net/http's Transport: the Transport hands each
// request and reply between the caller's goroutine and its own per-connection read and write
// goroutines, and each hand-off is a wake-up on the activation's path, twice per activation. Here
// the caller writes the request and reads the reply on its own goroutine.
type Client struct {
	network, address string
	host             string // the Host header
	// MaxResponse bounds the reply body read; longer replies are reported as truncated.
	MaxResponse int64

	call sync.Mutex // one call at a time on the connection

	mu     sync.Mutex
	ready  net.Conn  // WaitReady's connection, handed to the first request
	idle   *keptConn // the connection a finished call left reusable
	closed bool      // Close was called: a call that ends later closes its connection
}

// maxReplyHeader bounds a reply's status line and headers (net/http's Transport allows 10 MB by
// default; the proxies here send a few hundred bytes).
const maxReplyHeader = 1 << 20

var errHeaderTooLarge = fmt.Errorf("reply headers longer than %d bytes", maxReplyHeader)

// keptConn is a connection with the reader that buffers its replies.
type keptConn struct {
	net.Conn
	hdr *headerBudget
	br  *bufio.Reader
}

// headerBudget lets through at most left bytes while a reply's headers are read; after them it
// is lifted (left < 0), the body having its own bound.
type headerBudget struct {
	r    io.Reader
	left int64
}

func (h *headerBudget) Read(p []byte) (int, error) {
	if h.left < 0 {
		return h.r.Read(p)
	}
	if h.left == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// New makes a client for target: a unix socket path ("/run/p.sock" or "unix:///run/p.sock") or an
// HTTP base URL ("http://10.0.0.5:8080").
func New(target string) (*Client, error) {
	c := &Client{MaxResponse: DefaultMaxResponse}
	switch {
	case strings.HasPrefix(target, "http://"):
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("action proxy address %q is not a valid URL: %w", target, err)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("action proxy address %q: a base URL has no path", target)
		}
		c.network, c.address, c.host = "tcp", u.Host, u.Host
	case strings.HasPrefix(target, "unix://"):
		c.network, c.address, c.host = "unix", strings.TrimPrefix(target, "unix://"), "proxy"
	case strings.HasPrefix(target, "/"):
		c.network, c.address, c.host = "unix", target, "proxy"
	default:
		return nil, fmt.Errorf("action proxy address %q: want a unix socket path or http://host:port", target)
	}
	if c.address == "" {
		return nil, fmt.Errorf("action proxy address %q is empty", target)
	}
	return c, nil
}

// conn gives the kept connection, else WaitReady's, else a new one. A proxy serves its activation
// on one connection; a second one would cost the sandbox's proxy an accept, a buffer and a close
// on the activation's path for nothing.
func (c *Client) conn(ctx context.Context) (*keptConn, error) {
	c.mu.Lock()
	kc, raw := c.idle, c.ready
	c.idle = nil
	if kc == nil {
		c.ready = nil
	}
	c.mu.Unlock()
	if kc != nil {
		return kc, nil
	}
	if raw == nil {
		var d net.Dialer
		var err error
		if raw, err = d.DialContext(ctx, c.network, c.address); err != nil {
			return nil, err
		}
	}
	hdr := &headerBudget{r: raw, left: -1}
	return &keptConn{Conn: raw, hdr: hdr, br: bufio.NewReaderSize(hdr, 4096)}, nil
}

// keep makes kc the connection of the next call, or closes it if the client was closed meanwhile.
func (c *Client) keep(kc *keptConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.idle != nil {
		_ = kc.Close() // no next call on a closed client (and calls are serialized): never leak one
		return
	}
	c.idle = kc
}

// Close closes the connections no call is using: WaitReady's if no request took it, and the kept
// one; a call in flight closes its own when it ends.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.ready != nil {
		_ = c.ready.Close() // never used: nothing was sent on it
		c.ready = nil
	}
	if c.idle != nil {
		_ = c.idle.Close() // between calls: nothing in flight on it
		c.idle = nil
	}
}

// WaitReady polls until the proxy accepts a connection, with a backoff from 200 µs growing to 4 ms,
// until ctx ends or deadline passes. The connection it made carries the next request.
func (c *Client) WaitReady(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	delay := 200 * time.Microsecond
	var last error
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, c.network, c.address)
		if err == nil {
			c.mu.Lock()
			if c.ready != nil {
				_ = c.ready.Close() // an earlier WaitReady's, never used
			}
			c.ready = conn
			c.mu.Unlock()
			return nil
		}
		last = err
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w at %s: %w (last: %v)", ErrNotReady, c.address, ctx.Err(), last)
		case <-t.C:
		}
		if delay < 4*time.Millisecond {
			delay *= 2
		}
	}
}

// Response is one reply of the proxy.
type Response struct {
	Status int
	Body   []byte
	// Truncated says the body was longer than MaxResponse; Length is then its full length.
	Truncated bool
	Length    int64
	// Outcome and Timings come from the teemate shim's headers (empty from other proxies);
	// HasTimings says the Timings header was there.
	Outcome    wire.Outcome
	Timings    wire.Timings
	HasTimings bool
	Elapsed    time.Duration
}

// Init posts {"value": value} to /init; timeout is the action's time limit.
func (c *Client) Init(ctx context.Context, value any, timeout time.Duration) (*Response, error) {
	return c.post(ctx, "/init", map[string]any{"value": value}, timeout)
}

// Run posts body to /run; timeout is the action's time limit (plus whatever grace the caller wants
// so that the enclave's own timeout reply wins the race).
func (c *Client) Run(ctx context.Context, body any, timeout time.Duration) (*Response, error) {
	return c.post(ctx, "/run", body, timeout)
}

func (c *Client) post(ctx context.Context, path string, body any, timeout time.Duration) (*Response, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s body: %w", path, err)
	}
	c.call.Lock()
	defer c.call.Unlock()
	return c.postLocked(ctx, path, payload, timeout)
}

// postLocked makes one call with c.call held.
func (c *Client) postLocked(ctx context.Context, path string, payload []byte, timeout time.Duration) (*Response, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	kc, err := c.conn(cctx)
	if err != nil {
		return nil, c.callErr(ctx, cctx, path, err)
	}
	r, reusable, err := within(cctx, kc, func() (*Response, bool, error) {
		if _, err := kc.Write(appendRequest(nil, c.host, path, payload)); err != nil {
			return nil, false, err
		}
		return c.readReply(kc)
	})
	c.release(kc, reusable && err == nil)
	if err != nil {
		return nil, c.callErr(ctx, cctx, path, err)
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// InitRun posts /init and, behind it in the same write, /run (HTTP/1.1 pipelining): the proxy
// finds /run waiting the moment it has answered /init, instead of after a round trip through
// the invoker. Only for a proxy that reads a request after answering the one before and runs
// /run only after a successful /init: the teemate shim, which refuses /run in any other state
// and abandons an /init whose caller hung up.
//
// The /init reply is read first and given to proceed, as Init would return it. When proceed
// returns false, the connection is closed without reading the /run reply and InitRun returns
// (nil, nil); the caller must then treat the run as possibly begun unless the /init reply said
// otherwise (see Reply.RunQueued). Otherwise it returns what Run would. The timeouts are Init's
// and Run's; /run's counts from the /init reply.
func (c *Client) InitRun(ctx context.Context, initValue any, initTimeout time.Duration,
	runBody any, runTimeout time.Duration, proceed func(*Response, error) bool) (*Response, error) {
	initPayload, err := json.Marshal(map[string]any{"value": initValue})
	if err != nil {
		proceed(nil, fmt.Errorf("encode /init body: %w", err))
		return nil, nil
	}
	runPayload, err := json.Marshal(runBody)
	if err != nil {
		proceed(nil, fmt.Errorf("encode /run body: %w", err))
		return nil, nil
	}
	c.call.Lock()
	defer c.call.Unlock()

	ictx, icancel := context.WithTimeout(ctx, initTimeout)
	defer icancel()
	start := time.Now()
	kc, err := c.conn(ictx)
	if err != nil {
		proceed(nil, c.callErr(ctx, ictx, "/init", err))
		return nil, nil
	}
	r, reusable, err := within(ictx, kc, func() (*Response, bool, error) {
		both := appendRequest(make([]byte, 0, 2*requestHead+len(initPayload)+len(runPayload)), c.host, "/init", initPayload)
		if _, err := kc.Write(appendRequest(both, c.host, "/run", runPayload)); err != nil {
			return nil, false, err
		}
		return c.readReply(kc)
	})
	if err != nil {
		c.release(kc, false)
		proceed(nil, c.callErr(ctx, ictx, "/init", err))
		return nil, nil
	}
	r.Elapsed = time.Since(start)
	if !proceed(r, nil) {
		c.release(kc, false)
		return nil, nil
	}
	if !reusable {
		// The proxy ended the connection with its /init reply and never read the /run behind
		// it: send it again on a new one.
		c.release(kc, false)
		return c.postLocked(ctx, "/run", runPayload, runTimeout)
	}
	rctx, rcancel := context.WithTimeout(ctx, runTimeout)
	defer rcancel()
	start = time.Now()
	r, reusable, err = within(rctx, kc, func() (*Response, bool, error) { return c.readReply(kc) })
	c.release(kc, reusable && err == nil)
	if err != nil {
		return nil, c.callErr(ctx, rctx, "/run", err)
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// within runs one exchange on kc, interrupted by the end of ctx (its time limit, the caller's
// cancel) through kc's deadline. A reply read in full as ctx ended still counts, and leaves kc
// usable once the deadline the interruption set is cleared.
func within(ctx context.Context, kc *keptConn, exchange func() (*Response, bool, error)) (*Response, bool, error) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = kc.SetDeadline(time.Unix(1, 0)) // fails only on a closed connection, whose read fails anyway
		close(fired)
	})
	r, reusable, err := exchange()
	if !stop() {
		<-fired
		reusable = reusable && err == nil && kc.SetDeadline(time.Time{}) == nil
	}
	return r, reusable, err
}

// release keeps kc for the next call, or closes it.
func (c *Client) release(kc *keptConn, reusable bool) {
	if reusable {
		c.keep(kc)
		return
	}
	_ = kc.Close() // broken, closed by the proxy, or cut short: nothing more is read from it
}

// requestHead is about the size of appendRequest's head.
const requestHead = 160

// appendRequest appends a POST of payload to path, head and body together: written in one
// write, the proxy wakes once for the whole request.
func appendRequest(dst []byte, host, path string, payload []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, requestHead+len(payload))
	}
	dst = append(dst, "POST "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(payload)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, payload...)
}

// readReply reads one reply on kc. reusable says the reply was read to its end and the proxy did
// not ask to close, so the connection can carry the next call.
func (c *Client) readReply(kc *keptConn) (r *Response, reusable bool, err error) {
	kc.hdr.left = maxReplyHeader
	resp, err := http.ReadResponse(kc.br, nil)
	kc.hdr.left = -1
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	r = &Response{Status: resp.StatusCode, Outcome: wire.Outcome(resp.Header.Get(wire.HeaderOutcome))}
	if h := resp.Header.Get(wire.HeaderTimings); h != "" {
		// A malformed header only loses the breakdown; the reply itself still counts.
		r.HasTimings = json.Unmarshal([]byte(h), &r.Timings) == nil
	}
	r.Body, err = io.ReadAll(io.LimitReader(resp.Body, c.MaxResponse+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(r.Body)) > c.MaxResponse {
		rest, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return nil, false, err
		}
		r.Truncated, r.Length = true, int64(len(r.Body))+rest
		r.Body = r.Body[:c.MaxResponse]
	}
	// A reply whose length only its close tells (no Content-Length, not chunked) ends the connection.
	delimited := resp.ContentLength >= 0 || len(resp.TransferEncoding) > 0
	return r, delimited && !resp.Close, nil
}

func (c *Client) callErr(parent, ctx context.Context, path string, err error) error {
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("POST %s: %w", path, ErrTimeout)
	}
	if ctx.Err() != nil {
		// The caller ended the call: its cause says why, the connection's error only that
		// the call was interrupted.
		return fmt.Errorf("POST %s to %s: %w", path, c.address, context.Cause(ctx))
	}
	return fmt.Errorf("POST %s to %s: %w", path, c.address, err)
}
