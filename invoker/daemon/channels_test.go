package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/invoker/credentials"
)

// admin sends an admin request with the credentials the invoker generated in its state directory.
func (e *env) admin(method, addr, path string) (*http.Response, error) {
	pw, err := credentials.ReadSecret(filepath.Join(e.dataDir, "invoker", "admin.password"))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("admin", pw)
	return http.DefaultClient.Do(req)
}

// TestInvoker_AdminEndpointsNeedCredentials replays the attack of issue #15 (an unauthenticated
// POST /disable took the only invoker out of service) and checks the password file.
func TestInvoker_AdminEndpointsNeedCredentials(t *testing.T) {
	e := newEnv(t)
	// A state directory left world-readable, with a world-readable file in it, is made private.
	state := filepath.Join(e.dataDir, "invoker")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "leftover"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, _ := e.startInvoker(func(c *Config) { c.AdminPassword = "" })
	for path, want := range map[string]os.FileMode{state: 0o700, filepath.Join(state, "leftover"): 0o600, filepath.Join(state, "admin.password"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %04o", path, fi.Mode(), err, want)
		}
	}
	for _, c := range []struct{ method, path string }{{"POST", "/disable"}, {"POST", "/enable"}, {"GET", "/isEnabled"}, {"GET", "/metrics"}} {
		for _, auth := range [][2]string{{}, {"admin", "wrong"}, {"root", "admin"}} {
			req, _ := http.NewRequest(c.method, "http://"+addr+c.path, nil)
			if auth[0] != "" {
				req.SetBasicAuth(auth[0], auth[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(body)) != "The supplied authentication is invalid" {
				t.Errorf("%s %s as %q: %d %q, want 401 and nothing else", c.method, c.path, auth[0], resp.StatusCode, body)
			}
		}
	}
	// The unauthenticated /disable did nothing.
	resp, err := e.admin("GET", addr, "/isEnabled")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != `{"enabled":true}` {
		t.Fatalf("after unauthenticated /disable: %s", body)
	}
	resp, err = http.Get("http://" + addr + "/ping")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/ping must stay open: %v %v", err, resp)
	}
	resp.Body.Close()
}

// TestInvoker_AdminListensOnLoopbackByDefault: with no Listen the port is bound to 127.0.0.1.
func TestInvoker_AdminListensOnLoopbackByDefault(t *testing.T) {
	var c Config
	c.defaults()
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("default Listen = %q, want 127.0.0.1:port", c.Listen)
	}
}

// TestInvoker_LogsHoldNoKeysOrParameters runs activations (a good one, a malformed one, one whose
// action is missing) with every log level on and checks that no log line carries the user's key
// or a parameter value.
func TestInvoker_LogsHoldNoKeysOrParameters(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	core, logs := observer.New(zap.DebugLevel)
	e.startInvoker(func(c *Config) { c.Logger = zap.New(core) })
	e.send(message(id(20), "quiet", true, ""))
	e.nextAck(10 * time.Second)
	e.send(message(id(21), "nosuchaction", true, ""))
	e.nextAck(10 * time.Second)
	e.send([]byte(strings.Replace(string(message(id(22), "quiet", true, "")), `"blocking"`, `"blocking":1,"x"`, 1)))
	e.send(message(id(23), "quiet", true, ""))
	e.nextAck(10 * time.Second)
	if logs.Len() == 0 {
		t.Fatal("no log entries observed")
	}
	for _, entry := range logs.All() {
		line := entry.Message
		for k, v := range entry.ContextMap() {
			line += " " + k + "=" + fmt.Sprint(v)
		}
		_, key, _ := strings.Cut(guestKey, ":")
		for _, secret := range []string{key, `"Bob"`, "name=Bob", ":Bob"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line holds %q: %s", secret, line)
			}
		}
	}
}

// TestInvoker_StopsPromptlyWithAnIdleAdminConnection: a client that dialed the admin port and never
// sent a request (a health check that gave up, a transport's connection made ahead) does not hold
// the invoker's stop: http.Server.Shutdown alone waits 5 s for such a connection.
func TestInvoker_StopsPromptlyWithAnIdleAdminConnection(t *testing.T) {
	e := newEnv(t)
	addr, stop := e.startInvoker(nil)
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = idle.Close() }()
	time.Sleep(100 * time.Millisecond) // accepted by the server: StateNew
	start := time.Now()
	stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the invoker took %v to stop with an idle admin connection open", took)
	}
}
