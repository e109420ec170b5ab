package embed

import (
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
	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
)

// TestRuntimeFidelity is issue #18 item 6 through the REST API and a real invoker (direct enclave,
// teemate model), on the process and the oci sandbox: what used to differ from OpenWhisk's Node.js
// runtime now answers as it does.
func TestRuntimeFidelity(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	repo := testtool.Root(t)
	for _, f := range []string{"bin/teemate-shim", "bin/teemate-start", "node-isolate-patch/build/teemate_isolate.node"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			testtool.Missing(t, f+" is not built (make build)")
		}
	}
	for _, sb := range []string{"process", "oci"} {
		t.Run(sb, func(t *testing.T) {
			if sb == "oci" {
				// The oci sandbox runs on its default runtime, the launcher (make build).
				if _, err := os.Stat(filepath.Join(repo, "bin", "teemate-launch")); err != nil {
					testtool.Missing(t, "bin/teemate-launch, the oci sandbox's runtime, is not built (make build)")
				}
				if _, err := os.Stat(filepath.Join(repo, ".state", "images", "teemate", "image.json")); err != nil {
					testtool.Missing(t, "the function images are not built (make images)")
				}
			}
			fidelity(t, repo, sb)
		})
	}
}

// fidelityPlatform is a controller and one invoker on the given sandbox backend.
type fidelityPlatform struct {
	t   *testing.T
	ctx context.Context
	ctl *Controller
}

// startFidelity starts the platform with the namespace tenant and the extra ones.
func startFidelity(t *testing.T, repo, sb string, extra ...Namespace) *fidelityPlatform {
	log := zaptest.NewLogger(t)
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	ctl, err := Start(ctx, Config{DataDir: filepath.Join(t.TempDir(), "controller"), Kafka: kafka.Config{Brokers: emb.Addrs()},
		Logger: log.Named("controller"), HealthTick: 50 * time.Millisecond, Health: balancer.HealthConfig{PingTimeout: time.Second},
		Namespaces: append([]Namespace{{Name: "tenant", UUID: tenantUUID, Key: tenantKey}}, extra...)})
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
		daemon.Backends{Sandbox: sb, Enclave: "direct", Model: "teemate", RepoDir: repo, SlotsPerOwner: 4,
			ImagesDir: filepath.Join(repo, ".state", "images")})
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
	return &fidelityPlatform{t: t, ctx: ctx, ctl: ctl}
}

func (p *fidelityPlatform) do(method, path, body string) (int, []byte) {
	p.t.Helper()
	req, err := http.NewRequestWithContext(p.ctx, method, p.ctl.APIHost()+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	req.SetBasicAuth(tenantUUID, tenantKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// action creates (or replaces) an action; extra is more of its JSON (limits, annotations).
func (p *fidelityPlatform) action(name, code, extra string) {
	p.t.Helper()
	body, err := json.Marshal(map[string]any{"exec": map[string]string{"kind": "nodejs:20", "code": code}})
	if err != nil {
		p.t.Fatal(err)
	}
	if extra != "" {
		body = append(body[:len(body)-1], ","+extra+"}"...)
	}
	if st, b := p.do("PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", string(body)); st != 200 {
		p.t.Fatalf("create %s: %d %s", name, st, b)
	}
}

// invoke runs a blocking invocation and returns the status, the record and the time it took.
func (p *fidelityPlatform) invoke(name string) (int, e2eRecord, time.Duration) {
	p.t.Helper()
	t0 := time.Now()
	st, b := p.do("POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true", "{}")
	took := time.Since(t0)
	var r e2eRecord
	if err := json.Unmarshal(b, &r); err != nil {
		p.t.Fatalf("invoke %s: %d %s", name, st, b)
	}
	return st, r, took
}

// logs reads the stored record's logs (the blocking answer carries none).
func (p *fidelityPlatform) logs(id string) []string {
	p.t.Helper()
	for {
		st, b := p.do("GET", "/api/v1/namespaces/_/activations/"+id+"/logs", "")
		var l struct {
			Logs []string `json:"logs"`
		}
		if st == 200 && json.Unmarshal(b, &l) == nil {
			return l.Logs
		}
		if st != 404 || p.ctx.Err() != nil {
			p.t.Fatalf("logs of %s: %d %s", id, st, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fidelity(t *testing.T, repo, sb string) {
	p := startFidelity(t, repo, sb)

	t.Run("log volume does not stall the action", func(t *testing.T) {
		p.t = t
		// ~0.6 MB of console output in 15000 lines, well under the 10 MB default.
		p.action("chatty", `function main() {
			for (let i = 0; i < 15000; i++) console.log(String(i).padStart(40, '.'));
			return { done: true };
		}`, `"limits":{"timeout":20000}`)
		st, r, took := p.invoke("chatty")
		if st != 200 || r.Response.Result["done"] != true {
			t.Fatalf("after %v: %d %+v", took, st, r)
		}
		logs := p.logs(r.ActivationID)
		if len(logs) != 15000 || !strings.HasSuffix(logs[14999], " stdout: "+strings.Repeat(".", 35)+"14999") {
			t.Fatalf("%d log lines, last %q", len(logs), logs[len(logs)-1])
		}
		// The same volume in other shapes: many tiny lines, one long line, writes without newlines.
		for name, code := range map[string]string{
			"tiny":   `function main() { for (let i = 0; i < 100000; i++) console.log('ab'); return { done: true }; }`,
			"long":   `function main() { console.log('z'.repeat(500000)); return { done: true }; }`,
			"chunks": `function main() { for (let i = 0; i < 500; i++) process.stdout.write('w'.repeat(1000)); return { done: true }; }`,
			"stderr": `function main() { for (let i = 0; i < 10000; i++) { console.log('o'.repeat(20)); console.error('e'.repeat(20)); } return { done: true }; }`,
		} {
			p.action("chatty-"+name, code, `"limits":{"timeout":20000}`)
			st, r, took := p.invoke("chatty-" + name)
			if st != 200 || r.Response.Result["done"] != true {
				t.Fatalf("%s after %v: %d %+v", name, took, st, r)
			}
			t.Logf("%s: %v, %d lines", name, took, len(p.logs(r.ActivationID)))
		}
	})

	t.Run("logs over the limit end with OpenWhisk's line", func(t *testing.T) {
		p.t = t
		// 1 MB limit, ~2 MB written.
		p.action("flood", `function main() {
			const line = 'y'.repeat(1000);
			for (let i = 0; i < 2000; i++) console.log(line);
			return { done: true };
		}`, `"limits":{"logs":1,"timeout":20000}`)
		st, r, took := p.invoke("flood")
		if st != 200 || r.Response.Result["done"] != true {
			t.Fatalf("after %v: %d %+v", took, st, r)
		}
		logs := p.logs(r.ActivationID)
		last := logs[len(logs)-1]
		if !strings.HasSuffix(last, "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes.") ||
			strings.Count(last, "Logs were truncated") != 1 || len(logs) > 1100 {
			t.Fatalf("%d lines, last %q", len(logs), last)
		}
		for _, l := range logs[:len(logs)-1] {
			if strings.Contains(l, "truncated") {
				t.Fatalf("a truncation line before the end: %q", l)
			}
		}
	})

	t.Run("a promise that never settles is a time-out", func(t *testing.T) {
		p.t = t
		p.action("never", `function main() { return new Promise(() => {}); }`, `"limits":{"timeout":1500}`)
		st, r, took := p.invoke("never")
		if st != 502 || r.Response.Status != "action developer error" ||
			r.Response.Result["error"] != "The action exceeded its time limits of 1500 milliseconds." || r.ann("timeout") != "true" {
			t.Fatalf("after %v: %d %+v", took, st, r)
		}
		if took < 1400*time.Millisecond {
			t.Fatalf("answered after %v, before the time limit", took)
		}
	})

	t.Run("open handles do not delay a resolved result", func(t *testing.T) {
		p.t = t
		p.action("lingering", `function main() {
			setInterval(() => {}, 10);
			return { resolved: true };
		}`, `"limits":{"timeout":10000}`)
		p.action("socket", `function main() {
			const u = new URL(process.env.__OW_API_HOST);
			return new Promise((resolve) => {
				const s = require('net').connect(Number(u.port), u.hostname, () => resolve({ connected: true }));
				s.on('error', (e) => resolve({ error: e.message }));
			});
		}`, `"limits":{"timeout":10000},"annotations":[{"key":"network","value":true}]`)
		for _, name := range []string{"lingering", "socket"} {
			st, r, took := p.invoke(name)
			if st != 200 || r.Response.Status != "success" || took > 5*time.Second {
				t.Fatalf("%s after %v: %d %+v", name, took, st, r)
			}
		}
	})

	t.Run("fetch", func(t *testing.T) {
		p.t = t
		code := `async function main() {
			try {
				const r = await fetch(process.env.__OW_API_HOST + '/api/v1');
				return { status: r.status };
			} catch (e) { return { failed: e.message }; }
		}`
		p.action("fetcher", code, `"limits":{"timeout":10000},"annotations":[{"key":"network","value":true}]`)
		st, r, took := p.invoke("fetcher")
		if st != 200 || r.Response.Result["status"] != float64(200) || took > 5*time.Second {
			t.Fatalf("with network, after %v: %d %+v", took, st, r)
		}
		p.action("offline", code, `"limits":{"timeout":10000}`)
		st, r, took = p.invoke("offline")
		want := "TeeMate: fetch (network) is not available to this action: it was not given network access (the action annotation \"network\": true)"
		if st != 200 || r.Response.Result["failed"] != want || took > 5*time.Second {
			t.Fatalf("without network, after %v: %d %+v", took, st, r)
		}
	})

	t.Run("the openwhisk module calls back the platform", func(t *testing.T) {
		p.t = t
		// As on OpenWhisk's Node.js runtime: require('openwhisk') is there, and with the action's
		// key (provide-api-key) and API host it lists the namespace's actions.
		p.action("lister", `async function main() {
			const ow = require('openwhisk')();
			const list = await ow.actions.list();
			return { names: list.map((a) => a.name).sort() };
		}`, `"limits":{"timeout":20000},"annotations":[{"key":"network","value":true},{"key":"provide-api-key","value":true}]`)
		st, r, took := p.invoke("lister")
		names, ok := r.Response.Result["names"].([]any)
		if st != 200 || !ok {
			t.Fatalf("after %v: %d %+v", took, st, r)
		}
		found := false
		for _, n := range names {
			found = found || n == "lister"
		}
		if !found {
			t.Fatalf("the action did not list itself: %v", names)
		}
	})
}
