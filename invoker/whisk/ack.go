package whisk

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// AckKind tells the three acknowledgement messages apart.
type AckKind int

// Ack kinds, decided by which fields are present exactly as OpenWhisk does:
// instance and response → Combined; instance only → Completion; otherwise
// Result.
const (
	AckCompletion AckKind = iota + 1
	AckResult
	AckCombined
)

func (k AckKind) String() string {
	switch k {
	case AckCompletion:
		return "completion"
	case AckResult:
		return "result"
	case AckCombined:
		return "combined"
	default:
		return fmt.Sprintf("AckKind(%d)", int(k))
	}
}

// Ack is one of *CompletionMessage, *ResultMessage and
// *CombinedCompletionAndResultMessage, sent on completed{C}.
type Ack interface {
	Kind() AckKind
	// Transaction is the activation's transid, echoed unchanged.
	Transaction() TransactionID
	// AckActivationID is the id of the activation acknowledged.
	AckActivationID() string
	// SlotFree returns the invoker whose slot this ack frees, or nil for a
	// ResultMessage (which frees nothing).
	SlotFree() *InvokerInstanceID
	// AckResponse returns the result carried, or nil for a Completion.
	AckResponse() *AckResponse
	// SystemError reports whether the activation failed with a whisk error;
	// known is false when the message does not say (a shrunk Result).
	SystemError() (isSystemError, known bool)
	// Shrink returns the id-only form (a copy), for messages too large for
	// the topic and for non-blocking activations.
	Shrink() Ack
	Serialize() ([]byte, error)
}

// AckResponse is an ack's "response": the full activation, or after
// shrinking just its id (written as a bare JSON string).
type AckResponse struct {
	Activation   *WhiskActivation
	ActivationID string
}

// FullResponse wraps an activation.
func FullResponse(a *WhiskActivation) AckResponse {
	return AckResponse{Activation: a, ActivationID: a.ActivationID}
}

// ID is the activation id whichever form the response has.
func (r AckResponse) ID() string {
	if r.Activation != nil {
		return r.Activation.ActivationID
	}
	return r.ActivationID
}

// Shrunk returns the id-only form.
func (r AckResponse) Shrunk() AckResponse { return AckResponse{ActivationID: r.ID()} }

// MarshalJSON writes the activation object, or the id string.
func (r AckResponse) MarshalJSON() ([]byte, error) {
	if r.Activation != nil {
		return r.Activation.MarshalJSON()
	}
	if !ValidActivationID(r.ActivationID) {
		return nil, fmt.Errorf("ack response: activation id %q is not 32 lowercase hex", r.ActivationID)
	}
	return marshalNoEscape(r.ActivationID)
}

// UnmarshalJSON accepts an activation object or an activation id string.
func (r *AckResponse) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var id string
		if err := json.Unmarshal(b, &id); err != nil {
			return wrapMalformed("ack response", err)
		}
		if !ValidActivationID(id) {
			return malformed("ack response: activation id %q is not 32 lowercase hex", id)
		}
		*r = AckResponse{ActivationID: id}
	case len(b) > 0 && b[0] == '{':
		var a WhiskActivation
		if err := a.UnmarshalJSON(b); err != nil {
			return fmt.Errorf("ack response: %w", err)
		}
		*r = AckResponse{Activation: &a, ActivationID: a.ActivationID}
	default:
		return malformed("could not read ResultMessage response")
	}
	return nil
}

// CompletionMessage frees the activation's slot (after log collection).
type CompletionMessage struct {
	TransID       TransactionID
	ActivationID  string
	IsSystemError bool
	Instance      InvokerInstanceID
}

// ResultMessage carries a blocking activation's result (without logs)
// before the slot is freed.
type ResultMessage struct {
	TransID  TransactionID
	Response AckResponse
}

// CombinedCompletionAndResultMessage carries the result and frees the slot.
type CombinedCompletionAndResultMessage struct {
	TransID       TransactionID
	Response      AckResponse
	IsSystemError bool
	Instance      InvokerInstanceID
}

// NewCompletion builds the slot-freeing ack for a finished activation.
func NewCompletion(tid TransactionID, a *WhiskActivation, inv InvokerInstanceID) *CompletionMessage {
	return &CompletionMessage{TransID: tid, ActivationID: a.ActivationID, IsSystemError: a.IsSystemError(), Instance: inv}
}

// NewResult builds the result ack for a blocking activation; logs are dropped.
func NewResult(tid TransactionID, a *WhiskActivation) *ResultMessage {
	return &ResultMessage{TransID: tid, Response: FullResponse(a.WithoutLogs())}
}

// NewCombined builds the ack that carries the result and frees the slot.
func NewCombined(tid TransactionID, a *WhiskActivation, inv InvokerInstanceID) *CombinedCompletionAndResultMessage {
	return &CombinedCompletionAndResultMessage{TransID: tid, Response: FullResponse(a), IsSystemError: a.IsSystemError(), Instance: inv}
}

// Ack methods; see the Ack interface for their meaning.
func (*CompletionMessage) Kind() AckKind                  { return AckCompletion }
func (c *CompletionMessage) Transaction() TransactionID   { return c.TransID }
func (c *CompletionMessage) AckActivationID() string      { return c.ActivationID }
func (c *CompletionMessage) SlotFree() *InvokerInstanceID { return &c.Instance }
func (*CompletionMessage) AckResponse() *AckResponse      { return nil }
func (c *CompletionMessage) SystemError() (bool, bool)    { return c.IsSystemError, true }
func (c *CompletionMessage) Shrink() Ack                  { cp := *c; return &cp }
func (*ResultMessage) Kind() AckKind                      { return AckResult }
func (r *ResultMessage) Transaction() TransactionID       { return r.TransID }
func (r *ResultMessage) AckActivationID() string          { return r.Response.ID() }
func (*ResultMessage) SlotFree() *InvokerInstanceID       { return nil }
func (r *ResultMessage) AckResponse() *AckResponse        { return &r.Response }
func (*CombinedCompletionAndResultMessage) Kind() AckKind { return AckCombined }
func (c *CombinedCompletionAndResultMessage) AckResponse() *AckResponse {
	return &c.Response
}
func (c *CombinedCompletionAndResultMessage) Transaction() TransactionID   { return c.TransID }
func (c *CombinedCompletionAndResultMessage) AckActivationID() string      { return c.Response.ID() }
func (c *CombinedCompletionAndResultMessage) SlotFree() *InvokerInstanceID { return &c.Instance }
func (c *CombinedCompletionAndResultMessage) SystemError() (bool, bool)    { return c.IsSystemError, true }

// SystemError is unknown for a shrunk result, as in OpenWhisk.
func (r *ResultMessage) SystemError() (bool, bool) {
	if r.Response.Activation == nil {
		return false, false
	}
	return r.Response.Activation.IsSystemError(), true
}

// Shrink returns a copy whose response is the activation id.
func (r *ResultMessage) Shrink() Ack {
	return &ResultMessage{TransID: r.TransID, Response: r.Response.Shrunk()}
}

// Shrink returns a copy whose response is the activation id.
func (c *CombinedCompletionAndResultMessage) Shrink() Ack {
	cp := *c
	cp.Response = c.Response.Shrunk()
	return &cp
}

// Serialize writes {transid, activationId, isSystemError, instance}.
func (c *CompletionMessage) Serialize() ([]byte, error) {
	if !ValidActivationID(c.ActivationID) {
		return nil, fmt.Errorf("completion ack: activation id %q is not 32 lowercase hex", c.ActivationID)
	}
	w := newObjWriter()
	w.raw("transid", c.TransID.Raw())
	w.val("activationId", c.ActivationID)
	w.val("isSystemError", c.IsSystemError)
	w.val("instance", c.Instance)
	return w.bytes()
}

// Serialize writes {transid, response}.
func (r *ResultMessage) Serialize() ([]byte, error) {
	w := newObjWriter()
	w.raw("transid", r.TransID.Raw())
	w.val("response", r.Response)
	return w.bytes()
}

// Serialize writes {transid, response, isSystemError, instance}.
func (c *CombinedCompletionAndResultMessage) Serialize() ([]byte, error) {
	w := newObjWriter()
	w.raw("transid", c.TransID.Raw())
	w.val("response", c.Response)
	w.val("isSystemError", c.IsSystemError)
	w.val("instance", c.Instance)
	return w.bytes()
}

// MarshalJSON is Serialize (value receiver, so json.Marshal of a value works).
func (c CompletionMessage) MarshalJSON() ([]byte, error) { return c.Serialize() }

// MarshalJSON is Serialize.
func (r ResultMessage) MarshalJSON() ([]byte, error) { return r.Serialize() }

// MarshalJSON is Serialize.
func (c CombinedCompletionAndResultMessage) MarshalJSON() ([]byte, error) { return c.Serialize() }

// UnmarshalJSON parses with ParseAcknowledgement and requires a Completion.
func (c *CompletionMessage) UnmarshalJSON(b []byte) error {
	a, err := parseAckAs(b, AckCompletion)
	if err == nil {
		*c = *a.(*CompletionMessage)
	}
	return err
}

// UnmarshalJSON parses with ParseAcknowledgement and requires a Result.
func (r *ResultMessage) UnmarshalJSON(b []byte) error {
	a, err := parseAckAs(b, AckResult)
	if err == nil {
		*r = *a.(*ResultMessage)
	}
	return err
}

// UnmarshalJSON parses with ParseAcknowledgement and requires a Combined.
func (c *CombinedCompletionAndResultMessage) UnmarshalJSON(b []byte) error {
	a, err := parseAckAs(b, AckCombined)
	if err == nil {
		*c = *a.(*CombinedCompletionAndResultMessage)
	}
	return err
}

func parseAckAs(b []byte, want AckKind) (Ack, error) {
	a, err := ParseAcknowledgement(b)
	if err != nil {
		return nil, err
	}
	if a.Kind() != want {
		return nil, malformed("ack is a %v message, not %v", a.Kind(), want)
	}
	return a, nil
}

// ParseAcknowledgement decodes a message from completed{C}, choosing the
// type by field presence as OpenWhisk does. Errors wrap ErrMalformed.
func ParseAcknowledgement(b []byte) (Ack, error) {
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %w: ack is %d bytes, limit %d", ErrMalformed, ErrTooLarge, len(b), MaxMessageBytes)
	}
	f, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	tidRaw, ok := f["transid"]
	if !ok {
		return nil, malformed("ack: transid missing")
	}
	tid, err := parseTransactionID(tidRaw)
	if err != nil {
		return nil, fmt.Errorf("ack: %w", err)
	}
	_, hasInstance := f["instance"]
	_, hasResponse := f["response"]
	switch {
	case hasInstance && hasResponse:
		c := &CombinedCompletionAndResultMessage{TransID: tid}
		if err := decodeAckFields(f, "combined ack", &c.Response, &c.IsSystemError, &c.Instance); err != nil {
			return nil, err
		}
		return c, nil
	case hasInstance:
		c := &CompletionMessage{TransID: tid}
		if err := decodeField(f, "activationId", &c.ActivationID, true); err != nil {
			return nil, fmt.Errorf("completion ack: %w", err)
		}
		if !ValidActivationID(c.ActivationID) {
			return nil, malformed("completion ack: activationId %q is not 32 lowercase hex", c.ActivationID)
		}
		if err := decodeAckFields(f, "completion ack", nil, &c.IsSystemError, &c.Instance); err != nil {
			return nil, err
		}
		return c, nil
	default:
		r := &ResultMessage{TransID: tid}
		if err := decodeAckFields(f, "result ack", &r.Response, nil, nil); err != nil {
			return nil, err
		}
		return r, nil
	}
}

// decodeAckFields reads response, isSystemError (optional in OpenWhisk; it
// reads as false when absent) and instance, for whichever are wanted.
func decodeAckFields(f map[string]json.RawMessage, what string, resp *AckResponse, sysErr *bool, inst *InvokerInstanceID) error {
	if resp != nil {
		if err := decodeField(f, "response", resp, true); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if sysErr != nil {
		if err := decodeField(f, "isSystemError", sysErr, false); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if inst != nil {
		if err := decodeField(f, "instance", inst, true); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// PingMessage is an invoker's heartbeat on the health topic. The invoker id
// sits under the key "name"; isEnabled false takes the invoker offline.
type PingMessage struct {
	Name      InvokerInstanceID
	IsEnabled bool
	// Warm is ours: the images whose enclave is warm on the invoker, with the kid of the image key
	// its owners hold (the controller moves them before it drains the invoker). Written only when
	// non-empty; OpenWhisk's controller ignores the field.
	Warm []WarmImage
}

// WarmImage is one image with a warm, keyed enclave on an invoker (PingMessage.Warm).
type WarmImage struct {
	Image string `json:"image"`
	// Kid names the image key the image's owners hold; empty while none holds one yet.
	Kid string `json:"kid,omitempty"`
}

// maxWarmImages bounds PingMessage.Warm as parsed: a ping is a small message.
const maxWarmImages = 256

// Serialize writes {"name":{...},"isEnabled":bool} (and "warm":[...] when there is any).
func (p *PingMessage) Serialize() ([]byte, error) {
	w := newObjWriter()
	w.val("name", p.Name)
	w.val("isEnabled", p.IsEnabled)
	if len(p.Warm) > 0 {
		w.val("warm", p.Warm)
	}
	return w.bytes()
}

// MarshalJSON is Serialize.
func (p PingMessage) MarshalJSON() ([]byte, error) { return p.Serialize() }

// ParsePingMessage decodes a ping; a missing isEnabled means enabled.
func ParsePingMessage(b []byte) (*PingMessage, error) {
	f, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	p := &PingMessage{IsEnabled: true}
	if err := decodeField(f, "name", &p.Name, true); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if err := decodeField(f, "isEnabled", &p.IsEnabled, false); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if err := decodeField(f, "warm", &p.Warm, false); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if len(p.Warm) > maxWarmImages {
		return nil, fmt.Errorf("ping: %w: %d warm images, at most %d", ErrMalformed, len(p.Warm), maxWarmImages)
	}
	return p, nil
}

// UnmarshalJSON is ParsePingMessage.
func (p *PingMessage) UnmarshalJSON(b []byte) error {
	v, err := ParsePingMessage(b)
	if err != nil {
		return err
	}
	*p = *v
	return nil
}
