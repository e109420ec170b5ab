package whiskapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The image key across invokers (CONFIDENTIALITY.md, "Key lifecycle"): the controller tells which
// invoker published an image's evidence and relays key requests and offers between invokers. What
// passes here is opaque to the invoker as to the controller: evidence, ephemeral public keys and
// HPKE ciphertext that only an enclave of the image opens.

var (
	// ErrKeyConflict: the controller refused evidence whose kid is not the image's published one
	// while the invoker that published that one is healthy.
	ErrKeyConflict = errors.New("another healthy invoker holds the image's key")
	// ErrNoPublisher: no healthy invoker other than this one published the image's evidence.
	ErrNoPublisher = errors.New("no other healthy invoker holds the image's key")
)

// maxKeyAnswer bounds what the relay answers (its requests and offers are limited to 128 KiB).
const maxKeyAnswer = 1 << 20

// Published is the controller's view of an image's key: its evidence as published, the invoker
// that published it (-1: unknown) and whether that invoker is healthy.
type Published struct {
	Image    string          `json:"image"`
	Invoker  int             `json:"invoker"`
	Healthy  bool            `json:"healthy"`
	Evidence json.RawMessage `json:"evidence"`
}

// PublishedEvidence asks for image's published evidence (GET /internal/v1/evidence/{image});
// ErrNotFound when none was published.
func (c *Client) PublishedEvidence(ctx context.Context, image string) (*Published, error) {
	var p Published
	status, err := c.keyCall(ctx, c.http, http.MethodGet, c.base.JoinPath("internal", "v1", "evidence", image), nil, nil, &p)
	switch {
	case err != nil:
		return nil, fmt.Errorf("published evidence of %s: %w", image, err)
	case status == http.StatusNotFound:
		return nil, fmt.Errorf("published evidence of %s: %w", image, ErrNotFound)
	}
	return &p, nil
}

// RequestKey posts an owner's key-request for image (POST /internal/v1/keys/requests) and returns
// the request's id and the invoker it goes to; ErrNoPublisher when no other healthy invoker
// published the image.
func (c *Client) RequestKey(ctx context.Context, image string, request json.RawMessage) (id string, publisher int, err error) {
	return c.RequestKeyOf(ctx, image, -1, request)
}

// RequestKeyOf is RequestKey to the invoker holder (-1: any holder), for the steps of a state
// transfer after its offer, which only the invoker that made the offer can answer.
func (c *Client) RequestKeyOf(ctx context.Context, image string, holder int, request json.RawMessage) (id string, publisher int, err error) {
	var out struct {
		ID      string `json:"id"`
		Invoker int    `json:"invoker"`
	}
	body := map[string]any{"image": image, "request": request}
	if holder >= 0 {
		body["invoker"] = holder
	}
	status, err := c.keyCall(ctx, c.http, http.MethodPost, c.base.JoinPath("internal", "v1", "keys", "requests"), nil, body, &out)
	switch {
	case err != nil:
		return "", 0, fmt.Errorf("request key of %s: %w", image, err)
	case status == http.StatusNotFound:
		return "", 0, fmt.Errorf("request key of %s: %w", image, ErrNoPublisher)
	case out.ID == "":
		return "", 0, fmt.Errorf("request key of %s: answer without an id", image)
	}
	return out.ID, out.Invoker, nil
}

// KeyAnswer is a publisher's answer to a key request: its owner's key-offer, or why it has none.
type KeyAnswer struct {
	Offer json.RawMessage `json:"offer,omitempty"`
	Error string          `json:"error,omitempty"`
}

// AwaitOffer waits up to wait (at most 30 s) for the answer to the key request id; nil, nil when
// none came in that time.
func (c *Client) AwaitOffer(ctx context.Context, id string, wait time.Duration) (*KeyAnswer, error) {
	var a KeyAnswer
	q := url.Values{"timeout": {strconv.FormatInt(wait.Milliseconds(), 10)}}
	status, err := c.keyCall(ctx, c.poll, http.MethodGet, c.base.JoinPath("internal", "v1", "keys", "requests", id), q, nil, &a)
	switch {
	case err != nil:
		return nil, fmt.Errorf("await key offer %s: %w", id, err)
	case status == http.StatusAccepted:
		return nil, nil
	case status == http.StatusNotFound:
		return nil, fmt.Errorf("await key offer %s: the request expired", id)
	}
	return &a, nil
}

// KeyRequest is a request for a key this invoker published, from invoker Invoker.
type KeyRequest struct {
	ID      string          `json:"id"`
	Image   string          `json:"image"`
	Invoker int             `json:"invoker"`
	Request json.RawMessage `json:"request"`
}

// PollKeyRequests waits up to wait (at most 30 s) for requests of keys this invoker published.
func (c *Client) PollKeyRequests(ctx context.Context, wait time.Duration) ([]KeyRequest, error) {
	var out struct {
		Requests []KeyRequest `json:"requests"`
	}
	q := url.Values{"timeout": {strconv.FormatInt(wait.Milliseconds(), 10)}}
	status, err := c.keyCall(ctx, c.poll, http.MethodGet, c.base.JoinPath("internal", "v1", "keys", "requests"), q, nil, &out)
	switch {
	case err != nil:
		return nil, fmt.Errorf("poll key requests: %w", err)
	case status != http.StatusOK:
		return nil, fmt.Errorf("poll key requests: HTTP %d: the controller has no key relay", status)
	}
	return out.Requests, nil
}

// AnswerKeyRequest answers the key request id with a.
func (c *Client) AnswerKeyRequest(ctx context.Context, id string, a KeyAnswer) error {
	status, err := c.keyCall(ctx, c.http, http.MethodPut, c.base.JoinPath("internal", "v1", "keys", "requests", id), nil, a, nil)
	if err == nil && status == http.StatusNotFound {
		err = errors.New("the request expired")
	}
	if err != nil {
		return fmt.Errorf("answer key request %s: %w", id, err)
	}
	return nil
}

// keyCall makes one call of the key relay as this invoker (?invoker=N, the invoker token) and
// decodes a 200 or 201 answer into out. It returns 202 and 404 to the caller, which gives them a
// meaning; any other status is an error with the controller's text.
func (c *Client) keyCall(ctx context.Context, hc *http.Client, method string, u *url.URL, q url.Values, in, out any) (int, error) {
	if c.token == "" {
		return 0, ErrNoToken
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("invoker", strconv.Itoa(c.invoker))
	u.RawQuery = q.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(TokenHeader, c.token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyAnswer))
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return 0, fmt.Errorf("decode answer: %w", err)
			}
		}
	case http.StatusNoContent, http.StatusAccepted, http.StatusNotFound:
	default:
		return 0, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, nil
}
