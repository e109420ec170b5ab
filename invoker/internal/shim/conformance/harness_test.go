package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/whisk"
)

// binary is one shim implementation under test.
type binary struct{ name, path string }

var (
	bins       []binary
	ownerJS    string
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shimconf")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wd, _ := os.Getwd()
	root := filepath.Join(wd, "..", "..", "..", "..")
	goBin, cBin := filepath.Join(dir, "teemate-shim-go"), filepath.Join(dir, "teemate-shim-c")
	build := exec.Command("go", "build", "-o", goBin, "./invoker/cmd/teemate-shim-go")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build Go teemate-shim: %v\n%s", err, out)
		return 1
	}
	mk := exec.Command("make", "-s", "-C", filepath.Join(root, "shim"), "OUT="+cBin)
	if f := os.Getenv("TEEMATE_SHIM_CFLAGS"); f != "" {
		// For sanitizer runs, e.g. "-O1 -g -fsanitize=address,undefined" (replaces the static build).
		mk.Args = append(mk.Args, "CFLAGS="+f)
	}
	if out, err := mk.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build C teemate-shim: %v\n%s", err, out)
		return 1
	}
	bins = []binary{{"go", goBin}, {"c", cBin}}
	if ownerJS, err = direct.FindOwnerJS(wd); err != nil {
		skipReason = "enclave-runtime/trusted/owner.js not found: " + err.Error()
	} else if _, err := exec.LookPath("node"); err != nil {
		skipReason = "node is not installed"
	}
	return m.Run()
}

func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// startOwner starts a real enclave owner (direct backend) and returns its gate socket.
func startOwner(t testing.TB, slots int) string {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") {
			env = append(env, kv)
		}
	}
	// OpenGate: these tests drive the shim's side of the protocol against a real owner; the gate's
	// authentication (both shims presenting their activation's token) is executor's
	// TestGateAuthReplayRefused.
	b, err := direct.New(direct.Config{OwnerJS: ownerJS, Env: env, OpenGate: true}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "conf", Image: "nodejs:20", Dir: shortDir(t), Slots: slots})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Stop(context.Background()) })
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

// shimProc is one running shim (one sandbox).
type shimProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	exited         chan struct{}
	exitCode       int
	sock           string
	http           *http.Client
}

// launch starts bin with the base environment plus env (a later entry wins) and, when listener
// is set, hands it over as fd 3.
func launch(t testing.TB, bin binary, gateSock string, listener *os.File, env ...string) *shimProc {
	t.Helper()
	sock := filepath.Join(shortDir(t), "p.sock")
	base := []string{"PATH=" + os.Getenv("PATH"), "TEEMATE_GATE=" + gateSock, "TEEMATE_SANDBOX=wsk0_1_guest_conf",
		"TEEMATE_TIMEOUT_MS=5000"}
	if listener == nil {
		base = append(base, "TEEMATE_PROXY_SOCKET="+sock)
	}
	cmd := exec.Command(bin.path)
	cmd.Env = merge(base, env)
	if listener != nil {
		cmd.ExtraFiles = []*os.File{listener}
	}
	p := &shimProc{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), sock: sock, exitCode: -1}
	return start(t, p)
}

// launchRaw starts bin with exactly env (plus PATH), for configuration checks.
func launchRaw(t testing.TB, bin binary, env []string) *shimProc {
	t.Helper()
	cmd := exec.Command(bin.path)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p := &shimProc{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), exitCode: -1}
	return start(t, p)
}

func start(t testing.TB, p *shimProc) *shimProc {
	t.Helper()
	cmd := p.cmd
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.exitCode = 0
		case errors.As(err, &ee):
			p.exitCode = ee.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func merge(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		out = append(out[:0:0], filter(out, k+"=")...)
		out = append(out, kv)
	}
	return out
}

func filter(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// ready waits until the shim accepts connections (the invoker's probe: connect, close) and makes
// the invoker's way of talking to it: one kept-alive connection.
func (p *shimProc) ready(t testing.TB, sock string) {
	t.Helper()
	c, err := proxy.New(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(context.Background(), time.Now().Add(10*time.Second)); err != nil {
		t.Fatalf("shim not ready: %v (stderr %s)", err, p.stderr.String())
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	p.http = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
}

func (p *shimProc) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// request is one step of a scenario.
type request struct {
	method, path, body string
}

func post(path, body string) request { return request{http.MethodPost, path, body} }

// reply is what a binary answered to one request; Err marks a transport failure (the shim had
// gone, as after its activation).
type reply struct {
	Status  int
	Outcome string
	Timings bool
	// Phases holds the timing fields that come from the enclave (deterministic with a scripted
	// gate); the shim's own measurements differ run to run.
	Phases string
	Body   string
	Err    bool
}

func (p *shimProc) do(t testing.TB, r request) reply {
	t.Helper()
	req, err := http.NewRequest(r.method, "http://proxy"+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.http.Do(req)
	if err != nil {
		return reply{Err: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Err: true}
	}
	if resp.StatusCode == http.StatusForbidden && strings.Contains(string(b), "This sandbox serves exactly one activation.") {
		// The Go shim may still answer a request that races its shutdown after the activation;
		// either way the sandbox served nothing more.
		return reply{Err: true}
	}
	rep := reply{Status: resp.StatusCode, Outcome: resp.Header.Get(proxy.HeaderOutcome), Body: string(b)}
	if h := resp.Header.Get(proxy.HeaderTimings); h != "" {
		rep.Timings = true
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(h), &m); err != nil {
			t.Fatalf("timings header %q: %v", h, err)
		}
		rep.Phases = fmt.Sprintf("isolate=%s run=%s teardown=%s", m["isolateMs"], m["runMs"], m["teardownMs"])
	}
	return rep
}

// observation is everything compared between the two binaries.
type observation struct {
	Replies []reply
	// Stdout is the whole of stdout; StderrLogs is stderr up to its last sentinel, and Warnings the
	// messages of the diagnostics logged after it.
	Stdout, StderrLogs string
	Warnings           []string
	Exited             bool
	ExitCode           int
}

func observe(p *shimProc, replies []reply) observation {
	o := observation{Replies: replies}
	o.Exited = p.waitExit(10 * time.Second)
	if o.Exited {
		o.ExitCode = p.exitCode
	}
	o.Stdout = p.stdout.String()
	errText := p.stderr.String()
	s := whisk.LogSentinel + "\n"
	if i := strings.LastIndex(errText, s); i >= 0 {
		o.StderrLogs = errText[:i+len(s)]
		errText = errText[i+len(s):]
	}
	for _, line := range strings.Split(strings.TrimSpace(errText), "\n") {
		var d struct {
			Level, Msg string
		}
		if line != "" && json.Unmarshal([]byte(line), &d) == nil {
			o.Warnings = append(o.Warnings, d.Level+": "+d.Msg)
		} else if line != "" {
			o.Warnings = append(o.Warnings, "unstructured: "+line)
		}
	}
	return o
}

func (o observation) String() string {
	b, _ := json.MarshalIndent(o, "", "  ")
	return string(b)
}

// fakeGate is a scripted gate server: for each message type, a reply (a value to encode, raw
// bytes to frame, or nil to close the connection).
type fakeGate struct {
	sock    string
	replies map[string]any
}

type rawFrame []byte

type closeConn struct{}

// hang reads the request and never answers.
type hang struct{}

// echoNetwork answers a run with a success whose result tells whether the run frame carried
// "network" and its value: {"network":"absent"|true|false}.
type echoNetwork struct{}

func defaultReplies() map[string]any {
	return map[string]any{
		"hello":   map[string]any{"type": "welcome", "version": 1, "enclave": "fake", "image": "nodejs:20", "mode": "direct", "isolate": "addon", "slots": 1, "free": 1},
		"acquire": map[string]any{"type": "acquired", "tcs": 0},
		"init":    map[string]any{"type": "initialized", "ms": 0.1},
		"run": map[string]any{"type": "result", "outcome": "success", "result": map[string]any{"ok": true},
			"logs":    []map[string]string{{"stream": "stdout", "line": "out <1>"}, {"stream": "stderr", "line": "err \u00e9"}, {"stream": "stdout", "line": "out 2"}},
			"timings": map[string]any{"isolateMs": 0.125, "runMs": 1.5, "teardownMs": nil, "lastTeardownMs": 2.25}},
		"release": map[string]any{"type": "released"},
	}
}

func startFakeGate(t testing.TB, over map[string]any) string {
	t.Helper()
	sock := filepath.Join(shortDir(t), "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	replies := defaultReplies()
	for k, v := range over {
		replies[k] = v
	}
	g := &fakeGate{sock: sock, replies: replies}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return sock
}

func (g *fakeGate) serve(c net.Conn) {
	defer c.Close()
	for {
		body, err := gate.ReadFrame(c, gate.MaxInitFrame)
		if err != nil {
			return
		}
		var m struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(body, &m) != nil {
			return
		}
		r, ok := g.replies[m.Type]
		if !ok {
			return
		}
		switch r := r.(type) {
		case closeConn:
			return
		case hang:
			continue
		case echoNetwork:
			var run struct {
				Network json.RawMessage `json:"network"`
			}
			_ = json.Unmarshal(body, &run)
			seen := any("absent")
			if run.Network != nil {
				seen = json.RawMessage(run.Network)
			}
			reply := map[string]any{"type": "result", "outcome": "success", "result": map[string]any{"network": seen},
				"logs": []any{}, "timings": map[string]any{"isolateMs": 0, "runMs": 0, "teardownMs": 0}}
			if err := gate.WriteFrame(c, reply, gate.MaxReplyFrame); err != nil {
				return
			}
		case rawFrame:
			hdr := []byte{byte(len(r) >> 24), byte(len(r) >> 16), byte(len(r) >> 8), byte(len(r))}
			if _, err := c.Write(append(hdr, r...)); err != nil {
				return
			}
		default:
			if err := gate.WriteFrame(c, r, gate.MaxReplyFrame); err != nil {
				return
			}
		}
	}
}
