package whisk

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"time"
)

// SystemTransactionPrefix starts every transaction id OpenWhisk makes for its
// own work rather than for a user request.
const SystemTransactionPrefix = "sid_"

// TransIDInvokerHealth is the transaction id of the controller's invoker
// health test activations. The controller matches their acks by comparing
// the whole transid (id and start millis), so it must be echoed unchanged.
const TransIDInvokerHealth = "sid_invokerHealth"

// TransactionID is OpenWhisk's transid: a JSON array
// [id, startMillis, extraLogging?, parent?].
//
// The bytes it was decoded from are kept and written back unchanged, because
// the controller compares returned transids with its own.
type TransactionID struct {
	ID           string
	Start        time.Time
	ExtraLogging bool
	raw          json.RawMessage
}

// NewTransactionID builds a transid with no raw form; it marshals as
// ["id",startMillis].
func NewTransactionID(id string, start time.Time) TransactionID {
	return TransactionID{ID: id, Start: time.UnixMilli(start.UnixMilli())}
}

const transIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewRandomTransactionID makes a user transid the way the controller does
// when no X-Request-ID header is present: 32 random [A-Za-z0-9].
func NewRandomTransactionID(start time.Time) TransactionID {
	b := make([]byte, 32)
	max := big.NewInt(int64(len(transIDAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			// crypto/rand does not fail on supported platforms; a failure
			// here means the process cannot make secure ids at all.
			panic("whisk: crypto/rand failed: " + err.Error())
		}
		b[i] = transIDAlphabet[n.Int64()]
	}
	return NewTransactionID(string(b), start)
}

// StartMillis is the start as epoch milliseconds.
func (t TransactionID) StartMillis() int64 {
	if t.Start.IsZero() {
		return 0
	}
	return t.Start.UnixMilli()
}

// IsSystem reports whether this is a system transaction (sid_*).
func (t TransactionID) IsSystem() bool {
	return len(t.ID) >= len(SystemTransactionPrefix) && t.ID[:len(SystemTransactionPrefix)] == SystemTransactionPrefix
}

// Raw returns the JSON form: the original bytes when the transid was decoded,
// otherwise a freshly built array.
func (t TransactionID) Raw() json.RawMessage {
	if len(t.raw) > 0 {
		return t.raw
	}
	var b bytes.Buffer
	b.WriteByte('[')
	id, _ := marshalNoEscape(t.ID) // encoding a string cannot fail
	b.Write(id)
	b.WriteByte(',')
	b.WriteString(strconv.FormatInt(t.StartMillis(), 10))
	if t.ExtraLogging {
		b.WriteString(",true")
	}
	b.WriteByte(']')
	return b.Bytes()
}

// Equal reports whether two transids are the same transaction (same id and
// start millisecond), which is how the controller compares them.
func (t TransactionID) Equal(o TransactionID) bool {
	return t.ID == o.ID && t.StartMillis() == o.StartMillis()
}

// String is the id, for logs.
func (t TransactionID) String() string { return t.ID }

// MarshalJSON returns Raw.
func (t TransactionID) MarshalJSON() ([]byte, error) { return t.Raw(), nil }

// UnmarshalJSON accepts [id, start], [id, start, bool], [id, start, bool,
// parent] and [id, start, parent], as OpenWhisk does, and keeps the bytes.
func (t *TransactionID) UnmarshalJSON(b []byte) error {
	parsed, err := parseTransactionID(b)
	if err != nil {
		return err
	}
	*t = parsed
	return nil
}

func parseTransactionID(b []byte) (TransactionID, error) {
	b = bytes.TrimSpace(b)
	var parts []json.RawMessage
	if len(b) == 0 || b[0] != '[' {
		return TransactionID{}, malformed("transid: expected a JSON array")
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return TransactionID{}, wrapMalformed("transid", err)
	}
	if len(parts) < 2 || len(parts) > 4 {
		return TransactionID{}, malformed("transid: expected 2 to 4 elements, got %d", len(parts))
	}
	var t TransactionID
	p0 := bytes.TrimSpace(parts[0])
	if len(p0) == 0 || p0[0] != '"' {
		return TransactionID{}, malformed("transid: id must be a string")
	}
	if err := json.Unmarshal(p0, &t.ID); err != nil {
		return TransactionID{}, wrapMalformed("transid id", err)
	}
	ms, err := parseMillis(parts[1])
	if err != nil {
		return TransactionID{}, wrapMalformed("transid start", err)
	}
	t.Start = time.UnixMilli(ms)
	rest := parts[2:]
	if len(rest) > 0 {
		switch v := bytes.TrimSpace(rest[0]); string(v) {
		case "true", "false":
			t.ExtraLogging = string(v) == "true"
		default:
			if len(rest) == 2 {
				return TransactionID{}, malformed("transid: third element must be a boolean")
			}
		}
	}
	// A remaining element is the parent transid. OpenWhisk ignores a parent it
	// cannot read, and so do we; it is kept only inside the raw bytes.
	t.raw = append(json.RawMessage(nil), b...)
	return t, nil
}

// parseMillis reads a JSON number as epoch milliseconds. Like OpenWhisk's
// BigDecimal.longValue it truncates a fractional part.
func parseMillis(v json.RawMessage) (int64, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return 0, malformed("expected a number")
	}
	if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsNaN(f) || f > math.MaxInt64/2 || f < math.MinInt64/2 {
		return 0, malformed("number %s is not a valid millisecond timestamp", v)
	}
	return int64(f), nil
}
