package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/whisk"
)

// childEnv carries a childConfig to a copy of this test binary that runs one invoker (runChild)
// until it is killed: the only way to see what a real SIGKILL leaves behind.
const childEnv = "TEEMATE_DURABLE_CHILD"

type childConfig struct {
	Brokers  string
	APIHost  string
	StateDir string
	// Runs is a file the child's executor appends each activation id to before running it, the
	// side effect by which the test counts runs across processes.
	Runs string
}

// The child runs before TestMain (and its shim build): init is the first code of the binary.
func init() {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
}

func runChild(v string) int {
	var c childConfig
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		return 2
	}
	log, err := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err = Run(context.Background(), Config{ID: 0, Kafka: c.Brokers, APIHost: c.APIHost, Listen: "-",
		StateDir: c.StateDir, StoreToken: "tok", PingInterval: 200 * time.Millisecond,
		Executor: &sideEffectExecutor{runs: c.Runs}, Logger: log,
		Ready: func(Info) { fmt.Println("ready") }})
	fmt.Fprintln(os.Stderr, "invoker stopped:", err)
	return 1
}

// sideEffectExecutor records every run in a file before it answers; "slow" then waits until the
// process is killed.
type sideEffectExecutor struct {
	mu   sync.Mutex
	runs string
}

func (s *sideEffectExecutor) Run(ctx context.Context, job *activation.Job) activation.Outcome {
	start := time.Now()
	s.mu.Lock()
	f, err := os.OpenFile(s.runs, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fmt.Fprintln(f, job.Msg.ActivationID)
		err = errors.Join(err, f.Close())
	}
	s.mu.Unlock()
	if err != nil {
		return activation.Outcome{Response: whisk.WhiskError("side effect not recorded: " + err.Error()), Start: start, End: time.Now()}
	}
	if job.Action.Name == "slow" {
		<-ctx.Done()
	}
	return activation.Outcome{Response: whisk.Success(job.Run.Value), Start: start, End: time.Now()}
}

// child is one invoker process started from this test binary.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{}
}

func (e *env) startChild(c childConfig) *child {
	e.t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	ch := &child{t: e.t, cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: ch.stderr}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
		}
	}()
	go func() {
		// The exit status is read by the test through cmd.ProcessState; Wait's error repeats it.
		_ = cmd.Wait()
		close(ch.done)
	}()
	e.t.Cleanup(ch.kill)
	select {
	case <-ready:
	case <-ch.done:
		e.t.Fatalf("invoker child exited before it was ready:\n%s", ch.stderr)
	case <-time.After(30 * time.Second):
		e.t.Fatalf("invoker child not ready:\n%s", ch.stderr)
	}
	return ch
}

// kill ends the child with SIGKILL, by its pid, and waits for it.
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		c.t.Errorf("kill invoker child %d: %v", c.cmd.Process.Pid, err)
	}
	<-c.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// switchable serves the REST stand-in on one address that can go away (connections refused) and
// come back, as a controller-adapter that is killed and restarted.
type switchable struct {
	t       *testing.T
	handler http.Handler
	addr    string
	mu      sync.Mutex
	srv     *http.Server
}

func newSwitchable(t *testing.T, h http.Handler) *switchable {
	s := &switchable{t: t, handler: h}
	s.up()
	t.Cleanup(s.down)
	return s
}

func (s *switchable) url() string { return "http://" + s.addr }

func (s *switchable) up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("listen %s: %v", addr, err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second}
	srv := s.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("serve: %v", err)
		}
	}()
}

func (s *switchable) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	if err := s.srv.Close(); err != nil {
		s.t.Errorf("close: %v", err)
	}
	s.srv = nil
}

// runsOf counts the lines of the runs file per activation id.
func runsOf(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, l := range strings.Fields(string(b)) {
		n[l]++
	}
	return n
}

// acksUntil collects acks by activation id until done says enough.
func (e *env) acksUntil(within time.Duration, done func(map[string][][]byte) bool) map[string][][]byte {
	e.t.Helper()
	got := map[string][][]byte{}
	deadline := time.After(within)
	for !done(got) {
		select {
		case v := <-e.acks:
			a, err := whisk.ParseAcknowledgement(v)
			if err != nil {
				e.t.Fatalf("ack does not parse: %v: %s", err, v)
			}
			got[a.AckActivationID()] = append(got[a.AckActivationID()], v)
		case <-deadline:
			e.t.Fatalf("acks so far %v: not enough within %v", keys(got), within)
		}
	}
	return got
}

func keys(m map[string][][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestInvoker_DurableAcrossSIGKILL runs the invoker as its own process and kills it with SIGKILL:
//  1. records produced while the store is unreachable reach it once it is back, across the kill;
//  2. a message answered before the kill and published again is answered with the same bytes, not
//     run;
//  3. the activation running at the kill is answered as a whisk internal error after the restart,
//     not run a second time.
func TestInvoker_DurableAcrossSIGKILL(t *testing.T) {
	e := newEnv(t)
	e.api.addAction("quiet", 0)
	e.api.addAction("slow", 0)
	ctl := newSwitchable(t, e.api.srv.Config.Handler)
	cfg := childConfig{Brokers: strings.Join(e.brokers, ","), APIHost: ctl.url(),
		StateDir: filepath.Join(e.dataDir, "invoker"), Runs: filepath.Join(e.dataDir, "runs")}
	first := e.startChild(cfg)

	answered, running, undelivered := id(40), id(41), id(42)
	e.send(message(answered, "quiet", true, ""))
	_, answer := e.nextAck(15 * time.Second)
	e.send(message(running, "slow", true, ""))
	waitUntil(t, "the slow activation runs", func() bool { return runsOf(t, cfg.Runs)[running] == 1 })
	// The action document of "quiet" is cached by revision: it runs with the controller away.
	ctl.down()
	e.send(message(undelivered, "quiet", false, ""))
	start := time.Now()
	if a, _ := e.nextAck(15 * time.Second); a.AckActivationID() != undelivered {
		t.Fatalf("ack for %s, want %s", a.AckActivationID(), undelivered)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the slot-freeing ack waited %v for the unreachable store", took)
	}
	first.kill()

	e.startChild(cfg)
	// Kafka redelivers what had no committed offset: at least the activation that was running.
	got := e.acksUntil(30*time.Second, func(m map[string][][]byte) bool { return len(m[running]) > 0 })
	a, err := whisk.ParseAcknowledgement(got[running][0])
	if err != nil {
		t.Fatal(err)
	}
	c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
	if !ok || !c.IsSystemError || c.Response.Activation == nil ||
		c.Response.Activation.Response.StatusCode != whisk.StatusWhiskError ||
		!strings.Contains(string(c.Response.Activation.Response.Result), "interrupted by a restart of the invoker") {
		t.Fatalf("the interrupted activation's ack = %s, want a whisk internal error saying it was interrupted", got[running][0])
	}

	ctl.up()
	waitUntil(t, "the records kept while the store was away", func() bool {
		return e.api.record(undelivered) != nil && e.api.record(running) != nil
	})
	if r := e.api.record(running); r.Response.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("stored record of the interrupted activation: status %d", r.Response.StatusCode)
	}

	e.send(message(answered, "quiet", true, ""))
	again := e.acksUntil(15*time.Second, func(m map[string][][]byte) bool { return len(m[answered]) > 0 })
	if !bytes.Equal(again[answered][0], answer) {
		t.Fatalf("re-published answered activation answered differently:\n%s\n%s", answer, again[answered][0])
	}
	runs := runsOf(t, cfg.Runs)
	for _, id := range []string{answered, running, undelivered} {
		if runs[id] != 1 {
			t.Errorf("activation %s ran %d times, want 1 (runs: %v)", id, runs[id], runs)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
