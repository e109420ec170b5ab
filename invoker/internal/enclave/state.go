package enclave

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/internal/gate"
)

// State transfer (enclave-runtime/KEYS.md, "State transfer"): a new owner takes the image key and
// the opened sealed code of a live owner, here or on another invoker, in sealed chunks. The host
// drives it and sees ciphertext only: it asks the sender for chunks and hands them to the receiver,
// the two overlapping (the sender seals the next chunks while the receiver opens the last), and
// after a broken connection it asks the receiver where to resume.

// StateSource is the sending side of a state transfer: an owner here (its gate) or an owner of
// another invoker (through the controller's relay).
type StateSource interface {
	// Offer hands the sender the receiver's key-request and returns its state-offer.
	Offer(ctx context.Context, request json.RawMessage) (*gate.StateOffer, error)
	// Chunks returns up to count chunks of session from index from.
	Chunks(ctx context.Context, session string, from, count int) (*gate.StateChunks, error)
}

// StateMove is what one state transfer did, for the log and the drain's figures.
type StateMove struct {
	Kid     string
	Session string
	Chunks  int
	// Bytes is the state's plaintext size; Relayed the ciphertext (base64) the host carried.
	Bytes, Relayed int64
	Entries        int
	Resumes        int
	// Peak extra memory: the most transient bytes (chunk plaintext, ciphertext, base64) the sender
	// and the receiver held for one message, the host's window of chunks, and the sender's RSS
	// at the offer and the most it reported while sending.
	SenderPeak, ReceiverPeak, HostPeak int64
	SenderRSS, SenderPeakRSS           int64
	Took                               time.Duration
	// Request and Offer are what the host relayed to start the session (opaque to it).
	Request, Offer json.RawMessage
}

// Tuning of a state move.
const (
	// stateBatch is the chunks one state-chunks asks for (64 KiB of plaintext each).
	stateBatch = 2
	// stateWindow is the chunks the host holds between sender and receiver.
	stateWindow = 4
	// stateResumes bounds the resumptions of one session after broken connections.
	stateResumes = 5
)

// GateSource is a live owner here as a StateSource (Ep: its gate); it keeps one connection and
// redials it after a failure. Close it when the move is over.
type GateSource struct {
	Ep gate.KeyEndpoint
	mu sync.Mutex
	c  *gate.StateConn
}

func (g *GateSource) conn(ctx context.Context) (*gate.StateConn, error) {
	if g.c != nil {
		return g.c, nil
	}
	c, err := gate.DialState(ctx, g.Ep)
	if err != nil {
		return nil, err
	}
	g.c = c
	return c, nil
}

// drop closes a connection that failed, so the next call dials anew.
func (g *GateSource) drop() {
	if g.c != nil {
		_ = g.c.Close() // it failed already: its close error says nothing more
		g.c = nil
	}
}

func (g *GateSource) Offer(ctx context.Context, request json.RawMessage) (*gate.StateOffer, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.conn(ctx)
	if err != nil {
		return nil, err
	}
	o, err := c.Offer(ctx, request)
	if err != nil {
		g.drop()
	}
	return o, err
}

func (g *GateSource) Chunks(ctx context.Context, session string, from, count int) (*gate.StateChunks, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.conn(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Chunks(ctx, session, from, count)
	if err != nil {
		g.drop()
	}
	return r, err
}

func (g *GateSource) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drop()
}

// MoveState moves the state of the sender src into the owner to, which awaits its key: key-request
// to to, its offer from src, state-open to to, then the chunks, pipelined (a goroutine fetches
// from src while the chunks already fetched go to to) and resumed from the chunk to names after a
// failure, up to stateResumes times. A refusal by either owner (evidence, a chunk that does not
// open, an expired session) is a *gate.Error of class key.
func MoveState(ctx context.Context, to gate.KeyEndpoint, src StateSource) (*StateMove, error) {
	t0 := time.Now()
	var mv StateMove
	req, err := gate.RequestKey(ctx, to)
	if err != nil {
		return nil, err
	}
	mv.Request = req
	offer, err := src.Offer(ctx, req)
	if err != nil {
		return nil, err
	}
	mv.Offer, mv.Session, mv.Chunks, mv.Bytes = offer.Raw, offer.Session, offer.Total, offer.Bytes
	mv.SenderRSS, mv.SenderPeakRSS = offer.RSS, offer.RSS
	dst, err := gate.DialState(ctx, to)
	if err != nil {
		return nil, err
	}
	st, err := dst.Open(ctx, offer.Raw)
	if err != nil {
		_ = dst.Close() // the open failed: that error is the one to report
		return nil, err
	}
	next := st.Next
	for {
		st, err = mv.pump(ctx, dst, src, next)
		_ = dst.Close() // a new connection follows or the move is over; nothing is pending on this one
		if err == nil {
			break
		}
		if mv.Resumes >= stateResumes || ctx.Err() != nil {
			return nil, fmt.Errorf("state transfer %s: %d resumptions: %w", mv.Session, mv.Resumes, err)
		}
		mv.Resumes++
		// Resume: the receiver says which chunk it takes next (every chunk below it arrived).
		if dst, err = gate.DialState(ctx, to); err != nil {
			return nil, err
		}
		s, serr := dst.Status(ctx, mv.Session)
		if serr != nil {
			_ = dst.Close() // the session is gone: the status error is the one to report
			return nil, fmt.Errorf("state transfer %s: resume after %w: %w", mv.Session, err, serr)
		}
		next = s.Next
	}
	mv.Kid, mv.Entries, mv.ReceiverPeak, mv.Took = st.Kid, st.Entries, st.PeakBytes, time.Since(t0)
	return &mv, nil
}

// pump moves chunks from index from to the end: a fetcher asks src for batches and queues their
// chunks (at most stateWindow) while this goroutine hands them to dst. It returns the receiver's
// final status, or the first error of either side.
func (mv *StateMove) pump(ctx context.Context, dst *gate.StateConn, src StateSource, from int) (*gate.StateStatus, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan gate.StateChunk, stateWindow)
	var fetchErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
		for i := from; i < mv.Chunks; {
			r, err := src.Chunks(ctx, mv.Session, i, stateBatch)
			if err == nil && len(r.Chunks) == 0 {
				err = errors.New("the sender answered no chunks")
			}
			if err != nil {
				fetchErr = err
				return
			}
			mv.SenderPeak = max(mv.SenderPeak, r.PeakBytes)
			mv.SenderPeakRSS = max(mv.SenderPeakRSS, r.RSS)
			for _, c := range r.Chunks {
				select {
				case queue <- c:
				case <-ctx.Done():
					return
				}
			}
			i += len(r.Chunks)
		}
	})
	var last *gate.StateStatus
	var sendErr error
	var held int64
	for c := range queue {
		if sendErr != nil {
			continue // drain: the fetcher stops at the cancel below
		}
		held = int64(len(c.CT)) * int64(len(queue)+1)
		mv.HostPeak = max(mv.HostPeak, held)
		st, err := dst.Chunk(ctx, mv.Session, c)
		if err != nil {
			sendErr = err
			cancel()
			continue
		}
		mv.Relayed += int64(len(c.CT) + len(c.IV))
		last = st
	}
	wg.Wait()
	switch {
	case sendErr != nil:
		return nil, sendErr
	case fetchErr != nil:
		return nil, fetchErr
	case last == nil || !last.Done:
		return nil, errors.New("the chunks ended before the receiver had the whole state")
	}
	return last, nil
}

// StateRequest is a state transfer step another invoker asks of this one (through the controller's
// relay): Op "offer" with the receiving owner's key-request, or "chunks" of a session.
type StateRequest struct {
	Op      string          `json:"state"`
	Request json.RawMessage `json:"request,omitempty"`
	Session string          `json:"session,omitempty"`
	From    int             `json:"from,omitempty"`
	Count   int             `json:"count,omitempty"`
}

// IsStateRequest says whether a relayed request is a state transfer step (rather than a key-request).
func IsStateRequest(raw json.RawMessage) (*StateRequest, bool) {
	var r StateRequest
	if json.Unmarshal(raw, &r) != nil || r.Op == "" {
		return nil, false
	}
	return &r, true
}

// stateSessionTTL is how long the manager remembers which owner a session it offered lives in (the
// owners forget theirs after two minutes).
const stateSessionTTL = 2 * time.Minute

type stateSession struct {
	owner string
	until time.Time
}

// ServeState answers another invoker's state transfer step for image: an offer from an owner of
// image here (the first that offers; the session is remembered with its owner), or chunks of a
// session from the owner that offered it. ErrNoOwner when none runs here (or the session's owner is
// gone).
func (m *Manager) ServeState(ctx context.Context, image string, r *StateRequest) (json.RawMessage, error) {
	switch r.Op {
	case "offer":
		ids, eps := m.keyEndpoints(image)
		if len(eps) == 0 {
			return nil, fmt.Errorf("offer image state of %s: %w", image, ErrNoOwner)
		}
		var errs []error
		for i, e := range eps {
			src := &GateSource{Ep: e}
			o, err := src.Offer(ctx, r.Request)
			src.Close()
			if err == nil {
				m.rememberSession(o.Session, ids[i])
				return o.Raw, nil
			}
			errs = append(errs, fmt.Errorf("offer image state of %s from %s: %w", image, ids[i], err))
			if gate.IsClass(err, gate.ClassKey) {
				break // the owner refused the request (evidence): another owner of the image would too
			}
		}
		return nil, errors.Join(errs...)
	case "chunks":
		ep, ok := m.sessionOwner(image, r.Session)
		if !ok {
			return nil, fmt.Errorf("image state of %s, session %s: %w", image, r.Session, ErrNoOwner)
		}
		c, err := gate.DialState(ctx, ep)
		if err != nil {
			return nil, err
		}
		defer c.Close() // one request, one reply: nothing is pending when the call returned
		out, err := c.Chunks(ctx, r.Session, r.From, r.Count)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}
	return nil, fmt.Errorf("unknown state transfer step %q", r.Op)
}

func (m *Manager) rememberSession(session, owner string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := time.Now()
	if m.sessions == nil {
		m.sessions = map[string]stateSession{}
	}
	for id, s := range m.sessions {
		if t.After(s.until) {
			delete(m.sessions, id)
		}
	}
	m.sessions[session] = stateSession{owner: owner, until: t.Add(stateSessionTTL)}
}

func (m *Manager) sessionOwner(image, session string) (gate.KeyEndpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[session]
	if !ok || time.Now().After(s.until) {
		return gate.KeyEndpoint{}, false
	}
	h, ok := m.owners[s.owner]
	if !ok || h.image != image {
		return gate.KeyEndpoint{}, false
	}
	return keyEndpoint(h.owner), true
}
