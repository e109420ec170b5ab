package whisk

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// ActivationIDNew returns a fresh activation id: a random (version 4) UUID
// as 32 lowercase hex digits, without dashes, like OpenWhisk's.
func ActivationIDNew() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms.
		panic("whisk: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return hex.EncodeToString(b[:])
}

// ValidActivationID reports whether s is 32 lowercase hex digits.
func ValidActivationID(s string) bool { return len(s) == 32 && isLowerHex(s) }

// ActivationMessage is what the controller puts on invoker{N}. Content is
// the already merged parameters and payload (usually an object, may be an
// array; nil when absent). Revision nil means "fetch the latest document".
// ContentRef, ours, replaces Content when it would not fit in a Kafka record.
type ActivationMessage struct {
	TransID             TransactionID
	Action              FullyQualifiedEntityName
	Revision            *string
	User                Identity
	ActivationID        string
	RootControllerIndex ControllerInstanceID
	Blocking            bool
	Content             json.RawMessage
	InitArgs            []string
	LockedArgs          map[string]string
	Cause               string
	TraceContext        map[string]string
	ContentRef          *ContentRef
}

// ContentRef stands for an activation's content too large for a Kafka record
// (over MaxMessageBytes with the rest of the message, at most MaxContentBytes).
// The controller-adapter keeps the content in its store under the activation's
// namespace (the user's) and id until the activation is answered, and the
// invoker fetches it before running the action. A message carrying one has no
// content. OpenWhisk does not know the field, and its invoker ignores it.
type ContentRef struct {
	// Bytes is the content's length.
	Bytes int `json:"bytes"`
	// SHA256 is the content's SHA-256 in lowercase hex: what the invoker fetched is what was published.
	SHA256 string `json:"sha256"`
}

// MsgContentNotFetched answers (as a whisk internal error) an activation whose content, kept by
// reference, the invoker could not fetch.
const MsgContentNotFetched = "The activation's parameters could not be fetched."

// NewContentRef describes content.
func NewContentRef(content []byte) *ContentRef {
	sum := sha256.Sum256(content)
	return &ContentRef{Bytes: len(content), SHA256: hex.EncodeToString(sum[:])}
}

// Check reports whether content is the content r stands for.
func (r *ContentRef) Check(content []byte) error {
	if len(content) != r.Bytes {
		return fmt.Errorf("content is %d bytes, the reference says %d", len(content), r.Bytes)
	}
	if sum := sha256.Sum256(content); hex.EncodeToString(sum[:]) != r.SHA256 {
		return fmt.Errorf("content of %d bytes does not have the referenced SHA-256", len(content))
	}
	return nil
}

func (r *ContentRef) validate() error {
	if r.Bytes < 1 || r.Bytes > MaxContentBytes {
		return malformed("contentRef bytes %d is not within 1..%d", r.Bytes, MaxContentBytes)
	}
	if len(r.SHA256) != 64 || !isLowerHex(r.SHA256) {
		return malformed("contentRef sha256 %q is not 64 lowercase hex", r.SHA256)
	}
	return nil
}

// ParseActivationMessage decodes and validates a message from invoker{N}.
// It checks what the invoker needs (transid, action name, a 32-hex
// activationId, the user's namespace, the controller index) and ignores
// unknown fields. Every error wraps ErrMalformed.
func ParseActivationMessage(b []byte) (*ActivationMessage, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %w: activation message is %d bytes, limit %d", ErrMalformed, ErrTooLarge, len(b), MaxMessageBytes)
	}
	var m ActivationMessage
	if err := m.UnmarshalJSON(b); err != nil {
		return nil, err
	}
	return &m, nil
}

// UnmarshalJSON decodes and validates; see ParseActivationMessage.
func (m *ActivationMessage) UnmarshalJSON(b []byte) error {
	f, err := decodeObject(b)
	if err != nil {
		return fmt.Errorf("activation message: %w", err)
	}
	var out ActivationMessage
	tid, ok := f["transid"]
	if !ok {
		return malformed("activation message: transid missing")
	}
	if out.TransID, err = parseTransactionID(tid); err != nil {
		return fmt.Errorf("activation message: %w", err)
	}
	if _, ok := f["action"]; !ok {
		return malformed("activation message: action missing")
	}
	if rev, ok := f["revision"]; ok && !isNull(rev) {
		var s string
		if err := json.Unmarshal(rev, &s); err != nil {
			return wrapMalformed("activation message: revision", err)
		}
		out.Revision = &s
	}
	for _, fd := range []struct {
		key string
		dst any
		req bool
	}{
		{"action", &out.Action, true},
		{"user", &out.User, true},
		{"activationId", &out.ActivationID, true},
		{"rootControllerIndex", &out.RootControllerIndex, true},
		{"blocking", &out.Blocking, false},
		{"initArgs", &out.InitArgs, false},
		{"lockedArgs", &out.LockedArgs, false},
		{"cause", &out.Cause, false},
		{"traceContext", &out.TraceContext, false},
		{"contentRef", &out.ContentRef, false},
	} {
		if err := decodeField(f, fd.key, fd.dst, fd.req); err != nil {
			return fmt.Errorf("activation message: %w", err)
		}
	}
	out.Content = rawValue(f["content"])
	if err := out.validate(); err != nil {
		return fmt.Errorf("activation message: %w", err)
	}
	*m = out
	return nil
}

func (m *ActivationMessage) validate() error {
	if m.TransID.ID == "" {
		return malformed("transid id is empty")
	}
	if !ValidEntityName(m.Action.Name) || m.Action.Path == "" {
		return malformed("action name %q is not valid", m.Action.String())
	}
	if !ValidActivationID(m.ActivationID) {
		return malformed("activationId %q is not 32 lowercase hex", m.ActivationID)
	}
	if m.Cause != "" && !ValidActivationID(m.Cause) {
		return malformed("cause %q is not an activation id", m.Cause)
	}
	if m.User.Namespace.Name == "" {
		return malformed("user namespace is empty")
	}
	if err := m.RootControllerIndex.Validate(); err != nil {
		return err
	}
	if m.ContentRef != nil {
		if m.Content != nil {
			return malformed("a message with contentRef carries no content")
		}
		return m.ContentRef.validate()
	}
	return nil
}

// Serialize writes the message the way the Scala controller does: transid
// and content byte for byte, revision as null when nil, initArgs and
// lockedArgs always present, cause, traceContext and contentRef only when set.
func (m *ActivationMessage) Serialize() ([]byte, error) {
	w := newObjWriter()
	w.raw("transid", m.TransID.Raw())
	w.val("action", m.Action)
	w.val("revision", m.Revision)
	w.val("user", m.User)
	w.val("activationId", m.ActivationID)
	w.val("rootControllerIndex", m.RootControllerIndex)
	w.val("blocking", m.Blocking)
	if c := rawValue(m.Content); c != nil {
		if !json.Valid(c) {
			return nil, fmt.Errorf("activation %s: content is not valid JSON", m.ActivationID)
		}
		w.raw("content", c)
	}
	w.val("initArgs", nonNilStrings(m.InitArgs))
	locked := m.LockedArgs
	if locked == nil {
		locked = map[string]string{}
	}
	w.val("lockedArgs", locked)
	if m.Cause != "" {
		w.val("cause", m.Cause)
	}
	if m.TraceContext != nil {
		w.val("traceContext", m.TraceContext)
	}
	if m.ContentRef != nil {
		w.val("contentRef", m.ContentRef)
	}
	b, err := w.bytes()
	if err != nil {
		return nil, fmt.Errorf("serialize activation %s: %w", m.ActivationID, err)
	}
	return b, nil
}

// MarshalJSON is Serialize.
func (m ActivationMessage) MarshalJSON() ([]byte, error) { return m.Serialize() }

// ContentObject reports whether Content is a JSON object (or absent), the
// shape /run merges init args out of.
func (m *ActivationMessage) ContentObject() bool {
	c := bytes.TrimSpace(m.Content)
	return len(c) == 0 || c[0] == '{'
}

// HealthTestActionCode is the code of the controller's invoker health test
// action (kind nodejs:default, minimum memory).
const HealthTestActionCode = "function main(params) { return params; }"

// HealthTestAction names controller c's invoker health test action,
// whisk.system/invokerHealthTestAction{C}. Its activations use transid
// TransIDInvokerHealth, revision null, no content and blocking false.
func HealthTestAction(c ControllerInstanceID) FullyQualifiedEntityName {
	return FullyQualifiedEntityName{Path: "whisk.system", Name: "invokerHealthTestAction" + c.AsString, Version: DefaultVersion}
}
