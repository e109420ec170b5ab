package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

const (
	guestUUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	guestKey  = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	guestAuth = guestUUID + ":" + guestKey
	otherUUID = "11111111-2222-3333-4444-555555555555"
	otherKey  = "otherKEY0otherKEY0otherKEY0otherKEY0otherKEY0otherKEY0otherKEY0o"
	otherAuth = otherUUID + ":" + otherKey
	token     = "invoker-token"
)

// behaviour computes an activation outcome from the message content.
type behaviour func(content map[string]json.RawMessage) (status int, result json.RawMessage)

// fakeInvoker stands in for the balancer and the invoker: it checks each
// ActivationMessage's shape, records it, stores the finished record as the
// invoker would, and completes the activation the way the balancer reports it
// (from the Result ack without logs, or, for a shrunk ack, with the record it
// read from the store).
type fakeInvoker struct {
	t  *testing.T
	st *store.Store

	mu         sync.Mutex
	msgs       []*whisk.ActivationMessage
	noInvokers bool
	behaviours map[string]behaviour
	slow       map[string]bool // never complete
	shrunk     map[string]bool // the acks carried the id only
	// late: answer from the Result ack and store the record only when
	// release is closed, as the invoker does after the Result ack.
	late    map[string]bool
	release chan struct{}
	storing map[string]chan struct{} // by activation id, while late records wait
	// settleOnAsk: a late record whose activation settles (stored, window closed) right as
	// Storing is asked about it, which then answers that nothing is being stored.
	settleOnAsk map[string]bool
	settle      map[string]func() // by activation id, for settleOnAsk
	// states, when set, are the invokers' health states (GET /invokers) by instance.
	states []string
	// brokerMax, when set, is the broker's limit on a serialized message (one configured
	// smaller than the platform's): larger ones fail as the producer fails them.
	brokerMax int
	refused   []string // activation ids of messages refused for brokerMax
}

func (f *fakeInvoker) Storing(ns, id string) <-chan struct{} {
	f.mu.Lock()
	settle := f.settle[id]
	delete(f.settle, id)
	f.mu.Unlock()
	if settle != nil {
		settle()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.storing[id]; ok && ns == "guest" {
		return ch
	}
	return nil
}

func (f *fakeInvoker) set(name string, b behaviour) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.behaviours[name] = b
}

func (f *fakeInvoker) last() *whisk.ActivationMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.msgs) == 0 {
		return nil
	}
	return f.msgs[len(f.msgs)-1]
}

func (f *fakeInvoker) Invokers() []balancer.InvokerHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states != nil {
		out := make([]balancer.InvokerHealth, len(f.states))
		for i, s := range f.states {
			out[i] = balancer.InvokerHealth{Name: fmt.Sprintf("invoker%d/%d", i, i), State: s}
		}
		return out
	}
	return []balancer.InvokerHealth{{Name: "invoker0/0", State: "up"}, {Name: "invoker1/1", State: "unhealthy"}}
}

func (f *fakeInvoker) Publish(ctx context.Context, a *whisk.Action, msg *whisk.ActivationMessage) (<-chan balancer.Completion, error) {
	f.mu.Lock()
	noInv := f.noInvokers
	b := f.behaviours[a.Name]
	slow, shrunk, late, settleOnAsk := f.slow[a.Name], f.shrunk[a.Name], f.late[a.Name], f.settleOnAsk[a.Name]
	brokerMax := f.brokerMax
	f.mu.Unlock()
	if raw, err := msg.Serialize(); err == nil && brokerMax > 0 && len(raw) > brokerMax {
		f.mu.Lock()
		f.refused = append(f.refused, msg.ActivationID)
		f.mu.Unlock()
		return nil, fmt.Errorf("publish %s: %d bytes: %w", msg.ActivationID, len(raw), kafka.ErrMessageTooLarge)
	}
	f.mu.Lock()
	f.msgs = append(f.msgs, msg)
	f.mu.Unlock()
	if noInv {
		return nil, balancer.ErrNoInvokers
	}
	f.checkShape(a, msg)

	// Content that went by reference is read from the store, as the invoker reads it.
	raw := msg.Content
	if msg.ContentRef != nil {
		var err error
		if raw, err = f.st.GetContent(context.Background(), msg.User.Namespace.Name, msg.ActivationID); err != nil {
			f.t.Errorf("content by reference: %v", err)
		} else if err := msg.ContentRef.Check(raw); err != nil {
			f.t.Errorf("content by reference: %v", err)
		}
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(raw, &content); err != nil {
		f.t.Errorf("content is not an object: %.200s", raw)
	}
	status, result := whisk.StatusSuccess, json.RawMessage(raw)
	if b != nil {
		status, result = b(content)
	}
	ch := make(chan balancer.Completion, 1)
	if slow {
		return ch, nil
	}
	start := time.Now()
	dur := int64(5)
	rec := &whisk.WhiskActivation{
		Namespace: msg.User.Namespace.Name, Name: msg.Action.Name, Subject: msg.User.Subject,
		ActivationID: msg.ActivationID, Start: start, End: start.Add(5 * time.Millisecond), Duration: &dur, Cause: msg.Cause,
		Response: whisk.ActivationResponse{StatusCode: status, Result: result},
		Logs:     []string{"2024-05-01T10:00:00.000Z stdout: ran " + msg.Action.Name},
		Version:  msg.Action.Version,
		Annotations: whisk.Parameters{
			{Key: "path", Value: jsonString(msg.Action.String())},
			{Key: "kind", Value: jsonString(a.Exec.Kind)},
		},
	}
	if late {
		stored := make(chan struct{})
		store := func() {
			if err := f.st.PutActivation(context.Background(), rec); err != nil {
				f.t.Errorf("store record: %v", err)
			}
			f.mu.Lock()
			delete(f.storing, msg.ActivationID)
			f.mu.Unlock()
			close(stored)
		}
		f.mu.Lock()
		f.storing[msg.ActivationID] = stored
		if settleOnAsk {
			f.settle[msg.ActivationID] = store
		}
		f.mu.Unlock()
		if !settleOnAsk {
			go func() {
				<-f.release
				store()
			}()
		}
		ch <- balancer.Completion{ActivationID: msg.ActivationID, Activation: rec.WithoutLogs()}
		return ch, nil
	}
	if err := f.st.PutActivation(context.Background(), rec); err != nil {
		f.t.Errorf("store record: %v", err)
	}
	switch {
	case !msg.Blocking:
		ch <- balancer.Completion{ActivationID: msg.ActivationID}
	case shrunk:
		ch <- balancer.Completion{ActivationID: msg.ActivationID, Activation: rec}
	default:
		ch <- balancer.Completion{ActivationID: msg.ActivationID, Activation: rec.WithoutLogs()}
	}
	return ch, nil
}

// checkShape asserts the message is what the Scala controller would send.
func (f *fakeInvoker) checkShape(a *whisk.Action, msg *whisk.ActivationMessage) {
	t := f.t
	raw, err := msg.Serialize()
	if err != nil {
		t.Errorf("serialize: %v", err)
		return
	}
	parsed, err := whisk.ParseActivationMessage(raw)
	if err != nil {
		t.Errorf("message does not parse back: %v\n%s", err, raw)
		return
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Errorf("message fields: %v", err)
	}
	var tid []json.RawMessage
	if err := json.Unmarshal(fields["transid"], &tid); err != nil || len(tid) != 2 {
		t.Errorf("transid = %s, want [id, startMillis]", fields["transid"])
	}
	for k, want := range map[string]string{
		"rootControllerIndex": `{"asString":"0","instanceType":"controller"}`,
		"lockedArgs":          `{}`,
	} {
		if string(fields[k]) != want {
			t.Errorf("%s = %s, want %s", k, fields[k], want)
		}
	}
	if _, ok := fields["initArgs"]; !ok {
		t.Error("initArgs missing")
	}
	if parsed.Revision == nil || *parsed.Revision != a.Revision || a.Revision == "" {
		t.Errorf("revision = %v, want the action's %q", parsed.Revision, a.Revision)
	}
	if parsed.Action.Path != a.Namespace || parsed.Action.Name != a.Name || parsed.Action.Version != a.Version {
		t.Errorf("action = %+v, want %s/%s@%s", parsed.Action, a.Namespace, a.Name, a.Version)
	}
	if parsed.User.Namespace.Name == "" || parsed.User.Namespace.UUID == "" || len(parsed.User.Rights) == 0 {
		t.Errorf("user identity incomplete: %+v", parsed.User)
	}
	// The key only for actions that get it (provide-api-key truthy or missing), else "authkey":{}.
	var user map[string]json.RawMessage
	if err := json.Unmarshal(fields["user"], &user); err != nil {
		t.Errorf("user: %v", err)
	}
	if a.Annotations.IsTruthy("provide-api-key", true) {
		if k := parsed.User.AuthKey.APIKey; k != "" && !strings.Contains(k, ":") {
			t.Errorf("user key %q is not uuid:key", k)
		}
	} else if string(user["authkey"]) != "{}" {
		t.Errorf("authkey = %s for an action without provide-api-key, want {}", user["authkey"])
	}
	if !whisk.ValidActivationID(parsed.ActivationID) || !parsed.ContentObject() {
		t.Errorf("activation id %q / content %s", parsed.ActivationID, parsed.Content)
	}
}

type env struct {
	srv *httptest.Server
	st  *store.Store
	inv *fakeInvoker
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureNamespace(ctx, "other", otherUUID, otherKey); err != nil {
		t.Fatal(err)
	}
	inv := &fakeInvoker{t: t, st: st, behaviours: map[string]behaviour{}, slow: map[string]bool{}, shrunk: map[string]bool{},
		late: map[string]bool{}, release: make(chan struct{}), storing: map[string]chan struct{}{},
		settleOnAsk: map[string]bool{}, settle: map[string]func(){}}
	if cfg.InvokerToken == "" {
		cfg.InvokerToken = token
	}
	srv := httptest.NewServer(New(cfg, st, inv, zaptest.NewLogger(t)))
	t.Cleanup(srv.Close)
	return &env{srv: srv, st: st, inv: inv}
}

// do sends a raw request; auth "" sends none.
func (e *env) do(t *testing.T, method, path, auth, contentType string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		u, k, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, k)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// putAction creates an action with raw JSON.
func (e *env) putAction(t *testing.T, name, body string) {
	t.Helper()
	resp, b := e.do(t, http.MethodPut, "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", guestAuth, "application/json", strings.NewReader(body))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("put %s: %d %s", name, resp.StatusCode, b)
	}
}

// wantError checks an OpenWhisk error reply.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, text string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Code == "" {
		t.Errorf("error body has no transaction code: %s", body)
	}
	if text != "" && e.Error != text {
		t.Errorf("error = %q, want %q", e.Error, text)
	}
}
