package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/attest"
)

// noEvidenceMessage starts the platform's answer for an image without published evidence.
const noEvidenceMessage = "No enclave of image"

// maxReply bounds what is read of one answer: an activation record holds up to 1 MiB of result and
// 10 MiB of logs, JSON-escaped.
const maxReply = 32 << 20

// Config of a Client.
type Config struct {
	// APIHost is the platform's base URL (http://127.0.0.1:3233). Without a scheme, https is
	// assumed, as wsk does.
	APIHost string
	// Auth is the OpenWhisk key, "uuid:key".
	Auth string
	// Policy decides which evidence is accepted (attest.Verify). Simulated evidence (direct mode)
	// is refused unless Policy.AllowSimulated.
	Policy attest.Policy
	// HTTP is the client used for every call (default: a client with a 5-minute timeout, longer than
	// OpenWhisk's 60-second blocking wait).
	HTTP *http.Client
}

// Client talks to one platform with one key. Its methods are safe for concurrent use.
type Client struct {
	base       string
	user, pass string
	policy     attest.Policy
	hc         *http.Client

	mu sync.Mutex
	ns string // the key's namespace, once asked
}

// New checks the host and the key and makes the client.
func New(cfg Config) (*Client, error) {
	host := strings.TrimRight(strings.TrimSpace(cfg.APIHost), "/")
	if host == "" {
		return nil, errors.New("client: no API host (--apihost, or APIHOST in the wsk properties)")
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: bad API host %q: want http(s)://host[:port]", cfg.APIHost)
	}
	user, pass, ok := strings.Cut(cfg.Auth, ":")
	if !ok || user == "" || pass == "" {
		return nil, errors.New("client: the auth key must be uuid:key (--auth, or AUTH in the wsk properties)")
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	return &Client{base: host, user: user, pass: pass, policy: cfg.Policy, hc: hc}, nil
}

// APIHost is the base URL the client calls.
func (c *Client) APIHost() string { return c.base }

// do sends one request and reads the answer. A status outside 2xx becomes an *APIError, except
// those listed in accept, whose bodies are returned as they are.
func (c *Client) do(ctx context.Context, method, path string, body any, accept ...int) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case json.RawMessage:
			b = v
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return nil, 0, fmt.Errorf("%s %s: encode the request: %w", method, path, err)
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.SetBasicAuth(c.user, c.pass)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		var ne net.Error
		var ue *url.Error
		if errors.As(err, &ne) || errors.As(err, &ue) {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrUnreachable, c.base, err)
		}
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%w: %s %s: read the answer: %w", ErrUnreachable, method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, resp.StatusCode, nil
	}
	for _, a := range accept {
		if resp.StatusCode == a {
			return b, resp.StatusCode, nil
		}
	}
	return nil, resp.StatusCode, apiError(method, path, resp.StatusCode, b)
}

func apiError(method, path string, status int, body []byte) *APIError {
	e := &APIError{Method: method, Path: path, Status: status}
	var doc struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &doc) == nil && doc.Error != "" {
		e.Message = doc.Error
	} else {
		e.Message = strings.TrimSpace(truncate(string(body), 300))
	}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		e.kind = ErrUnauthorized
	case http.StatusNotFound:
		e.kind = ErrNotFound
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Namespace is the namespace of the client's key (the first the platform lists for it), which
// sealed envelopes are bound to.
func (c *Client) Namespace(ctx context.Context) (string, error) {
	c.mu.Lock()
	ns := c.ns
	c.mu.Unlock()
	if ns != "" {
		return ns, nil
	}
	b, _, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces", nil)
	if err != nil {
		return "", err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil || len(list) == 0 {
		return "", fmt.Errorf("list namespaces: unexpected answer %q", truncate(string(b), 200))
	}
	c.mu.Lock()
	c.ns = list[0]
	c.mu.Unlock()
	return list[0], nil
}

// QualifiedName is the action's fully qualified name, /namespace/[package/]name, as the enclave
// sees it in __OW_ACTION_NAME. name may be relative (hello, pkg/hello) or qualified
// (/guest/hello, /_/hello).
func (c *Client) QualifiedName(ctx context.Context, name string) (ns, qualified string, err error) {
	if err := checkName(name); err != nil {
		return "", "", err
	}
	rel := name
	if strings.HasPrefix(name, "/") {
		parts := strings.SplitN(name[1:], "/", 2)
		if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
			return "", "", fmt.Errorf("action name %q: want /namespace/name", name)
		}
		ns, rel = parts[0], parts[1]
	}
	if ns == "" || ns == "_" {
		if ns, err = c.Namespace(ctx); err != nil {
			return "", "", err
		}
	}
	return ns, "/" + ns + "/" + rel, nil
}

func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, "?#\\ \t\n") || strings.Contains(name, "//") || strings.HasSuffix(name, "/") {
		return fmt.Errorf("bad action name %q", name)
	}
	return nil
}

// actionPath is the REST path of an action: /api/v1/namespaces/NS/actions/[PKG/]NAME.
func actionPath(qualified string) string {
	parts := strings.Split(strings.TrimPrefix(qualified, "/"), "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return "/api/v1/namespaces/" + parts[0] + "/actions/" + strings.Join(parts[1:], "/")
}

// KeyValue is OpenWhisk's {"key": ..., "value": ...} of annotations and parameters.
type KeyValue struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Action is the part of an action the client reads and writes.
type Action struct {
	Namespace   string     `json:"namespace,omitempty"`
	Name        string     `json:"name,omitempty"`
	Version     string     `json:"version,omitempty"`
	Exec        Exec       `json:"exec"`
	Annotations []KeyValue `json:"annotations,omitempty"`
	Parameters  []KeyValue `json:"parameters,omitempty"`
}

// Exec is an action's code: its kind (nodejs:20) and the code itself.
type Exec struct {
	Kind string `json:"kind"`
	Code string `json:"code,omitempty"`
	Main string `json:"main,omitempty"`
}

// Annotation returns an annotation's value, or nil.
func (a *Action) Annotation(key string) json.RawMessage {
	for _, kv := range a.Annotations {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// PutAction creates or replaces the action name (relative or qualified).
func (c *Client) PutAction(ctx context.Context, name string, a Action) (*Action, error) {
	_, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	a.Namespace, a.Name = "", ""
	b, _, err := c.do(ctx, http.MethodPut, actionPath(q)+"?overwrite=true", a)
	if err != nil {
		return nil, fmt.Errorf("create action %s: %w", name, err)
	}
	var out Action
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("create action %s: the answer is not an action: %w", name, err)
	}
	return &out, nil
}

// GetAction reads the action name (with its code).
func (c *Client) GetAction(ctx context.Context, name string) (*Action, error) {
	_, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	b, _, err := c.do(ctx, http.MethodGet, actionPath(q)+"?code=true", nil)
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w", name, err)
	}
	var out Action
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("get action %s: the answer is not an action: %w", name, err)
	}
	return &out, nil
}

// Activation is the REST API's activation record (the part the client reads).
type Activation struct {
	ActivationID string   `json:"activationId"`
	Namespace    string   `json:"namespace,omitempty"`
	Name         string   `json:"name,omitempty"`
	Start        int64    `json:"start,omitempty"`
	End          int64    `json:"end,omitempty"`
	Duration     int64    `json:"duration,omitempty"`
	Logs         []string `json:"logs,omitempty"`
	Response     *struct {
		Status  string          `json:"status"`
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result,omitempty"`
	} `json:"response,omitempty"`
	Annotations []KeyValue `json:"annotations,omitempty"`
}

// Done says whether the record holds the activation's outcome (a 202 answer holds only the id).
func (a *Activation) Done() bool { return a != nil && a.Response != nil }

// Invoke invokes the action name with params (a JSON object, or nil). Blocking waits for the
// result (OpenWhisk's ?blocking=true: up to 60 s, after which the answer holds only the
// activation id and Done is false); otherwise the answer holds only the activation id.
func (c *Client) Invoke(ctx context.Context, name string, params json.RawMessage, blocking bool) (*Activation, error) {
	_, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	path := actionPath(q) + "?blocking=" + fmt.Sprint(blocking)
	// A blocking invoke whose action failed answers 502 with the record, as OpenWhisk does.
	b, _, err := c.do(ctx, http.MethodPost, path, params, http.StatusBadGateway)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", name, err)
	}
	var out Activation
	if err := json.Unmarshal(b, &out); err != nil || out.ActivationID == "" {
		return nil, fmt.Errorf("invoke %s: the answer holds no activation id: %q", name, truncate(string(b), 200))
	}
	return &out, nil
}

// GetActivation reads an activation record of the key's namespace. While the activation runs the
// platform answers 404, which is ErrNotFound here too.
func (c *Client) GetActivation(ctx context.Context, id string) (*Activation, error) {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return nil, fmt.Errorf("bad activation id %q", id)
	}
	b, _, err := c.do(ctx, http.MethodGet, "/api/v1/namespaces/_/activations/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, fmt.Errorf("get activation %s: %w", id, err)
	}
	var out Activation
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("get activation %s: the answer is not an activation record: %w", id, err)
	}
	return &out, nil
}

// WaitActivation polls for the record until it is there or ctx ends.
func (c *Client) WaitActivation(ctx context.Context, id string) (*Activation, error) {
	delay := 50 * time.Millisecond
	for {
		a, err := c.GetActivation(ctx, id)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for activation %s: %w (%w)", id, ErrNotReady, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// Evidence fetches the evidence of the image of the action name (relative or qualified):
// GET /api/v1/teemate/evidence?action=/NS/NAME. It does not verify it (Attest does).
func (c *Client) Evidence(ctx context.Context, name string) (*attest.Evidence, error) {
	_, q, err := c.QualifiedName(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.evidence(ctx, "action="+url.QueryEscape(q), name)
}

func (c *Client) evidence(ctx context.Context, query, what string) (*attest.Evidence, error) {
	b, _, err := c.do(ctx, http.MethodGet, "/api/v1/teemate/evidence?"+query, nil)
	if err != nil {
		// The platform answers 404 both for an unknown action and for an image whose enclaves
		// have not published evidence yet; the message tells them apart.
		var ae *APIError
		if errors.As(err, &ae) && (ae.Status == http.StatusServiceUnavailable ||
			(ae.Status == http.StatusNotFound && strings.HasPrefix(ae.Message, noEvidenceMessage))) {
			return nil, fmt.Errorf("evidence of %s: %w: %s", what, ErrNoEvidence, ae.Message)
		}
		return nil, fmt.Errorf("evidence of %s: %w", what, err)
	}
	ev, err := attest.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("evidence of %s: %w: %w", what, ErrEvidence, err)
	}
	return ev, nil
}
