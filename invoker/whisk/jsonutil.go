package whisk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every error returned for input that does not
// decode into a valid OpenWhisk message or entity.
var ErrMalformed = errors.New("whisk: malformed message")

// ErrTooLarge is wrapped (together with ErrMalformed) when a message exceeds
// MaxMessageBytes.
var ErrTooLarge = errors.New("whisk: message too large")

const (
	// PayloadMaxBytes is OpenWhisk's whisk.activation.payload.max (1 MiB): the
	// largest parameter payload or result an activation may carry.
	PayloadMaxBytes = 1048576
	// SerdesOverheadBytes is whisk.activation.kafka.serdes-overhead: headroom
	// for the message envelope around the payload.
	SerdesOverheadBytes = 6068
	// MaxMessageBytes is the max.message.bytes of the invoker{N} and
	// completed{C} topics (payload max plus serdes overhead).
	MaxMessageBytes = PayloadMaxBytes + SerdesOverheadBytes
	// ParameterSizeMaxBytes is OpenWhisk's whisk.parameter-size-limit (1 MiB): the largest
	// parameters (or annotations) an entity may define, as Parameters.Size measures them.
	ParameterSizeMaxBytes = 1048576
	// MaxContentBytes bounds an activation's content (default parameters merged with the
	// request's payload) on this platform. Up to MaxMessageBytes it travels in the message;
	// beyond, by reference (ContentRef). The bound is the enclave gate's run frame (2 MiB, see
	// enclave-runtime/PROTOCOL.md) less room for the frame's other fields, so any content an
	// activation may carry reaches the action whatever the execution model.
	MaxContentBytes = 2<<20 - 64<<10
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func wrapMalformed(what string, err error) error {
	if errors.Is(err, ErrMalformed) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}

// marshalNoEscape encodes v like json.Marshal but without HTML escaping of
// <, > and &, matching spray-json's compactPrint.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// objWriter writes a JSON object field by field in a fixed order. Raw fields
// are copied byte for byte, which is how the transid echo stays exact.
type objWriter struct {
	buf bytes.Buffer
	n   int
	err error
}

func newObjWriter() *objWriter {
	w := &objWriter{}
	w.buf.WriteByte('{')
	return w
}

func (w *objWriter) key(k string) {
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	w.buf.WriteByte('"')
	w.buf.WriteString(k) // keys are fixed ASCII identifiers
	w.buf.WriteString(`":`)
}

// raw writes an already encoded JSON value.
func (w *objWriter) raw(k string, v []byte) {
	if w.err != nil {
		return
	}
	w.key(k)
	w.buf.Write(v)
}

// val encodes v and writes it under k.
func (w *objWriter) val(k string, v any) {
	if w.err != nil {
		return
	}
	b, err := marshalNoEscape(v)
	if err != nil {
		w.err = fmt.Errorf("encode %q: %w", k, err)
		return
	}
	w.raw(k, b)
}

func (w *objWriter) bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	w.buf.WriteByte('}')
	return w.buf.Bytes(), nil
}

// decodeObject splits a JSON object into its fields with exact (case
// sensitive) key matching, as spray-json does. Duplicate keys: last wins.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, malformed("expected a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, wrapMalformed("decode object", err)
	}
	return m, nil
}

// isNull reports whether a raw value is absent or JSON null.
func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

// rawValue returns a copy of v with surrounding space trimmed,
// or nil for null/absent.
func rawValue(v json.RawMessage) json.RawMessage {
	if isNull(v) {
		return nil
	}
	v = bytes.TrimSpace(v)
	out := make(json.RawMessage, len(v))
	copy(out, v)
	return out
}

func decodeField(m map[string]json.RawMessage, key string, dst any, required bool) error {
	v, ok := m[key]
	if !ok || isNull(v) {
		if required {
			return malformed("field %q is missing", key)
		}
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return wrapMalformed(fmt.Sprintf("field %q", key), err)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
