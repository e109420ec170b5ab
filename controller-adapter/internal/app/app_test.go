package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

const waitFor = 20 * time.Second

var (
	guestAuth  = [2]string{GuestUUID, GuestKey}
	systemAuth = [2]string{SystemUUID, SystemKey}
)

// platform is a running standalone controller-adapter.
type platform struct {
	info Info
	stop func() error
}

// startStandalone runs app.Run in standalone mode on free ports. It returns the error Run gave if
// it stopped before it was ready.
func startStandalone(t *testing.T, dataDir, sandbox, enclave string) (*platform, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Port: 0, DataDir: dataDir, Standalone: true, EmbeddedKafkaAddr: "127.0.0.1:0",
			Sandbox: sandbox, Enclave: enclave, Logger: zaptest.NewLogger(t),
			Ready:      func(i Info) { ready <- i },
			HealthTick: 50 * time.Millisecond, PingInterval: 200 * time.Millisecond,
			InvokerDrainTime: 5 * time.Second,
		})
	}()
	select {
	case info := <-ready:
		p := &platform{info: info}
		p.stop = func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(waitFor):
				return errors.New("Run did not return after cancel")
			}
		}
		return p, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("Run returned before it was ready")
		}
		return nil, err
	case <-time.After(waitFor):
		cancel()
		t.Fatalf("standalone not ready in %v", waitFor)
		return nil, nil
	}
}

func (p *platform) call(t *testing.T, method, path string, auth [2]string, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.info.APIHost+path, r)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if auth[0] != "" {
		req.SetBasicAuth(auth[0], auth[1])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

func (p *platform) invokerState(t *testing.T) string {
	t.Helper()
	code, b := p.call(t, http.MethodGet, "/invokers", [2]string{}, "")
	if code != http.StatusOK {
		t.Fatalf("GET /invokers: %d %s", code, b)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("GET /invokers body %s: %v", b, err)
	}
	return m["invoker0/0/invoker0"]
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const helloAction = `{"exec":{"kind":"nodejs:default","code":"function main(p) { return {greeting: 'Hello ' + p.name}; }"}}`

// TestStandaloneWithoutExecutor runs the whole platform with the invoker's executor switched off:
// the invoker registers through its pings, fetches the health test action over REST with the
// whisk.system key, answers it with a whisk error (a system error: it stays unhealthy), and
// stores the record; user invokes get 503. Actions and activations survive a restart.
func TestStandaloneWithoutExecutor(t *testing.T) {
	dir := t.TempDir()
	p, err := startStandalone(t, dir, "none", "none")
	if err != nil {
		t.Fatalf("standalone: %v", err)
	}
	if p.info.GuestAuth != GuestUUID+":"+GuestKey || !strings.HasPrefix(p.info.APIHost, "http://127.0.0.1:") {
		t.Fatalf("info %+v", p.info)
	}
	eventually(t, "invoker0 registered", func() bool { return p.invokerState(t) == "unhealthy" })

	// The health test action ran (and failed with a whisk error) as whisk.system; its record is
	// in the store, under the balancer's health transaction.
	var healthID string
	eventually(t, "the health test activation record", func() bool {
		code, b := p.call(t, http.MethodGet, "/api/v1/namespaces/whisk.system/activations?docs=true", systemAuth, "")
		if code != http.StatusOK {
			t.Fatalf("list whisk.system activations: %d %s", code, b)
		}
		var acts []struct {
			Name         string `json:"name"`
			ActivationID string `json:"activationId"`
			Response     struct {
				Status string `json:"status"`
			} `json:"response"`
		}
		if err := json.Unmarshal(b, &acts); err != nil {
			t.Fatalf("activations %s: %v", b, err)
		}
		for _, a := range acts {
			if a.Name == "invokerHealthTestAction0" {
				if a.Response.Status != "whisk internal error" {
					t.Fatalf("health test activation status %q, want whisk internal error", a.Response.Status)
				}
				healthID = a.ActivationID
				return true
			}
		}
		return false
	})
	if p.invokerState(t) != "unhealthy" {
		t.Fatalf("invoker state %q after a failed test, want unhealthy", p.invokerState(t))
	}

	if code, b := p.call(t, http.MethodPut, "/api/v1/namespaces/guest/actions/hello", guestAuth, helloAction); code != http.StatusOK {
		t.Fatalf("create action: %d %s", code, b)
	}
	code, b := p.call(t, http.MethodPost, "/api/v1/namespaces/guest/actions/hello?blocking=true", guestAuth, `{"name":"Bob"}`)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("invoke with no healthy invoker: %d %s, want 503", code, b)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Restart on the same data directory: the action and the activation are still there.
	p, err = startStandalone(t, dir, "none", "none")
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if code, b := p.call(t, http.MethodGet, "/api/v1/namespaces/guest/actions/hello", guestAuth, ""); code != http.StatusOK {
		t.Fatalf("action after restart: %d %s", code, b)
	}
	if code, b := p.call(t, http.MethodGet, "/api/v1/namespaces/whisk.system/activations/"+healthID, systemAuth, ""); code != http.StatusOK {
		t.Fatalf("activation after restart: %d %s", code, b)
	}
	eventually(t, "invoker0 registered again", func() bool { return p.invokerState(t) == "unhealthy" })
}

// TestStandaloneProcessDirect runs the platform with the process sandbox and the direct enclave:
// the invoker must turn healthy (its test action succeeds) and a blocking invoke must return the
// action's result.
func TestStandaloneProcessDirect(t *testing.T) {
	buildOwnerConfinement(t)
	p, err := startStandalone(t, t.TempDir(), "process", "direct")
	if err != nil {
		t.Fatalf("standalone: %v", err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	eventually(t, "invoker0 healthy", func() bool { return p.invokerState(t) == "up" })
	if code, b := p.call(t, http.MethodPut, "/api/v1/namespaces/guest/actions/hello", guestAuth, helloAction); code != http.StatusOK {
		t.Fatalf("create action: %d %s", code, b)
	}
	code, b := p.call(t, http.MethodPost, "/api/v1/namespaces/guest/actions/hello?blocking=true&result=true", guestAuth, `{"name":"Bob"}`)
	if code != http.StatusOK || !bytes.Contains(b, []byte(`"greeting":"Hello Bob"`)) {
		t.Fatalf("invoke: %d %s", code, b)
	}
}

func TestNamespaceAddAndCredentials(t *testing.T) {
	dir := t.TempDir()
	key, err := AddNamespace(context.Background(), dir, "alice")
	if err != nil {
		t.Fatalf("AddNamespace: %v", err)
	}
	uuid, secret, ok := strings.Cut(key, ":")
	if !ok || len(uuid) != 36 || strings.Count(uuid, "-") != 4 || len(secret) != 64 {
		t.Fatalf("key %q does not look like uuid:64-char-key", key)
	}
	key2, err := AddNamespace(context.Background(), dir, "alice")
	if err != nil || key2 == key {
		t.Fatalf("second key for alice: %q, %v (want a new key)", key2, err)
	}
	if _, err := AddNamespace(context.Background(), dir, "bad/name"); err == nil {
		t.Fatal("an invalid namespace name was accepted")
	}
}

// buildOwnerConfinement makes what the direct enclave backend needs to confine owners when the
// test runs as root (the launcher and the lockdown addon), as make build does.
func buildOwnerConfinement(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	repo := FindRepoDir()
	for _, args := range [][]string{
		{"-s", "-C", repo, filepath.Join(repo, "bin", "teemate-confine")},
		{"-s", "-C", filepath.Join(repo, "node-isolate-patch"), "build/teemate_lockdown.node"},
	} {
		if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
			t.Fatalf("make %v: %v\n%s", args, err, out)
		}
	}
}
