package embed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/sealed"
)

// startInvokerBlind starts invoker id like fleet.startInvoker, except that its first question for
// the image's published evidence (GET /internal/v1/evidence/IMAGE) is answered 404, as when the
// invoker asks before another invoker's first owner has published: its first owner then makes a
// key of its own. hidden says when that happened.
func (f *fleet) startInvokerBlind(id int, hidden *atomic.Bool) *fleetInvoker {
	f.t.Helper()
	obs, logs := observer.New(zap.InfoLevel)
	i := &fleetInvoker{rec: newRecorder(f.t, "http://"+f.listen), logs: logs}
	u, err := url.Parse(i.rec.srv.URL)
	if err != nil {
		f.t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	blind := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/internal/v1/evidence/") &&
			hidden.CompareAndSwap(false, true) {
			http.Error(w, `{"error":"hidden by the test"}`, http.StatusNotFound)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	f.t.Cleanup(blind.Close)
	i.run, err = daemon.Start(daemon.Config{ID: id, Kafka: strings.Join(f.emb.Addrs(), ","), APIHost: blind.URL,
		Listen: "-", StateDir: filepath.Join(f.t.TempDir(), fmt.Sprintf("invoker%d", id)), StoreToken: f.token,
		UserMemoryMB: 2048, PingInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
		Logger: zap.New(zapcore.NewTee(f.log.Named(fmt.Sprintf("invoker%d", id)).Core(), obs))},
		daemon.Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: f.repo, SlotsPerOwner: 8})
	if err != nil {
		f.t.Fatalf("invoker%d: %v", id, err)
	}
	f.t.Cleanup(func() {
		if err := i.run.Stop(); err != nil {
			f.t.Errorf("invoker%d Stop: %v", id, err)
		}
	})
	f.invs[id] = i
	return i
}

// TestKeySplitBrainConverges: invoker0 publishes nodejs:20's image key; invoker1's first owner of
// the image is made to miss that (its question is answered "nobody holds it") and makes a key of
// its own, which the controller refuses. invoker1 then replaces the owner with one that takes
// invoker0's key through the relay: its pings report invoker0's kid within seconds, a sealed
// invocation attested against invoker0's evidence and routed to invoker1 opens there, and a
// drain of invoker0 to invoker1 completes.
func TestKeySplitBrainConverges(t *testing.T) {
	f := newFleet(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f.startInvoker(0, invokerOpts{})
	waitFor(t, "invoker0 up and keyed", time.Minute, func() bool { return f.ctl.warmKid(0, "nodejs:20") != "" })
	c, err := client.New(client.Config{APIHost: f.ctl.APIHost(), Auth: tenantAuth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		t.Fatal(err)
	}
	var ev *attest.Evidence
	waitFor(t, "invoker0's evidence published", 30*time.Second, func() bool {
		ev, _, err = c.AttestKind(ctx, "nodejs:20")
		return err == nil
	})
	if ev == nil {
		t.Fatalf("no evidence: %v", err)
	}

	var hidden atomic.Bool
	started := time.Now()
	inv1 := f.startInvokerBlind(1, &hidden)
	waitFor(t, "invoker1 up and keyed like invoker0", time.Minute, func() bool {
		return f.ctl.warmKid(1, "nodejs:20") == ev.Kid
	})
	converged := time.Since(started)
	if !hidden.Load() {
		t.Fatal("invoker1 never asked for the published evidence: the race was not reproduced")
	}
	refusals := inv1.logs.FilterMessageSnippet("refused the owner's image key").All()
	if len(refusals) != 1 {
		t.Fatalf("%d refusal logs on invoker1, want exactly one (the race made its first owner's key its own): %v",
			len(refusals), inv1.logs.FilterMessageSnippet("image key").All())
	}
	if again := inv1.logs.FilterMessageSnippet("refused the image key of a replacement").Len(); again != 0 {
		t.Errorf("the replacement's key was refused too (%d times)", again)
	}
	if moves := inv1.logs.FilterMessage("image state transferred").All(); len(moves) == 0 || moves[0].ContextMap()["kid"] != ev.Kid {
		t.Errorf("invoker1's replacement took no state of kid %s: %v", ev.Kid, moves)
	}
	t.Logf("invoker1 converged on invoker0's kid %s %v after it started: %v", ev.Kid, converged.Round(time.Millisecond),
		refusals[0].ContextMap()["replaced"])
	// One kid from then on: a few more pings keep it.
	time.Sleep(time.Second)
	if k0, k1 := f.ctl.warmKid(0, "nodejs:20"), f.ctl.warmKid(1, "nodejs:20"); k0 != ev.Kid || k1 != ev.Kid {
		t.Fatalf("kids after convergence: invoker0 %q, invoker1 %q, published %q", k0, k1, ev.Kid)
	}

	// A sealed action homed on invoker1, sealed and invoked against invoker0's evidence.
	ns, err := c.Namespace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	code := "function main(p) { return { echo: p.secret } }"
	names := homedOn(t, ctx, c, ev, "conv", code, 1, 2, 1)
	invoke := func(name string) int {
		t.Helper()
		q := "/" + ns + "/" + name
		params, reply, err := sealed.SealParams(ev, ns, q, json.RawMessage(`{"secret":"canary"}`))
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.Invoke(ctx, name, params, true)
		if err != nil {
			t.Fatalf("sealed invoke of %s: %v", name, err)
		}
		o, err := client.Open(ev, reply, a)
		if err != nil {
			t.Fatalf("sealed result of %s: %v", name, err)
		}
		if string(o.Result) != `{"echo":"canary"}` {
			t.Fatalf("sealed result of %s: %s", name, o.Result)
		}
		return f.servedBy(a.ActivationID)
	}
	if at := invoke(names[0]); at != 1 {
		t.Fatalf("the sealed action homed on invoker1 ran on invoker%d", at)
	}

	// The drain of invoker0 to invoker1 finds the image warm and keyed there.
	admin := f.operator()
	t0 := time.Now()
	if status, body := admin.call("POST", "/invokers/0/drain", `{"to": 1}`, ""); status != http.StatusAccepted {
		t.Fatalf("drain: %d %s", status, body)
	}
	var s balancer.DrainStatus
	waitFor(t, "invoker0 drained to invoker1", time.Minute, func() bool {
		s = admin.status(0)
		return s.State == balancer.StateDrained
	})
	if s.State != balancer.StateDrained {
		t.Fatalf("drain status %+v", s)
	}
	t.Logf("drain of invoker0 to invoker1 done in %v: moved %v", time.Since(t0).Round(time.Millisecond), s.Moved)
	if s.Moved["nodejs:20"] != 1 {
		t.Errorf("moved %v, want nodejs:20 to invoker1", s.Moved)
	}
	homedOn0 := homedOn(t, ctx, c, ev, "conv0-", code, 0, 2, 1)
	if at := invoke(homedOn0[0]); at != 1 {
		t.Errorf("a sealed action homed on the drained invoker0 ran on invoker%d", at)
	}
}
