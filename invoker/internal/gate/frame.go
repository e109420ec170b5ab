package gate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrFrameTooLarge is returned for a frame above the limit, in either direction.
var ErrFrameTooLarge = errors.New("gate frame too large")

// WriteFrame writes one JSON-encoded message as a length-prefixed frame.
func WriteFrame(w io.Writer, msg any, limit int) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode gate message: %w", err)
	}
	if len(body) == 0 || len(body) > limit {
		return fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrFrameTooLarge, len(body), limit)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("write gate frame: %w", err)
	}
	return nil
}

// ReadFrame reads one frame and returns its JSON body.
func ReadFrame(r io.Reader, limit int) (json.RawMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read gate frame header: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || int64(n) > int64(limit) {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrFrameTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("read gate frame body: %w", err)
	}
	return body, nil
}
