package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/invoker/whisk"
)

// API measures a running platform through its OpenWhisk REST API. It measures whatever model that
// platform is configured with; UseModel only labels the results.
type API struct {
	host   string
	user   string
	pass   string
	client *http.Client
}

// NewAPI checks the auth key's form ("uuid:key") and makes the client.
func NewAPI(host, auth string) (*API, error) {
	u, p, ok := strings.Cut(auth, ":")
	if !ok || u == "" || p == "" {
		return nil, fmt.Errorf("api: --auth must be uuid:key")
	}
	if _, err := url.Parse(host); err != nil || !strings.HasPrefix(host, "http") {
		return nil, fmt.Errorf("api: bad --api-host %q", host)
	}
	return &API{host: strings.TrimRight(host, "/"), user: u, pass: p,
		client: &http.Client{Timeout: 5 * time.Minute}}, nil
}

func (a *API) do(ctx context.Context, method, path string, body []byte) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.host+path, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("api %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(a.user, a.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("api %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("api %s %s: read body: %w", method, path, err)
	}
	return b, resp.StatusCode, nil
}

// Deploy creates or overwrites each action.
func (a *API) Deploy(ctx context.Context, actions []ActionSpec) error {
	for _, s := range actions {
		ann := []map[string]any{}
		if s.Network {
			ann = append(ann, map[string]any{"key": "network", "value": true})
		}
		if s.Sealed {
			ann = append(ann, map[string]any{"key": client.SealedAnnotation, "value": true})
		}
		body, err := json.Marshal(map[string]any{
			"exec":        map[string]any{"kind": "nodejs:20", "code": s.Code},
			"limits":      map[string]any{"memory": s.MemoryMB, "timeout": s.TimeoutMs},
			"annotations": ann,
		})
		if err != nil {
			return fmt.Errorf("deploy %s: %w", s.Name, err)
		}
		b, code, err := a.do(ctx, http.MethodPut, "/api/v1/namespaces/_/actions/"+url.PathEscape(s.Name)+"?overwrite=true", body)
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("deploy %s: HTTP %d: %s", s.Name, code, truncate(b, 300))
		}
	}
	return nil
}

// REST is the platform's API host and the key the bench uses.
func (a *API) REST() (string, string) { return a.host, a.user + ":" + a.pass }

// UseModel cannot switch a running platform's model; it accepts any name as a label.
func (a *API) UseModel(context.Context, string) (func(), error) { return func() {}, nil }

// Invoke runs a blocking invocation and reads the activation record from the reply.
func (a *API) Invoke(ctx context.Context, action string, params json.RawMessage) (Reply, error) {
	start := time.Now()
	b, code, err := a.do(ctx, http.MethodPost, "/api/v1/namespaces/_/actions/"+url.PathEscape(action)+"?blocking=true", params)
	elapsed := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		return Reply{}, err
	}
	if code == http.StatusAccepted {
		return Reply{}, fmt.Errorf("invoke %s: the platform answered 202 (blocking wait exceeded): %s", action, truncate(b, 200))
	}
	act, err := parseExternal(b)
	if err != nil {
		return Reply{}, fmt.Errorf("invoke %s: HTTP %d, not an activation record: %w: %s", action, code, err, truncate(b, 200))
	}
	return Reply{ClientMs: elapsed, Activation: act}, nil
}

// parseExternal reads an activation in the REST API's external form, whose response carries
// "status" and "success" instead of the internal "statusCode".
func parseExternal(b []byte) (*whisk.WhiskActivation, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(doc["response"], &resp); err != nil || resp == nil {
		return nil, fmt.Errorf("no response object")
	}
	var status string
	if err := json.Unmarshal(resp["status"], &status); err != nil {
		return nil, fmt.Errorf("response status: %w", err)
	}
	code := -1
	for c := whisk.StatusSuccess; c <= whisk.StatusWhiskError; c++ {
		if whisk.StatusMessage(c) == status {
			code = c
		}
	}
	if code < 0 {
		return nil, fmt.Errorf("unknown response status %q", status)
	}
	resp["statusCode"] = json.RawMessage(fmt.Sprint(code))
	delete(resp, "status")
	delete(resp, "success")
	rb, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	doc["response"] = rb
	ib, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var act whisk.WhiskActivation
	if err := json.Unmarshal(ib, &act); err != nil {
		return nil, err
	}
	return &act, nil
}

// MemoryRoot: the platform's processes are not ours to measure.
func (a *API) MemoryRoot() int { return 0 }

// Close does nothing; the platform keeps running.
func (a *API) Close() {}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
