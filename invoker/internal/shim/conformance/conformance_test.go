package conformance

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

const helloCode = `function main(p) {
  console.log('hello ' + p.name);
  console.error('to stderr <&>');
  return { greeting: 'hi ' + p.name, id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE };
}`

func initBody(code string) string {
	b, _ := json.Marshal(map[string]any{"value": map[string]any{"name": "conf", "main": "main", "code": code,
		"binary": false, "env": map[string]any{"__OW_NAMESPACE": "guest", "N": 5}}})
	return string(b)
}

func runBody(value string) string {
	return `{"value":` + value + `,"namespace":"guest","action_name":"/guest/conf",` +
		`"activation_id":"0123456789abcdef0123456789abcdef","transaction_id":"tid","deadline":"` +
		fmt.Sprint(time.Now().Add(time.Minute).UnixMilli()) + `"}`
}

const sentinel = whisk.LogSentinel + "\n"

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
// environment, requests, and what both binaries must show.
type scenario struct {
	name   string
	gate   string
	fake   map[string]any
	env    []string
	steps  []request
	expect func(t *testing.T, o observation)
}

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

func wantStatuses(want string) func(*testing.T, observation) {
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

func both(fs ...func(*testing.T, observation)) func(*testing.T, observation) {
	return func(t *testing.T, o observation) {
		t.Helper()
		for _, f := range fs {
			f(t, o)
		}
	}
}

func bodyHas(i int, sub string) func(*testing.T, observation) {
	return func(t *testing.T, o observation) {
		t.Helper()
		if i >= len(o.Replies) || !strings.Contains(o.Replies[i].Body, sub) {
			t.Errorf("reply %d lacks %q\n%s", i, sub, o)
		}
	}
}

func logsAre(stdout, stderr string) func(*testing.T, observation) {
	return func(t *testing.T, o observation) {
		t.Helper()
		if o.Stdout != stdout || o.StderrLogs != stderr {
			t.Errorf("stdout %q stderr %q, want %q %q", o.Stdout, o.StderrLogs, stdout, stderr)
		}
	}
}

func scenarios() []scenario {
	okInit := post("/init", initBody(`function main(a){ return Array.isArray(a) ? a : {a: 1} }`))
	return []scenario{
		{name: "success with logs", gate: "owner",
			steps: []request{post("/init", initBody(helloCode)), post("/run", runBody(`{"name":"Bob"}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, `"greeting":"hi Bob"`),
				bodyHas(1, "0123456789abcdef0123456789abcdef"), logsAre("hello Bob\n"+sentinel, "to stderr <&>\n"+sentinel))},
		{name: "application error", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ return {error: 'bad input'} }`)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/application"), bodyHas(1, "bad input"), logsAre(sentinel, sentinel))},
		{name: "action throws", gate: "owner",
			steps:  []request{post("/init", initBody(`function main(){ throw new Error('boom') }`)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/developer"), bodyHas(1, "An error has occurred"))},
		{name: "init syntax error", gate: "owner",
			steps:  []request{post("/init", initBody(`function main( {`)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("502/developer err"), bodyHas(0, "Initialization has failed due to:"), logsAre(sentinel, sentinel))},
		{name: "init twice", gate: "owner",
			steps:  []request{okInit, okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 403/ 200/success"), bodyHas(1, "Cannot initialize the action more than once."))},
		{name: "run before init", gate: "owner",
			steps:  []request{post("/run", runBody(`{}`)), okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("403/ 200/ 200/success"), bodyHas(0, "System not initialized."))},
		{name: "second run", gate: "owner",
			steps:  []request{okInit, post("/run", runBody(`{}`)), post("/run", runBody(`{}`))},
			expect: wantStatuses("200/ 200/success err")},
		{name: "run timeout", gate: "owner", env: []string{"TEEMATE_TIMEOUT_MS=300"},
			steps:  []request{post("/init", initBody(`function main(){ while(true){} }`)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/timeout"), bodyHas(1, "The action exceeded its time limits of 300 milliseconds."))},
		{name: "missing code", gate: "owner",
			steps:  []request{post("/init", `{"value":{"main":"main"}}`)},
			expect: both(wantStatuses("403/"), bodyHas(0, "Missing main/no code to execute."), logsAre(sentinel, sentinel))},
		{name: "unknown path and method", gate: "owner",
			steps: []request{post("/foo", "{}"), {"GET", "/init", ""}, {"PUT", "/run", "{}"}, post("/init/", "{}"), okInit,
				post("/run", runBody(`[1,2]`))},
			expect: both(wantStatuses("404/ 405/ 405/ 404/ 200/ 200/success"), bodyHas(5, `[1,2]`))},
		{name: "gate unreachable", gate: "none",
			steps:  []request{okInit},
			expect: both(wantStatuses("502/gate"), bodyHas(0, "The enclave is not reachable: dial gate"), logsAre(sentinel, sentinel))},
		{name: "gate closes mid-run", gate: "fake", fake: map[string]any{"run": closeConn{}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/developer"), bodyHas(1, whisk.MsgAbnormalRun))},
		{name: "gate closes at hello", gate: "fake", fake: map[string]any{"hello": closeConn{}},
			steps:  []request{okInit},
			expect: both(wantStatuses("502/gate"), bodyHas(0, "The enclave refused to attach: read gate frame header: EOF"))},
		{name: "gate busy", gate: "fake", fake: map[string]any{"acquire": map[string]string{"type": "error", "class": "busy", "message": "no free slot"}},
			steps:  []request{okInit},
			expect: both(wantStatuses("503/gate"), bodyHas(0, "No enclave thread could be taken: gate busy error: no free slot"))},
		{name: "gate init error", gate: "fake", fake: map[string]any{"init": map[string]string{"type": "error", "class": "init", "message": "Initialization has failed due to: x"}},
			steps:  []request{okInit},
			expect: both(wantStatuses("502/developer"), bodyHas(0, `{"error":"Initialization has failed due to: x"}`))},
		{name: "gate state error at init", gate: "fake", fake: map[string]any{"init": map[string]string{"type": "error", "class": "state", "message": "order <x>"}},
			steps:  []request{okInit},
			expect: both(wantStatuses("502/gate"), bodyHas(0, `The enclave failed to initialize the action: gate state error: order \u003cx\u003e`))},
		{name: "gate closes at init", gate: "fake", fake: map[string]any{"init": closeConn{}},
			steps:  []request{okInit},
			expect: both(wantStatuses("502/developer"), bodyHas(0, whisk.MsgAbnormalInitialization))},
		{name: "gate run error", gate: "fake", fake: map[string]any{"run": map[string]string{"type": "error", "class": "internal", "message": "no isolate"}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/gate"), bodyHas(1, "The enclave failed to run the action: gate internal error: no isolate"))},
		{name: "gate result unknown outcome", gate: "fake", fake: map[string]any{"run": map[string]any{"type": "result", "outcome": "maybe"}},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/developer"), bodyHas(1, whisk.MsgAbnormalRun))},
		{name: "gate result wrong types", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result","outcome":"success","timings":{"runMs":"fast"}}`)},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/developer"), bodyHas(1, whisk.MsgAbnormalRun))},
		{name: "gate reply not JSON", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result",`)},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: wantStatuses("200/ 502/developer")},
		{name: "gate result shapes", gate: "fake", fake: map[string]any{"run": rawFrame(`{"type":"result","Outcome":"developer","result": {"error" : "x"} ,` +
			`"logs":[null,{"stream":"stderr","line":"a\u0000b\ud800"},{"line":"plain"}],"timings":{"isolateMs":1e-7,"runMs":12345678.5,"teardownMs":0.1}}`)},
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 502/developer"), bodyHas(1, `{"error" : "x"}`),
				logsAre("\nplain\n"+sentinel, "a\x00b\ufffd\n"+sentinel),
				func(t *testing.T, o observation) {
					if got := o.Replies[1].Phases; got != "isolate=1e-7 run=12345678.5 teardown=0.1" {
						t.Errorf("phases %q", got)
					}
				})},
		{name: "fake success with logs and timings", gate: "fake",
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, `{"ok":true}`), logsAre("out <1>\nout 2\n"+sentinel, "err \u00e9\n"+sentinel),
				func(t *testing.T, o observation) {
					if got := o.Replies[1].Phases; got != "isolate=0.125 run=1.5 teardown=2.25" {
						t.Errorf("phases %q (lastTeardownMs must stand in for a null teardownMs)", got)
					}
				})},
		{name: "network passed in the run", gate: "fake", fake: map[string]any{"run": echoNetwork{}},
			env:    []string{"TEEMATE_NETWORK=1"},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, `{"network":true}`))},
		{name: "no network: field left out", gate: "fake", fake: map[string]any{"run": echoNetwork{}},
			env:    []string{"TEEMATE_NETWORK=0"},
			steps:  []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, `{"network":"absent"}`))},
		{name: "owner: network lets the action try a client socket", gate: "owner", env: []string{"TEEMATE_NETWORK=1"},
			steps:  []request{post("/init", initBody(netProbe)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, "the host's own, loopback and link-local addresses are not reachable"))},
		{name: "owner: no network refuses client sockets", gate: "owner",
			steps:  []request{post("/init", initBody(netProbe)), post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), bodyHas(1, "TeeMate: network is not available to this action"))},
		{name: "release refused", gate: "fake", fake: map[string]any{"release": closeConn{}},
			steps: []request{okInit, post("/run", runBody(`{}`))},
			expect: both(wantStatuses("200/ 200/success"), func(t *testing.T, o observation) {
				if len(o.Warnings) != 1 || o.Warnings[0] != "warn: release of the enclave thread failed" {
					t.Errorf("warnings %q", o.Warnings)
				}
			})},
	}
}

// malformed bodies: each one /init (or /run after a good /init) in a fresh sandbox.
var badInits = []string{
	`{"value":`, `{"value":{"code":42}}`, `[]`, `"s"`, `5`, `{"value":5}`, `{"value":[1]}`, `{"value":{"binary":"yes","code":"x"}}`,
	`{"value":{"code":"x","env":[]}}`, `{"value":{"code":"x","env":{"":"y"}}}`, ``, `   `, `{"value":{"code":"x"}} trailing`,
	`{"value":{"code":"x"}}` + "\x01", `{"x":1 "a"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":-}`, `{"a":1.}`, `{"a":1e}`,
	`{"a":"\u12x"}`, `{"a":"\q"}`, `{,}`, `{"a" 1}`, `[1 2]`, "\xff", "\xa0", `'`, `null`, `{"value":null}`,
	`{"VALUE":{"CODE":"x","Env":{"k":null}}, "value":{"main":5}}`, `{"value":{"code":"x","name":{}}}`,
	strings.Repeat("[", 10001), strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
}

var badRuns = []string{
	`{"value":"str"}`, `{"value":{},"deadline":"soon"}`, `{"value":{},"deadline":"+12"}`, `{"value":{},"deadline":"99999999999999999999"}`,
	`[1]`, `null`, `{"value":`, `{"value":5}`, `"x"`, ``, `{"value":{}} junk`, `{"value":[]}`, `{"value":{},"deadline":"\u00e9\u0007"}`,
	`{"value":{},"deadline":5}`, `{"value":null,"deadline":null}`,
}

func TestConformance(t *testing.T) {
	owner := ""
	if skipReason == "" {
		owner = startOwner(t, 4) // shared: each sandbox takes and frees one slot
	}
	list := scenarios()
	for _, body := range badInits {
		list = append(list, scenario{name: fmt.Sprintf("bad init %.30q", body), gate: "fake",
			steps: []request{post("/init", body), post("/run", runBody(`{}`))}})
	}
	for _, body := range badRuns {
		list = append(list, scenario{name: fmt.Sprintf("bad run %.30q", body), gate: "fake",
			steps: []request{post("/init", initBody("function main(){return {}}")), post("/run", body)}})
	}
	for _, sc := range list {
		t.Run(sc.name, func(t *testing.T) {
			gateSock := ""
			switch sc.gate {
			case "owner":
				if owner == "" {
					t.Skip(skipReason)
				}
				gateSock = owner
			case "fake":
				gateSock = startFakeGate(t, sc.fake)
			default:
				gateSock = filepath.Join(shortDir(t), "nothing.sock")
			}
			var obs []observation
			for _, bin := range bins {
				p := launch(t, bin, gateSock, nil, sc.env...)
				p.ready(t, p.sock)
				var replies []reply
				for _, r := range sc.steps {
					replies = append(replies, p.do(t, r))
				}
				o := observe(p, replies)
				if sc.gate == "owner" {
					// A real owner's isolate timings differ run to run.
					for i := range o.Replies {
						o.Replies[i].Phases = ""
					}
				}
				obs = append(obs, o)
			}
			compare(t, obs)
			if sc.expect != nil {
				sc.expect(t, obs[1])
			}
		})
	}
}

// compare requires the same observation from every binary (the first is the reference).
func compare(t *testing.T, obs []observation) {
	t.Helper()
	for i := 1; i < len(obs); i++ {
		if !reflect.DeepEqual(obs[0], obs[i]) {
			t.Errorf("%s differs from %s:\n%s: %s\n%s: %s", bins[i].name, bins[0].name, bins[0].name, obs[0], bins[i].name, obs[i])
		}
	}
}

func TestOversizeBody(t *testing.T) {
	gateSock := startFakeGate(t, nil)
	big := `{"value":{"code":"` + strings.Repeat("x", 48<<20) + `"}}`
	// A body over the limit whose JSON value ends inside the first 48 MiB is still accepted
	// (the limit bounds what is read, as in Go's server).
	padded := `{"value":{"code":"function main(){return {}}"}}` + strings.Repeat(" ", 48<<20)
	for _, tc := range []struct{ name, body, want string }{
		{"over", big, "400/"}, {"value inside the limit", padded, "200/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var obs []observation
			for _, bin := range bins {
				p := launch(t, bin, gateSock, nil)
				p.ready(t, p.sock)
				r := p.do(t, post("/init", tc.body))
				rr := []reply{r}
				if r.Status == 200 {
					rr = append(rr, p.do(t, post("/run", runBody(`{}`))))
				}
				obs = append(obs, observe(p, rr))
			}
			compare(t, obs)
			if got := statuses(obs[1]); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("statuses %q want %q", got, tc.want)
			}
			if tc.name == "over" && !strings.Contains(obs[1].Replies[0].Body, "body exceeds 50331648 bytes") {
				t.Fatalf("body %s", obs[1].Replies[0].Body)
			}
		})
	}
}

func TestProxyFD(t *testing.T) {
	gateSock := startFakeGate(t, nil)
	var obs []observation
	for _, bin := range bins {
		sock := filepath.Join(shortDir(t), "fd.sock")
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
		p := launch(t, bin, gateSock, f, "TEEMATE_PROXY_FD=3")
		f.Close()
		if p.waitExit(300*time.Millisecond) && p.exitCode == 2 && strings.Contains(p.stderr.String(), "must be set") {
			t.Logf("%s shim does not take TEEMATE_PROXY_FD yet: %s", bin.name, p.stderr.String())
			continue
		}
		p.ready(t, sock)
		obs = append(obs, observe(p, []reply{p.do(t, post("/init", initBody("function main(){return {}}"))), p.do(t, post("/run", runBody(`{}`)))}))
	}
	if len(obs) == 0 {
		t.Fatal("no binary ran in TEEMATE_PROXY_FD mode")
	}
	for _, o := range obs {
		wantStatuses("200/ 200/success")(t, o)
	}
	if len(obs) == len(bins) {
		compare(t, obs)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no socket", []string{"TEEMATE_GATE=/g"}},
		{"no gate", []string{"TEEMATE_PROXY_ADDR=:0"}},
		{"bad memory", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_MEMORY_MB=lots"}},
		{"negative timeout", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_TIMEOUT_MS=-1"}},
		{"several", []string{"TEEMATE_LOG_LIMIT_BYTES=1e3", "TEEMATE_TIMEOUT_MS=\u00e9\t"}},
		{"bad network", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_NETWORK=yes"}},
		{"bad network among others", []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_TIMEOUT_MS=x", "TEEMATE_NETWORK=true\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, bin := range bins {
				p := launchRaw(t, bin, tc.env)
				if !p.waitExit(5 * time.Second) {
					t.Fatalf("%s did not exit", bin.name)
				}
				got = append(got, fmt.Sprintf("exit %d: %s", p.exitCode, p.stderr.String()))
			}
			if got[0] != got[1] || !strings.HasPrefix(got[1], "exit 2: teemate-shim: shim configuration: ") {
				t.Fatalf("go %q\nc  %q", got[0], got[1])
			}
		})
	}
	t.Run("strawman refused by the C shim", func(t *testing.T) {
		p := launchRaw(t, bins[1], []string{"TEEMATE_PROXY_ADDR=:0", "TEEMATE_GATE=/g", "TEEMATE_STRAWMAN_CMD=node owner.js"})
		if !p.waitExit(5*time.Second) || p.exitCode != 2 || !strings.Contains(p.stderr.String(), "TEEMATE_STRAWMAN_CMD") {
			t.Fatalf("exit %d stderr %q", p.exitCode, p.stderr.String())
		}
	})
}

// The C shim's own rules where it deliberately differs from Go's HTTP server.
func TestCShimOnly(t *testing.T) {
	c := bins[1]
	gateSock := startFakeGate(t, nil)
	t.Run("chunked body refused", func(t *testing.T) {
		p := launch(t, c, gateSock, nil)
		p.ready(t, p.sock)
		conn, err := net.Dial("unix", p.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("POST /init HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"))
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := conn.Read(buf)
		if got := string(buf[:n]); !strings.HasPrefix(got, "HTTP/1.1 411 ") || !strings.Contains(got, `{"error":"Length Required`) {
			t.Fatalf("reply %q", got)
		}
		// The sandbox is still fresh: a proper /init and /run follow.
		if r := p.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init after 411: %+v", r)
		}
	})
	t.Run("SIGTERM while the run waits", func(t *testing.T) {
		slow := startFakeGate(t, map[string]any{"run": hang{}})
		p := launch(t, c, slow, nil)
		p.ready(t, p.sock)
		if r := p.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init: %+v", r)
		}
		go func() {
			if resp, err := p.http.Post("http://proxy/run", "application/json", strings.NewReader(runBody(`{}`))); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if !p.waitExit(2*time.Second) || p.exitCode != 0 {
			t.Fatalf("exit %d after SIGTERM", p.exitCode)
		}
	})
	t.Run("invoker hangs up mid-run", func(t *testing.T) {
		slow := startFakeGate(t, map[string]any{"run": hang{}})
		p := launch(t, c, slow, nil)
		p.ready(t, p.sock)
		if r := p.do(t, post("/init", initBody("function main(){return {}}"))); r.Status != 200 {
			t.Fatalf("init: %+v", r)
		}
		conn, err := net.Dial("unix", p.sock)
		if err != nil {
			t.Fatal(err)
		}
		body := runBody(`{}`)
		fmt.Fprintf(conn, "POST /run HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		time.Sleep(100 * time.Millisecond)
		conn.Close()
		// The shim gives up on the run at once (as Go's request context does) and ends the sandbox.
		if !p.waitExit(2*time.Second) || p.exitCode != 0 {
			t.Fatalf("exit %d after the invoker hung up", p.exitCode)
		}
		if !strings.HasSuffix(p.stdout.String(), sentinel) {
			t.Fatalf("stdout %q", p.stdout.String())
		}
	})
}
