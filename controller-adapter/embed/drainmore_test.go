package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/teemate/platform/invoker/sealed"
)

// The drain's other tests (issue #20): sealed invocations across a drain with a cross-invoker state
// transfer cut half way, drains that outlive a controller restart, and a destination that never
// prepares the image. Each runs the real controller, a real broker over TCP and in-process
// invokers (process sandbox, direct enclave, real Node owners), like TestDrainUnderLoad.

// fleet is a broker, a controller (restartable on the same data directory, address and
// secrets) and the invokers a test starts.
type fleet struct {
	t       *testing.T
	repo    string
	log     *zap.Logger
	emb     *kafka.Embedded
	ctl     *Controller
	ctlLogs *observer.ObservedLogs
	dataDir string
	listen  string
	token   string
	admin   string
	prepare time.Duration
	invs    map[int]*fleetInvoker
}

type fleetInvoker struct {
	run  *daemon.Running
	rec  *recorder
	cut  *relayCutter
	logs *observer.ObservedLogs
}

func newFleet(t *testing.T, prepareTimeout time.Duration) *fleet {
	t.Helper()
	repo := repoRoot(t)
	for _, f := range []string{"bin/teemate-shim", "enclave-runtime/trusted/transfer.js"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			t.Fatalf("%s is missing: run make build first (%v)", f, err)
		}
	}
	f := &fleet{t: t, repo: repo, log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
		dataDir: filepath.Join(t.TempDir(), "controller"), prepare: prepareTimeout, invs: map[int]*fleetInvoker{}}
	var err error
	if f.emb, err = kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: f.log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.emb.Close)
	f.startController()
	t.Cleanup(func() {
		if f.ctl != nil {
			if err := f.ctl.Close(); err != nil {
				t.Errorf("controller Close: %v", err)
			}
		}
	})
	if err := f.ctl.AddNamespace(context.Background(), "tenant", tenantUUID, tenantKey); err != nil {
		t.Fatal(err)
	}
	return f
}

// startController starts the controller; a restart keeps its data directory, address, invoker
// token and admin password, so that the invokers and the operator find it as before.
func (f *fleet) startController() {
	f.t.Helper()
	obs, logs := observer.New(zap.InfoLevel)
	// A ping timeout of 10 s: on a loaded machine pings are late by seconds, and an invoker
	// taken for down would fail activations for reasons other than the drain.
	ctl, err := Start(context.Background(), Config{DataDir: f.dataDir, Kafka: kafka.Config{Brokers: f.emb.Addrs()},
		Listen: f.listen, InvokerToken: f.token, AdminPassword: f.admin, PrepareTimeout: f.prepare,
		Logger:     zap.New(zapcore.NewTee(f.log.Named("controller").Core(), obs)),
		HealthTick: 50 * time.Millisecond, Health: balancer.HealthConfig{PingTimeout: 10 * time.Second}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.ctl, f.ctlLogs = ctl, logs
	f.listen = strings.TrimPrefix(ctl.APIHost(), "http://")
	f.token, f.admin = ctl.InvokerToken(), ctl.AdminPassword()
}

func (f *fleet) restartController() {
	f.t.Helper()
	if err := f.ctl.Close(); err != nil {
		f.t.Fatalf("controller Close: %v", err)
	}
	f.ctl = nil
	f.startController()
}

// invokerOpts: prestart nil takes the default (nodejs:20); cutChunksAfter > 0 breaks the
// connection of the state transfer's chunk request after that many passed (once); blockRelay
// makes the key relay unreachable from this invoker.
type invokerOpts struct {
	prestart       []string
	cutChunksAfter int
	blockRelay     bool
}

func (f *fleet) startInvoker(id int, o invokerOpts) *fleetInvoker {
	f.t.Helper()
	obs, logs := observer.New(zap.InfoLevel)
	i := &fleetInvoker{rec: newRecorder(f.t, "http://"+f.listen), logs: logs}
	i.rec.blockRelay.Store(o.blockRelay)
	i.cut = newRelayCutter(f.t, i.rec.srv.URL, o.cutChunksAfter)
	var err error
	i.run, err = daemon.Start(daemon.Config{ID: id, Kafka: strings.Join(f.emb.Addrs(), ","), APIHost: i.cut.srv.URL,
		Listen: "-", StateDir: filepath.Join(f.t.TempDir(), fmt.Sprintf("invoker%d", id)), StoreToken: f.token,
		UserMemoryMB: 2048, PingInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
		Logger: zap.New(zapcore.NewTee(f.log.Named(fmt.Sprintf("invoker%d", id)).Core(), obs))},
		daemon.Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: f.repo, SlotsPerOwner: 8,
			Prestart: o.prestart})
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

// servedBy is the invoker that stored activation id's record, -1 when none within 10 s.
func (f *fleet) servedBy(id string) int {
	f.t.Helper()
	at := -1
	waitFor(f.t, "the record of "+id+" stored", 10*time.Second, func() bool {
		for n, inv := range f.invs {
			if inv.rec.served(id) {
				at = n
				return true
			}
		}
		return false
	})
	return at
}

func (f *fleet) operator() adminClient {
	return adminClient{t: f.t, host: f.ctl.APIHost(), password: f.admin}
}

// relayCutter is a reverse proxy in front of an invoker's way to the controller that breaks the
// connection of one state transfer chunk request (the one after the first `after` passed), as a
// network fault half way through a transfer would; it counts the chunk requests it saw.
type relayCutter struct {
	srv    *httptest.Server
	after  int
	chunks atomic.Int32
	cut    atomic.Bool
}

func newRelayCutter(t *testing.T, target string, after int) *relayCutter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c := &relayCutter{after: after}
	proxy := httputil.NewSingleHostReverseProxy(u)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost && req.URL.Path == "/internal/v1/keys/requests" {
			b, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(b))
			if bytes.Contains(b, []byte(`"state":"chunks"`)) {
				n := int(c.chunks.Add(1))
				if c.after > 0 && n == c.after+1 && c.cut.CompareAndSwap(false, true) {
					conn, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Errorf("cutting the relay: %v", err)
						return
					}
					if err := conn.Close(); err != nil {
						t.Errorf("cutting the relay: %v", err)
					}
					return
				}
			}
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// homedOn creates n actions of code whose home invoker (of count) is home, sealed to ev when ev is
// set, and returns their names.
func homedOn(t *testing.T, ctx context.Context, c *client.Client, ev *attest.Evidence, prefix, code string, home, count, n int) []string {
	t.Helper()
	ns, err := c.Namespace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 0; len(names) < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		if int(balancer.ActionHash(ns, ns+"/"+name)%uint32(count)) != home {
			continue
		}
		a := client.Action{Exec: client.Exec{Kind: "nodejs:20", Code: code}}
		if ev != nil {
			env, err := sealed.SealCode(ev, ns, "/"+ns+"/"+name, []byte(code))
			if err != nil {
				t.Fatal(err)
			}
			a.Exec.Code = env
			a.Annotations = []client.KeyValue{{Key: client.SealedAnnotation, Value: json.RawMessage("true")}}
		}
		if _, err := c.PutAction(ctx, name, a); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		names = append(names, name)
	}
	return names
}

// TestDrainSealedAcrossCutTransfer: invoker0 makes nodejs:20's image key and runs sealed actions
// of a large code (its owners hold the opened code); invoker1 starts, and its owner takes invoker0's
// state (key and opened code) through the controller's relay in chunks, the relay's connection
// broken after the first chunk request and the transfer resumed where the receiver stands (it
// refuses a chunk taken already, so none is applied twice). Then invoker0 is drained to invoker1
// while sealed invocations go on, sealed with fresh envelopes to the evidence attested once at
// the start: every activation succeeds, every result opens and its receipt verifies, those
// before the drain ran on invoker0 and those after it on invoker1.
func TestDrainSealedAcrossCutTransfer(t *testing.T) {
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
	ns, err := c.Namespace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// About 320 KiB of code: five chunks of 64 KiB, three chunk requests of two.
	code := "function main(p) { return { echo: p.secret + '-' + p.n, pad: PAD.length } }\nconst PAD = '" +
		strings.Repeat("teemate-", 40<<10) + "';\n"
	names := homedOn(t, ctx, c, ev, "sealed", code, 0, 2, 3)

	type result struct {
		name    string
		start   time.Time
		invoker int
		err     error
	}
	var mu sync.Mutex
	var results []result
	invoke := func(name string, n int) {
		r := result{name: name, start: time.Now(), invoker: -1}
		q := "/" + ns + "/" + name
		params, reply, err := sealed.SealParams(ev, ns, q, json.RawMessage(fmt.Sprintf(`{"secret":"canary","n":%d}`, n)))
		if err != nil {
			t.Error(err)
			return
		}
		a, err := c.Invoke(ctx, name, params, true)
		if err == nil {
			var o *sealed.Opened
			if o, err = client.Open(ev, reply, a); err == nil {
				want := fmt.Sprintf(`{"echo":"canary-%d","pad":%d}`, n, 8*(40<<10))
				if string(o.Result) != want {
					err = fmt.Errorf("result %s, want %s", o.Result, want)
				}
			}
			r.invoker = f.servedBy(a.ActivationID)
		}
		r.err = err
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	// Before: the sealed actions run on invoker0, the only invoker (its owners open the code).
	for _, name := range names {
		invoke(name, -1)
	}

	// invoker1's first owner takes invoker0's state through the relay; the cut and the resume.
	inv1Started := time.Now()
	inv1 := f.startInvoker(1, invokerOpts{cutChunksAfter: 1})
	waitFor(t, "invoker1 up and keyed like invoker0", time.Minute, func() bool {
		return f.ctl.warmKid(1, "nodejs:20") == ev.Kid
	})
	moves := inv1.logs.FilterMessage("image state transferred").All()
	if len(moves) == 0 {
		t.Fatalf("invoker1 logged no state transfer: %v", inv1.logs.FilterMessageSnippet("image key").All())
	}
	mv := moves[0].ContextMap()
	t.Logf("state transfer into invoker1: %v (chunk requests seen: %d)", mv, inv1.cut.chunks.Load())
	if !inv1.cut.cut.Load() {
		t.Fatalf("the relay was never cut: %d chunk requests", inv1.cut.chunks.Load())
	}
	if mv["resumes"] != int64(1) || mv["kid"] != ev.Kid {
		t.Errorf("transfer resumed %v times with kid %v, want once with %s", mv["resumes"], mv["kid"], ev.Kid)
	}
	if entries, _ := mv["codeEntries"].(int64); entries < 1 {
		t.Errorf("invoker1's owner took %v code entries, want the sealed code", mv["codeEntries"])
	}
	if chunks, _ := mv["chunks"].(int64); chunks < 3 {
		t.Errorf("the state moved in %v chunks, want several (a cut half way)", mv["chunks"])
	}

	// During and after the drain of invoker0 to invoker1: sealed invocations every 300 ms each.
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, name := range names {
		load.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				invoke(name, n)
			}
		})
	}
	time.Sleep(time.Second)
	admin := f.operator()
	if status, body := admin.call("POST", "/invokers/0/drain", `{"to": 1}`, ""); status != http.StatusAccepted {
		close(stop)
		load.Wait()
		t.Fatalf("drain: %d %s", status, body)
	}
	var s balancer.DrainStatus
	waitFor(t, "invoker0 drained", time.Minute, func() bool {
		s = admin.status(0)
		return s.State == balancer.StateDrained
	})
	drained := time.Now()
	// The load goes on until every action has answered twice after the drain (a slow machine
	// makes these large sealed activations take seconds).
	waitFor(t, "two sealed activations of each action after the drain", 90*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		after := map[string]int{}
		for _, r := range results {
			if r.start.After(drained) {
				after[r.name]++
			}
		}
		for _, name := range names {
			if after[name] < 2 {
				return false
			}
		}
		return true
	})
	close(stop)
	load.Wait()
	if s.Moved["nodejs:20"] != 1 {
		t.Errorf("moved %v, want nodejs:20 to invoker1", s.Moved)
	}

	mu.Lock()
	defer mu.Unlock()
	var before, after, failed int
	for _, r := range results {
		switch {
		case r.err != nil:
			failed++
			t.Errorf("%s at %s: %v", r.name, r.start.Format("15:04:05.000"), r.err)
		case r.start.Before(inv1Started):
			before++
			if r.invoker != 0 {
				t.Errorf("%s before invoker1 started ran on invoker%d", r.name, r.invoker)
			}
		case r.start.After(drained):
			after++
			if r.invoker != 1 {
				t.Errorf("%s after the drain ran on invoker%d, not invoker1", r.name, r.invoker)
			}
		}
	}
	t.Logf("%d sealed activations, %d failed, %d before invoker1 (on invoker0), %d after the drain (on invoker1)",
		len(results), failed, before, after)
	if before == 0 || after == 0 {
		t.Fatalf("%d sealed activations before, %d after the drain: want some of each", before, after)
	}
}

// TestDrainSurvivesControllerRestart: invoker1 drained to invoker0, the controller restarted on
// the same data directory: invoker1 is still drained (GET /invokers and its drain status say so)
// and its actions run on invoker0; undrained, and the controller restarted again, invoker1 serves
// its actions once more.
func TestDrainSurvivesControllerRestart(t *testing.T) {
	f := newFleet(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for id := range 2 {
		f.startInvoker(id, invokerOpts{})
		waitFor(t, fmt.Sprintf("invoker%d up and keyed", id), time.Minute, func() bool { return f.ctl.warmKid(id, "nodejs:20") != "" })
	}
	c, err := client.New(client.Config{APIHost: f.ctl.APIHost(), Auth: tenantAuth})
	if err != nil {
		t.Fatal(err)
	}
	names := homedOn(t, ctx, c, nil, "plain", `function main(p) { return { n: p.n } }`, 1, 2, 3)
	// runAll invokes every action once and says where each ran.
	runAll := func(when string) []int {
		t.Helper()
		var on []int
		for i, name := range names {
			act, err := f.ctl.Invoke(ctx, tenantAuth, name, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil || !act.Response.IsSuccess() {
				t.Fatalf("%s: invoke %s: %v %+v", when, name, err, act)
			}
			on = append(on, f.servedBy(act.ActivationID))
		}
		return on
	}
	everyOn := func(on []int, id int) bool {
		for _, i := range on {
			if i != id {
				return false
			}
		}
		return true
	}
	if on := runAll("before the drain"); !everyOn(on, 1) {
		t.Fatalf("before the drain invoker1's actions ran on %v", on)
	}
	admin := f.operator()
	if status, body := admin.call("POST", "/invokers/1/drain", `{"to": 0}`, ""); status != http.StatusAccepted {
		t.Fatalf("drain: %d %s", status, body)
	}
	waitFor(t, "invoker1 drained", time.Minute, func() bool { return admin.status(1).State == balancer.StateDrained })

	f.restartController()
	if f.ctlLogs.FilterMessage("invoker drain restored").Len() != 1 {
		t.Errorf("the restarted controller restored %d drains, want invoker1's", f.ctlLogs.FilterMessage("invoker drain restored").Len())
	}
	admin = f.operator()
	waitFor(t, "both invokers up again, invoker1 drained", time.Minute, func() bool {
		return f.ctl.HealthyInvokers() == 2 && admin.invokers()["invoker1/1/invoker1"] == balancer.StateDrained
	})
	if s := admin.status(1); s.State != balancer.StateDrained || s.To != 0 || s.Moved["nodejs:20"] != 0 {
		t.Fatalf("invoker1's drain after the restart: %+v", s)
	}
	for range 3 {
		if on := runAll("after the restart"); !everyOn(on, 0) {
			t.Fatalf("after the restart invoker1's actions ran on %v, want invoker0 (invoker1 is drained)", on)
		}
	}

	if status, body := admin.call("POST", "/invokers/1/undrain", "", ""); status != http.StatusOK {
		t.Fatalf("undrain: %d %s", status, body)
	}
	f.restartController()
	admin = f.operator()
	waitFor(t, "both invokers up again, invoker1 serving", time.Minute, func() bool {
		return f.ctl.HealthyInvokers() == 2 && admin.invokers()["invoker1/1/invoker1"] == "up"
	})
	if s := admin.status(1); s.State != "serving" {
		t.Fatalf("invoker1 after undrain and a restart: %+v", s)
	}
	if on := runAll("after undrain and a restart"); !everyOn(on, 1) {
		t.Fatalf("after undrain and a restart invoker1's actions ran on %v", on)
	}
}

// TestDrainGivesUpAnUnpreparedImage: the destination never reports the image keyed like the source
// (its relay is cut, so its owners make keys of their own, which the controller refuses): after the prepare timeout the drain gives
// the image up, GET /invokers/0/drain lists it under notMoved with the reason, and the source keeps
// serving it under load (zero failed). Asking the drain again tries the image once more.
func TestDrainGivesUpAnUnpreparedImage(t *testing.T) {
	const prepare = 3 * time.Second
	f := newFleet(t, prepare)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f.startInvoker(0, invokerOpts{})
	waitFor(t, "invoker0 up and keyed", time.Minute, func() bool { return f.ctl.warmKid(0, "nodejs:20") != "" })
	kid0 := f.ctl.warmKid(0, "nodejs:20")
	inv1 := f.startInvoker(1, invokerOpts{blockRelay: true})
	// Its owners' keys are refused and replaced, and no replacement can take kid0: it never
	// reports the image keyed like invoker0.
	waitFor(t, "invoker1 up, its own key refused", time.Minute, func() bool {
		return f.ctl.HealthyInvokers() == 2 && inv1.logs.FilterMessageSnippet("refused the owner's image key").Len() > 0 &&
			f.ctl.warmKid(1, "nodejs:20") != kid0
	})
	c, err := client.New(client.Config{APIHost: f.ctl.APIHost(), Auth: tenantAuth})
	if err != nil {
		t.Fatal(err)
	}
	names := homedOn(t, ctx, c, nil, "plain", `function main(p) { return { n: p.n } }`, 0, 2, 2)

	type result struct {
		name    string
		invoker int
		err     error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, name := range names {
		load.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				act, err := f.ctl.Invoke(ctx, tenantAuth, name, json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)))
				r := result{name: name, invoker: -1, err: err}
				if err == nil && !act.Response.IsSuccess() {
					r.err = fmt.Errorf("activation %s: status %d", act.ActivationID, act.Response.StatusCode)
				}
				if err == nil {
					r.invoker = f.servedBy(act.ActivationID)
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

	admin := f.operator()
	asked := time.Now()
	if status, body := admin.call("POST", "/invokers/0/drain", `{"to": 1}`, ""); status != http.StatusAccepted {
		t.Fatalf("drain: %d %s", status, body)
	}
	var s balancer.DrainStatus
	waitFor(t, "nodejs:20 given up", 30*time.Second, func() bool {
		s = admin.status(0)
		return s.NotMoved["nodejs:20"] != ""
	})
	gaveUp := time.Since(asked)
	t.Logf("given up after %v: %+v", gaveUp, s)
	if gaveUp < prepare {
		t.Errorf("given up after %v, before the prepare timeout %v", gaveUp, prepare)
	}
	if reason := s.NotMoved["nodejs:20"]; !strings.Contains(reason, "invoker1 did not report nodejs:20 warm and holding the image key within 3s") {
		t.Errorf("reason %q", reason)
	}
	if s.State != balancer.StateDraining || len(s.Moved) != 0 || s.Preparing != nil || !strings.Contains(s.Waiting, "not moved") {
		t.Errorf("status with the image given up: %+v", s)
	}
	if f.ctlLogs.FilterMessageSnippet("image not moved").Len() == 0 {
		t.Error("the controller did not log the image given up")
	}
	time.Sleep(2 * time.Second) // the source serves on

	// Asked again: the image is tried once more, and given up again.
	status, body := admin.call("POST", "/invokers/0/drain", `{"to": 1}`, "")
	if status != http.StatusOK || strings.Contains(body, "notMoved") || !strings.Contains(body, `"preparing"`) {
		t.Fatalf("drain asked again: %d %s", status, body)
	}
	waitFor(t, "nodejs:20 given up again", 30*time.Second, func() bool { return admin.status(0).NotMoved["nodejs:20"] != "" })
	stopLoad()

	mu.Lock()
	defer mu.Unlock()
	failed, onSource := 0, 0
	for _, r := range results {
		switch {
		case r.err != nil:
			failed++
			t.Errorf("%s: %v", r.name, r.err)
		case r.invoker == 0:
			onSource++
		default:
			t.Errorf("%s ran on invoker%d, not on the source, which keeps the image", r.name, r.invoker)
		}
	}
	t.Logf("%d activations during the drain, %d failed, %d on the source", len(results), failed, onSource)
	if onSource == 0 {
		t.Fatal("no activation during the drain")
	}
	if status, body := admin.call("POST", "/invokers/0/undrain", "", ""); status != http.StatusOK {
		t.Fatalf("undrain: %d %s", status, body)
	}
}
