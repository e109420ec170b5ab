package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/functions"
	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/whisk"
)

func TestCorrupt(t *testing.T) {
	in := json.RawMessage(`{"result":0.1,"name":"x","ok":true,"list":[1],"measurement":{"compute_ms":3}}`)
	out, err := Corrupt(in)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["result"] != 1.1 || m["name"] != "x~corrupted" || m["ok"] != false || m["list"] != "corrupted" {
		t.Fatalf("corrupted %s", out)
	}
	if _, ok := m["measurement"].(map[string]any); !ok {
		t.Fatal("measurement must be left alone")
	}
	for _, bad := range []string{`[]`, `{}`, `"s"`, `nope`} {
		if _, err := Corrupt(json.RawMessage(bad)); err == nil {
			t.Errorf("Corrupt(%s) accepted", bad)
		}
	}
	// A corrupted real sleep result must fail its validator.
	good := json.RawMessage(`{"result":0.1,"sleep":0.1,"slept_ms":100.5}`)
	if err := functions.Validate("sleep", "test", nil, good); err != nil {
		t.Fatalf("good sleep result rejected: %v", err)
	}
	bad, _ := Corrupt(good)
	if functions.Validate("sleep", "test", nil, bad) == nil {
		t.Fatal("corrupted sleep result accepted")
	}
}

func TestLoadAvg(t *testing.T) {
	l, err := ParseLoadAvg("0.50 1.25 2.00 1/300 4242\n")
	if err != nil || l != [3]float64{0.5, 1.25, 2} {
		t.Fatalf("%v %v", l, err)
	}
	for _, bad := range []string{"", "1 2", "a b c"} {
		if _, err := ParseLoadAvg(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for _, c := range []struct {
		load  float64
		cores int
		idle  bool
	}{{0.5, 2, true}, {0.99, 2, true}, {1.0, 2, false}, {17, 2, false}} {
		if got := IsIdle([3]float64{c.load}, c.cores, 0.5); got != c.idle {
			t.Errorf("IsIdle(%v on %d) = %v", c.load, c.cores, got)
		}
	}
}

// startTestDirect starts the in-process platform (embedded broker, the controller-adapter's
// controller, in-process invokers on the process sandbox and real Node) for a test: the process
// sandbox is pinned for speed; TestCPUOnContainers runs on oci.
func startTestDirect(t *testing.T) *Direct {
	t.Helper()
	return startTestDirectOn(t, "process")
}

// startTestDirectOn is startTestDirect on the named sandbox backend.
func startTestDirectOn(t *testing.T, sandbox string) *Direct {
	t.Helper()
	testtool.Require(t, "node")
	os.Unsetenv("NODE_EXTRA_CA_CERTS")
	repo := testtool.Root(t)
	// The shim and the strawman's launcher beside it, as make build makes them.
	bin := t.TempDir()
	if out, err := exec.Command("make", "-s", "-C", filepath.Join(repo, "shim"), "BIN="+bin).CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, out)
	}
	shim := filepath.Join(bin, "teemate-shim")
	// As root the warm enclave owners run confined: the launcher and the lockdown addon, as make
	// build makes them.
	if os.Geteuid() == 0 {
		for _, args := range [][]string{
			{"-s", "-C", repo, filepath.Join(repo, "bin", "teemate-confine")},
			{"-s", "-C", filepath.Join(repo, "node-isolate-patch"), "build/teemate_lockdown.node"},
		} {
			if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
				t.Fatalf("make %v: %v\n%s", args, err, out)
			}
		}
	}
	d, err := StartDirect(DirectConfig{RepoDir: repo, ShimPath: shim, Sandbox: sandbox, Concurrency: 2, ActionMemoryMB: 256, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// TestShortRealRun drives the whole pipeline: embedded Kafka, the controller-adapter's controller,
// in-process invokers for teemate and strawman on the process sandbox, real Node. One latency sample of crypto-md5 is
// deliberately corrupted before validation: it must be reported invalid and excluded.
func TestShortRealRun(t *testing.T) {
	d := startTestDirect(t)
	const tampered = 3 // warm-up is seq 1, latency samples 2..4
	res := &result.Result{Schema: result.SchemaVersion}
	opts := Options{Models: []string{"teemate", "strawman"}, Cases: []CaseSpec{{Function: "crypto-md5", Size: "test"}},
		Warmup: 1, Samples: 3, Repeat: 1, Concurrency: []int{2}, Bursts: 1, MemoryConcurrency: []int{1},
		MemoryInterval: 5 * time.Millisecond, ActionMemoryMB: 256, TimeoutMs: 30000, Noop: true,
		Tamper: func(fn string, seq int, r json.RawMessage) json.RawMessage {
			if fn == "crypto-md5" && seq == tampered {
				bad, err := Corrupt(r)
				if err != nil {
					t.Errorf("corrupt: %v", err)
				}
				return bad
			}
			return r
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Run(ctx, d, opts, res); err != nil {
		t.Fatal(err)
	}
	res.Finish()
	if len(res.Cases) != 4 || len(res.Models) != 2 || !res.Models[0].Available || !res.Models[1].Available {
		t.Fatalf("cases %d models %+v warnings %v", len(res.Cases), res.Models, res.Warnings)
	}
	for _, c := range res.Cases {
		name := fmt.Sprintf("%s/%s", c.Model, c.Function)
		if !c.ValidatorChecked {
			t.Errorf("%s: validator not checked", name)
		}
		if c.Function == result.NoopFunction {
			if !c.AllValid || c.Latency == nil || c.Latency.N != 3 {
				t.Errorf("%s: %+v", name, c.Latency)
			}
			continue
		}
		if c.AllValid || c.Invalid != 1 || c.Latency == nil || c.Latency.N != 2 {
			t.Errorf("%s: the corrupted sample was not excluded: invalid %d, latency %+v; first error %q", name, c.Invalid, c.Latency, firstErr(c))
		}
		var bad *result.Sample
		for i := range c.Samples {
			if c.Samples[i].Seq == tampered {
				bad = &c.Samples[i]
			}
		}
		if bad == nil || bad.Valid || !strings.HasPrefix(bad.Error, "invalid: ") {
			t.Errorf("%s: tampered sample %+v", name, bad)
		}
		if c.Throughput["2"] <= 0 || c.PeakMemoryMB["1"] <= 0 {
			t.Errorf("%s: throughput %v memory %v", name, c.Throughput, c.PeakMemoryMB)
		}
		if _, ok := c.PhaseP50["isolate_create"]; !ok {
			t.Errorf("%s: no isolate_create phase in %v", name, c.PhaseP50)
		}
	}
	if r := res.Summary.Ratios.LatencyTeemateVsStrawman; r <= 0 {
		t.Errorf("latency ratio %v", r)
	}
	if o := res.Issue3["teemate"]; o == nil || o.N != 3 || o.OverheadP50Ms <= 0 {
		t.Errorf("noop overhead %+v", o)
	}
}

// TestLargeRecords follows the one route of records too large for Kafka, on the real path (Node,
// OpenWhisk's action proxy in the native model, the invoker, Kafka, the controller-adapter's store
// and balancer). A result just under the 1 MiB payload limit travels in the Result ack. One over it
// becomes OpenWhisk's truncation error, which quotes the reply's first MiB; made of quotes, that
// doubles when escaped, so the record no longer fits in an ack: the invoker stores it, acks the id
// alone, and the controller answers the caller from the store. Either way the caller's record and
// the stored one agree, and the stored one has the logs.
func TestLargeRecords(t *testing.T) {
	d := startTestDirect(t)
	const limit = 1 << 20
	actions := []ActionSpec{
		{Name: "near", Code: fmt.Sprintf(`function main() { console.log("near"); return { blob: "x".repeat(%d) }; }`, limit-64)},
		{Name: "over", Code: fmt.Sprintf(`function main() { console.log("over"); return { blob: '"'.repeat(%d) }; }`, limit)},
	}
	for i := range actions {
		actions[i].MemoryMB, actions[i].TimeoutMs = 256, 30000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := d.Deploy(ctx, actions); err != nil {
		t.Fatal(err)
	}
	stop, err := d.UseModel(ctx, "native")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rest, err := NewAPI(d.ctl.APIHost(), d.auth)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		status  int
		inAck   bool // the caller's record came in the Result ack (without logs)
		contain string
	}{
		{"near", whisk.StatusSuccess, true, `"blob":"xxxx`},
		{"over", whisk.StatusApplicationError, false, "exceeded the allowed length: "},
	} {
		reply, err := d.Invoke(ctx, c.name, json.RawMessage(`{}`))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		a := reply.Activation
		if a.Response.StatusCode != c.status || !strings.Contains(string(a.Response.Result), c.contain) {
			t.Fatalf("%s: status %d, result %.200s", c.name, a.Response.StatusCode, a.Response.Result)
		}
		ack, err := whisk.NewResult(whisk.NewRandomTransactionID(time.Now()), a).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if fits := len(ack) <= whisk.MaxMessageBytes; fits != c.inAck {
			t.Fatalf("%s: a Result ack of this record is %d bytes (limit %d); the case is not what it claims", c.name, len(ack), whisk.MaxMessageBytes)
		}
		if !c.inAck && (len(a.Logs) == 0 || !strings.Contains(a.Logs[0], c.name)) {
			t.Fatalf("%s: answered from the store, the record must have its logs: %q", c.name, a.Logs)
		}
		// The record as wsk activation get shows it, right after the answer.
		b, code, err := rest.do(ctx, http.MethodGet, "/api/v1/namespaces/_/activations/"+a.ActivationID, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: activation get: HTTP %d %v", c.name, code, err)
		}
		stored, err := parseExternal(b)
		if err != nil {
			t.Fatalf("%s: stored record: %v", c.name, err)
		}
		if string(stored.Response.Result) != string(a.Response.Result) || stored.Response.StatusCode != c.status ||
			len(stored.Logs) == 0 || !strings.Contains(stored.Logs[0], c.name) {
			t.Fatalf("%s: stored record differs from the answer (status %d, %d result bytes, logs %q)", c.name,
				stored.Response.StatusCode, len(stored.Response.Result), stored.Logs)
		}
	}
}

func firstErr(c *result.Case) string {
	for _, s := range c.Samples {
		if s.Error != "" {
			return s.Error
		}
	}
	return ""
}

func TestParseExternal(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		code       int
		ok         bool
	}{
		{"success", `{"namespace":"guest","name":"noop","activationId":"0123456789abcdef0123456789abcdef","start":1,"end":2,"response":{"result":{"x":1},"size":7,"success":true,"status":"success"},"annotations":[{"key":"timings","value":{"run":1.5}}]}`, whisk.StatusSuccess, true},
		{"developer error", `{"namespace":"guest","name":"n","activationId":"0123456789abcdef0123456789abcde2","start":1,"end":2,"response":{"result":{"error":"x"},"success":false,"status":"action developer error"}}`, whisk.StatusDeveloperError, true},
		{"internal form", `{"namespace":"guest","name":"n","activationId":"a3","start":1,"response":{"statusCode":0}}`, 0, false},
		{"unknown status", `{"namespace":"guest","name":"n","activationId":"a4","start":1,"response":{"status":"fine"}}`, 0, false},
		{"not json", `<html>`, 0, false},
	} {
		a, err := parseExternal([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if tc.ok && (a.Response.StatusCode != tc.code || a.ActivationID == "") {
			t.Errorf("%s: got %+v", tc.name, a)
		}
	}
}

func TestDefaultSlots(t *testing.T) {
	for cores, want := range map[int]int{1: 4, 2: 8, 16: 64} {
		if got := DefaultSlots(cores); got != want {
			t.Errorf("DefaultSlots(%d) = %d, want %d", cores, got, want)
		}
	}
}
