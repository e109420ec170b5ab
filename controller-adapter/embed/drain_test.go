package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
)

// TestDrainUnderLoad runs the real controller, a real broker over TCP and three in-process invokers
// (process sandbox, direct enclave, real Node owners). Under a steady load over actions of two
// images, invoker1 is drained to invoker2 (--to) through the admin route: every activation
// succeeds, each image moves only after invoker2 has its enclave warm and keyed (no owner starts
// there after the switch), later activations of invoker1's actions run on invoker2 (not invoker0),
// and invoker1 reports drained. Undrain gives invoker1 its actions back. Draining the last invoker
// that takes activations is refused without force, by the route and by the CLI, saying what would
// fail; forced, new activations answer "No invokers available." until undrain. (While other
// invokers only drain, they keep serving the images they have found no destination for.)
func TestDrainUnderLoad(t *testing.T) {
	repo := repoRoot(t)
	for _, f := range []string{"bin/teemate-shim", "bin/controller-adapter"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			t.Fatalf("%s is missing: run make build first (%v)", f, err)
		}
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctlObs, ctlLogs := observer.New(zap.InfoLevel)
	ctl, err := Start(ctx, Config{DataDir: filepath.Join(t.TempDir(), "controller"), Kafka: kafka.Config{Brokers: emb.Addrs()},
		Logger: zap.New(zapcore.NewTee(log.Named("controller").Core(), ctlObs)), HealthTick: 50 * time.Millisecond,
		Health: balancer.HealthConfig{PingTimeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctl.Close(); err != nil {
			t.Errorf("controller Close: %v", err)
		}
	})
	if err := ctl.AddNamespace(ctx, "tenant", tenantUUID, tenantKey); err != nil {
		t.Fatal(err)
	}

	type inv struct {
		run  *daemon.Running
		rec  *recorder
		logs *observer.ObservedLogs
	}
	invs := make([]*inv, 3)
	for id := range invs {
		obs, logs := observer.New(zap.InfoLevel)
		i := &inv{rec: newRecorder(t, ctl.APIHost()), logs: logs}
		i.run, err = daemon.Start(daemon.Config{ID: id, Kafka: strings.Join(emb.Addrs(), ","), APIHost: i.rec.srv.URL,
			Listen: "-", StateDir: filepath.Join(t.TempDir(), fmt.Sprintf("invoker%d", id)), StoreToken: ctl.InvokerToken(),
			UserMemoryMB: 2048, PingInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
			Logger: zap.New(zapcore.NewTee(log.Named(fmt.Sprintf("invoker%d", id)).Core(), obs))},
			daemon.Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: repo, SlotsPerOwner: 8})
		if err != nil {
			t.Fatalf("invoker%d: %v", id, err)
		}
		t.Cleanup(func() {
			if err := i.run.Stop(); err != nil {
				t.Errorf("invoker%d Stop: %v", id, err)
			}
		})
		invs[id] = i
		// One at a time, each keyed for nodejs:20 before the next starts: the later ones take
		// invoker0's key through the relay, so all three hold one kid.
		waitFor(t, fmt.Sprintf("invoker%d up with nodejs:20 warm and keyed", id), time.Minute, func() bool {
			return ctl.warmKid(id, "nodejs:20") != ""
		})
	}
	kid := ctl.warmKid(0, "nodejs:20")
	for id := 1; id < 3; id++ {
		if got := ctl.warmKid(id, "nodejs:20"); got != kid {
			t.Fatalf("invoker%d holds kid %s for nodejs:20, invoker0 %s", id, got, kid)
		}
	}

	// Actions of two images: two of each whose home is invoker1 (the one drained), one of each
	// homed elsewhere.
	c, err := client.New(client.Config{APIHost: ctl.APIHost(), Auth: tenantAuth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.Namespace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	home := func(name string) int {
		return int(balancer.ActionHash(ns, ns+"/"+name) % 3)
	}
	type action struct{ name, kind string }
	var actions []action
	// One image: the enclave runtime serves nodejs:20 only (nodejs:18 is refused at create).
	for _, kind := range []string{"nodejs:20"} {
		onSource, elsewhere := 0, 0
		for n := 0; onSource < 4 || elsewhere < 2; n++ {
			name := fmt.Sprintf("a%s-%d", strings.ReplaceAll(kind, ":", ""), n)
			switch h := home(name); {
			case h == 1 && onSource < 4:
				onSource++
			case h != 1 && elsewhere < 2:
				elsewhere++
			default:
				continue
			}
			if _, err := c.PutAction(ctx, name, client.Action{Exec: client.Exec{Kind: kind,
				Code: `function main(p) { return { n: p.n, at: Date.now() } }`}}); err != nil {
				t.Fatalf("create %s: %v", name, err)
			}
			actions = append(actions, action{name, kind})
		}
	}
	image := map[string]string{}
	for _, a := range actions {
		image[a.name] = a.kind
	}

	// The load: every action invoked blocking, together about 12 per second, until stopped.
	type result struct {
		action  string
		start   time.Time
		invoker int
		err     error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, a := range actions {
		load.Go(func() {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				act, err := ctl.Invoke(ctx, tenantAuth, a.name, json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)))
				r := result{action: a.name, start: start, invoker: -1, err: err}
				if err == nil && !act.Response.IsSuccess() {
					r.err = fmt.Errorf("activation %s: status %d: %s", act.ActivationID, act.Response.StatusCode, act.Response.Result)
				}
				if err == nil {
					waitFor(t, "the record stored", 10*time.Second, func() bool {
						for i, v := range invs {
							if v.rec.served(act.ActivationID) {
								r.invoker = i
								return true
							}
						}
						return false
					})
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		load.Wait()
	}
	defer stopLoad()

	// Both images warm on invoker1 (its actions ran there), then the drain.
	waitFor(t, "invoker1 warm for the image", time.Minute, func() bool {
		return ctl.warmKid(1, "nodejs:20") != ""
	})
	time.Sleep(2 * time.Second)
	admin := adminClient{t: t, host: ctl.APIHost(), password: ctl.AdminPassword()}
	if status, body := admin.call("POST", "/invokers/1/drain", `{"to": 2}`, "wrong"); status != http.StatusUnauthorized {
		t.Fatalf("drain with a wrong password: %d %s", status, body)
	}
	drainAsked := time.Now()
	status, body := admin.call("POST", "/invokers/invoker1/drain", `{"to": "invoker2"}`, "")
	if status != http.StatusAccepted {
		t.Fatalf("drain: %d %s", status, body)
	}
	var s balancer.DrainStatus
	waitFor(t, "invoker1 drained", 90*time.Second, func() bool {
		s = admin.status(1)
		return s.State == balancer.StateDrained
	})
	drained := time.Now()
	t.Logf("invoker1 drained in %v: %+v", drained.Sub(drainAsked), s)
	if len(s.Moved) != 1 || s.Moved["nodejs:20"] != 2 || s.To != 2 {
		t.Fatalf("moved %v (to %d), want the image to invoker2", s.Moved, s.To)
	}
	if got := admin.invokers()["invoker1/1/invoker1"]; got != balancer.StateDrained {
		t.Errorf("GET /invokers shows invoker1 %q, want drained (%v)", got, admin.invokers())
	}
	time.Sleep(3 * time.Second) // load after the switch
	stopLoad()

	// Each image moved once invoker2 had it warm and keyed: no owner of it started there after.
	moved := map[string]time.Time{}
	for _, e := range ctlLogs.FilterMessageSnippet("image moved").All() {
		moved[e.ContextMap()["image"].(string)] = e.Time
	}
	for img, at := range moved {
		var starts []time.Time
		for _, e := range invs[2].logs.FilterMessage("enclave owner ready").All() {
			if e.ContextMap()["image"] == img {
				starts = append(starts, e.Time)
			}
		}
		if len(starts) == 0 {
			t.Errorf("no owner of %s ever started on invoker2", img)
		}
		for _, st := range starts {
			if st.After(at) {
				t.Errorf("an owner of %s started on invoker2 at %v, after the switch at %v: a cold start", img, st, at)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var failed, after, onDest int
	for _, r := range results {
		if r.err != nil {
			failed++
			t.Errorf("%s at %v: %v", r.action, r.start.Format("15:04:05.000"), r.err)
			continue
		}
		at, ok := moved[image[r.action]]
		if !ok || !r.start.After(at) || home(r.action) != 1 {
			continue
		}
		after++
		if r.invoker == 2 {
			onDest++
		} else {
			t.Errorf("%s started after %s moved ran on invoker%d, not invoker2", r.action, image[r.action], r.invoker)
		}
	}
	t.Logf("%d activations, %d failed; %d of invoker1's actions after their image moved, %d on invoker2", len(results), failed, after, onDest)
	if after == 0 {
		t.Fatal("no activation of invoker1's actions after the switch")
	}

	// Undrain: invoker1 takes its actions again.
	if status, body := admin.call("POST", "/invokers/1/undrain", "", ""); status != http.StatusOK {
		t.Fatalf("undrain: %d %s", status, body)
	}
	if got := admin.invokers()["invoker1/1/invoker1"]; got != "up" {
		t.Errorf("after undrain GET /invokers shows invoker1 %q", got)
	}
	for _, a := range actions {
		if home(a.name) != 1 {
			continue
		}
		act, err := ctl.Invoke(ctx, tenantAuth, a.name, json.RawMessage(`{"n":-1}`))
		if err != nil || !act.Response.IsSuccess() {
			t.Fatalf("invoke %s after undrain: %v %+v", a.name, err, act)
		}
		waitFor(t, "the record stored", 10*time.Second, func() bool { return invs[1].rec.served(act.ActivationID) })
	}

	// The last invoker: with invoker0 and invoker2 stopped, draining invoker1 is refused without
	// force, by the route and by the CLI, saying what would fail.
	for _, id := range []int{0, 2} {
		if err := invs[id].run.Stop(); err != nil {
			t.Errorf("invoker%d Stop: %v", id, err)
		}
	}
	// Named, not counted: on a busy machine invoker1's own pings may run late for a moment while a
	// stopped invoker still counts as up, and a count of one would then be the wrong one.
	waitFor(t, "invoker1 the only one up", 30*time.Second, func() bool {
		invs := ctl.bal.Invokers()
		return len(invs) == 3 && invs[0].State != "up" && invs[1].State == "up" && invs[2].State != "up"
	})
	status, body = admin.call("POST", "/invokers/1/drain", "", "")
	if status != http.StatusConflict || !strings.Contains(body, "last invoker") || !strings.Contains(body, "No invokers available.") {
		t.Fatalf("draining the last invoker: %d %s", status, body)
	}
	cli := exec.CommandContext(ctx, filepath.Join(repo, "bin", "controller-adapter"), "invoker", "drain", "1", "--apihost", ctl.APIHost())
	cli.Env = append(os.Environ(), "TEEMATE_ADMIN_PASSWORD="+ctl.AdminPassword())
	out, err := cli.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "last invoker") || !strings.Contains(string(out), "No invokers available.") {
		t.Fatalf("controller-adapter invoker drain 1 (the last): %v\n%s", err, out)
	}
	cli = exec.CommandContext(ctx, filepath.Join(repo, "bin", "controller-adapter"), "invoker", "drain", "1", "--force", "--wait", "30s",
		"--apihost", ctl.APIHost())
	cli.Env = append(os.Environ(), "TEEMATE_ADMIN_PASSWORD="+ctl.AdminPassword())
	if out, err = cli.CombinedOutput(); err != nil || !strings.Contains(string(out), "invoker1: drained") ||
		!strings.Contains(string(out), "No invokers available.") {
		t.Fatalf("controller-adapter invoker drain 1 --force: %v\n%s", err, out)
	}
	t.Logf("forced drain of the last invoker:\n%s", out)
	if _, err := ctl.Invoke(ctx, tenantAuth, actions[0].name, nil); err == nil || !strings.Contains(err.Error(), "No invokers available.") {
		t.Fatalf("invoke with every invoker drained: %v, want No invokers available.", err)
	}
	if status, body := admin.call("POST", "/invokers/1/undrain", "", ""); status != http.StatusOK {
		t.Fatalf("undrain invoker1: %d %s", status, body)
	}
	if act, err := ctl.Invoke(ctx, tenantAuth, actions[0].name, nil); err != nil || !act.Response.IsSuccess() {
		t.Fatalf("invoke after undrain: %v", err)
	}
}

// warmKid is the kid invoker id's last ping gave for image, "" when not warm and keyed there or
// not up.
func (c *Controller) warmKid(id int, image string) string {
	invs := c.bal.Invokers()
	if id >= len(invs) || invs[id].State != "up" {
		return ""
	}
	return c.bal.WarmKid(id, image)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("%s: not within %v", what, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminClient makes the operator's calls on invokers.
type adminClient struct {
	t              *testing.T
	host, password string
}

// call answers the status and body; password "" is the right one.
func (a adminClient) call(method, path, body, password string) (int, string) {
	a.t.Helper()
	if password == "" {
		password = a.password
	}
	req, err := http.NewRequest(method, a.host+path, bytes.NewReader([]byte(body)))
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (a adminClient) status(id int) balancer.DrainStatus {
	a.t.Helper()
	code, body := a.call("GET", fmt.Sprintf("/invokers/%d/drain", id), "", "")
	var s balancer.DrainStatus
	if err := json.Unmarshal([]byte(body), &s); code != http.StatusOK || err != nil {
		a.t.Fatalf("drain status: %d %v %s", code, err, body)
	}
	return s
}

func (a adminClient) invokers() map[string]string {
	a.t.Helper()
	code, body := a.call("GET", "/invokers", "", "")
	out := map[string]string{}
	if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil {
		a.t.Fatalf("GET /invokers: %d %v %s", code, err, body)
	}
	return out
}
