package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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

// Client talks to one action proxy. It is safe for concurrent use, though a sandbox serves one
// activation and so sees one /init and one /run.
type Client struct {
	network, address string
	base             string
	http             *http.Client
	// MaxResponse bounds the reply body read; longer replies are reported as truncated.
	MaxResponse int64

	mu    sync.Mutex
	ready net.Conn // WaitReady's connection, handed to the first request
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
		c.network, c.address, c.base = "tcp", u.Host, strings.TrimRight(target, "/")
	case strings.HasPrefix(target, "unix://"):
		c.network, c.address, c.base = "unix", strings.TrimPrefix(target, "unix://"), "http://proxy"
	case strings.HasPrefix(target, "/"):
		c.network, c.address, c.base = "unix", target, "http://proxy"
	default:
		return nil, fmt.Errorf("action proxy address %q: want a unix socket path or http://host:port", target)
	}
	if c.address == "" {
		return nil, fmt.Errorf("action proxy address %q is empty", target)
	}
	tr := &http.Transport{
		DialContext: c.dial,
		// One sandbox, one connection: keep it for /init then /run.
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// dial gives the transport WaitReady's connection first, then new ones. A proxy serves its
// activation on one connection; a second one would cost the sandbox's proxy an accept, a buffer
// and a close on the activation's path for nothing.
func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c.mu.Lock()
	conn := c.ready
	c.ready = nil
	c.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, c.network, c.address)
}

// Close drops idle connections, and WaitReady's if no request took it.
func (c *Client) Close() {
	c.mu.Lock()
	if c.ready != nil {
		_ = c.ready.Close() // never used: nothing was sent on it
		c.ready = nil
	}
	c.mu.Unlock()
	c.http.CloseIdleConnections()
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
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.callErr(ctx, cctx, path, err)
	}
	defer resp.Body.Close()
	r := &Response{Status: resp.StatusCode, Outcome: wire.Outcome(resp.Header.Get(wire.HeaderOutcome))}
	if h := resp.Header.Get(wire.HeaderTimings); h != "" {
		// A malformed header only loses the breakdown; the reply itself still counts.
		r.HasTimings = json.Unmarshal([]byte(h), &r.Timings) == nil
	}
	r.Body, err = io.ReadAll(io.LimitReader(resp.Body, c.MaxResponse+1))
	if err != nil {
		return nil, c.callErr(ctx, cctx, path, err)
	}
	if int64(len(r.Body)) > c.MaxResponse {
		rest, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return nil, c.callErr(ctx, cctx, path, err)
		}
		r.Truncated, r.Length = true, int64(len(r.Body))+rest
		r.Body = r.Body[:c.MaxResponse]
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

func (c *Client) callErr(parent, ctx context.Context, path string, err error) error {
	if parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("POST %s: %w", path, ErrTimeout)
	}
	return fmt.Errorf("POST %s to %s: %w", path, c.address, err)
}
