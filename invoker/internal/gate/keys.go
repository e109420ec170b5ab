package gate

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/teemate/platform/invoker/internal/wire"
)

// The image key messages (PROTOCOL.md, "Image key"). The host only relays them: a key-request
// carries the new owner's evidence and an ephemeral public key, a key-offer the image key sealed
// (HPKE) to that ephemeral key. Nothing the host handles here opens without an enclave's key.

// KeyEndpoint is an owner as the key messages reach it: its gate socket and its gate key (nil for
// an owner without one), which proves to the owner that the invoker sent the message.
type KeyEndpoint struct {
	Socket string
	Key    []byte
}

// KeyAuth is the proof a key message of type typ carries for an owner with gate key key:
// hex(HMAC-SHA256(key, "teemate-keys-v1\n" + typ)); empty without a key.
func KeyAuth(key []byte, typ string) string {
	if len(key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("teemate-keys-v1\n" + typ))
	return hex.EncodeToString(m.Sum(nil))
}

// Transfer is what TransferKey relayed: the new owner's request and the peer's offer, as the
// owners sent them (opaque to the host), and the kid the new owner imported.
type Transfer struct {
	Kid            string
	Request, Offer json.RawMessage
}

// TransferKey moves the image key from the live owner from into the owner to: key-request to to,
// key-offer to from, key-import to to. A refusal by either owner is *Error with Class key.
func TransferKey(ctx context.Context, to, from KeyEndpoint) (*Transfer, error) {
	req, err := RequestKey(ctx, to)
	if err != nil {
		return nil, err
	}
	off, err := OfferKey(ctx, from, req)
	if err != nil {
		return nil, err
	}
	kid, err := ImportKey(ctx, to, off)
	if err != nil {
		return nil, err
	}
	return &Transfer{Kid: kid, Request: req, Offer: off}, nil
}

// The three steps of a transfer, for a relay that carries the request and the offer between
// invokers (the controller, PROTOCOL.md "Image key"): each is opaque to the host.

// RequestKey sends key-request to the owner to (which awaits its key) and returns its request: its
// evidence over an ephemeral key.
func RequestKey(ctx context.Context, to KeyEndpoint) (json.RawMessage, error) {
	var req struct {
		Request json.RawMessage `json:"request"`
	}
	if err := keyCall(ctx, to, map[string]any{"type": "key-request"}, "key-request", &req); err != nil {
		return nil, fmt.Errorf("key request: %w", err)
	}
	return req.Request, nil
}

// OfferKey sends a key request to the live owner from and returns its offer: its evidence and the
// image key sealed to the request's ephemeral key.
func OfferKey(ctx context.Context, from KeyEndpoint, request json.RawMessage) (json.RawMessage, error) {
	var off struct {
		Offer json.RawMessage `json:"offer"`
	}
	if err := keyCall(ctx, from, map[string]any{"type": "key-offer", "request": request}, "key-offer", &off); err != nil {
		return nil, fmt.Errorf("key offer: %w", err)
	}
	return off.Offer, nil
}

// ImportKey hands an offer to the owner to, which opens it with its pending request's ephemeral
// key; it returns the kid the owner now holds.
func ImportKey(ctx context.Context, to KeyEndpoint, offer json.RawMessage) (string, error) {
	var imp struct {
		Kid string `json:"kid"`
	}
	if err := keyCall(ctx, to, map[string]any{"type": "key-import", "offer": offer}, "key-imported", &imp); err != nil {
		return "", fmt.Errorf("key import: %w", err)
	}
	if imp.Kid == "" {
		return "", errors.New("key import: reply without kid")
	}
	return imp.Kid, nil
}

// RotateKey asks the owner for a new image key and returns the new kid and the previous one (which
// keeps opening envelopes for its grace).
func RotateKey(ctx context.Context, o KeyEndpoint) (kid, previous string, err error) {
	var r struct {
		Kid      string `json:"kid"`
		Previous string `json:"previous"`
	}
	if err := keyCall(ctx, o, map[string]any{"type": "key-rotate"}, "key-rotated", &r); err != nil {
		return "", "", fmt.Errorf("key rotate: %w", err)
	}
	return r.Kid, r.Previous, nil
}

// keyCall sends one key message of type typ on a new connection and reads its reply.
func keyCall(ctx context.Context, o KeyEndpoint, msg map[string]any, want string, out any) error {
	c, err := Dial(ctx, o.Socket)
	if err != nil {
		return err
	}
	defer c.Close() // one request, one reply: nothing is pending when the call returned
	if a := KeyAuth(o.Key, msg["type"].(string)); a != "" {
		msg["auth"] = a
	}
	return c.call(ctx, msg, wire.MaxOtherFrame, want, out)
}
