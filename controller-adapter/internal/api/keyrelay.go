package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/attest"
)

// The image key across invokers (CONFIDENTIALITY.md, "Key lifecycle"; PROTOCOL.md, "Image key
// across invokers"). The controller remembers which invokers published which kid of each image
// (the holders) and relays key requests and offers between invokers. Both are opaque to it: a request is an enclave's
// evidence over an ephemeral public key, an offer the image key HPKE-sealed to that key; the
// enclaves verify each other's evidence. The relay's state is this process's memory, bounded and
// expiring: a controller restart forgets the holders (the next invoker to publish holds the image's
// key) and the requests in flight (their invokers fall back, as with no holder).

// Limits of the relay.
const (
	// maxKeyMessageBytes bounds a relayed request or offer body (evidence with an sgx quote, a public
	// key, a sealed key and its rotated-out keys: a few KiB; a state transfer's answer carries a batch
	// of sealed 64 KiB chunks in base64: under 200 KiB).
	maxKeyMessageBytes = 512 << 10
	// maxKeyRequests bounds the requests held at once; a further one is refused (503).
	maxKeyRequests = 256
	// keyRequestTTL is how long a request and its offer are kept: well above an invoker's wait
	// for the offer (10 s), so an offer is not lost to a slow poll.
	keyRequestTTL = 30 * time.Second
	// maxKeyPoll and defaultKeyPoll bound a long poll (?timeout= in milliseconds).
	maxKeyPoll     = 30 * time.Second
	defaultKeyPoll = 20 * time.Second
	// maxInvokerIndex bounds ?invoker= (OpenWhisk's invoker instances are small numbers).
	maxInvokerIndex = 1 << 16
)

// keyRelay is the relay's state; every field under mu.
type keyRelay struct {
	mu sync.Mutex
	// evMu serialises an evidence publication's check and write, so two invokers publishing
	// different kids at once cannot both pass the check.
	evMu     sync.Mutex
	holders  map[string]map[int]string // image -> invoker -> the kid it last published
	requests map[string]*keyRequest
	order    []string      // request ids, oldest first (the expiry sweep)
	changed  chan struct{} // closed and replaced at every change: wakes the long polls
	now      func() time.Time
}

type keyRequest struct {
	id, image string
	from, to  int
	request   json.RawMessage
	taken     bool            // the publishing invoker has polled it
	answer    json.RawMessage // {"offer":...} or {"error":...}, once answered
	expires   time.Time
}

func newKeyRelay(now func() time.Time) *keyRelay {
	return &keyRelay{holders: map[string]map[int]string{}, requests: map[string]*keyRequest{}, changed: make(chan struct{}), now: now}
}

// notifyLocked wakes every long poll; r.mu is held.
func (r *keyRelay) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// sweepLocked forgets expired requests; r.mu is held.
func (r *keyRelay) sweepLocked() {
	t := r.now()
	n := 0
	for _, id := range r.order {
		if q, ok := r.requests[id]; ok && t.Before(q.expires) {
			r.order[n] = id
			n++
			continue
		}
		delete(r.requests, id)
	}
	r.order = r.order[:n]
}

// holder returns a healthy invoker other than not that published kid for image (the lowest
// number), or -1.
func (r *keyRelay) holder(image, kid string, not int, healthy func(int) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holderLocked(image, kid, not, healthy)
}

func (r *keyRelay) holderLocked(image, kid string, not int, healthy func(int) bool) int {
	best := -1
	for n, k := range r.holders[image] {
		if k == kid && n != not && (best < 0 || n < best) && healthy(n) {
			best = n
		}
	}
	return best
}

// published records that invoker published kid for image (canonicalConflict let it through); an
// invoker that does not say who it is (-1) holds nothing the relay can ask for.
func (r *keyRelay) published(image, kid string, invoker int) {
	if invoker < 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holders[image] == nil {
		r.holders[image] = map[int]string{}
	}
	r.holders[image][invoker] = kid
}

// invokerParam reads the query parameter invoker (an invoker instance number); ok false after
// answering 400.
func (h *handler) invokerParam(c *gin.Context, required bool) (int, bool) {
	s, present := c.GetQuery("invoker")
	if !present && !required {
		return -1, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= maxInvokerIndex {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The query parameter 'invoker' must be an invoker instance number (0 to %d).", maxInvokerIndex-1))
		return 0, false
	}
	return n, true
}

// pollTimeout reads ?timeout= (milliseconds, up to maxKeyPoll); ok false after answering 400.
func (h *handler) pollTimeout(c *gin.Context) (time.Duration, bool) {
	s, present := c.GetQuery("timeout")
	if !present {
		return defaultKeyPoll, true
	}
	ms, err := strconv.Atoi(s)
	if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxKeyPoll {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The query parameter 'timeout' must be milliseconds up to %d.", maxKeyPoll.Milliseconds()))
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// invokerHealthy says whether invoker n is up, as GET /invokers shows it.
func (h *handler) invokerHealthy(n int) bool {
	if h.inv == nil || n < 0 {
		return false
	}
	invs := h.inv.Invokers()
	return n < len(invs) && invs[n].State == "up"
}

// canonicalKid is the kid of image's stored evidence, "" when none is stored (or it no longer
// parses: then it is replaced rather than kept canonical).
func (h *handler) canonicalKid(c *gin.Context, image string) (string, error) {
	doc, _, err := h.store.GetEvidence(c.Request.Context(), image)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	cur, err := attest.Parse(doc)
	if err != nil {
		return "", nil //nolint:nilerr // an unparsable stored document is no canonical kid (see above)
	}
	return cur.Kid, nil
}

// canonicalConflict says why evidence with kid from invoker may not replace the stored evidence of
// image: another, healthy invoker published the stored kid, so that kid stays the one clients seal
// to (the invoker must take it: POST /internal/v1/keys/requests). Empty: the publication may go
// ahead (the same kid, or no other healthy invoker holds the stored one).
func (h *handler) canonicalConflict(c *gin.Context, image, kid string, invoker int) (string, error) {
	cur, err := h.canonicalKid(c, image)
	if err != nil || cur == "" || cur == kid {
		return "", err
	}
	holder := h.relay.holder(image, cur, invoker, h.invokerHealthy)
	if holder < 0 {
		return "", nil
	}
	return fmt.Sprintf("The image %s is published with key %s, which invoker%d holds and is healthy; "+
		"an enclave of invoker%d must take that key (POST /internal/v1/keys/requests) rather than publish its own %s.",
		image, cur, holder, invoker, kid), nil
}

// getInternalEvidence is GET /internal/v1/evidence/{image}[?invoker=N]: invoker N asks, before it
// starts the first owner of an image, whether another invoker holds the image's key: the published
// evidence and a healthy invoker other than N that published its kid ("invoker", -1 and "healthy"
// false when there is none).
func (h *handler) getInternalEvidence(c *gin.Context) {
	image := c.Param("image")
	self, ok := h.invokerParam(c, false)
	if !ok {
		return
	}
	doc, _, err := h.store.GetEvidence(c.Request.Context(), image)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, fmt.Sprintf("No enclave of image %s has published evidence.", image))
		return
	case err != nil:
		h.internalError(c, "read evidence", err)
		return
	}
	ev, err := attest.Parse(doc)
	if err != nil {
		h.internalError(c, "parse stored evidence", err)
		return
	}
	pub := h.relay.holder(image, ev.Kid, self, h.invokerHealthy)
	// The evidence goes out byte for byte (its hash names it in receipts), so the answer is built
	// here rather than re-encoded.
	head, err := marshal(map[string]any{"image": image, "kid": ev.Kid, "invoker": pub, "healthy": pub >= 0})
	if err != nil {
		h.internalError(c, "evidence answer", err)
		return
	}
	out := append(head[:len(head)-1:len(head)-1], `,"evidence":`...)
	out = append(append(out, doc...), '}')
	c.Data(http.StatusOK, "application/json", out)
}

// postKeyRequest is POST /internal/v1/keys/requests?invoker=N, body {"image", "request"[,
// "invoker": M]}: invoker N's new owner of image asks for the image key (or a state transfer's
// step: the request is opaque here). The request is queued for a healthy invoker other than N that
// published the image's current kid (M when given: a state transfer's chunks come from the invoker
// that offered the session); the answer is its id and that invoker (201), or 404 when there is
// none (N then lets its owner unseal or make the key).
func (h *handler) postKeyRequest(c *gin.Context) {
	from, ok := h.invokerParam(c, true)
	if !ok {
		return
	}
	body, ok := h.readBodyOrFail(c, maxKeyMessageBytes)
	if !ok {
		return
	}
	in := struct {
		Image   string          `json:"image"`
		Request json.RawMessage `json:"request"`
		Invoker *int            `json:"invoker"`
	}{}
	if err := json.Unmarshal(body, &in); err != nil || in.Image == "" || len(in.Image) > 256 || !isJSONObject(in.Request) {
		h.fail(c, http.StatusBadRequest, `The key request must be {"image": "IMAGE", "request": {...}} (the owner's key-request).`)
		return
	}
	if in.Invoker != nil && (*in.Invoker < 0 || *in.Invoker >= maxInvokerIndex) {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The key request's 'invoker' must be an invoker instance number (0 to %d).", maxInvokerIndex-1))
		return
	}
	kid, err := h.canonicalKid(c, in.Image)
	if err != nil {
		h.internalError(c, "read evidence", err)
		return
	}
	r := h.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	to := -1
	switch {
	case kid == "":
	case in.Invoker != nil:
		if n := *in.Invoker; n != from && r.holders[in.Image][n] == kid && h.invokerHealthy(n) {
			to = n
		}
	default:
		to = r.holderLocked(in.Image, kid, from, h.invokerHealthy)
	}
	if to < 0 {
		h.fail(c, http.StatusNotFound, fmt.Sprintf("No other healthy invoker holds the key of image %s.", in.Image))
		return
	}
	r.sweepLocked()
	if len(r.requests) >= maxKeyRequests {
		h.fail(c, http.StatusServiceUnavailable, fmt.Sprintf("Too many key requests in flight (%d); try again later.", maxKeyRequests))
		return
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		h.internalError(c, "key request id", err)
		return
	}
	q := &keyRequest{id: hex.EncodeToString(b[:]), image: in.Image, from: from, to: to, request: in.Request,
		expires: r.now().Add(keyRequestTTL)}
	r.requests[q.id] = q
	r.order = append(r.order, q.id)
	r.notifyLocked()
	h.log.Info("image key requested", zap.String("transid", tid(c).ID), zap.String("image", in.Image),
		zap.Int("from", from), zap.Int("to", to), zap.String("request", q.id))
	writeJSON(c, http.StatusCreated, map[string]any{"id": q.id, "invoker": to})
}

// pollKeyRequests is GET /internal/v1/keys/requests?invoker=N[&timeout=MS]: the requests for the
// keys invoker N published, waiting up to the timeout for one. Each is handed out once.
func (h *handler) pollKeyRequests(c *gin.Context) {
	to, ok := h.invokerParam(c, true)
	if !ok {
		return
	}
	wait, ok := h.pollTimeout(c)
	if !ok {
		return
	}
	type out struct {
		ID      string          `json:"id"`
		Image   string          `json:"image"`
		Invoker int             `json:"invoker"`
		Request json.RawMessage `json:"request"`
	}
	r := h.relay
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		r.sweepLocked()
		list := []out{}
		for _, id := range r.order {
			if q := r.requests[id]; q.to == to && !q.taken {
				q.taken = true
				list = append(list, out{ID: q.id, Image: q.image, Invoker: q.from, Request: q.request})
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(list) > 0 {
			writeJSON(c, http.StatusOK, map[string]any{"requests": list})
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			writeJSON(c, http.StatusOK, map[string]any{"requests": list})
			return
		case <-shuttingDown(c):
			writeJSON(c, http.StatusOK, map[string]any{"requests": list})
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// answerKeyRequest is PUT /internal/v1/keys/requests/{id}?invoker=N, body {"offer": {...}} or
// {"error": "why"}: the publishing invoker N answers a request with its owner's key-offer (or
// says why it has none).
func (h *handler) answerKeyRequest(c *gin.Context) {
	to, ok := h.invokerParam(c, true)
	if !ok {
		return
	}
	body, ok := h.readBodyOrFail(c, maxKeyMessageBytes)
	if !ok {
		return
	}
	var in struct {
		Offer json.RawMessage `json:"offer,omitempty"`
		Error string          `json:"error,omitempty"`
	}
	if err := json.Unmarshal(body, &in); err != nil || (isJSONObject(in.Offer) == (in.Error != "")) || len(in.Error) > 1024 {
		h.fail(c, http.StatusBadRequest, `The answer must be {"offer": {...}} (the owner's key-offer) or {"error": "why"} (up to 1024 bytes).`)
		return
	}
	answer, err := json.Marshal(in)
	if err != nil {
		h.internalError(c, "key answer", err)
		return
	}
	r := h.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweepLocked()
	q, found := r.requests[c.Param("id")]
	switch {
	case !found:
		h.fail(c, http.StatusNotFound, "The key request does not exist or has expired.")
		return
	case q.to != to:
		h.fail(c, http.StatusForbidden, fmt.Sprintf("The key request is for invoker%d, not invoker%d.", q.to, to))
		return
	case q.answer != nil:
		h.fail(c, http.StatusConflict, "The key request has been answered already.")
		return
	}
	q.answer = answer
	r.notifyLocked()
	c.Status(http.StatusNoContent)
}

// awaitKeyOffer is GET /internal/v1/keys/requests/{id}?invoker=N[&timeout=MS]: the requesting
// invoker N waits for the answer to its request: 200 {"offer"} or {"error"} (then the request is
// forgotten), 202 while none came within the timeout, 404 when the request is unknown or expired.
func (h *handler) awaitKeyOffer(c *gin.Context) {
	from, ok := h.invokerParam(c, true)
	if !ok {
		return
	}
	wait, ok := h.pollTimeout(c)
	if !ok {
		return
	}
	r := h.relay
	id := c.Param("id")
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		r.sweepLocked()
		q, found := r.requests[id]
		if found && q.from != from {
			r.mu.Unlock()
			h.fail(c, http.StatusForbidden, fmt.Sprintf("The key request is invoker%d's, not invoker%d's.", q.from, from))
			return
		}
		if found && q.answer != nil {
			delete(r.requests, id) // sweepLocked drops it from order
			r.mu.Unlock()
			c.Data(http.StatusOK, "application/json", q.answer)
			return
		}
		changed := r.changed
		r.mu.Unlock()
		if !found {
			h.fail(c, http.StatusNotFound, "The key request does not exist or has expired.")
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			writeJSON(c, http.StatusAccepted, map[string]string{"id": id, "state": "pending"})
			return
		case <-shuttingDown(c):
			writeJSON(c, http.StatusAccepted, map[string]string{"id": id, "state": "pending"})
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// isJSONObject says whether raw is a JSON object (the owners' messages are).
func isJSONObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return len(raw) > 0 && json.Unmarshal(raw, &m) == nil && m != nil
}
