package spectest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helloCode = `function main(p) {
  console.log('hello ' + p.name);
  console.error('to stderr <&>');
  return { greeting: 'hi ' + p.name, id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE };
}`

func initBody(code string) string {
	b, err := json.Marshal(map[string]any{"value": map[string]any{"name": "spec", "main": "main", "code": code,
		"binary": false, "env": map[string]any{"__OW_NAMESPACE": "guest", "N": 5}}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func runBody(value string) string {
	return `{"value":` + value + `,"namespace":"guest","action_name":"/guest/spec",` +
		`"activation_id":"0123456789abcdef0123456789abcdef","transaction_id":"tid","deadline":"` +
		fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()) + `"}`
}

// netProbe connects to the host's loopback: refused either way, with a different reason with
// and without network (what the run's "network" changes in the enclave runtime).
const netProbe = `function main() {
  return new Promise((resolve) => {
    const s = require('net').connect(9, '127.0.0.1');
    s.on('error', (e) => resolve({ refused: e.message }));
    s.on('connect', () => { s.destroy(); resolve({ connected: true }); });
  });
}`

// scenario is one sandbox's life: a gate ("owner", "fake" with overrides, or "none"), extra
// environment, requests, and what the shim must show.
type scenario struct {
	name   string
	gate   string
	fake   map[string]any
	env    []string
	steps  []request
	expect []check
}

type check func(t *testing.T, o observation)

func statuses(o observation) string {
	var s []string
	for _, r := range o.Replies {
		if r.Err {
			s = append(s, "err")
		} else {
			s = append(s, fmt.Sprintf("%d/%s", r.Status, r.Outcome))
		}
	}
	return strings.Join(s, " ")
}

// wantStatuses checks the replies' statuses and outcomes, and the clean exit after the activation.
func wantStatuses(want string) check {
	return func(t *testing.T, o observation) {
		t.Helper()
		if got := statuses(o); got != want {
			t.Errorf("statuses %q, want %q\n%s", got, want, o)
		}
		if !o.Exited || o.ExitCode != 0 {
			t.Errorf("exited %v code %d, want a clean exit after the activation", o.Exited, o.ExitCode)
		}
	}
}

func bodyHas(i int, sub string) check {
	return func(t *testing.T, o observation) {
		t.Helper()
		if i >= len(o.Replies) || !strings.Contains(o.Replies[i].Body, sub) {
			t.Errorf("reply %d lacks %q\n%s", i, sub, o)
		}
	}
}

// logsAre compares both streams exactly: stamped lines and the sentinels.
func logsAre(stdout, stderr string) check {
	return func(t *testing.T, o observation) {
		t.Helper()
		if o.Stdout != stdout || o.StderrLogs != stderr {
			t.Errorf("stdout %q stderr %q, want %q %q", o.Stdout, o.StderrLogs, stdout, stderr)
		}
	}
}

// textsAre compares both streams without the stamps, which a real runtime sets from its clock;
// every stamp must be an RFC 3339 time.
func textsAre(stdout, stderr string) check {
	return func(t *testing.T, o observation) {
		t.Helper()
		if got := unstamp(t, o.Stdout); got != stdout {
			t.Errorf("stdout %q, want %q", got, stdout)
		}
		if got := unstamp(t, o.StderrLogs); got != stderr {
			t.Errorf("stderr %q, want %q", got, stderr)
		}
	}
}

func unstamp(t *testing.T, s string) string {
	t.Helper()
	var out strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line == "" || line == sentinel {
			out.WriteString(line)
			continue
		}
		stamp, text, ok := strings.Cut(line, " ")
		if _, err := time.Parse(time.RFC3339Nano, stamp); !ok || err != nil {
			t.Errorf("line %q does not start with a time", line)
		}
		out.WriteString(text)
	}
	return out.String()
}

func phases(i int, want string) check {
	return func(t *testing.T, o observation) {
		t.Helper()
		m := o.Replies[i].Timings
		if got := fmt.Sprintf("isolate=%s run=%s teardown=%s", m["isolateMs"], m["runMs"], m["teardownMs"]); got != want {
			t.Errorf("phases %q, want %q", got, want)
		}
	}
}

func scenarios() []scenario {
	okInit := post("/init", initBody(`function main(a){ return Array.isArray(a) ? a : {a: 1} }`))
	return []scenario{
		{name: "success with logs", gate: "owner",
			steps: []request{post("/init", initBody(helloCode)), post("/run", runBody(`{"name":"Bob"}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, `"greeting":"hi Bob"`),
				bodyHas(1, "0123456789abcdef0123456789abcdef"), textsAre("hello Bob\n"+sentinel, "to stderr <&>\n"+sentinel)}},
		{name: "application error", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ return {error: 'bad input'} }`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/application"), bodyHas(1, "bad input"), logsAre(sentinel, sentinel)}},
		{name: "rejected promise", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ return Promise.reject({error:'nope'}) }`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/application"), bodyHas(1, "nope")}},
		{name: "action throws", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ throw new Error('boom') }`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, "An error has occurred")}},
		{name: "not a dictionary", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ return 5 }`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, "The action did not return a dictionary.")}},
		{name: "init syntax error", gate: "owner",
			steps:  []request{post("/init", initBody(`function main( {`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("502/developer err"), bodyHas(0, "Initialization has failed due to:"), logsAre(sentinel, sentinel)}},
		{name: "init twice", gate: "owner",
			steps:  []request{okInit, okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 403/ 200/success"), bodyHas(1, "Cannot initialize the action more than once.")}},
		{name: "run before init", gate: "owner",
			steps:  []request{post("/run", runBody(`{}`)), okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("403/ 200/ 200/success"), bodyHas(0, "System not initialized.")}},
		{name: "second run", gate: "owner",
			steps:  []request{okInit, post("/run", runBody(`{}`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success err")}},
		{name: "run timeout", gate: "owner", env: []string{"TEEMATE_TIMEOUT_MS=300"},
			steps:  []request{post("/init", initBody(`function main(){ while(true){} }`)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/timeout"), bodyHas(1, "The action exceeded its time limits of 300 milliseconds.")}},
		{name: "missing code", gate: "owner",
			steps:  []request{post("/init", `{"value":{"main":"main"}}`)},
			expect: []check{wantStatuses("403/"), bodyHas(0, "Missing main/no code to execute."), logsAre(sentinel, sentinel)}},
		{name: "unknown path and method", gate: "owner",
			steps: []request{post("/foo", "{}"), {"GET", "/init", ""}, {"PUT", "/run", "{}"}, post("/init/", "{}"), okInit,
				post("/run", runBody(`[1,2]`))},
			expect: []check{wantStatuses("404/ 405/ 405/ 404/ 200/ 200/success"), bodyHas(5, `[1,2]`)}},
		{name: "owner: network lets the action try a client socket", gate: "owner", env: []string{"TEEMATE_NETWORK=1"},
			steps:  []request{post("/init", initBody(netProbe)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, "the host's own, loopback and link-local addresses are not reachable")}},
		{name: "owner: no network refuses client sockets", gate: "owner",
			steps:  []request{post("/init", initBody(netProbe)), post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, "TeeMate: network is not available to this action")}},

		{name: "gate unreachable", gate: "none",
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, "The enclave is not reachable: dial gate"), logsAre(sentinel, sentinel)}},
		{name: "gate closes mid-run", gate: "fake", fake: map[string]any{"run": closeConn{}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, msgAbnormalRun)}},
		{name: "gate closes at hello", gate: "fake", fake: map[string]any{"hello": closeConn{}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, "The enclave refused to attach: read gate frame header: the gate closed the connection")}},
		{name: "gate welcome malformed", gate: "fake", fake: map[string]any{"hello": rawFrame(`{"type":"welcome","slots":"many"}`)},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, "The enclave refused to attach: gate welcome reply malformed: slots must be an integer, not string")}},
		{name: "gate version error", gate: "fake", fake: map[string]any{"hello": map[string]string{"type": "error", "class": "version", "message": "v9"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, "The enclave refused to attach: gate version error: v9")}},
		{name: "gate busy", gate: "fake", fake: map[string]any{"acquire": map[string]string{"type": "error", "class": "busy", "message": "no free slot"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("503/gate"), bodyHas(0, "No enclave thread could be taken: gate busy error: no free slot")}},
		{name: "gate acquired without tcs", gate: "fake", fake: map[string]any{"acquire": map[string]string{"type": "acquired"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, "gate acquired reply without tcs")}},
		{name: "gate answers the wrong type", gate: "fake", fake: map[string]any{"acquire": map[string]string{"type": "released"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, `gate replied \"released\", expected \"acquired\"`)}},
		{name: "gate init error", gate: "fake", fake: map[string]any{"init": map[string]string{"type": "error", "class": "init", "message": "Initialization has failed due to: x"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/developer"), bodyHas(0, `{"error":"Initialization has failed due to: x"}`)}},
		{name: "gate state error at init", gate: "fake", fake: map[string]any{"init": map[string]string{"type": "error", "class": "state", "message": "order <x>"}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/gate"), bodyHas(0, `The enclave failed to initialize the action: gate state error: order \u003cx\u003e`)}},
		{name: "gate closes at init", gate: "fake", fake: map[string]any{"init": closeConn{}},
			steps:  []request{okInit},
			expect: []check{wantStatuses("502/developer"), bodyHas(0, msgAbnormalIni)}},
		{name: "gate run error", gate: "fake", fake: map[string]any{"run": map[string]string{"type": "error", "class": "internal", "message": "no isolate"}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/gate"), bodyHas(1, "The enclave failed to run the action: gate internal error: no isolate")}},
		{name: "gate result unknown outcome", gate: "fake", fake: map[string]any{"run": map[string]any{"type": "result", "outcome": "maybe"}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, msgAbnormalRun)}},
		{name: "gate result wrong types", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result","outcome":"success","timings":{"runMs":"fast"}}`)},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, msgAbnormalRun)}},
		{name: "gate reply not JSON", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result",`)},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer")}},
		{name: "gate frame of zero length", gate: "fake", fake: map[string]any{"run": rawFrame(``)},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, msgAbnormalRun)}},
		{name: "timeout and memory passed on", gate: "fake", fake: map[string]any{"run": map[string]any{"type": "result", "outcome": "memory",
			"result": map[string]string{"error": "The action exhausted its memory and was aborted."}, "logs": []any{}, "timings": map[string]any{}}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/memory"), bodyHas(1, "exhausted its memory")}},
		{name: "gate result shapes", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result","Outcome":"developer","result": {"error" : "x"} ,` +
			`"logs":[null,{"stream":"stderr","line":"a\u0000b\ud800"},{"line":"plain","time":"has space"},{"line":"two\nlines","time":"2026-11-21T10:00:00Z"}],` +
			`"timings":{"isolateMs":1e-7,"runMs":12345678.5,"teardownMs":0.1}}`)},
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 502/developer"), bodyHas(1, `{"error" : "x"}`),
				logsAre("- \n- plain\n2026-11-21T10:00:00Z two\n2026-11-21T10:00:00Z lines\n"+sentinel, "- a\x00b\ufffd\n"+sentinel),
				phases(1, "isolate=1e-7 run=12345678.5 teardown=0.1")}},
		{name: "logs keep the enclave's time and stream", gate: "fake",
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, `{"ok":true}`),
				logsAre("2026-11-21T10:00:00.123Z out <1>\n2026-11-21T10:00:00.125Z out 2\n"+sentinel, "2026-11-21T10:00:00.124Z err \u00e9\n"+sentinel),
				phases(1, "isolate=0.125 run=1.5 teardown=2.25")}},
		{name: "network passed in the run", gate: "fake", fake: map[string]any{"run": echoNetwork{}},
			env:    []string{"TEEMATE_NETWORK=1"},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, `{"network":true}`)}},
		{name: "no network: field left out", gate: "fake", fake: map[string]any{"run": echoNetwork{}},
			env:    []string{"TEEMATE_NETWORK=0"},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), bodyHas(1, `{"network":"absent"}`)}},
		{name: "release refused", gate: "fake", fake: map[string]any{"release": closeConn{}},
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: []check{wantStatuses("200/ 200/success"), func(t *testing.T, o observation) {
				if len(o.Warnings) != 1 || o.Warnings[0] != "warn: release of the enclave thread failed" {
					t.Errorf("warnings %q", o.Warnings)
				}
			}}},
		{name: "timings of an init", gate: "fake",
			steps: []request{okInit},
			expect: []check{func(t *testing.T, o observation) {
				m := o.Replies[0].Timings
				for _, k := range []string{"attachMs", "tcsMs", "initMs"} {
					if _, ok := m[k]; !ok {
						t.Errorf("init timings %v lack %s", m, k)
					}
				}
				if _, ok := m["bootMs"]; ok {
					t.Errorf("bootMs outside a strawman sandbox: %v", m)
				}
			}}},
	}
}

func runScenario(t *testing.T, sc scenario, owner string) {
	gateSock := ""
	var fake *fakeGate
	switch sc.gate {
	case "owner":
		needNode(t)
		gateSock = owner
	case "fake":
		fake = startFakeGate(t, sc.fake)
		gateSock = fake.sock
	default:
		gateSock = filepath.Join(shortDir(t), "nothing.sock")
	}
	s := launch(t, []string{shimBin}, gateSock, nil, sc.env...)
	s.ready(t, s.sock)
	var replies []reply
	for _, r := range sc.steps {
		replies = append(replies, s.do(t, r))
	}
	o := observe(s, replies)
	for _, c := range sc.expect {
		c(t, o)
	}
}

func TestSpec(t *testing.T) {
	owner := ""
	if nodeMissing == nil {
		owner = startOwner(t, 4) // shared: each sandbox takes and frees one slot
	}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc, owner) })
	}
}

// The gate frames the shim sends are PROTOCOL.md's: hello with version and sandbox, acquire, init
// with the /init value, run with the limits (clamped into the gate's ranges) and the __OW_ fields
// of the /run body in env, release.
func TestFramesSent(t *testing.T) {
	g := startFakeGate(t, nil)
	s := launch(t, []string{shimBin}, g.sock, nil, "TEEMATE_TIMEOUT_MS=50", "TEEMATE_MEMORY_MB=100000", "TEEMATE_LOG_LIMIT_BYTES=1000")
	s.ready(t, s.sock)
	if r := s.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
		t.Fatalf("init %+v", r)
	}
	if r := s.do(t, post("/run", runBody(`{"x":1}`))); r.Status != 200 {
		t.Fatalf("run %+v", r)
	}
	o := observe(s, nil)
	if !o.Exited || o.ExitCode != 0 {
		t.Fatalf("exit %v %d", o.Exited, o.ExitCode)
	}
	var types []string
	for _, f := range g.frames() {
		types = append(types, f["type"].(string))
	}
	if got := strings.Join(types, " "); got != "hello acquire init run release" {
		t.Fatalf("frames %q", got)
	}
	f := g.frames()
	if f[0]["version"] != 1.0 || f[0]["sandbox"] != "wsk0_1_guest_spec" {
		t.Errorf("hello %v", f[0])
	}
	if f[2]["code"] != "function main(){return {}}" || f[2]["main"] != "main" || f[2]["binary"] != false {
		t.Errorf("init %v", f[2])
	}
	if env, _ := f[2]["env"].(map[string]any); env["__OW_NAMESPACE"] != "guest" || env["N"] != "5" {
		t.Errorf("init env %v: every value must be a string", f[2]["env"])
	}
	run := f[3]
	if run["timeoutMs"] != 100.0 || run["memoryMB"] != 4096.0 || run["logLimitBytes"] != 1000.0 {
		t.Errorf("run limits %v, want timeoutMs 100 and memoryMB 4096 (clamped) and logLimitBytes 1000", run)
	}
	if v, _ := run["value"].(map[string]any); v["x"] != 1.0 {
		t.Errorf("run value %v", run["value"])
	}
	env, _ := run["env"].(map[string]any)
	if env["__OW_ACTIVATION_ID"] != "0123456789abcdef0123456789abcdef" || env["__OW_NAMESPACE"] != "guest" ||
		env["__OW_ACTION_NAME"] != "/guest/spec" || env["__OW_DEADLINE"] == nil {
		t.Errorf("run env %v", env)
	}
}

// Bodies around the shim's buffer sizes (its first read, the head limit, far beyond), each an
// /init then a /run on the same connection: the code reaches the gate whole and the run follows.
func TestInitBodySizes(t *testing.T) {
	for _, n := range []int{16<<10 - 200, 16 << 10, 64<<10 + 3, 1<<20 + 11} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			g := startFakeGate(t, nil)
			code := "function main(){return {}}//" + strings.Repeat("c", n)
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			o := observe(s, []reply{s.do(t, post("/init", initBody(code))), s.do(t, post("/run", runBody(`{"x":1}`)))})
			wantStatuses("200/ 200/success")(t, o)
			f := g.frames()
			if len(f) < 4 || f[2]["code"] != code {
				t.Fatalf("the init frame does not carry the %d-byte code whole", len(code))
			}
			if v, _ := f[3]["value"].(map[string]any); v["x"] != 1.0 {
				t.Fatalf("run value %v", f[3]["value"])
			}
		})
	}
}

// The shim attaches ahead of /init: hello and acquire reach the gate before any request, and the
// activation then goes on from there.
func TestAttachAhead(t *testing.T) {
	g := startFakeGate(t, nil)
	s := launch(t, []string{shimBin}, g.sock, nil)
	deadline := time.Now().Add(10 * time.Second)
	for len(g.frames()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("frames before /init: %v, want hello and acquire", g.frames())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.ready(t, s.sock)
	o := observe(s, []reply{s.do(t, post("/init", initBody("function main(){return {}}"))), s.do(t, post("/run", runBody(`{}`)))})
	wantStatuses("200/ 200/success")(t, o)
	var types []string
	for _, f := range g.frames() {
		types = append(types, f["type"].(string))
	}
	if got := strings.Join(types, " "); got != "hello acquire init run release" {
		t.Fatalf("frames %q", got)
	}
}

// Malformed bodies, each in a fresh sandbox: a clear 400 (403 for a missing value or code), the
// sentinels, and a clean exit; never a crash.
var badInits = []string{
	`{"value":`, `{"value":{"code":42}}`, `[]`, `"s"`, `5`, `{"value":5}`, `{"value":[1]}`, `{"value":{"binary":"yes","code":"x"}}`,
	`{"value":{"code":"x","env":[]}}`, `{"value":{"code":"x","env":{"":"y"}}}`, ``, `   `, `{"x":1 "a"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`,
	`{"a":"\u12x"}`, `{"a":"\q"}`, `{,}`, `{"a" 1}`, `[1 2]`, "\xff", "\xa0", `'`, `null`, `{"value":null}`,
	`{"VALUE":{"CODE":"x","Env":{"k":null}}, "value":{"main":5}}`, `{"value":{"code":"x","name":{}}}`,
	strings.Repeat("[", 10001), strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
}

var badRuns = []string{
	`{"value":"str"}`, `{"value":{},"deadline":"soon"}`, `{"value":{},"deadline":"99999999999999999999"}`,
	`[1]`, `null`, `{"value":`, `{"value":5}`, `"x"`, ``, `{"value":{},"deadline":"\u00e9\u0007"}`,
}

// Bodies the shim accepts although they are unusual: what follows the first JSON value is not
// read (a stream decoder's rule), a signed deadline is a number, a deadline that is not a string is
// left out, and an array is a value the gate takes.
var (
	lenientInits = []string{`{"value":{"code":"x"}} trailing`, `{"value":{"code":"x"}}` + "\x01"}
	lenientRuns  = []string{`{"value":{},"deadline":"+12"}`, `{"value":{}} junk`, `{"value":[]}`, `{"value":{},"deadline":5}`}
)

func TestMalformedBodies(t *testing.T) {
	g := startFakeGate(t, nil)
	for _, body := range badInits {
		t.Run(fmt.Sprintf("init %.30q", body), func(t *testing.T) {
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			o := observe(s, []reply{s.do(t, post("/init", body))})
			r := o.Replies[0]
			switch {
			case r.Status == 403 && strings.Contains(r.Body, "Missing main/no code to execute."):
			case r.Status == 400 && strings.Contains(r.Body, `"error":"Malformed /init request: `):
			default:
				t.Errorf("reply %+v", r)
			}
			if o.Stdout != sentinel || o.StderrLogs != sentinel || !o.Exited || o.ExitCode != 0 {
				t.Errorf("after a failed /init: %s", o)
			}
		})
	}
	for _, body := range badRuns {
		t.Run(fmt.Sprintf("run %.30q", body), func(t *testing.T) {
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			o := observe(s, []reply{s.do(t, post("/init", initBody("function main(){return {}}"))), s.do(t, post("/run", body))})
			if r := o.Replies[1]; r.Status != 400 || !strings.Contains(r.Body, `"error":"Malformed /run request: `) {
				t.Errorf("reply %+v", r)
			}
			if !strings.HasSuffix(o.Stdout, sentinel) || !o.Exited || o.ExitCode != 0 {
				t.Errorf("after a failed /run: %s", o)
			}
		})
	}
	for _, body := range lenientInits {
		t.Run(fmt.Sprintf("lenient init %.30q", body), func(t *testing.T) {
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			wantStatuses("200/ 200/success")(t, observe(s, []reply{s.do(t, post("/init", body)), s.do(t, post("/run", runBody(`{}`)))}))
		})
	}
	for _, body := range lenientRuns {
		t.Run(fmt.Sprintf("lenient run %.30q", body), func(t *testing.T) {
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			wantStatuses("200/ 200/success")(t, observe(s, []reply{s.do(t, post("/init", initBody("function main(){return {}}"))), s.do(t, post("/run", body))}))
		})
	}
	// Our own texts, not a JSON library's: what is wrong, where.
	for body, want := range map[string]string{
		`{"value":{"code":42}}`:                   "value.code must be a string, not number",
		`{"value":{"binary":"yes","code":"x"}}`:   "value.binary must be a boolean, not string",
		`{"value":{"code":"x","env":[]}}`:         "value.env must be an object, not array",
		`{"value":5}`:                             "value must be an object, not number",
		`[]`:                                      "the body must be an object, not array",
		`{"value":{"code":"x","env":{"":"y"}}}`:   "env has an empty name",
		`{"value":{"code":"x","name":{}}}`:        "value.name must be a string, not object",
		`{"value":{"code":"x"}`:                   "Malformed /init request: ",
		`{"value":{"code":"x","env":{"k":true}}}`: "", // any JSON value is an env value
	} {
		s := launch(t, []string{shimBin}, g.sock, nil)
		s.ready(t, s.sock)
		r := s.do(t, post("/init", body))
		if want == "" {
			if r.Status != 200 {
				t.Errorf("%s: %+v", body, r)
			}
			continue
		}
		if !strings.Contains(r.Body, want) {
			t.Errorf("%s: reply %s, want %q", body, r.Body, want)
		}
	}
}

func TestOversizeBody(t *testing.T) {
	g := startFakeGate(t, nil)
	big := `{"value":{"code":"` + strings.Repeat("x", maxBody) + `"}}`
	// A body over the limit whose JSON value ends inside the first 48 MiB is still accepted: the
	// limit bounds what is read.
	padded := `{"value":{"code":"function main(){return {}}"}}` + strings.Repeat(" ", maxBody)
	for _, tc := range []struct{ name, body, want string }{
		{"over", big, "400/"}, {"value inside the limit", padded, "200/ 200/success"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := launch(t, []string{shimBin}, g.sock, nil)
			s.ready(t, s.sock)
			r := s.do(t, post("/init", tc.body))
			rr := []reply{r}
			if r.Status == 200 {
				rr = append(rr, s.do(t, post("/run", runBody(`{}`))))
			}
			o := observe(s, rr)
			wantStatuses(tc.want)(t, o)
			if tc.name == "over" && !strings.Contains(r.Body, "body exceeds 50331648 bytes") {
				t.Fatalf("body %s", r.Body)
			}
		})
	}
}

// listeningFile binds and listens on a unix socket at sock and returns it as a file to hand to
// the shim, as a sandbox backend does; the caller closes it once the shim has it.
func listeningFile(t *testing.T, sock string) *os.File {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return f
}

// The sandbox backend may bind the proxy's socket and hand it over (TEEMATE_PROXY_FD).
func TestProxyFD(t *testing.T) {
	g := startFakeGate(t, nil)
	sock := filepath.Join(shortDir(t), "fd.sock")
	f := listeningFile(t, sock)
	s := launch(t, []string{shimBin}, g.sock, f, "TEEMATE_PROXY_FD=3")
	f.Close()
	s.ready(t, sock)
	o := observe(s, []reply{s.do(t, post("/init", initBody("function main(){return {}}"))), s.do(t, post("/run", runBody(`{}`)))})
	wantStatuses("200/ 200/success")(t, o)
}

// startConf encodes a start configuration (invoker/internal/sandbox/startconf's format).
func startConf(path string, env ...string) []byte {
	fields := append([]string{"teemate-start/1", path, "/", "1", path, strconv.Itoa(len(env))}, env...)
	return []byte(strings.Join(fields, "\x00") + "\x00")
}

// A prestarted shim (TEEMATE_START_CONF) is exec'd with only its listening socket; it takes the
// rest of its configuration from the start configuration once a connection is pending, so the
// file may be written after its start. A faulty file ends it with exit 2 and the reason.
func TestPrestarted(t *testing.T) {
	g := startFakeGate(t, nil)
	for _, tc := range []struct {
		name string
		conf []byte
		want string // "" for a served activation, else the expected stderr text
	}{
		{"served", startConf(shimBin, "TEEMATE_GATE="+g.sock, "TEEMATE_SANDBOX=wsk9_1_guest_pre",
			"TEEMATE_TIMEOUT_MS=5000", "TEEMATE_PROXY_FD=9"), ""},
		{"no gate", startConf(shimBin, "TEEMATE_SANDBOX=wsk9_2_guest_pre"), "TEEMATE_GATE must be set"},
		{"malformed", []byte("teemate-start/1\x00/bin/x\x00"), "malformed start configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortDir(t)
			sock, conf := filepath.Join(dir, "p.sock"), filepath.Join(dir, "start.conf")
			f := listeningFile(t, sock)
			cmd := exec.Command(shimBin)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TEEMATE_PROXY_FD=3", "TEEMATE_START_CONF=" + conf}
			cmd.ExtraFiles = []*os.File{f}
			s := start(t, &sandbox{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), sock: sock, exitCode: -1})
			f.Close()
			// Started with no gate and no file: it waits for its use instead of failing, named so.
			select {
			case <-s.exited:
				t.Fatalf("exited before its use: %d %s", s.exitCode, s.stderr.String())
			case <-time.After(50 * time.Millisecond):
			}
			comm := func() string {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
				return strings.TrimSpace(string(b))
			}
			if got := comm(); got != "teemate-waiting" {
				t.Fatalf("a waiting prestarted shim is named %q", got)
			}
			if err := os.WriteFile(conf, tc.conf, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				c, err := net.Dial("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				select {
				case <-s.exited:
				case <-time.After(10 * time.Second):
					t.Fatal("a faulty start configuration did not end the shim")
				}
				if s.exitCode != 2 || !strings.Contains(s.stderr.String(), tc.want) {
					t.Fatalf("exit %d, stderr %q, want 2 and %q", s.exitCode, s.stderr.String(), tc.want)
				}
				return
			}
			s.ready(t, sock)
			o := observe(s, []reply{s.do(t, post("/init", initBody("function main(){return {}}"))), s.do(t, post("/run", runBody(`{}`)))})
			wantStatuses("200/ 200/success")(t, o)
			if f := g.frames(); len(f) == 0 || f[0]["sandbox"] != "wsk9_1_guest_pre" {
				t.Fatalf("hello %v: the start configuration's TEEMATE_SANDBOX did not reach the gate", f)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"no socket", []string{"TEEMATE_GATE=/g"}, "TEEMATE_PROXY_FD, TEEMATE_PROXY_SOCKET or TEEMATE_PROXY_ADDR must be set"},
		{"no gate", []string{"TEEMATE_PROXY_ADDR=:0"}, "TEEMATE_GATE must be set"},
		{"bad memory", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_MEMORY_MB=lots"}, "TEEMATE_MEMORY_MB"},
		{"negative timeout", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_TIMEOUT_MS=-1"}, "TEEMATE_TIMEOUT_MS"},
		{"several", []string{"TEEMATE_LOG_LIMIT_BYTES=1e3", "TEEMATE_TIMEOUT_MS=\u00e9\t"}, "TEEMATE_LOG_LIMIT_BYTES"},
		{"bad network", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_NETWORK=yes"}, "TEEMATE_NETWORK"},
		{"stdio fd", []string{"TEEMATE_PROXY_FD=2", "TEEMATE_GATE=/g"}, "TEEMATE_PROXY_FD"},
		{"fd not a number", []string{"TEEMATE_PROXY_FD=three", "TEEMATE_GATE=/g"}, "TEEMATE_PROXY_FD"},
		{"bad boot time", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_BOOT_MS=soon"}, "TEEMATE_BOOT_MS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := launchRaw(t, tc.env)
			if !s.waitExit(5 * time.Second) {
				t.Fatal("did not exit")
			}
			got := s.stderr.String()
			if s.exitCode != 2 || !strings.HasPrefix(got, "teemate-shim: shim configuration: ") || !strings.Contains(got, tc.want) {
				t.Fatalf("exit %d: %q, want exit 2 naming %s", s.exitCode, got, tc.want)
			}
		})
	}
}

// Transport rules of the shim's HTTP server.
func TestTransport(t *testing.T) {
	g := startFakeGate(t, nil)
	t.Run("chunked body refused", func(t *testing.T) {
		s := launch(t, []string{shimBin}, g.sock, nil)
		s.ready(t, s.sock)
		conn, err := net.Dial("unix", s.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("POST /init HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if got := string(buf[:n]); err != nil || !strings.HasPrefix(got, "HTTP/1.1 411 ") || !strings.Contains(got, `{"error":"Length Required`) {
			t.Fatalf("reply %q %v", got, err)
		}
		// The sandbox is still fresh: a proper /init and /run follow.
		if r := s.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init after 411: %+v", r)
		}
	})
	t.Run("SIGTERM while the run waits", func(t *testing.T) {
		slow := startFakeGate(t, map[string]any{"run": hang{}})
		s := launch(t, []string{shimBin}, slow.sock, nil)
		s.ready(t, s.sock)
		if r := s.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init: %+v", r)
		}
		go func() {
			if resp, err := s.http.Post("http://proxy/run", "application/json", strings.NewReader(runBody(`{}`))); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond)
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !s.waitExit(2*time.Second) || s.exitCode != 0 {
			t.Fatalf("exit %d after SIGTERM", s.exitCode)
		}
	})
	t.Run("invoker hangs up mid-run", func(t *testing.T) {
		slow := startFakeGate(t, map[string]any{"run": hang{}})
		s := launch(t, []string{shimBin}, slow.sock, nil)
		s.ready(t, s.sock)
		if r := s.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init: %+v", r)
		}
		conn, err := net.Dial("unix", s.sock)
		if err != nil {
			t.Fatal(err)
		}
		body := runBody(`{}`)
		fmt.Fprintf(conn, "POST /run HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		time.Sleep(100 * time.Millisecond)
		conn.Close()
		// The shim gives up on the run at once and ends the sandbox.
		if !s.waitExit(2*time.Second) || s.exitCode != 0 {
			t.Fatalf("exit %d after the invoker hung up", s.exitCode)
		}
		if !strings.HasSuffix(s.stdout.String(), sentinel) {
			t.Fatalf("stdout %q", s.stdout.String())
		}
	})
	// The invoker writes /run right behind /init (proxy.Client.InitRun): the shim answers them
	// in order, and forwards the /run to the enclave only after a successful /init.
	pipelined := func(t *testing.T, g *fakeGate) (initReply, runReply *http.Response, runErr error) {
		s := launch(t, []string{shimBin}, g.sock, nil)
		s.ready(t, s.sock)
		conn, err := net.Dial("unix", s.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ib, rb := initBody("function main(){return {}}"), runBody(`{"x":1}`)
		if _, err := fmt.Fprintf(conn, "POST /init HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%sPOST /run HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s",
			len(ib), ib, len(rb), rb); err != nil {
			t.Fatal(err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		initReply, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the /init reply: %v", err)
		}
		_, _ = io.Copy(io.Discard, initReply.Body) // read to its end, so that the /run reply follows
		runReply, runErr = http.ReadResponse(br, nil)
		if runErr == nil {
			_, _ = io.Copy(io.Discard, runReply.Body) // its status is what the test checks
		}
		if !s.waitExit(5*time.Second) || s.exitCode != 0 {
			t.Fatalf("exit %d", s.exitCode)
		}
		return initReply, runReply, runErr
	}
	frameTypes := func(g *fakeGate) string {
		var types []string
		for _, f := range g.frames() {
			types = append(types, f["type"].(string))
		}
		return strings.Join(types, " ")
	}
	t.Run("pipelined /init and /run", func(t *testing.T) {
		g := startFakeGate(t, nil)
		ir, rr, err := pipelined(t, g)
		if ir.StatusCode != 200 || err != nil || rr.StatusCode != 200 {
			t.Fatalf("init %d, run %v %v", ir.StatusCode, rr, err)
		}
		if got := frameTypes(g); got != "hello acquire init run release" {
			t.Fatalf("frames %q", got)
		}
	})
	t.Run("pipelined /run after a failed /init never reaches the enclave", func(t *testing.T) {
		g := startFakeGate(t, map[string]any{"init": map[string]any{"type": "error", "class": "init", "message": "SyntaxError"}})
		ir, rr, err := pipelined(t, g)
		if ir.StatusCode == 200 {
			t.Fatalf("init %d, want a failure", ir.StatusCode)
		}
		if err == nil && rr.StatusCode == 200 {
			t.Fatalf("the /run behind a failed /init got %d", rr.StatusCode)
		}
		if got := frameTypes(g); strings.Contains(got, "run") {
			t.Fatalf("frames %q: the run was forwarded", got)
		}
	})
	t.Run("deadline: a gate that never answers init", func(t *testing.T) {
		slow := startFakeGate(t, map[string]any{"init": hang{}})
		s := launch(t, []string{shimBin}, slow.sock, nil, "TEEMATE_TIMEOUT_MS=100")
		s.ready(t, s.sock)
		start := time.Now()
		r := s.do(t, post("/init", initBody("function main(){return {}}")))
		// The limit plus the 5 s grace.
		if el := time.Since(start); r.Status != 502 || r.Outcome != "developer" || el < 5*time.Second || el > 9*time.Second {
			t.Fatalf("reply %+v after %v", r, el)
		}
	})
}

// After its activation the shim has released its slot: a real runtime's slots are all free again.
func TestSlotReleased(t *testing.T) {
	owner := startOwner(t, 1)
	for i := 0; i < 2; i++ { // the second sandbox gets the one slot only if the first gave it back
		s := launch(t, []string{shimBin}, owner, nil)
		s.ready(t, s.sock)
		o := observe(s, []reply{s.do(t, post("/init", initBody(`function main(){return {a:1}}`))), s.do(t, post("/run", runBody(`{}`)))})
		wantStatuses("200/ 200/success")(t, o)
	}
	pong, err := exchange(owner, `{"type":"ping"}`)
	if err != nil || pong["free"] != 1.0 {
		t.Fatalf("pong %v %v", pong, err)
	}
}
