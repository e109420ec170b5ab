package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/whisk"
)

var (
	shimBin    string
	ownerJS    string
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shimbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shimBin = filepath.Join(dir, "teemate-shim")
	wd, _ := os.Getwd()
	root := filepath.Join(wd, "..", "..", "..")
	build := exec.Command("go", "build", "-o", shimBin, "./invoker/cmd/teemate-shim-go")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build teemate-shim: %v\n%s", err, out)
		return 1
	}
	if ownerJS, err = direct.FindOwnerJS(wd); err != nil {
		skipReason = "enclave-runtime/trusted/owner.js is not there yet: " + err.Error()
	} else if _, err := exec.LookPath("node"); err != nil {
		skipReason = "node is not installed"
	}
	return m.Run()
}

func needOwner(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startOwner starts a real enclave owner (direct backend) and returns its gate socket.
func startOwner(t *testing.T, slots int) string {
	t.Helper()
	needOwner(t)
	// OpenGate: these tests drive the shim's side of the protocol against a real owner; the gate's
	// authentication (both shims presenting their activation's token) is executor's
	// TestGateAuthReplayRefused.
	b, err := direct.New(direct.Config{OwnerJS: ownerJS, OpenGate: true}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "t", Image: "nodejs:20", Dir: shortDir(t), Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Stop(context.Background()) })
	return o.GateSocket()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type shimProc struct {
	client         *proxy.Client
	stdout, stderr *syncBuf
	exited         chan struct{}
	cmd            *exec.Cmd
	sock           string
}

func startShim(t *testing.T, gateSock string, env ...string) *shimProc {
	t.Helper()
	sock := filepath.Join(shortDir(t), "p.sock")
	cmd := exec.Command(shimBin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TEEMATE_PROXY_SOCKET=" + sock,
		"TEEMATE_GATE=" + gateSock, "TEEMATE_SANDBOX=wsk0_1_guest_test", "TEEMATE_TIMEOUT_MS=5000"}, env...)
	// A group of its own, as a sandbox has.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &shimProc{stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), cmd: cmd, sock: sock}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	c, err := proxy.New(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.WaitReady(context.Background(), time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("shim not ready: %v (stderr %s)", err, p.stderr.String())
	}
	p.client = c
	return p
}

func (p *shimProc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("shim did not exit after its activation")
	}
}

func initValue(code string) map[string]any {
	return map[string]any{"name": "test", "main": "main", "code": code, "binary": false,
		"env": map[string]string{"__OW_NAMESPACE": "guest"}}
}

func runBody(value string) map[string]any {
	return map[string]any{"value": json.RawMessage(value), "namespace": "guest", "action_name": "/guest/test",
		"activation_id": "0123456789abcdef0123456789abcdef", "transaction_id": "tid",
		"deadline": fmt.Sprint(time.Now().Add(5 * time.Second).UnixMilli())}
}

func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var m struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return m.Error
}

const helloCode = `function main(p) {
  console.log('hello ' + p.name);
  console.error('to stderr');
  return { greeting: 'hi ' + p.name, id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE };
}`

func TestHappyPathAndSentinels(t *testing.T) {
	p := startShim(t, startOwner(t, 2))
	ctx := context.Background()
	r, err := p.client.Init(ctx, initValue(helloCode), 10*time.Second)
	if err != nil || r.Status != 200 || string(r.Body) != `{"OK":true}` {
		t.Fatalf("init %+v %v", r, err)
	}
	r, err = p.client.Run(ctx, runBody(`{"name":"Bob"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || r.Outcome != proxy.OutcomeSuccess {
		t.Fatalf("run %d %s %s", r.Status, r.Outcome, r.Body)
	}
	var res map[string]string
	if err := json.Unmarshal(r.Body, &res); err != nil {
		t.Fatal(err)
	}
	if res["greeting"] != "hi Bob" || res["id"] != "0123456789abcdef0123456789abcdef" || res["ns"] != "guest" {
		t.Fatalf("result %v", res)
	}
	if r.Timings.RunMs <= 0 || r.Timings.AttachMs <= 0 {
		t.Fatalf("timings missing: %+v", r.Timings)
	}
	p.waitExit(t)
	s := whisk.LogSentinel + "\n"
	if got := p.stdout.String(); got != "hello Bob\n"+s {
		t.Fatalf("stdout %q", got)
	}
	if got := p.stderr.String(); got != "to stderr\n"+s {
		t.Fatalf("stderr %q", got)
	}
}

func TestOneUseAndOrder(t *testing.T) {
	gateSock := startOwner(t, 2)
	p := startShim(t, gateSock)
	ctx := context.Background()
	r, err := p.client.Run(ctx, runBody(`{}`), 5*time.Second)
	if err != nil || r.Status != http.StatusForbidden || errorOf(t, r.Body) != "System not initialized." {
		t.Fatalf("run before init: %+v %v", r, err)
	}
	if r, err = p.client.Init(ctx, initValue(`function main(){return {a:1}}`), 5*time.Second); err != nil || r.Status != 200 {
		t.Fatalf("init %+v %v", r, err)
	}
	r, err = p.client.Init(ctx, initValue(`function main(){return {}}`), 5*time.Second)
	if err != nil || r.Status != http.StatusForbidden || errorOf(t, r.Body) != "Cannot initialize the action more than once." {
		t.Fatalf("second init: %+v %v", r, err)
	}
	if r, err = p.client.Run(ctx, runBody(`{}`), 5*time.Second); err != nil || r.Status != 200 || string(r.Body) != `{"a":1}` {
		t.Fatalf("run %+v %v", r, err)
	}
	p.waitExit(t)
	// The slot went back: a fresh attach can take both slots again.
	for i := 0; i < 2; i++ {
		c, err := gate.Dial(ctx, gateSock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Hello(ctx, "x", gate.Credentials{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Acquire(ctx); err != nil {
			t.Fatalf("slot %d not free after the shim exited: %v", i, err)
		}
	}
}

func TestInitFailure(t *testing.T) {
	p := startShim(t, startOwner(t, 1))
	r, err := p.client.Init(context.Background(), initValue(`function main( {`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusBadGateway || r.Outcome != proxy.OutcomeDeveloper ||
		!strings.HasPrefix(errorOf(t, r.Body), "Initialization has failed due to:") {
		t.Fatalf("init %d %s %s", r.Status, r.Outcome, r.Body)
	}
	p.waitExit(t)
	if !strings.HasSuffix(p.stdout.String(), whisk.LogSentinel+"\n") || !strings.HasSuffix(p.stderr.String(), whisk.LogSentinel+"\n") {
		t.Fatalf("sentinels missing: %q / %q", p.stdout.String(), p.stderr.String())
	}
}

func TestRunOutcomes(t *testing.T) {
	gateSock := startOwner(t, 4)
	tests := []struct {
		name, code   string
		env          []string
		status       int
		outcome, err string
	}{
		{"application error", `function main(){ return {error: 'bad input'} }`, nil, 200, "application", "bad input"},
		{"rejected promise", `function main(){ return Promise.reject({error:'nope'}) }`, nil, 200, "application", ""},
		{"thrown", `function main(){ throw new Error('boom') }`, nil, 502, "developer", "An error has occurred"},
		{"not a dictionary", `function main(){ return 5 }`, nil, 502, "developer", whisk.MsgNotADictionary},
		{"timeout", `function main(){ while(true){} }`, []string{"TEEMATE_TIMEOUT_MS=300"}, 502, "timeout",
			"The action exceeded its time limits of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := startShim(t, gateSock, tc.env...)
			ctx := context.Background()
			if r, err := p.client.Init(ctx, initValue(tc.code), 5*time.Second); err != nil || r.Status != 200 {
				t.Fatalf("init %+v %v", r, err)
			}
			body := runBody(`{}`)
			if tc.name == "timeout" {
				body["deadline"] = fmt.Sprint(time.Now().Add(300 * time.Millisecond).UnixMilli())
			}
			r, err := p.client.Run(ctx, body, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status || r.Outcome != tc.outcome {
				t.Fatalf("status %d outcome %q body %s", r.Status, r.Outcome, r.Body)
			}
			if tc.err != "" && !strings.Contains(errorOf(t, r.Body), tc.err) {
				t.Fatalf("error %s, want %q", r.Body, tc.err)
			}
			p.waitExit(t)
			if !strings.HasSuffix(p.stderr.String(), whisk.LogSentinel+"\n") {
				t.Fatalf("no sentinel on stderr: %q", p.stderr.String())
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	gateSock := startOwner(t, 2)
	ctx := context.Background()
	post := func(p *shimProc, path, body string) (int, string) {
		t.Helper()
		// The proxy client always sends valid JSON; go around it for malformed bodies.
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.sock)
		}}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Post("http://proxy"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	t.Run("malformed init", func(t *testing.T) {
		p := startShim(t, gateSock)
		st, body := post(p, "/init", `{"value":`)
		if st != 400 || !strings.Contains(body, "Malformed /init request") {
			t.Fatalf("%d %s", st, body)
		}
		p.waitExit(t)
	})
	t.Run("wrong types", func(t *testing.T) {
		p := startShim(t, gateSock)
		st, body := post(p, "/init", `{"value":{"code":42}}`)
		if st != 400 {
			t.Fatalf("%d %s", st, body)
		}
	})
	t.Run("missing code", func(t *testing.T) {
		p := startShim(t, gateSock)
		st, body := post(p, "/init", `{"value":{"main":"main"}}`)
		if st != 403 || !strings.Contains(body, "Missing main/no code to execute.") {
			t.Fatalf("%d %s", st, body)
		}
	})
	t.Run("oversize init", func(t *testing.T) {
		p := startShim(t, gateSock)
		big := `{"value":{"code":"` + strings.Repeat("x", MaxBody) + `"}}`
		st, body := post(p, "/init", big)
		if st != 400 || !strings.Contains(body, "exceeds") {
			t.Fatalf("%d %.200s", st, body)
		}
	})
	t.Run("run value not an object", func(t *testing.T) {
		p := startShim(t, gateSock)
		if r, err := p.client.Init(ctx, initValue(`function main(){return {}}`), 5*time.Second); err != nil || r.Status != 200 {
			t.Fatalf("init %+v %v", r, err)
		}
		st, body := post(p, "/run", `{"value":"str"}`)
		if st != 400 || !strings.Contains(body, "value must be a JSON object or array") {
			t.Fatalf("%d %s", st, body)
		}
		p.waitExit(t)
	})
	t.Run("bad deadline", func(t *testing.T) {
		p := startShim(t, gateSock)
		if r, err := p.client.Init(ctx, initValue(`function main(){return {}}`), 5*time.Second); err != nil || r.Status != 200 {
			t.Fatalf("init %+v %v", r, err)
		}
		st, body := post(p, "/run", `{"value":{},"deadline":"soon"}`)
		if st != 400 || !strings.Contains(body, "deadline") {
			t.Fatalf("%d %s", st, body)
		}
	})
}

func TestGateFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("owner gone", func(t *testing.T) {
		p := startShim(t, filepath.Join(shortDir(t), "nothing.sock"))
		r, err := p.client.Init(ctx, initValue(`function main(){return {}}`), 5*time.Second)
		if err != nil || r.Status != 502 || r.Outcome != proxy.OutcomeGate || !strings.Contains(errorOf(t, r.Body), "not reachable") {
			t.Fatalf("%+v %v", r, err)
		}
		p.waitExit(t)
	})
	t.Run("busy", func(t *testing.T) {
		gateSock := startOwner(t, 1)
		holder, err := gate.Dial(ctx, gateSock)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Close()
		if _, err := holder.Hello(ctx, "holder", gate.Credentials{}); err != nil {
			t.Fatal(err)
		}
		if _, err := holder.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		p := startShim(t, gateSock)
		r, err := p.client.Init(ctx, initValue(`function main(){return {}}`), 5*time.Second)
		if err != nil || r.Status != 503 || r.Outcome != proxy.OutcomeGate {
			t.Fatalf("%+v %v", r, err)
		}
	})
}

func TestStrawman(t *testing.T) {
	needOwner(t)
	p, gateSock := startStrawmanShim(t)
	ctx := context.Background()
	r, err := p.client.Init(ctx, initValue(helloCode), 15*time.Second)
	if err != nil || r.Status != 200 {
		t.Fatalf("init %+v %v (stderr %s)", r, err, p.stderr.String())
	}
	if r.Timings.BootMs <= 0 {
		t.Fatalf("no boot time: %+v", r.Timings)
	}
	r, err = p.client.Run(ctx, runBody(`{"name":"Ann"}`), 10*time.Second)
	if err != nil || r.Status != 200 || !strings.Contains(string(r.Body), "hi Ann") {
		t.Fatalf("run %+v %v", r, err)
	}
	p.waitExit(t)
	// The runtime lived only for this activation.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := gate.Ping(pctx, gateSock); err == nil {
		t.Fatal("strawman runtime still answers after the shim exited")
	}
}

// A sandbox is destroyed by killing its process group (process backend) or its pid namespace:
// the shim gets no chance to stop its runtime, which must die with the group all the same.
func TestStrawmanDiesWithTheSandboxGroup(t *testing.T) {
	needOwner(t)
	p, gateSock := startStrawmanShim(t)
	ctx := context.Background()
	if r, err := p.client.Init(ctx, initValue(helloCode), 15*time.Second); err != nil || r.Status != 200 {
		t.Fatalf("init %+v %v (stderr %s)", r, err, p.stderr.String())
	}
	pgid, err := syscall.Getpgid(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := gate.Ping(pctx, gateSock)
		cancel()
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the strawman runtime outlived its sandbox's process group")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startStrawmanShim starts a shim that boots its own enclave runtime at /init; it returns the
// shim and the runtime's gate socket.
func startStrawmanShim(t *testing.T) (*shimProc, string) {
	t.Helper()
	needOwner(t)
	dir := shortDir(t)
	gateSock := filepath.Join(dir, "g.sock")
	cmd := fmt.Sprintf("node %s --socket %s --slots 1 --image nodejs:20 --enclave straw --isolate auto --work-dir %s",
		ownerJS, gateSock, dir)
	return startShim(t, gateSock, "TEEMATE_STRAWMAN_CMD="+cmd), gateSock
}

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := ConfigFromEnv(env(map[string]string{"TEEMATE_PROXY_SOCKET": "/p", "TEEMATE_GATE": "/g",
		"TEEMATE_MEMORY_MB": "128", "TEEMATE_LOG_LIMIT_BYTES": "0", "TEEMATE_TIMEOUT_MS": "1000",
		"TEEMATE_STRAWMAN_CMD": " node  owner.js --slots 1 "}))
	if err != nil || c.MemoryMB != 128 || c.LogLimitBytes != 0 || c.TimeoutMs != 1000 || len(c.StrawmanCmd) != 4 {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ConfigFromEnv(env(map[string]string{"TEEMATE_PROXY_FD": "3", "TEEMATE_GATE": "/g"})); err != nil || c.ProxyFD != 3 {
		t.Fatalf("inherited listener: %+v %v", c, err)
	}
	for name, m := range map[string]map[string]string{
		"no socket":   {"TEEMATE_GATE": "/g"},
		"no gate":     {"TEEMATE_PROXY_ADDR": ":8080"},
		"bad memory":  {"TEEMATE_PROXY_ADDR": ":8080", "TEEMATE_GATE": "/g", "TEEMATE_MEMORY_MB": "lots"},
		"neg timeout": {"TEEMATE_PROXY_ADDR": ":8080", "TEEMATE_GATE": "/g", "TEEMATE_TIMEOUT_MS": "-1"},
		"stdio fd":    {"TEEMATE_PROXY_FD": "2", "TEEMATE_GATE": "/g"},
		"fd not int":  {"TEEMATE_PROXY_FD": "three", "TEEMATE_GATE": "/g"},
	} {
		if _, err := ConfigFromEnv(env(m)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
