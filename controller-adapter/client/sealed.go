package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// SealedAnnotation marks an action whose code is sealed to its image's key.
const SealedAnnotation = "teemate-sealed"

// Attest fetches the evidence of the action's image and verifies it under the client's policy.
func (c *Client) Attest(ctx context.Context, name string) (*attest.Evidence, *attest.Identity, error) {
	ev, err := c.Evidence(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	id, err := c.verify(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence of %s: %w", name, err)
	}
	return ev, id, nil
}

// AttestKind is Attest for the image that runs actions of kind (nodejs:20), for code that is not
// an action yet: GET /api/v1/teemate/evidence?kind=KIND.
func (c *Client) AttestKind(ctx context.Context, kind string) (*attest.Evidence, *attest.Identity, error) {
	ev, err := c.evidence(ctx, "kind="+url.QueryEscape(kind), "kind "+kind)
	if err != nil {
		return nil, nil, err
	}
	id, err := c.verify(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("evidence of kind %s: %w", kind, err)
	}
	return ev, id, nil
}

// verify is attest.Verify under the client's policy; a refusal other than ErrSimulated is
// ErrEvidence.
func (c *Client) verify(ev *attest.Evidence) (*attest.Identity, error) {
	id, err := attest.Verify(ev, c.policy)
	if err == nil {
		return id, nil
	}
	if errors.Is(err, attest.ErrSimulated) {
		return nil, fmt.Errorf("the evidence is simulated (direct mode: no hardware root of trust; "+
			"accept it with --allow-simulated or TEEMATE_ALLOW_SIMULATED=1): %w", err)
	}
	return nil, fmt.Errorf("%w: %w", ErrEvidence, err)
}

// CreateSealed creates or replaces the action name with code sealed to the key of kind's image:
// the stored code is the envelope {"__teemate_sealed_code": ...}, bound to the action's
// namespace and name, with the annotation teemate-sealed: true. Only an enclave of that image
// opens it, at the action's init.
func (c *Client) CreateSealed(ctx context.Context, name, kind string, code []byte, base Action) (*Action, error) {
	ns, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	// An action that exists already names its image; a new one is named by its kind.
	ev, _, err := c.Attest(ctx, q)
	if errors.Is(err, ErrNotFound) {
		ev, _, err = c.AttestKind(ctx, kind)
	}
	if err != nil {
		return nil, fmt.Errorf("create sealed action %s: %w", name, err)
	}
	env, err := sealed.SealCode(ev, ns, q, code)
	if err != nil {
		return nil, fmt.Errorf("create sealed action %s: %w", name, err)
	}
	base.Exec = Exec{Kind: kind, Code: env, Main: base.Exec.Main}
	anns := []KeyValue{{Key: SealedAnnotation, Value: json.RawMessage("true")}}
	for _, kv := range base.Annotations {
		if kv.Key != SealedAnnotation {
			anns = append(anns, kv)
		}
	}
	base.Annotations = anns
	return c.PutAction(ctx, name, base)
}

// InvokeOptions of InvokeSealed.
type InvokeOptions struct {
	// Blocking waits for the result (see Invoke).
	Blocking bool
	// TamperForTest flips one byte of the envelope's ciphertext before it is sent: the enclave must
	// refuse it with the integrity error. For tests only.
	TamperForTest bool
	// OnSealed, if set, is called with the reply key and the envelope before the invoke is sent
	// (a CLI stores the key there, so that a crash after the send does not lose the result).
	OnSealed func(reply *sealed.ReplyKey, envelope json.RawMessage)
}

// Sealed is one sealed invocation as the client sees it.
type Sealed struct {
	ActivationID string
	// Action is the qualified name the envelope is bound to.
	Action   string
	Evidence *attest.Evidence
	// Reply opens the sealed result (keep it to open the result of a non-blocking invoke later).
	Reply *sealed.ReplyKey
	// Envelope is the parameters object that was sent.
	Envelope json.RawMessage
	// Activation is the platform's answer (Done is false for a non-blocking invoke).
	Activation *Activation
	// Opened is the decrypted outcome with its verified receipt, once the activation is done.
	Opened *sealed.Opened
}

// InvokeSealed seals params (a JSON object) to the verified image key of the action's image,
// bound to the action's qualified name, invokes it, and for a finished activation opens the result
// and verifies the receipt. params may be nil.
func (c *Client) InvokeSealed(ctx context.Context, name string, params json.RawMessage, opts InvokeOptions) (*Sealed, error) {
	ns, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	ev, _, err := c.Attest(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("invoke %s sealed: %w", name, err)
	}
	env, reply, err := sealed.SealParams(ev, ns, q, params)
	if err != nil {
		return nil, fmt.Errorf("invoke %s sealed: %w", name, err)
	}
	if opts.TamperForTest {
		if env, err = tamper(env); err != nil {
			return nil, err
		}
	}
	if opts.OnSealed != nil {
		opts.OnSealed(reply, env)
	}
	a, err := c.Invoke(ctx, q, env, opts.Blocking)
	if err != nil {
		return nil, err
	}
	s := &Sealed{ActivationID: a.ActivationID, Action: q, Evidence: ev, Reply: reply, Envelope: env, Activation: a}
	if !a.Done() {
		return s, nil
	}
	s.Opened, err = Open(ev, reply, a)
	return s, err
}

// Open opens the sealed outcome of a finished activation and verifies its receipt against the
// evidence the envelope was sealed to. A refusal by the enclave, or a result that does not open,
// is ErrIntegrity; a receipt that does not match is ErrReceipt; an action's error, once opened, is
// returned with the Opened value and ErrActionFailed.
func Open(ev *attest.Evidence, reply *sealed.ReplyKey, a *Activation) (*sealed.Opened, error) {
	if !a.Done() {
		return nil, fmt.Errorf("activation %s: %w", a.ActivationID, ErrNotReady)
	}
	res := a.Response.Result
	sr, err := sealedResult(res)
	if err != nil {
		if msg := refusal(res); msg != "" {
			return nil, fmt.Errorf("activation %s: %w: the enclave refused the envelope: %s", a.ActivationID, ErrIntegrity, msg)
		}
		return nil, fmt.Errorf("activation %s (%s): %w: the result is not sealed (%v): %s", a.ActivationID, a.Response.Status,
			ErrIntegrity, err, truncate(string(res), 300))
	}
	// The receipt first: it is public, and a mismatch there says more than "does not open".
	ct, err := base64.StdEncoding.DecodeString(sr.Ct)
	if err != nil {
		return nil, fmt.Errorf("activation %s: %w: sealed result ct: %w", a.ActivationID, ErrIntegrity, err)
	}
	if sr.Receipt.ActivationID != a.ActivationID {
		return nil, fmt.Errorf("activation %s: %w: the receipt is for activation %q", a.ActivationID, ErrReceipt, sr.Receipt.ActivationID)
	}
	if err := sealed.VerifyReceipt(sr.Receipt, ev, reply, ct); err != nil {
		return nil, fmt.Errorf("activation %s: %w: %w", a.ActivationID, ErrReceipt, err)
	}
	o, err := sealed.OpenResult(reply, a.ActivationID, res)
	if err != nil {
		return nil, fmt.Errorf("activation %s: %w: %w", a.ActivationID, ErrIntegrity, err)
	}
	if len(o.Error) > 0 && string(o.Error) != "null" {
		return o, fmt.Errorf("activation %s: %w: %s", a.ActivationID, ErrActionFailed, truncate(string(o.Error), 500))
	}
	return o, nil
}

// sealedResult finds the sealed result in a record's result: {"__teemate_sealed_result": ...} for
// a value, {"error": {"__teemate_sealed_result": ...}} for an application error.
func sealedResult(res json.RawMessage) (*sealed.SealedResult, error) {
	var doc struct {
		S     *sealed.SealedResult `json:"__teemate_sealed_result"`
		Error json.RawMessage      `json:"error"`
	}
	if err := json.Unmarshal(res, &doc); err != nil {
		return nil, fmt.Errorf("sealed result: %w", err)
	}
	if doc.S != nil {
		return doc.S, nil
	}
	var inner struct {
		S *sealed.SealedResult `json:"__teemate_sealed_result"`
	}
	if len(doc.Error) > 0 && json.Unmarshal(doc.Error, &inner) == nil && inner.S != nil {
		return inner.S, nil
	}
	return nil, errors.New("no __teemate_sealed_result")
}

// refusal returns the enclave's integrity message when the result is {"error": "TeeMate sealed:
// integrity ..."}, else "".
func refusal(res json.RawMessage) string {
	var doc struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(res, &doc) == nil && strings.HasPrefix(doc.Error, sealed.IntegrityPrefix) {
		return doc.Error
	}
	return ""
}

// tamper flips one bit of the first byte of the envelope's ciphertext.
func tamper(env json.RawMessage) (json.RawMessage, error) {
	var doc map[string]map[string]json.RawMessage
	if err := json.Unmarshal(env, &doc); err != nil || doc["__teemate_sealed"] == nil {
		return nil, fmt.Errorf("tamper: not an envelope: %v", err)
	}
	var ct string
	if err := json.Unmarshal(doc["__teemate_sealed"]["ct"], &ct); err != nil {
		return nil, fmt.Errorf("tamper: ct: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(ct)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("tamper: ct: %v", err)
	}
	b[0] ^= 1
	nb, err := json.Marshal(base64.StdEncoding.EncodeToString(b))
	if err != nil {
		return nil, fmt.Errorf("tamper: %w", err)
	}
	doc["__teemate_sealed"]["ct"] = nb
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("tamper: %w", err)
	}
	return out, nil
}
