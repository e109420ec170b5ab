package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine/confinetest"
	"github.com/teemate/platform/invoker/whisk"
)

var shimPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "daemon-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The shim and the strawman's launcher beside it (shim/), as make build installs them.
	shimPath = filepath.Join(dir, "teemate-shim")
	wd, _ := os.Getwd()
	mk := exec.Command("make", "-s", "-C", filepath.Join(wd, "..", "..", "shim"), "BIN="+dir)
	if out, err := mk.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build shim: %v\n%s", err, out)
		os.Exit(1)
	}
	// As root the direct backend confines owners by default: it needs the launcher and the
	// lockdown addon, as make build leaves them.
	if os.Geteuid() == 0 {
		if _, err := confinetest.Build(filepath.Join(wd, "..", "..")); err != nil {
			fmt.Fprintln(os.Stderr, "build the owner confinement:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func (r *restAPI) addCode(name, code string, memoryMB, timeoutMs int) {
	r.addAnnotated(name, code, `[]`, memoryMB, timeoutMs)
}

// addAnnotated is addCode with the action's annotations (a JSON array).
func (r *restAPI) addAnnotated(name, code, annotations string, memoryMB, timeoutMs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, _ := json.Marshal(code)
	r.actions["guest/"+name] = fmt.Sprintf(`{"namespace":"guest","name":%q,"version":"0.0.1",
	  "exec":{"kind":"nodejs:default","code":%s,"binary":false},"annotations":%s,"parameters":[],
	  "limits":{"timeout":%d,"memory":%d,"logs":10,"concurrency":1},"rev":"1-x"}`, name, c, annotations, timeoutMs, memoryMB)
}

// TestInvoker_RealNodeEndToEnd runs activations through the whole teemate path on this machine: Kafka,
// the REST fetch, the warm direct enclave (a real Node owner), a fresh process sandbox running the
// shim, the gate, and a new isolate per activation.
func TestInvoker_RealNodeEndToEnd(t *testing.T) {
	testtool.Require(t, "node")
	e := newEnv(t)
	e.api.addCode("hello", `function main(p) { console.log("hi " + p.name); return {greeting: "hello " + p.name, pid: process.pid} }`, 256, 60000)
	e.api.addCode("loop", `function main() { for (;;) {} }`, 256, 1000)
	e.api.addCode("leak", `function main() { globalThis.seen = (globalThis.seen || 0) + 1; return {seen: globalThis.seen} }`, 256, 60000)
	cfg := Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: testtool.Root(t), ShimPath: shimPath, SlotsPerOwner: 4}
	exec, cleanup, err := buildExecutor(zapTest(t), 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.startInvoker(func(c *Config) { c.Executor = exec })

	e.send(message(id(100), "hello", true, ""))
	a, _ := e.nextAck(30 * time.Second)
	res, ok := a.(*whisk.ResultMessage)
	if !ok || res.Response.Activation == nil {
		t.Fatalf("first ack %#v", a)
	}
	act := res.Response.Activation
	var out struct {
		Greeting string `json:"greeting"`
		PID      int    `json:"pid"`
	}
	if err := json.Unmarshal(act.Response.Result, &out); err != nil || act.Response.StatusCode != 0 || out.Greeting != "hello Bob" {
		t.Fatalf("result %s status %d", act.Response.Result, act.Response.StatusCode)
	}
	if a, _ := e.nextAck(10 * time.Second); a.Kind() != whisk.AckCompletion {
		t.Fatalf("second ack is %v, want a completion", a.Kind())
	}
	rec := e.api.record(id(100))
	if rec == nil || len(rec.Logs) != 1 || !strings.HasSuffix(rec.Logs[0], "stdout: hi Bob") {
		t.Fatalf("stored logs %q", rec.Logs)
	}
	if _, ok := rec.Annotations.Get("timings"); !ok {
		t.Fatal("no timings annotation")
	}

	// An infinite loop is stopped at the action's time limit, and the enclave keeps serving.
	e.send(message(id(101), "loop", true, ""))
	a, _ = e.nextAck(30 * time.Second)
	loop := a.(*whisk.ResultMessage).Response.Activation
	if loop.Response.StatusCode != whisk.StatusDeveloperError || !strings.Contains(string(loop.Response.Result), "exceeded its time limits of 1000 milliseconds") {
		t.Fatalf("loop result %d %s", loop.Response.StatusCode, loop.Response.Result)
	}
	if v, _ := loop.Annotations.Get("timeout"); string(v) != "true" {
		t.Fatalf("timeout annotation %s", v)
	}
	e.nextAck(10 * time.Second)

	// Globals never survive into the next activation: each gets a new isolate.
	for i := 0; i < 2; i++ {
		e.send(message(id(102+i), "leak", true, ""))
		a, _ = e.nextAck(30 * time.Second)
		r := a.(*whisk.ResultMessage).Response.Activation.Response.Result
		if string(r) != `{"seen":1}` {
			t.Fatalf("activation %d saw a previous activation's global: %s", i, r)
		}
		e.nextAck(10 * time.Second)
	}
}

// TestInvoker_IsolateReuseEndToEnd runs one namespace's activations through the whole path with
// --isolate-reuse tenant: the second one runs in a context of the isolate the first one left (more
// than the one native context a fresh isolate has) and still sees none of its globals.
func TestInvoker_IsolateReuseEndToEnd(t *testing.T) {
	testtool.Require(t, "node")
	e := newEnv(t)
	e.api.addCode("probe", `const v8 = require("v8");
function main() {
  const r = {contexts: v8.getHeapStatistics().number_of_native_contexts, seen: globalThis.seen || 0};
  globalThis.seen = 1;
  return r;
}`, 256, 60000)
	cfg := Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: testtool.Root(t), ShimPath: shimPath,
		SlotsPerOwner: 1, Isolate: "addon", IsolateReuse: "tenant"}
	exec, cleanup, err := buildExecutor(zapTest(t), 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.startInvoker(func(c *Config) { c.Executor = exec })
	for i := 0; i < 3; i++ {
		e.send(message(id(110+i), "probe", true, ""))
		a, _ := e.nextAck(30 * time.Second)
		res, ok := a.(*whisk.ResultMessage)
		if !ok || res.Response.Activation == nil {
			t.Fatalf("ack %#v", a)
		}
		var out struct{ Contexts, Seen int }
		if err := json.Unmarshal(res.Response.Activation.Response.Result, &out); err != nil {
			t.Fatalf("result %s: %v", res.Response.Activation.Response.Result, err)
		}
		if out.Seen != 0 {
			t.Fatalf("activation %d saw a previous activation's global: %+v", i, out)
		}
		if i > 0 && out.Contexts < 2 {
			t.Fatalf("activation %d ran in a fresh isolate (%d native contexts): the isolate was not kept", i, out.Contexts)
		}
		e.nextAck(10 * time.Second)
	}
}

// TestInvoker_StrawmanModel runs the comparison model in which every sandbox boots its own enclave
// runtime: same result, no shared enclave.
func TestInvoker_StrawmanModel(t *testing.T) {
	testtool.Require(t, "node")
	e := newEnv(t)
	e.api.addCode("hello", `function main(p) { return {greeting: "hello " + p.name} }`, 256, 60000)
	ex, cleanup, err := buildExecutor(zapTest(t), 0, Backends{Sandbox: "process", Enclave: "direct", Model: "strawman",
		RepoDir: testtool.Root(t), ShimPath: shimPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.startInvoker(func(c *Config) { c.Executor = ex })
	e.send(message(id(200), "hello", true, ""))
	a, _ := e.nextAck(30 * time.Second)
	act := a.(*whisk.ResultMessage).Response.Activation
	if act.Response.StatusCode != 0 || string(act.Response.Result) != `{"greeting":"hello Bob"}` {
		t.Fatalf("strawman result %d %s", act.Response.StatusCode, act.Response.Result)
	}
}

// TestInvoker_StrawmanEgress: the strawman's runtime gets the invoker's egress allow-list, as the
// shared enclave's owners do: an action with network reaches an allowed host-loopback endpoint (the
// bench's object store, say) and is refused any other.
func TestInvoker_StrawmanEgress(t *testing.T) {
	testtool.Require(t, "node")
	serve := func(body string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, body)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	allowed, other := serve("allowed"), serve("other")
	get := func(url string) string {
		return `const http = require('node:http');
function main() {
  return new Promise((resolve) => {
    http.get(` + strconv.Quote(url) + `, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({body}));
    }).on('error', (e) => resolve({error: e.message}));
  });
}`
	}
	e := newEnv(t)
	network := `[{"key":"network","value":true}]`
	e.api.addAnnotated("allowed", get(allowed.URL), network, 256, 60000)
	e.api.addAnnotated("other", get(other.URL), network, 256, 60000)
	ex, cleanup, err := buildExecutor(zapTest(t), 0, Backends{Sandbox: "process", Enclave: "direct", Model: "strawman",
		RepoDir: testtool.Root(t), ShimPath: shimPath, EgressAllow: strings.TrimPrefix(allowed.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.startInvoker(func(c *Config) { c.Executor = ex })

	run := func(n int, action string) *whisk.WhiskActivation {
		e.send(message(id(n), action, true, ""))
		a, _ := e.nextAck(30 * time.Second)
		e.nextAck(10 * time.Second)
		return a.(*whisk.ResultMessage).Response.Activation
	}
	if act := run(210, "allowed"); act.Response.StatusCode != 0 || string(act.Response.Result) != `{"body":"allowed"}` {
		t.Errorf("allowed endpoint: status %d result %s, want its body", act.Response.StatusCode, act.Response.Result)
	}
	// The runtime refuses the connection itself (caps.js), so the action fails with its error.
	if act := run(211, "other"); act.Response.StatusCode == 0 || !strings.Contains(string(act.Response.Result), "is refused") {
		t.Errorf("endpoint not on the allow-list: status %d result %s, want a refusal", act.Response.StatusCode, act.Response.Result)
	}
}

// TestBackends_SGXUnavailableFailsFast: on a host without SGX the sgx backend refuses at once with
// the reason, instead of starting an invoker that cannot run anything.
func TestBackends_SGXUnavailableFailsFast(t *testing.T) {
	if _, err := os.Stat("/dev/sgx_enclave"); err == nil {
		t.Skip("this host has SGX")
	}
	_, _, err := buildExecutor(zapTest(t), 0, Backends{Sandbox: "process", Enclave: "sgx", RepoDir: testtool.Root(t), ShimPath: shimPath})
	if !errors.Is(err, enclave.ErrUnavailable) || !strings.Contains(err.Error(), "/dev/sgx_enclave") {
		t.Fatalf("err = %v, want enclave.ErrUnavailable naming /dev/sgx_enclave", err)
	}
}

// The owners' confinement from the invoker's settings: owner ids, the allow-list, and the REST
// API's port added when it is on the host's loopback (and only then).
func TestOwnerConfinement(t *testing.T) {
	c, err := ownerConfinement("/r", Backends{OwnerUser: "7:8", EgressAllow: "127.0.0.1:9000, example.com:443", apiHost: "http://127.0.0.1:3233"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Launcher != "/r/bin/teemate-confine" || c.UID != 7 || c.GID != 8 {
		t.Fatalf("%+v", c)
	}
	if got := fmt.Sprint(c.EgressAllow); got != "[127.0.0.1:9000 example.com:443 127.0.0.1:3233]" {
		t.Fatalf("allow-list %s", got)
	}
	c, err = ownerConfinement("/r", Backends{apiHost: "https://api.example.com"})
	if err != nil || len(c.EgressAllow) != 0 || c.UID != 0 {
		t.Fatalf("%+v %v", c, err)
	}
	for _, b := range []Backends{{OwnerUser: "0:0"}, {OwnerUser: "x"}, {EgressAllow: "nohost"}, {EgressAllow: "h:99999"}} {
		if _, err := ownerConfinement("/r", b); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

// An invoker running as root refuses to build a direct enclave whose owners it cannot confine (here:
// a checkout without bin/teemate-confine), and says how to override; --unsafe-owner-as-root does.
func TestUnsafeOwnerAsRootRefusal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal concerns an invoker running as root")
	}
	testtool.Require(t, "node")
	repo := t.TempDir() // the runtime, but nothing built
	if err := os.Symlink(filepath.Join(testtool.Root(t), "enclave-runtime"), filepath.Join(repo, "enclave-runtime")); err != nil {
		t.Fatal(err)
	}
	b := Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: repo, ShimPath: shimPath, Prestart: []string{}}
	_, _, err := buildExecutor(zapTest(t), 0, b)
	if err == nil || !strings.Contains(err.Error(), "--unsafe-owner-as-root") || !strings.Contains(err.Error(), "teemate-confine") {
		t.Fatalf("unconfinable owners accepted or unclear error: %v", err)
	}
	b.UnsafeOwnerAsRoot = true
	_, cleanup, err := buildExecutor(zapTest(t), 0, b)
	if err != nil {
		t.Fatalf("with --unsafe-owner-as-root: %v", err)
	}
	cleanup()
}
