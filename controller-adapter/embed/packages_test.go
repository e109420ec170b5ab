package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

const (
	systemUUID = "5b3c9f0e-aaaa-4bbb-8ccc-ddddeeeeffff"
	systemKey  = "sy5t3msy5t3msy5t3msy5t3msy5t3msy5t3msy5t3msy5t3msy5t3msy5t3msy5t"
	systemAuth = systemUUID + ":" + systemKey
)

// TestSharedPackageEndToEnd is issue #18 item 1 through a real invoker (process sandbox, direct
// enclave): whisk.system publishes a package with actions; a tenant binds it with its own
// parameters and invokes through the binding and by the package path, and runs a web action
// through the binding. The invoker fetches "pkg/action" both ways: on its token (the actions that
// get no key) and with the tenant's key (provide-api-key), which may read another namespace's
// action only because its package is public. The records carry the package path and the binding.
func TestSharedPackageEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	ctx, ctl := startOneInvoker(t, Namespace{Name: systemNamespace, UUID: systemUUID, Key: systemKey}, Namespace{Name: "tenant", UUID: tenantUUID, Key: tenantKey})

	do := func(method, path, auth, body string, want int) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, ctl.APIHost()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			u, k, _ := strings.Cut(auth, ":")
			req.SetBasicAuth(u, k)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return b
	}
	const sys = "/api/v1/namespaces/whisk.system"
	// whisk.system holds the public alarms package from the start: every namespace sees it.
	if b := do("GET", sys+"/packages", tenantAuth, "", 200); !bytes.Contains(b, []byte(`"name":"alarms"`)) {
		t.Fatalf("whisk.system's public packages: %s", b)
	}
	const code = `function main(p) { return { greeting: p.greeting, name: p.name, action: process.env.__OW_ACTION_NAME } }`
	do("PUT", sys+"/packages/utils", systemAuth, `{"publish":true,"parameters":[{"key":"greeting","value":"hello"},{"key":"name","value":"pkg"}]}`, 200)
	for name, ann := range map[string]string{
		"echo":  ``,
		"keyed": `{"key":"provide-api-key","value":true}`,
		"page":  `{"key":"web-export","value":true}`,
	} {
		body, _ := json.Marshal(map[string]any{"exec": map[string]string{"kind": "nodejs:20", "code": code},
			"annotations": json.RawMessage("[" + ann + "]")})
		do("PUT", sys+"/actions/utils/"+name, systemAuth, string(body), 200)
	}
	do("PUT", sys+"/packages/internal", systemAuth, `{}`, 200)
	do("PUT", sys+"/actions/internal/echo", systemAuth, `{"exec":{"kind":"nodejs:20","code":"function main() { return {} }"}}`, 200)
	do("PUT", "/api/v1/namespaces/_/packages/mine", tenantAuth,
		`{"binding":{"namespace":"whisk.system","name":"utils"},"parameters":[{"key":"greeting","value":"hi"}]}`, 200)

	// Through the binding: the binding's parameter over the package's, the request's over both.
	var act struct {
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Response    struct{ Result map[string]any }
		Annotations whisk.Parameters `json:"annotations"`
	}
	b := do("POST", "/api/v1/namespaces/_/actions/mine/echo?blocking=true", tenantAuth, `{"name":"tenant"}`, 200)
	if err := json.Unmarshal(b, &act); err != nil {
		t.Fatal(err)
	}
	r := act.Response.Result
	if r["greeting"] != "hi" || r["name"] != "tenant" || r["action"] != "/whisk.system/utils/echo" {
		t.Fatalf("result through the binding: %s", b)
	}
	path, _ := act.Annotations.GetString("path")
	binding, _ := act.Annotations.GetString("binding")
	if act.Namespace != "tenant" || act.Name != "echo" || path != "whisk.system/utils/echo" || binding != "tenant/mine" {
		t.Fatalf("record through the binding: %s", b)
	}

	// By the public package's path, with the tenant's key in the message: the invoker reads the
	// action with that key.
	b = do("POST", sys+"/actions/utils/keyed?blocking=true&result=true", tenantAuth, ``, 200)
	if !bytes.Contains(b, []byte(`"greeting":"hello"`)) || !bytes.Contains(b, []byte(`"action":"/whisk.system/utils/keyed"`)) {
		t.Fatalf("result by the package path: %s", b)
	}

	// A web action through the binding runs as the tenant with the binding's parameters.
	b = do("GET", "/api/v1/web/tenant/mine/page.json", "", ``, 200)
	if !bytes.Contains(b, []byte(`"greeting":"hi"`)) || !bytes.Contains(b, []byte(`"action":"/whisk.system/utils/page"`)) {
		t.Fatalf("web action through the binding: %s", b)
	}

	// whisk.system's private package is not the tenant's to run or bind.
	do("POST", sys+"/actions/internal/echo?blocking=true", tenantAuth, ``, 403)
	do("PUT", "/api/v1/namespaces/_/packages/theirs", tenantAuth, `{"binding":{"namespace":"whisk.system","name":"internal"}}`, 403)
}

// startOneInvoker starts, for the end-to-end tests of issue #18, an embedded broker, a controller
// with namespaces and one invoker (process sandbox, direct enclave, real Node owners), all stopped
// when t ends; ctx bounds the test at three minutes.
func startOneInvoker(t *testing.T, namespaces ...Namespace) (context.Context, *Controller) {
	t.Helper()
	repo := repoRoot(t)
	for _, f := range []string{"bin/teemate-shim", "enclave-runtime/trusted/keys.js"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			t.Fatalf("%s is missing: run make build first (%v)", f, err)
		}
	}
	log := zaptest.NewLogger(t)
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	ctl, err := Start(ctx, Config{DataDir: filepath.Join(t.TempDir(), "controller"), Kafka: kafka.Config{Brokers: emb.Addrs()},
		Logger: log.Named("controller"), HealthTick: 50 * time.Millisecond, Health: balancer.HealthConfig{PingTimeout: time.Second},
		Namespaces: namespaces})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctl.Close(); err != nil {
			t.Errorf("controller Close: %v", err)
		}
	})
	inv, err := daemon.Start(daemon.Config{ID: 0, Kafka: strings.Join(emb.Addrs(), ","), APIHost: ctl.APIHost(),
		Listen: "-", StateDir: filepath.Join(t.TempDir(), "invoker0"), StoreToken: ctl.InvokerToken(), UserMemoryMB: 1024,
		PingInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second, Logger: log.Named("invoker0")},
		daemon.Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: repo, SlotsPerOwner: 4})
	if err != nil {
		t.Fatalf("invoker0: %v", err)
	}
	t.Cleanup(func() {
		if err := inv.Stop(); err != nil {
			t.Errorf("invoker0 Stop: %v", err)
		}
	})
	if err := ctl.WaitInvoker(ctx, 0); err != nil {
		t.Fatalf("invoker0 not healthy: %v", err)
	}
	return ctx, ctl
}
