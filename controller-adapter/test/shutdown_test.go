package test

import (
	"bufio"
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/controller-adapter/internal/app"
	"github.com/teemate/platform/internal/testtool"
)

// TestStandaloneSIGTERMDrains is issue #17's shutdown order, on the real platform: it starts
// bin/controller-adapter --standalone as an OS process (free ports, a temporary data directory,
// the process sandbox), runs blocking invocations of an action that sleeps 1.5 s, one that sleeps
// longer than the drain, and a stream of new invocations, and sends SIGTERM. Then:
//
//   - every blocking caller in flight got a complete HTTP answer: 200 with the result for the
//     short ones, 202 with the activation id for the long one (its wait ended with the drain);
//   - every invocation started after the signal got 503 with Retry-After and OpenWhisk's error
//     body, or found nothing listening once the process had closed its port; none saw a
//     connection broken mid-request;
//   - the process exited with status 0 within --drain-timeout;
//   - no process it started (enclave owners, sandboxes) is left running.
func TestStandaloneSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform (about half a minute)")
	}
	repo := testtool.Root(t)
	testtool.Require(t, "node")
	if !exists(filepath.Join(repo, "bin", "teemate-shim")) {
		testtool.Missing(t, "needs the shims (make build)")
	}
	const drainTimeout = 10 * time.Second
	p := startDraining(t, repo, drainTimeout)
	p.put(t, "nap", `{"exec":{"kind":"nodejs:20","code":"function main(p) { return new Promise(r => setTimeout(() => r({slept: p.ms}), p.ms)) }"}}`)
	p.warm(t, "nap")

	// In flight at the signal: five callers of 1.5 s naps, one of a nap longer than the drain.
	const short = 5
	inFlight := make([]reply, short+1)
	var wg sync.WaitGroup
	for i := range inFlight {
		ms := 1500
		if i == short {
			ms = 60000
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			inFlight[i] = p.invoke(fmt.Sprintf(`{"ms":%d}`, ms))
		}()
	}
	// The stream: a new blocking invocation every 50 ms until the process is gone.
	var (
		streamMu sync.Mutex
		stream   []reply
	)
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		for {
			select {
			case <-p.exited:
				return
			case <-time.After(50 * time.Millisecond):
			}
			r := p.invoke(`{"ms":1}`)
			streamMu.Lock()
			stream = append(stream, r)
			streamMu.Unlock()
		}
	}()
	time.Sleep(700 * time.Millisecond) // the callers' activations are published and running
	started := descendants(p.pid)
	if len(started) == 0 {
		t.Fatal("the platform runs no child process: the check of what is left running would prove nothing")
	}

	signalled := time.Now()
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(drainTimeout + 20*time.Second):
		t.Fatalf("the platform did not exit within %v of SIGTERM", drainTimeout+20*time.Second)
	}
	took := time.Since(signalled)
	wg.Wait()
	<-streamDone
	t.Logf("exited %v after SIGTERM with status %d; %d processes it had started", took.Round(time.Millisecond), p.exitCode, len(started))
	if p.exitCode != 0 {
		t.Errorf("exit status %d, want 0", p.exitCode)
	}
	if took > drainTimeout {
		t.Errorf("exited %v after SIGTERM, more than --drain-timeout %v", took, drainTimeout)
	}

	for i, r := range inFlight {
		switch {
		case r.err != nil:
			t.Errorf("in-flight caller %d: %v (a broken connection)", i, r.err)
		case i < short && (r.status != http.StatusOK || !strings.Contains(string(r.body), `"slept":1500`)):
			t.Errorf("in-flight caller %d (1.5 s): %d %s, want 200 with the result", i, r.status, r.body)
		case i == short && (r.status != http.StatusAccepted || r.activationID == "" || !strings.Contains(string(r.body), r.activationID)):
			t.Errorf("in-flight caller of the long nap: %d %s, want 202 with its activation id", r.status, r.body)
		}
	}

	// Signal delivery and the handler take a moment: what was sent within it may still be served.
	after, refused, unavailable := 0, 0, 0
	for _, r := range stream {
		if r.err != nil && !errors.Is(r.err, syscall.ECONNREFUSED) {
			t.Errorf("stream invocation sent %v after SIGTERM: %v (a broken connection)", r.sent.Sub(signalled), r.err)
			continue
		}
		if !r.sent.After(signalled.Add(100 * time.Millisecond)) {
			continue
		}
		after++
		switch {
		case r.err != nil:
			refused++ // the port is closed: nothing half-answered
		case r.status == http.StatusServiceUnavailable && r.retryAfter != "" && r.errorText != "" && r.errorCode != "":
			unavailable++
		default:
			t.Errorf("stream invocation sent %v after SIGTERM: %d (Retry-After %q) %s, want 503 with Retry-After and an error body",
				r.sent.Sub(signalled), r.status, r.retryAfter, r.body)
		}
	}
	t.Logf("stream: %d invocations, %d sent after SIGTERM: %d answered 503, %d refused once the port was closed", len(stream), after, unavailable, refused)
	if unavailable == 0 {
		t.Error("no invocation was answered 503 during the drain")
	}

	var left []string
	for _, pr := range started {
		if pr.alive() {
			left = append(left, pr.String())
		}
	}
	if len(left) > 0 {
		t.Errorf("left running after the platform exited: %s", strings.Join(left, "; "))
	}
}

// draining is a standalone platform started by a shutdown test.
type draining struct {
	pid      int
	apiHost  string
	exited   chan struct{}
	exitCode int
	client   *http.Client
	auth     string // "uuid:key"
}

// reply is what one invocation got: an HTTP answer, or the error that stopped it.
type reply struct {
	sent                 time.Time
	status               int
	body                 []byte
	retryAfter           string
	activationID         string
	errorText, errorCode string
	err                  error
}

func startDraining(t *testing.T, repo string, drain time.Duration) *draining {
	t.Helper()
	work := t.TempDir()
	bin := filepath.Join(work, "controller-adapter")
	build := exec.Command("go", "build", "-o", bin, "./controller-adapter/cmd/controller-adapter")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	logPath := filepath.Join(work, "platform.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--standalone", "--port", "0", "--embedded-kafka-addr", "127.0.0.1:0",
		"--data-dir", filepath.Join(work, "data"), "--sandbox", "process", "--enclave", "direct", "--model", "teemate",
		"--repo-dir", repo, "--drain-timeout", drain.String())
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS=", "TMPDIR="+tmp)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &draining{pid: cmd.Process.Pid, exited: make(chan struct{}), exitCode: -1,
		client: &http.Client{Timeout: 2 * time.Minute}, auth: app.GuestUUID + ":" + app.GuestKey}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := apiReady.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
		// Wait after the pipe is drained, as exec requires.
		if err := cmd.Wait(); err != nil {
			t.Logf("the platform exited: %v", err)
		}
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			// The test failed before its SIGTERM, or the platform hangs: kill what it started too.
			kids := descendants(p.pid)
			if err := cmd.Process.Kill(); err != nil {
				t.Logf("kill the platform: %v", err)
			}
			<-p.exited
			for _, k := range kids {
				k.kill()
			}
		}
		// Written to disk already; the handle is only closed here.
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of the platform's log:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	select {
	case p.apiHost = <-ready:
	case <-p.exited:
		t.Fatal("the platform exited before it was ready")
	case <-time.After(2 * time.Minute):
		t.Fatal("the platform was not ready within 2 minutes")
	}
	return p
}

func (p *draining) put(t *testing.T, name, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, p.apiHost+"/api/v1/namespaces/_/actions/"+name+"?overwrite=true", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	u, k, _ := strings.Cut(p.auth, ":")
	req.SetBasicAuth(u, k)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("create %s: %d %s", name, resp.StatusCode, b)
	}
}

// warm invokes the action until it answers 200: the invoker is healthy and its enclave warm.
func (p *draining) warm(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := p.invoke(`{"ms":1}`)
		if r.err == nil && r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within 2 minutes: %d %s %v", name, r.status, r.body, r.err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// invoke runs nap blocking with params and says what came back.
func (p *draining) invoke(params string) reply {
	r := reply{sent: time.Now()}
	req, err := http.NewRequest(http.MethodPost, p.apiHost+"/api/v1/namespaces/_/actions/nap?blocking=true&result=true", strings.NewReader(params))
	if err != nil {
		r.err = err
		return r
	}
	u, k, _ := strings.Cut(p.auth, ":")
	req.SetBasicAuth(u, k)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status, r.retryAfter, r.activationID = resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("x-openwhisk-activation-id")
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		r.err = fmt.Errorf("read the answer: %w", err)
		return r
	}
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if json.Unmarshal(r.body, &e) == nil {
		r.errorText, r.errorCode = e.Error, e.Code
	}
	return r
}

// TestInvokerSIGTERMDrains is the split deployment's side of the shutdown order: bin/invoker (with
// its embedded broker) and controller-adapter --kafka as separate processes. SIGTERM to the
// invoker while blocking invocations run: it announces itself disabled, takes nothing new,
// finishes what it took and sends the acks, so every caller gets its 200, and it exits with status
// 0 within --drain-timeout, leaving no process it started.
func TestInvokerSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the platform as two processes (about half a minute)")
	}
	repo := testtool.Root(t)
	testtool.Require(t, "node")
	if !exists(filepath.Join(repo, "bin", "teemate-shim")) {
		testtool.Missing(t, "needs the shims (make build)")
	}
	work := t.TempDir()
	bins := map[string]string{}
	for _, b := range []string{"controller-adapter", "invoker"} {
		bins[b] = filepath.Join(work, "bin", b)
		pkg := "./controller-adapter/cmd/controller-adapter"
		if b == "invoker" {
			pkg = "./invoker/cmd/invoker"
		}
		build := exec.Command("go", "build", "-o", bins[b], pkg)
		build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	apiPort := freePort(t)
	env := append(os.Environ(), "NODE_EXTRA_CA_CERTS=", "TEEMATE_INVOKER_TOKEN=shutdown-test-"+strconv.Itoa(apiPort))
	const drainTimeout = 20 * time.Second
	stateDir := filepath.Join(work, "invoker")
	inv := launch(t, filepath.Join(work, "invoker.log"), env, bins["invoker"], "--id", "0", "--kafka", "embedded",
		"--embedded-kafka-addr", "127.0.0.1:0", "--api-host", "http://127.0.0.1:"+strconv.Itoa(apiPort), "--port", "0",
		"--state-dir", stateDir, "--sandbox", "process", "--enclave", "direct", "--model", "teemate", "--repo", repo,
		"--drain-timeout", drainTimeout.String())
	broker := inv.waitLog(t, `"msg":"embedded kafka started".*"brokers":\["([0-9.:]+)"\]`)
	// A split deployment seeds no guest namespace: the test makes its own.
	key, err := app.AddNamespace(context.Background(), filepath.Join(work, "controller"), "shutdown")
	if err != nil {
		t.Fatal(err)
	}
	ctl := launch(t, filepath.Join(work, "controller.log"), env, bins["controller-adapter"], "--kafka", broker,
		"--kafka-sasl-file", filepath.Join(stateDir, "kafka-users", "controller0.sasl"), "--port", strconv.Itoa(apiPort),
		"--data-dir", filepath.Join(work, "controller"))
	p := &draining{apiHost: ctl.waitLog(t, `^OpenWhisk API ready at (http://127\.0\.0\.1:\d+) `), auth: key,
		client: &http.Client{Timeout: 2 * time.Minute}}
	p.put(t, "nap", `{"exec":{"kind":"nodejs:20","code":"function main(p) { return new Promise(r => setTimeout(() => r({slept: p.ms}), p.ms)) }"}}`)
	p.warm(t, "nap")

	replies := make([]reply, 5)
	var wg sync.WaitGroup
	for i := range replies {
		wg.Add(1)
		go func() { defer wg.Done(); replies[i] = p.invoke(`{"ms":1500}`) }()
	}
	time.Sleep(700 * time.Millisecond)
	started := descendants(inv.pid)
	signalled := time.Now()
	if err := syscall.Kill(inv.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inv.exited:
	case <-time.After(drainTimeout + 20*time.Second):
		t.Fatalf("the invoker did not exit within %v of SIGTERM", drainTimeout+20*time.Second)
	}
	took := time.Since(signalled)
	wg.Wait()
	t.Logf("the invoker exited %v after SIGTERM with status %d; %d processes it had started", took.Round(time.Millisecond), inv.exitCode, len(started))
	if inv.exitCode != 0 || took > drainTimeout {
		t.Errorf("the invoker exited with status %d after %v, want 0 within %v", inv.exitCode, took, drainTimeout)
	}
	for i, r := range replies {
		if r.err != nil || r.status != http.StatusOK || !strings.Contains(string(r.body), `"slept":1500`) {
			t.Errorf("caller %d: %d %s %v, want 200 with the result", i, r.status, r.body, r.err)
		}
	}
	for _, pr := range started {
		if pr.alive() {
			t.Errorf("left running after the invoker exited: %s", pr)
		}
	}
}

// launched is a process a shutdown test started, its stdout and stderr in one log file.
type launched struct {
	pid      int
	log      string
	exited   chan struct{}
	exitCode int
}

func launch(t *testing.T, logPath string, env []string, bin string, args ...string) *launched {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &launched{pid: cmd.Process.Pid, log: logPath, exited: make(chan struct{}), exitCode: -1}
	go func() {
		if err := cmd.Wait(); err != nil {
			t.Logf("%s exited: %v", filepath.Base(bin), err)
		}
		l.exitCode = cmd.ProcessState.ExitCode()
		close(l.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-l.exited:
		default:
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Logf("stop %s: %v", filepath.Base(bin), err)
			}
			select {
			case <-l.exited:
			case <-time.After(30 * time.Second):
				kids := descendants(l.pid)
				if err := cmd.Process.Kill(); err != nil {
					t.Logf("kill %s: %v", filepath.Base(bin), err)
				}
				<-l.exited
				for _, k := range kids {
					k.kill()
				}
			}
		}
		// Written to disk already; the handle is only closed here.
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of %s:\n%s", filepath.Base(logPath), strings.Join(lines[max(0, len(lines)-25):], "\n"))
			}
		}
	})
	return l
}

// waitLog waits until a line of the log matches expr and returns its first group.
func (l *launched) waitLog(t *testing.T, expr string) string {
	t.Helper()
	re := regexp.MustCompile(expr)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b, err := os.ReadFile(l.log); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if m := re.FindStringSubmatch(line); m != nil {
					return m[1]
				}
			}
		}
		select {
		case <-l.exited:
			t.Fatalf("%s exited before its log said %s", l.log, expr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not say %s within 2 minutes", l.log, expr)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
