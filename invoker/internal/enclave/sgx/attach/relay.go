package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/wire"
)

// Conn is the enclave side of a relay: one joined Session, or a stand-in in tests.
type Conn interface {
	RoundTrip(req []byte) ([]byte, error)
	Close() error
}

// Serve relays the gate protocol (enclave-runtime/PROTOCOL.md) between the shim on shim and the
// enclave: every frame the shim sends becomes one entry on the joined TCS, and the enclave's reply is
// written back as one frame. The shim speaks exactly what it speaks to the gate socket in direct mode.
//
// join runs when the first frame arrives (so a shim that connects and leaves costs no TCS). When it
// fails, or an entry fails, the shim gets an `error` frame (class "busy" when no TCS was free,
// "internal" otherwise) and Serve returns the error; a frame the relay cannot accept (zero length,
// over the init limit) gets class "protocol". Serve returns nil when the shim closes the connection
// between frames. It always closes what join returned.
func Serve(shim io.ReadWriter, join func() (Conn, error)) (err error) {
	var c Conn
	defer func() {
		if c != nil {
			if cerr := c.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("attach: release: %w", cerr))
			}
		}
	}()
	for {
		req, rerr := gate.ReadFrame(shim, wire.MaxInitFrame)
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			return nil // the shim closed between frames: the conversation is over
		case errors.Is(rerr, gate.ErrFrameTooLarge):
			return refuse(shim, gate.ClassProtocol, rerr)
		default:
			return fmt.Errorf("attach: relay: %w", rerr)
		}
		if c == nil {
			if c, err = join(); err != nil {
				c = nil
				class := gate.ClassInternal
				if errors.Is(err, ErrTCSBusy) {
					class = gate.ClassBusy
				}
				return refuse(shim, class, err)
			}
		}
		resp, eerr := c.RoundTrip(req)
		if eerr != nil {
			return refuse(shim, gate.ClassInternal, eerr)
		}
		if len(resp) == 0 || len(resp) > wire.MaxReplyFrame {
			return refuse(shim, gate.ClassInternal, fmt.Errorf("attach: enclave reply of %d bytes (1..%d)", len(resp), wire.MaxReplyFrame))
		}
		if err := writeRaw(shim, resp); err != nil {
			return err
		}
	}
}

// refuse tells the shim why the relay stops and returns that reason.
func refuse(shim io.Writer, class string, reason error) error {
	if werr := gate.WriteFrame(shim, map[string]string{"type": "error", "class": class, "message": reason.Error()}, wire.MaxOtherFrame); werr != nil {
		return errors.Join(reason, werr)
	}
	return reason
}

// writeRaw writes an already encoded frame body.
func writeRaw(w io.Writer, body []byte) error {
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body))) // len(body) <= MaxReplyFrame, checked by Serve
	copy(buf[4:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("attach: relay: write frame: %w", err)
	}
	return nil
}
