package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/whiskapi"
)

// The image key across invokers (CONFIDENTIALITY.md, "Key lifecycle"): keyRelay is the enclave
// manager's way to the keys other invokers hold, and serveKeyRequests answers their requests for
// the keys this invoker published. Both go through the controller-adapter, as ciphertext.

// keyPoll is one long poll of the controller for key requests (its bound is 30 s).
const keyPoll = 25 * time.Second

// keyRelay implements enclave.KeyRelay with the controller's relay.
type keyRelay struct {
	api  *whiskapi.Client
	self int
}

// HeldElsewhere: another invoker published image's evidence and the controller sees it healthy.
func (k keyRelay) HeldElsewhere(ctx context.Context, image string) (bool, error) {
	p, err := k.api.PublishedEvidence(ctx, image)
	if errors.Is(err, whiskapi.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return p.Invoker >= 0 && p.Invoker != k.self && p.Healthy, nil
}

// Relay posts the request and waits for the publisher's answer until ctx ends.
func (k keyRelay) Relay(ctx context.Context, image string, request json.RawMessage) (json.RawMessage, error) {
	a, _, err := k.relayTo(ctx, image, -1, request)
	return a, err
}

// relayTo posts the request to the holder (-1: any holder of the image's key) and waits for its
// answer until ctx ends; it returns the answer and the invoker that gave it.
func (k keyRelay) relayTo(ctx context.Context, image string, holder int, request json.RawMessage) (json.RawMessage, int, error) {
	id, to, err := k.api.RequestKeyOf(ctx, image, holder, request)
	if err != nil {
		return nil, -1, err
	}
	for {
		wait := 5 * time.Second
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			wait = max(time.Until(d), 0)
		}
		a, err := k.api.AwaitOffer(ctx, id, wait)
		switch {
		case err != nil:
			return nil, to, fmt.Errorf("key offer from invoker%d: %w", to, err)
		case a != nil && a.Error != "":
			return nil, to, fmt.Errorf("invoker%d has no key offer: %s", to, a.Error)
		case a != nil:
			return a.Offer, to, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, to, fmt.Errorf("no key offer from invoker%d: %w", to, err)
		}
	}
}

// StateSource is the owner of another invoker that holds image's key, as the sender of a state
// transfer through the controller (enclave.StateRelay): prefer's when it holds the key (the
// controller answers ErrNoPublisher otherwise), any holder's then or when prefer is -1.
func (k keyRelay) StateSource(image string, prefer int) enclave.StateSource {
	return &relaySource{k: k, image: image, prefer: prefer, holder: -1}
}

// relaySource carries a state transfer's steps to the holder that made the offer: the chunks of a
// session can only come from the owner that offered it.
type relaySource struct {
	k      keyRelay
	image  string
	prefer int // the invoker asked first for the offer, -1 for any
	holder int // the invoker that made the offer
}

func (r *relaySource) Offer(ctx context.Context, request json.RawMessage) (*gate.StateOffer, error) {
	body, err := json.Marshal(enclave.StateRequest{Op: "offer", Request: request})
	if err != nil {
		return nil, fmt.Errorf("state offer request: %w", err)
	}
	a, to, err := r.k.relayTo(ctx, r.image, r.prefer, body)
	if r.prefer >= 0 && errors.Is(err, whiskapi.ErrNoPublisher) {
		// The preferred invoker holds no key of the image (or is not healthy): any holder.
		a, to, err = r.k.relayTo(ctx, r.image, -1, body)
	}
	if err != nil {
		return nil, err
	}
	r.holder = to
	return gate.ParseStateOffer(a)
}

func (r *relaySource) Chunks(ctx context.Context, session string, from, count int) (*gate.StateChunks, error) {
	body, err := json.Marshal(enclave.StateRequest{Op: "chunks", Session: session, From: from, Count: count})
	if err != nil {
		return nil, fmt.Errorf("state chunks request: %w", err)
	}
	a, _, err := r.k.relayTo(ctx, r.image, r.holder, body)
	if err != nil {
		return nil, err
	}
	var out gate.StateChunks
	if err := json.Unmarshal(a, &out); err != nil {
		return nil, fmt.Errorf("state chunks from invoker%d malformed: %w", r.holder, err)
	}
	return &out, nil
}

// serveKeyRequests answers, until ctx ends, the requests other invokers' owners make for the keys
// this invoker's owners published: each with the key-offer of an owner of the image here, or the
// reason there is none (the requester then falls back at once rather than at its timeout).
func serveKeyRequests(ctx context.Context, api *whiskapi.Client, mgr *enclave.Manager, log *zap.Logger) {
	var answering sync.WaitGroup
	defer answering.Wait()
	var b pollBackoff
	for ctx.Err() == nil {
		reqs, err := api.PollKeyRequests(ctx, keyPoll)
		if err != nil {
			b.failed(ctx, log, "polling the controller for key requests failed; trying again", err)
			continue
		}
		b.reset()
		for _, r := range reqs {
			answering.Go(func() { answerKeyRequest(ctx, api, mgr, log, r) })
		}
	}
}

func answerKeyRequest(ctx context.Context, api *whiskapi.Client, mgr *enclave.Manager, log *zap.Logger, r whiskapi.KeyRequest) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var a whiskapi.KeyAnswer
	var offer json.RawMessage
	var err error
	sr, isState := enclave.IsStateRequest(r.Request)
	if !isState || sr.Op != "chunks" {
		// The controller asks this invoker because it published the image's key: an owner retired as
		// idle is started again to answer (it unseals the key), and a running one counts as used, so
		// it is not retired in the middle of the transfer.
		err = mgr.Prepare(ctx, r.Image, r.Invoker)
	}
	switch {
	case err != nil:
		// Answered below as a refusal, as when no owner runs.
	case isState:
		offer, err = mgr.ServeState(ctx, r.Image, sr)
		if err == nil && sr.Op == "chunks" {
			// A state step is one of many (a chunk batch each): logged when refused only.
			if aerr := api.AnswerKeyRequest(ctx, r.ID, whiskapi.KeyAnswer{Offer: offer}); aerr != nil {
				log.Warn("answering a state transfer step failed", zap.String("image", r.Image), zap.Int("from", r.Invoker), zap.Error(aerr))
			}
			return
		}
	default:
		offer, err = mgr.OfferKey(ctx, r.Image, r.Request)
	}
	if err != nil {
		a.Error = err.Error()
		if len(a.Error) > 1000 {
			a.Error = a.Error[:1000]
		}
	} else {
		a.Offer = offer
	}
	if aerr := api.AnswerKeyRequest(ctx, r.ID, a); aerr != nil {
		log.Warn("answering a key request failed", zap.String("image", r.Image), zap.Int("from", r.Invoker), zap.Error(aerr))
		return
	}
	if err != nil {
		log.Warn("refused another invoker's key request", zap.String("image", r.Image), zap.Int("from", r.Invoker), zap.Error(err))
		return
	}
	log.Info("image key offered to another invoker", zap.String("image", r.Image), zap.Int("to", r.Invoker))
}

// pollBackoff paces a loop of long polls to the controller: a failing poll (the controller
// restarts, or lacks the route) is tried again after a pause that doubles from a second up to half
// a minute, and logged once per run of failures.
type pollBackoff struct{ pause time.Duration }

// failed logs err (msg) when it starts a run of failures, then waits out the pause or ctx.
func (b *pollBackoff) failed(ctx context.Context, log *zap.Logger, msg string, err error) {
	if ctx.Err() != nil {
		return // the poll failed because the loop is ending
	}
	if b.pause == 0 {
		log.Warn(msg, zap.Error(err))
	}
	b.pause = min(max(2*b.pause, time.Second), 30*time.Second)
	select {
	case <-ctx.Done():
	case <-time.After(b.pause):
	}
}

// reset ends a run of failures: the next one is logged and paused a second.
func (b *pollBackoff) reset() { b.pause = 0 }
