// Package whiskapi is the invoker's client of the controller's stores: it fetches actions by name and
// revision (cached by revision, as OpenWhisk's invoker caches entity documents), reads an
// activation's content when its message carried it by reference (LoadContent), stores finished
// activation records, publishes enclave evidence and carries image keys between invokers through
// the controller's key relay (keys.go: ciphertext only). It runs on the untrusted host. It reads an action with the invoking user's key
// when the ActivationMessage carries one (always from OpenWhisk's controller; from the
// controller-adapter only for actions with provide-api-key), and otherwise with the invoker token.
//
// Store is the only path by which an activation record reaches the controller-adapter's store: the
// invoker is the records' one writer, as OpenWhisk's invoker writes its activations database, and the
// controller learns results from the acks (see invoker/internal/activation for the order).
package whiskapi

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// Sentinel errors of Fetch, mapped by the pipeline to OpenWhisk's answers.
var (
	// ErrNotFound: the action does not exist (HTTP 404) or the key may not see it (401/403, which the
	// REST API also uses for entities of other namespaces).
	ErrNotFound = errors.New("action not found")
	// ErrUnavailable: the API could not be reached or answered with a server error.
	ErrUnavailable = errors.New("action store unavailable")
	// ErrNoToken: Store was called without an invoker token, so records are not stored (an invoker
	// behind OpenWhisk's own controller, which reads records from CouchDB, has none).
	ErrNoToken = errors.New("no invoker token: activation records are not stored")
)

// TokenHeader carries the invoker token to the controller-adapter's /internal endpoints.
const TokenHeader = "X-Teemate-Invoker-Token"

// Config of the client.
type Config struct {
	// APIHost is the OpenWhisk REST endpoint, e.g. http://127.0.0.1:3233.
	APIHost string
	// StoreToken authenticates activation writes to the controller-adapter (header
	// X-Teemate-Invoker-Token). Empty disables storing.
	StoreToken string
	// CacheSize bounds the number of cached action revisions (default 512).
	CacheSize int
	// Timeout bounds each request (default 10 s), except the key relay's long polls (keys.go).
	Timeout time.Duration
	// Invoker is this invoker's instance number: it names the publisher of evidence and the
	// party of key requests (keys.go).
	Invoker int
}

// Client talks to the REST API. Safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	invoker int
	http    *http.Client
	poll    *http.Client // no timeout of its own: long polls are bounded by their context

	mu    sync.Mutex
	cap   int
	cache map[string]*list.Element
	lru   *list.List
}

type cached struct {
	key    string
	action *whisk.Action
}

// New creates a client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.APIHost, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("api host %q is not an absolute URL", cfg.APIHost)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 512
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Client{
		base: u, token: cfg.StoreToken, invoker: cfg.Invoker,
		http:  &http.Client{Timeout: cfg.Timeout},
		poll:  &http.Client{},
		cap:   cfg.CacheSize,
		cache: make(map[string]*list.Element), lru: list.New(),
	}, nil
}

// Fetch returns the action name at revision rev, authenticated with apiKey ("uuid:key"). A nil rev
// (the health test action sends null) always fetches the latest document. cacheHit reports whether
// the answer came from the cache. Errors wrap ErrNotFound or ErrUnavailable.
func (c *Client) Fetch(ctx context.Context, name whisk.FullyQualifiedEntityName, rev *string, apiKey string) (a *whisk.Action, cacheHit bool, err error) {
	key := name.String()
	if rev != nil && *rev != "" {
		if a := c.lookup(key + "@" + *rev); a != nil {
			return a, true, nil
		}
	}
	a, err = c.get(ctx, name, apiKey)
	if err != nil {
		return nil, false, err
	}
	// Cache under the revision the document carries; a request for an older revision misses and
	// gets the latest, as OpenWhisk's invoker retries a revision mismatch with the latest document.
	if a.Revision != "" {
		c.store(key+"@"+a.Revision, a)
	}
	return a, false, nil
}

func (c *Client) get(ctx context.Context, name whisk.FullyQualifiedEntityName, apiKey string) (*whisk.Action, error) {
	ns := name.Namespace()
	entity := name.Name
	if pkg := name.Package(); pkg != "" {
		entity = pkg + "/" + name.Name
	}
	// The user's key is in the message only for actions that asked for it (provide-api-key), so
	// without one the action is read through the controller-adapter's internal endpoint, on the
	// invoker's own token. OpenWhisk's controller always sends the key: that path is kept.
	u := c.base.JoinPath("api", "v1", "namespaces", ns, "actions", entity)
	if apiKey == "" {
		if c.token == "" {
			return nil, fmt.Errorf("%w: no user key in the message and no invoker token to read %s with", ErrUnavailable, name)
		}
		u = c.base.JoinPath("internal", "v1", "actions", ns, entity)
	}
	u.RawQuery = "code=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: build request: %w", ErrUnavailable, err)
	}
	if apiKey == "" {
		req.Header.Set(TokenHeader, c.token)
	} else {
		user, pass, _ := strings.Cut(apiKey, ":")
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrUnavailable, u.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrUnavailable, u.Path, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("%w: GET %s: HTTP %d", ErrNotFound, u.Path, resp.StatusCode)
	default:
		return nil, fmt.Errorf("%w: GET %s: HTTP %d", ErrUnavailable, u.Path, resp.StatusCode)
	}
	var a whisk.Action
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%w: decode action %s: %w", ErrUnavailable, name, err)
	}
	return &a, nil
}

// Store writes a finished activation record (internal form, with logs) to the activation store
// (PUT /internal/v1/activations/{ns}/{id}, an idempotent replace by id). OpenWhisk's invoker writes
// the same document to its activations database. Without a token it returns ErrNoToken.
func (c *Client) Store(ctx context.Context, act *whisk.WhiskActivation) error {
	if c.token == "" {
		return ErrNoToken
	}
	body, err := json.Marshal(act)
	if err != nil {
		return fmt.Errorf("encode activation %s: %w", act.ActivationID, err)
	}
	u := c.base.JoinPath("internal", "v1", "activations", act.Namespace, act.ActivationID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("store activation %s: %w", act.ActivationID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TokenHeader, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("store activation %s: %w", act.ActivationID, err)
	}
	defer resp.Body.Close()
	// Drained only so the connection can be reused; the status says everything.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("store activation %s: HTTP %d", act.ActivationID, resp.StatusCode)
	}
	return nil
}

func (c *Client) lookup(key string) *whisk.Action {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cache[key]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cached).action
	}
	return nil
}

func (c *Client) store(key string, a *whisk.Action) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cache[key]; ok {
		e.Value.(*cached).action = a
		c.lru.MoveToFront(e)
		return
	}
	c.cache[key] = c.lru.PushFront(&cached{key: key, action: a})
	for c.lru.Len() > c.cap {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.cache, last.Value.(*cached).key)
	}
}

// PublishEvidence publishes the evidence an enclave owner of image serves (PUT
// /internal/v1/evidence/{image}?invoker=N), byte for byte: the controller keeps the latest per image
// and serves it to clients, who verify it. Evidence with another kid than the one a healthy invoker
// published is refused with ErrKeyConflict. Without a token it returns ErrNoToken.
func (c *Client) PublishEvidence(ctx context.Context, image string, evidence []byte) error {
	if c.token == "" {
		return ErrNoToken
	}
	u := c.base.JoinPath("internal", "v1", "evidence", image)
	u.RawQuery = url.Values{"invoker": {strconv.Itoa(c.invoker)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(evidence))
	if err != nil {
		return fmt.Errorf("publish evidence of %s: %w", image, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TokenHeader, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("publish evidence of %s: %w", image, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("publish evidence of %s: read answer: %w", image, err)
	}
	if resp.StatusCode == http.StatusConflict {
		return fmt.Errorf("publish evidence of %s: %w: %s", image, ErrKeyConflict, bytes.TrimSpace(body))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("publish evidence of %s: HTTP %d: %s", image, resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// ErrContentUnavailable: an activation's content kept by reference could not be had (the
// controller-adapter has none for it, or is unreachable, or what came is not what the reference
// names). The activation is answered as a whisk internal error: the platform's fault.
var ErrContentUnavailable = errors.New("activation content unavailable")

// LoadContent fills msg.Content when the message carries its content by reference
// (whisk.ContentRef): it reads GET /internal/v1/activations/{ns}/{id}/content with the invoker
// token from src (a *Client; anything else has no controller to ask) and checks the bytes against
// the reference. A message without a reference is left alone. Errors wrap ErrContentUnavailable.
func LoadContent(ctx context.Context, src any, msg *whisk.ActivationMessage) error {
	ref := msg.ContentRef
	if ref == nil {
		return nil
	}
	c, ok := src.(*Client)
	if !ok || c.token == "" {
		return fmt.Errorf("%w: activation %s: no invoker token to read its content with", ErrContentUnavailable, msg.ActivationID)
	}
	u := c.base.JoinPath("internal", "v1", "activations", msg.User.Namespace.Name, msg.ActivationID, "content")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: activation %s: %w", ErrContentUnavailable, msg.ActivationID, err)
	}
	req.Header.Set(TokenHeader, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrContentUnavailable, u.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(ref.Bytes)+1))
	if err != nil {
		return fmt.Errorf("%w: read %s: %w", ErrContentUnavailable, u.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: HTTP %d", ErrContentUnavailable, u.Path, resp.StatusCode)
	}
	if err := ref.Check(b); err != nil {
		return fmt.Errorf("%w: activation %s: %w", ErrContentUnavailable, msg.ActivationID, err)
	}
	msg.Content, msg.ContentRef = b, nil
	return nil
}
