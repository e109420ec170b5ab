package spectest

import (
	"bytes"
	"context"
	"encoding/binary"
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
)

// Protocol constants as PROTOCOL.md and OpenWhisk give them.
const (
	sentinel       = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
	headerOutcome  = "X-Teemate-Outcome"
	headerTimings  = "X-Teemate-Timings"
	maxFrame       = 64 << 20
	maxBody        = 48 << 20
	msgAbnormalRun = "The action did not produce a valid response and exited unexpectedly."
	msgAbnormalIni = "The action did not initialize and exited unexpectedly."
)

var (
	shimBin, strawmanBin string
	repoRoot             string
	ownerJS              string
	nodeMissing          error
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "shimspec")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Join(wd, "..", "..")
	mk := exec.Command("make", "-s", "-C", filepath.Join(repoRoot, "shim"), "BIN="+dir)
	if f := os.Getenv("TEEMATE_SHIM_CFLAGS"); f != "" {
		// Sanitizers need glibc's dynamic runtime, not the static musl build.
		mk.Args = append(mk.Args, "CC=gcc", "CFLAGS="+f, "STATIC=")
	}
	if out, err := mk.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the shim: %v\n%s", err, out)
		return 1
	}
	shimBin, strawmanBin = filepath.Join(dir, "teemate-shim"), filepath.Join(dir, "teemate-strawman")
	ownerJS = filepath.Join(repoRoot, "enclave-runtime", "trusted", "owner.js")
	_, nodeMissing = exec.LookPath("node")
	return m.Run()
}

// needNode skips a case that needs a real enclave runtime where node is missing, and fails it
// in CI, where a missing tool is a broken machine rather than a reason to test less.
func needNode(t testing.TB) {
	t.Helper()
	if nodeMissing != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node is required in CI: %v", nodeMissing)
		}
		t.Skipf("node is not installed: %v", nodeMissing)
	}
}

func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ss")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// ownerArgs is the argv of a real enclave runtime on gate socket sock.
func ownerArgs(sock string, slots int, dir string) []string {
	return []string{ownerJS, "--socket", sock, "--slots", fmt.Sprint(slots), "--image", "nodejs:20",
		"--enclave", "spec", "--isolate", "auto", "--work-dir", dir}
}

// startOwner starts a real enclave runtime and returns its gate socket once it answers a ping.
func startOwner(t testing.TB, slots int) string {
	t.Helper()
	needNode(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "g.sock")
	cmd := exec.Command("node", ownerArgs(sock, slots, dir)...)
	cmd.Env = cleanEnv()
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit is seen through exited; its output is in out
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited already
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := exchange(sock, `{"type":"ping"}`); err == nil {
			return sock
		}
		select {
		case <-exited:
			t.Fatalf("the enclave runtime exited: %s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the enclave runtime did not answer: %s", out.String())
		}
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") && !strings.HasPrefix(kv, "NODE_OPTIONS=") {
			env = append(env, kv)
		}
	}
	return env
}

// writeFrame and readFrame are PROTOCOL.md's framing: a 4-byte big-endian length, then JSON.
func writeFrame(w io.Writer, body []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// exchange sends one frame on a fresh connection and returns the reply.
func exchange(sock, frame string) (map[string]any, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return nil, err
	}
	if err := writeFrame(c, []byte(frame)); err != nil {
		return nil, err
	}
	b, err := readFrame(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
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

// sandbox is one running shim, as a sandbox backend starts it.
type sandbox struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
	exited         chan struct{}
	exitCode       int
	sock           string
	http           *http.Client
}

// launch starts argv (the shim, or the strawman launcher) with the base environment plus env (a
// later entry wins) and, when listener is set, hands it over as fd 3.
func launch(t testing.TB, argv []string, gateSock string, listener *os.File, env ...string) *sandbox {
	t.Helper()
	sock := filepath.Join(shortDir(t), "p.sock")
	base := []string{"PATH=" + os.Getenv("PATH"), "TEEMATE_GATE=" + gateSock, "TEEMATE_SANDBOX=wsk0_1_guest_spec",
		"TEEMATE_TIMEOUT_MS=5000"}
	if listener == nil {
		base = append(base, "TEEMATE_PROXY_SOCKET="+sock)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = merge(base, env)
	if listener != nil {
		cmd.ExtraFiles = []*os.File{listener}
	}
	if launchHook != nil {
		launchHook(cmd)
	}
	s := &sandbox{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), sock: sock, exitCode: -1}
	return start(t, s)
}

// launchRaw starts the shim with exactly env (plus PATH), for configuration checks.
func launchRaw(t testing.TB, env []string) *sandbox {
	t.Helper()
	cmd := exec.Command(shimBin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	return start(t, &sandbox{cmd: cmd, stdout: &syncBuf{}, stderr: &syncBuf{}, exited: make(chan struct{}), exitCode: -1})
}

func start(t testing.TB, s *sandbox) *sandbox {
	t.Helper()
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			s.exitCode = 0
		case errors.As(err, &ee):
			s.exitCode = ee.ExitCode()
		}
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill() // it has normally exited after its activation
		<-s.exited
	})
	return s
}

// launchHook, when set, adjusts a command before it starts.
var launchHook func(*exec.Cmd)

// jsonUnescape decodes a reply body's error text for substring checks.
func jsonUnescape(body string) string {
	var m struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(body), &m) != nil {
		return body
	}
	return m.Error
}

func merge(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		kept := out[:0:0]
		for _, o := range out {
			if !strings.HasPrefix(o, k+"=") {
				kept = append(kept, o)
			}
		}
		out = append(kept, kv)
	}
	return out
}

// ready waits until the shim accepts connections, then makes the invoker's way of talking to it:
// one kept-alive connection.
func (s *sandbox) ready(t testing.TB, sock string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shim not ready: %v (stderr %s)", err, s.stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	s.http = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
}

func (s *sandbox) waitExit(d time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(d):
		return false
	}
}

type request struct{ method, path, body string }

func post(path, body string) request { return request{http.MethodPost, path, body} }

// reply is what the shim answered; Err marks a transport failure (the shim had gone).
type reply struct {
	Status  int
	Outcome string
	Timings map[string]json.RawMessage
	Body    string
	Err     bool
}

func (s *sandbox) do(t testing.TB, r request) reply {
	t.Helper()
	req, err := http.NewRequest(r.method, "http://proxy"+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return reply{Err: true}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{Err: true}
	}
	rep := reply{Status: resp.StatusCode, Outcome: resp.Header.Get(headerOutcome), Body: string(b)}
	if h := resp.Header.Get(headerTimings); h != "" {
		if err := json.Unmarshal([]byte(h), &rep.Timings); err != nil {
			t.Fatalf("timings header %q: %v", h, err)
		}
	}
	return rep
}

// observation is a sandbox's whole life: its replies, output and exit.
type observation struct {
	Replies []reply
	// Stdout is the whole of stdout; StderrLogs is stderr up to its last sentinel, and Warnings the
	// diagnostics logged after it ("level: msg").
	Stdout, StderrLogs string
	Warnings           []string
	Exited             bool
	ExitCode           int
}

func observe(s *sandbox, replies []reply) observation {
	o := observation{Replies: replies}
	o.Exited = s.waitExit(10 * time.Second)
	if o.Exited {
		o.ExitCode = s.exitCode
	}
	o.Stdout = s.stdout.String()
	errText := s.stderr.String()
	if i := strings.LastIndex(errText, sentinel); i >= 0 {
		o.StderrLogs = errText[:i+len(sentinel)]
		errText = errText[i+len(sentinel):]
	}
	for _, line := range strings.Split(strings.TrimSpace(errText), "\n") {
		var d struct{ Level, Msg string }
		if line != "" && json.Unmarshal([]byte(line), &d) == nil {
			o.Warnings = append(o.Warnings, d.Level+": "+d.Msg)
		} else if line != "" {
			o.Warnings = append(o.Warnings, "unstructured: "+line)
		}
	}
	return o
}

func (o observation) String() string {
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// fakeGate is a gate server scripted from PROTOCOL.md's frames: for each message type a reply
// (a value to encode, raw bytes to frame, or one of the behaviours below). Frames it received are
// kept for the checks.
type fakeGate struct {
	sock    string
	replies map[string]any
	mu      sync.Mutex
	got     []map[string]any
}

type (
	rawFrame  []byte
	closeConn struct{} // close the connection instead of answering
	hang      struct{} // read the request and never answer
	// echoNetwork answers a run with a success whose result says whether the run frame carried
	// "network": {"network":"absent"|true|false}.
	echoNetwork struct{}
)

func defaultReplies() map[string]any {
	return map[string]any{
		"hello":   map[string]any{"type": "welcome", "version": 1, "enclave": "fake", "image": "nodejs:20", "mode": "direct", "isolate": "addon", "slots": 1, "free": 1},
		"acquire": map[string]any{"type": "acquired", "tcs": 0},
		"init":    map[string]any{"type": "initialized", "ms": 0.1},
		"run": map[string]any{"type": "result", "outcome": "success", "result": map[string]any{"ok": true},
			"logs": []map[string]string{{"stream": "stdout", "time": "2026-11-21T10:00:00.123Z", "line": "out <1>"},
				{"stream": "stderr", "time": "2026-11-21T10:00:00.124Z", "line": "err \u00e9"},
				{"stream": "stdout", "time": "2026-11-21T10:00:00.125Z", "line": "out 2"}},
			"timings": map[string]any{"isolateMs": 0.125, "runMs": 1.5, "teardownMs": nil, "lastTeardownMs": 2.25}},
		"release": map[string]any{"type": "released"},
	}
}

func startFakeGate(t testing.TB, over map[string]any) *fakeGate {
	t.Helper()
	sock := filepath.Join(shortDir(t), "g.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGate{sock: sock, replies: defaultReplies()}
	for k, v := range over {
		g.replies[k] = v
	}
	done := make(chan struct{})
	var conns sync.WaitGroup
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				g.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		conns.Wait()
	})
	return g
}

func (g *fakeGate) frames() []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]any(nil), g.got...)
}

func (g *fakeGate) serve(c net.Conn) {
	defer c.Close()
	for {
		body, err := readFrame(c)
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			return
		}
		g.mu.Lock()
		g.got = append(g.got, m)
		g.mu.Unlock()
		typ, _ := m["type"].(string)
		r, ok := g.replies[typ]
		if !ok {
			return
		}
		var out []byte
		switch r := r.(type) {
		case closeConn:
			return
		case hang:
			// Wait for the shim to hang up.
			_, _ = io.Copy(io.Discard, c) // ends when the shim closes; nothing to report
			return
		case echoNetwork:
			seen, has := m["network"]
			if !has {
				seen = "absent"
			}
			out, err = json.Marshal(map[string]any{"type": "result", "outcome": "success", "result": map[string]any{"network": seen},
				"logs": []any{}, "timings": map[string]any{"isolateMs": 0, "runMs": 0, "teardownMs": 0}})
		case rawFrame:
			out = r
		default:
			out, err = json.Marshal(r)
		}
		if err != nil || writeFrame(c, out) != nil {
			return
		}
	}
}
