package gate

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/teemate/platform/invoker/internal/wire"
)

// The state transfer messages (enclave-runtime/KEYS.md, "State transfer"): after the receiving
// owner's key-request, the sending owner answers state-offer (its evidence and a session key sealed
// to the request's ephemeral key), the receiver takes it with state-open, and the state follows in
// chunks (state-chunks from the sender, state-chunk to the receiver), each AES-GCM-sealed under the
// session key. The host relays all of it as ciphertext; state-status tells it where to resume.

// StateOffer is a sending owner's state-offer: Raw goes to the receiver as it is; the rest is what
// the host needs to drive the session (the owner says it in the clear).
type StateOffer struct {
	Raw     json.RawMessage `json:"-"`
	Session string          `json:"session"`
	Total   int             `json:"total"`
	Bytes   int64           `json:"bytes"`
	RSS     int64           `json:"rss"`
}

// StateChunk is one sealed chunk as the sender gave it.
type StateChunk struct {
	I  int    `json:"i"`
	IV string `json:"iv"`
	CT string `json:"ct"`
}

// StateChunks is a sender's answer to state-chunks.
type StateChunks struct {
	Chunks    []StateChunk `json:"chunks"`
	PeakBytes int64        `json:"peakBytes"`
	RSS       int64        `json:"rss"`
}

// StateStatus is a receiver's answer to state-open, state-chunk and state-status: the next chunk it
// takes and, once done, the kid and the code entries it installed.
type StateStatus struct {
	Session   string `json:"session"`
	Next      int    `json:"next"`
	Total     int    `json:"total"`
	Done      bool   `json:"done"`
	Kid       string `json:"kid"`
	Entries   int    `json:"entries"`
	Bytes     int64  `json:"bytes"`
	PeakBytes int64  `json:"peakBytes"`
	RSS       int64  `json:"rss"`
}

// StateConn is one connection to an owner for the state messages; not safe for concurrent use.
type StateConn struct {
	c   *Client
	key []byte
}

// DialState connects to the owner at e.
func DialState(ctx context.Context, e KeyEndpoint) (*StateConn, error) {
	c, err := Dial(ctx, e.Socket)
	if err != nil {
		return nil, err
	}
	return &StateConn{c: c, key: e.Key}, nil
}

// Close ends the connection.
func (s *StateConn) Close() error { return s.c.Close() }

func (s *StateConn) call(ctx context.Context, msg map[string]any, want string, out any) error {
	if a := KeyAuth(s.key, msg["type"].(string)); a != "" {
		msg["auth"] = a
	}
	return s.c.call(ctx, msg, wire.MaxOtherFrame, want, out)
}

// Offer asks the sending owner for a state session answering request (a key-request).
func (s *StateConn) Offer(ctx context.Context, request json.RawMessage) (*StateOffer, error) {
	var r struct {
		Offer json.RawMessage `json:"offer"`
	}
	if err := s.call(ctx, map[string]any{"type": "state-offer", "request": request}, "state-offer", &r); err != nil {
		return nil, fmt.Errorf("state offer: %w", err)
	}
	return ParseStateOffer(r.Offer)
}

// ParseStateOffer reads what the host needs from an owner's state-offer.
func ParseStateOffer(raw json.RawMessage) (*StateOffer, error) {
	o := StateOffer{Raw: raw}
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, fmt.Errorf("state offer malformed: %w", err)
	}
	if o.Session == "" || o.Total < 1 {
		return nil, fmt.Errorf("state offer without a session or chunks")
	}
	return &o, nil
}

// Chunks asks the sending owner for up to count chunks of session from index from.
func (s *StateConn) Chunks(ctx context.Context, session string, from, count int) (*StateChunks, error) {
	var r StateChunks
	msg := map[string]any{"type": "state-chunks", "session": session, "from": from, "count": count}
	if err := s.call(ctx, msg, "state-chunks", &r); err != nil {
		return nil, fmt.Errorf("state chunks %d+%d: %w", from, count, err)
	}
	return &r, nil
}

// Open hands the receiving owner the sender's state-offer.
func (s *StateConn) Open(ctx context.Context, offer json.RawMessage) (*StateStatus, error) {
	var st StateStatus
	if err := s.call(ctx, map[string]any{"type": "state-open", "offer": offer}, "state-status", &st); err != nil {
		return nil, fmt.Errorf("state open: %w", err)
	}
	return &st, nil
}

// Chunk hands the receiving owner one chunk.
func (s *StateConn) Chunk(ctx context.Context, session string, c StateChunk) (*StateStatus, error) {
	var st StateStatus
	msg := map[string]any{"type": "state-chunk", "session": session, "i": c.I, "iv": c.IV, "ct": c.CT}
	if err := s.call(ctx, msg, "state-status", &st); err != nil {
		return nil, fmt.Errorf("state chunk %d: %w", c.I, err)
	}
	return &st, nil
}

// Status asks the receiving owner where session stands (the chunk to resume with).
func (s *StateConn) Status(ctx context.Context, session string) (*StateStatus, error) {
	var st StateStatus
	if err := s.call(ctx, map[string]any{"type": "state-status", "session": session}, "state-status", &st); err != nil {
		return nil, fmt.Errorf("state status: %w", err)
	}
	return &st, nil
}
