package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
)

// Client is one attachment to an enclave owner: one connection, at most one TCS slot, one activation.
// It is not safe for concurrent use; a sandbox drives it from one goroutine.
type Client struct {
	conn net.Conn
	tcs  int
}

// Dial connects to the owner's gate socket.
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("dial gate %s: %w", socket, err)
	}
	return &Client{conn: conn, tcs: -1}, nil
}

// Close ends the attachment; the owner frees (or quarantines) the slot.
func (c *Client) Close() error { return c.conn.Close() }

// TCS is the slot held, or -1.
func (c *Client) TCS() int { return c.tcs }

// Hello attaches with the sandbox's credentials (the zero value for an owner that requires none) and
// returns the owner's description; a refused caller gets *Error with Class auth.
func (c *Client) Hello(ctx context.Context, sandbox string, cred Credentials) (*Welcome, error) {
	var w Welcome
	h := Hello{Type: "hello", Version: wire.GateVersion, Sandbox: sandbox, Credentials: cred}
	if err := c.call(ctx, h, wire.MaxOtherFrame, "welcome", &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// Acquire takes a free TCS slot; a full owner answers *Error with Class busy.
func (c *Client) Acquire(ctx context.Context) (int, error) {
	var a struct {
		TCS *int `json:"tcs"`
	}
	if err := c.call(ctx, map[string]string{"type": "acquire"}, wire.MaxOtherFrame, "acquired", &a); err != nil {
		return -1, err
	}
	if a.TCS == nil {
		return -1, fmt.Errorf("gate acquired reply without tcs")
	}
	c.tcs = *a.TCS
	return c.tcs, nil
}

// Init prepares the action; an action that fails to initialise answers *Error with Class init.
func (c *Client) Init(ctx context.Context, in Init) error {
	in.Type = "init"
	if in.Env == nil {
		in.Env = map[string]string{}
	}
	return c.call(ctx, in, wire.MaxInitFrame, "initialized", nil)
}

// Run runs the action in a new isolate and returns its result.
func (c *Client) Run(ctx context.Context, run Run) (*Result, error) {
	run.Type = "run"
	if run.Env == nil {
		run.Env = map[string]string{}
	}
	if len(run.Value) == 0 {
		run.Value = json.RawMessage("{}")
	}
	var r Result
	if err := c.call(ctx, run, wire.MaxOtherFrame, "result", &r); err != nil {
		return nil, err
	}
	if !r.Outcome.Enclave() {
		return nil, fmt.Errorf("gate result with unknown outcome %q", r.Outcome)
	}
	return &r, nil
}

// Release frees the slot.
func (c *Client) Release(ctx context.Context) error {
	if err := c.call(ctx, map[string]string{"type": "release"}, wire.MaxOtherFrame, "released", nil); err != nil {
		return err
	}
	c.tcs = -1
	return nil
}

// SendRelease sends release without waiting for its reply, so the caller can answer its own client
// first; AwaitReleased then reads the reply. The owner handles a connection's frames in order, so
// the slot is free as soon as the owner reads the frame.
func (c *Client) SendRelease(ctx context.Context) error {
	return c.exchange(ctx, func() error { return WriteFrame(c.conn, map[string]string{"type": "release"}, wire.MaxOtherFrame) })
}

// AwaitReleased reads the reply to SendRelease.
func (c *Client) AwaitReleased(ctx context.Context) error {
	if err := c.call(ctx, nil, 0, "released", nil); err != nil {
		return err
	}
	c.tcs = -1
	return nil
}

// exchange runs f on the connection under ctx's deadline and cancellation.
func (c *Client) exchange(ctx context.Context, f func() error) error {
	if dl, ok := ctx.Deadline(); ok {
		// SetDeadline fails only on a closed connection, which the exchange below reports itself.
		_ = c.conn.SetDeadline(dl)
	} else {
		_ = c.conn.SetDeadline(time.Time{}) // as above
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) }) // as above
	defer stop()
	if err := f(); err != nil {
		return c.ctxErr(ctx, err)
	}
	return nil
}

// Ping asks the owner for its health without attaching.
func Ping(ctx context.Context, socket string) (*Pong, error) {
	c, err := Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var p Pong
	if err := c.call(ctx, map[string]string{"type": "ping"}, wire.MaxOtherFrame, "pong", &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Evidence asks the owner for the evidence of its image key without attaching (allowed without a
// token, like Ping). The bytes are the evidence object exactly as the owner serialized it, which is
// what clients hash; an owner without an image key answers *Error with Class unavailable.
func Evidence(ctx context.Context, socket string) (json.RawMessage, error) {
	c, err := Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var r struct {
		Evidence json.RawMessage `json:"evidence"`
	}
	if err := c.call(ctx, map[string]string{"type": "evidence"}, wire.MaxOtherFrame, "evidence", &r); err != nil {
		return nil, err
	}
	if len(r.Evidence) == 0 || r.Evidence[0] != '{' {
		return nil, fmt.Errorf("gate evidence reply without an evidence object")
	}
	return r.Evidence, nil
}

// call sends one request (none when req is nil: the reply to an earlier send) and reads its
// reply, honouring ctx's deadline and cancellation.
func (c *Client) call(ctx context.Context, req any, limit int, want string, out any) error {
	var body []byte
	err := c.exchange(ctx, func() error {
		if req != nil {
			if err := WriteFrame(c.conn, req, limit); err != nil {
				return err
			}
		}
		var err error
		body, err = ReadFrame(c.conn, wire.MaxReplyFrame)
		return err
	})
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("gate reply is not a JSON object: %w", err)
	}
	if env.Type == "error" {
		var e Error
		if err := json.Unmarshal(body, &e); err != nil {
			return fmt.Errorf("gate error reply malformed: %w", err)
		}
		return &e
	}
	if env.Type != want {
		return fmt.Errorf("gate replied %q, expected %q", env.Type, want)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("gate %s reply malformed: %w", want, err)
		}
	}
	return nil
}

func (c *Client) ctxErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return err
}

// IsClass reports whether err is a gate *Error of the given class.
func IsClass(err error, class string) bool {
	var e *Error
	return errors.As(err, &e) && e.Class == class
}
