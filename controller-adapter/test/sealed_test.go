package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/controller-adapter/internal/app"
	"github.com/teemate/platform/controller-adapter/internal/cli"
	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// TestSealedHostHoldsNoPlaintext is issue #16 item 6, the proof that the host never holds
// plaintext. It starts the platform as `make run` does (bin/controller-adapter --standalone, here
// on free ports, a temporary data directory and the process sandbox), then:
//
//   - sealed: creates an action whose code holds canary A with `teemate action create --sealed`,
//     invokes it blocking and non-blocking with sealed parameters holding canary B (the action
//     logs B and returns canary C, computed at run time so that C is not in the code), and checks
//     that the client gets the right plaintext, the logs and a verified receipt; a tampered and a
//     replayed envelope are refused with the integrity error, and a following invoke works;
//   - unsealed: the same with a second set of canaries, through the same platform.
//
// Then it searches every file of the data directory (SQLite store and WAL, the embedded broker's
// log segments), the platform's captured stdout and stderr, and the readable memory of the
// controller-adapter's process (/proc/PID/maps and /proc/PID/mem), which in standalone mode is the
// host: the controller, the broker and the invoker all run in it. The sealed canaries must appear
// nowhere; the unsealed ones must be found in the data directory and in memory, or the search
// proves nothing.
//
// Not searched, on purpose: the enclave owner process (direct mode runs the enclave runtime as a
// normal process, which plays the enclave: it decrypts inside and legitimately holds the
// plaintext; on sgx its memory is the enclave's, which the host cannot read), and the sandboxes'
// shim processes, which relay the same ciphertext as the invoker and are gone once their
// activation ends.
func TestSealedHostHoldsNoPlaintext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform (about half a minute)")
	}
	repo := testtool.Root(t)
	testtool.Require(t, "node")
	if !exists(filepath.Join(repo, "bin", "teemate-shim")) {
		testtool.Missing(t, "needs the shims (make build)")
	}
	p := startStandalone(t, repo)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(client.Config{APIHost: p.apiHost, Auth: p.auth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		t.Fatal(err)
	}
	p.waitEvidence(ctx, t, c)

	sealedSet := newCanaries("s")
	plainSet := newCanaries("u")

	t.Run("sealed", func(t *testing.T) { p.runSealed(ctx, t, c, sealedSet) })
	t.Run("unsealed", func(t *testing.T) { p.runUnsealed(ctx, t, plainSet) })

	// Everything the host holds, while it runs.
	mem, err := processMemory(p.pid, append(sealedSet.all(), plainSet.all()...))
	t.Logf("searched the memory of the controller-adapter (pid %d)", p.pid)
	if err != nil {
		t.Fatalf("read the controller-adapter's memory: %v", err)
	}
	// The files while it runs (the SQLite WAL before its checkpoint) and once it stopped (what it
	// flushed at the end).
	needles := append(sealedSet.all(), plainSet.all()...)
	running := searchFiles(t, p.dataDir, needles)
	p.stop(t)
	files := searchFiles(t, p.dataDir, needles)
	for k, v := range running {
		files[k] = append(files[k], v...)
	}
	logs := searchFiles(t, p.logDir, needles)

	for _, cn := range sealedSet.named() {
		for _, where := range []struct {
			name  string
			found map[string][]string
		}{{"the data directory", files}, {"the platform's logs", logs}, {"the controller-adapter's memory", mem}} {
			if hits := where.found[cn.value]; len(hits) > 0 {
				t.Errorf("sealed canary %s (%s) found in %s: %s", cn.name, cn.value, where.name, strings.Join(hits, "; "))
			}
		}
	}
	for _, cn := range plainSet.named() {
		t.Logf("unsealed canary %s: data directory %v; logs %v; memory %v", cn.name, files[cn.value], logs[cn.value], mem[cn.value])
		if len(files[cn.value]) == 0 {
			t.Errorf("unsealed canary %s not found in the data directory: the file search does not work", cn.name)
		}
		if len(mem[cn.value]) == 0 {
			t.Errorf("unsealed canary %s not found in the controller-adapter's memory: the memory search does not work", cn.name)
		}
	}
}

// canaries are three random strings: A in the action's code, B in its parameters (which it logs),
// C in its result. C is computed by the action from B, so it appears in neither.
type canaries struct {
	a, b, c string
}

func newCanaries(tag string) canaries {
	id := rand.Text()[:12]
	return canaries{a: "tmcanaryA" + tag + id + "x", b: "tmcanaryB" + tag + id, c: "tmcanaryC" + tag + id}
}

func (cs canaries) all() []string { return []string{cs.a, cs.b, cs.c} }

func (cs canaries) named() []struct{ name, value string } {
	return []struct{ name, value string }{{"A (code)", cs.a}, {"B (parameter, log line)", cs.b}, {"C (result)", cs.c}}
}

// code is the action: it checks it has the canary A, logs B and returns C (B with its B made a C).
func (cs canaries) code() string {
	return `const A = "` + cs.a + `";
function main(p) {
  console.log("the parameter is " + p.b);
  return { c: p.b.replace("tmcanaryB", "tmcanaryC"), codeOK: A.length > 0 };
}`
}

func (p *standalone) runSealed(ctx context.Context, t *testing.T, c *client.Client, cs canaries) {
	const name = "sealedcanary"
	file := filepath.Join(p.work, "action.js")
	if err := os.WriteFile(file, []byte(cs.code()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := p.teemate(t, "action", "create", name, file, "--sealed"); code != 0 {
		t.Fatalf("teemate action create --sealed: exit %d: %s", code, out)
	}
	a, err := c.GetAction(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !sealed.IsSealedCode(a.Exec.Code) || strings.Contains(a.Exec.Code, cs.a) {
		t.Fatalf("the stored code is not sealed: %.200s", a.Exec.Code)
	}

	// Blocking, through the CLI: the plaintext result and a verified receipt.
	out, code := p.teemate(t, "invoke", name, "--sealed", "-p", "b", cs.b, "--json")
	if code != 0 {
		t.Fatalf("teemate invoke --sealed: exit %d: %s", code, out)
	}
	var inv struct {
		Result       map[string]any `json:"result"`
		Receipt      map[string]any `json:"receipt"`
		ActivationID string         `json:"activationId"`
	}
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("teemate invoke --json: %v: %s", err, out)
	}
	if inv.Result["c"] != cs.c || inv.Result["codeOK"] != true || inv.Receipt["verified"] != true || inv.ActivationID == "" {
		t.Fatalf("teemate invoke --sealed --json: %s", out)
	}
	if logs, code := p.teemate(t, "activation", "logs", inv.ActivationID); code != 0 || !strings.Contains(logs, "the parameter is "+cs.b) {
		t.Errorf("teemate activation logs %s: exit %d: %q", inv.ActivationID, code, logs)
	}
	// The host's copy of the record holds only ciphertext and the enclave's one log line.
	rec, err := c.GetActivation(ctx, inv.ActivationID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Logs) != 1 || !strings.Contains(rec.Logs[0], "sealed: 1 log lines in the sealed result") {
		t.Errorf("the host's record of a sealed activation has logs %q", rec.Logs)
	}

	// Non-blocking, through the CLI: the id at once, the result once it is there.
	out, code = p.teemate(t, "invoke", name, "--sealed", "-p", "b", cs.b, "--no-wait", "--json")
	if code != 0 {
		t.Fatalf("teemate invoke --sealed --no-wait: exit %d: %s", code, out)
	}
	var nb struct {
		ActivationID string `json:"activationId"`
	}
	if err := json.Unmarshal([]byte(out), &nb); err != nil || nb.ActivationID == "" {
		t.Fatalf("teemate invoke --no-wait --json: %v: %s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, code = p.teemate(t, "activation", "result", nb.ActivationID, "--json")
		if code != cli.ExitNotReady || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, cs.c) || !strings.Contains(out, `"verified": true`) {
		t.Fatalf("teemate activation result %s: exit %d: %s", nb.ActivationID, code, out)
	}

	// The Go client, blocking.
	s, err := c.InvokeSealed(ctx, name, json.RawMessage(`{"b":"`+cs.b+`"}`), client.InvokeOptions{Blocking: true})
	if err != nil {
		t.Fatalf("client.InvokeSealed: %v", err)
	}
	if !bytes.Contains(s.Opened.Result, []byte(cs.c)) || len(s.Opened.Logs) != 1 || !strings.Contains(s.Opened.Logs[0], cs.b) {
		t.Fatalf("client.InvokeSealed: result %s logs %q", s.Opened.Result, s.Opened.Logs)
	}

	// The npm openwhisk client with the JS module.
	p.jsClient(t, name, cs)

	// Replayed: the same envelope again is refused, with the integrity error.
	a2, err := c.Invoke(ctx, name, s.Envelope, true)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if _, err := client.Open(s.Evidence, s.Reply, a2); !errors.Is(err, client.ErrIntegrity) || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("a replayed envelope: %v, want the integrity error naming the replay", err)
	}
	// Tampered: refused, with the integrity exit code.
	out, code = p.teemate(t, "invoke", name, "--sealed", "-p", "b", cs.b, "--tamper-for-test")
	if code != cli.ExitIntegrity || !strings.Contains(out, "integrity") {
		t.Errorf("teemate invoke --tamper-for-test: exit %d (want %d): %s", code, cli.ExitIntegrity, out)
	}
	// Simulated evidence is refused unless allowed.
	out, code = p.teemateEnv(t, []string{"TEEMATE_ALLOW_SIMULATED="}, "invoke", name, "--sealed", "-p", "b", cs.b)
	if code != cli.ExitSimulated || !strings.Contains(out, "simulated") {
		t.Errorf("teemate invoke without --allow-simulated: exit %d (want %d): %s", code, cli.ExitSimulated, out)
	}
	// attest: verified (simulated allowed) with --json; refused without --allow-simulated.
	out, code = p.teemate(t, "attest", name, "--json")
	if code != 0 || !strings.Contains(out, `"verified": true`) || !strings.Contains(out, `"type": "simulated"`) {
		t.Errorf("teemate attest --json: exit %d: %s", code, out)
	}
	out, code = p.teemateEnv(t, []string{"TEEMATE_ALLOW_SIMULATED="}, "attest", name)
	if code != cli.ExitSimulated || !strings.Contains(out, "simulated") {
		t.Errorf("teemate attest without --allow-simulated: exit %d (want %d): %s", code, cli.ExitSimulated, out)
	}
	// A sealed activation's result opens only where its reply key is.
	out, code = p.teemateEnv(t, []string{"TEEMATE_ALLOW_SIMULATED=1", "TEEMATE_HOME=" + filepath.Join(p.work, "elsewhere")},
		"activation", "result", inv.ActivationID)
	if code != 0 || strings.Contains(out, cs.c) || !strings.Contains(out, "__teemate_sealed_result") {
		t.Errorf("teemate activation result without the reply key: exit %d: %s", code, out)
	}
	// Every failure has its exit code and says what it is.
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--auth", app.GuestUUID + ":wrong", "invoke", name, "--sealed"}, cli.ExitAuth, "unauthorized"},
		{[]string{"invoke", "nosuchaction", "--sealed"}, cli.ExitNotFound, "not found"},
		{[]string{"attest", "nosuchaction"}, cli.ExitNotFound, "not found"},
		{[]string{"activation", "result", "0123456789abcdef0123456789abcdef"}, cli.ExitNotFound, "not found"},
		{[]string{"--apihost", "http://127.0.0.1:1", "invoke", name, "--sealed"}, cli.ExitUnreachable, "unreachable"},
		// nodejs:18 is not offered (the enclave runtime is Node 20): no image runs it.
		{[]string{"attest", "--kind", "nodejs:18"}, cli.ExitFailure, "runs in no enclave image"},
	} {
		out, code := p.teemate(t, c.args...)
		if code != c.code || !strings.Contains(out, c.says) {
			t.Errorf("teemate %q: exit %d (want %d), %q (want %q)", c.args, code, c.code, out, c.says)
		}
	}
	// And the platform keeps working.
	out, code = p.teemate(t, "invoke", name, "--sealed", "-p", "b", cs.b)
	if code != 0 || !strings.Contains(out, cs.c) {
		t.Errorf("a sealed invoke after the refusals: exit %d: %s", code, out)
	}
}

// jsClient runs sealedclient.js: the npm openwhisk client invokes with parameters sealed by
// client/js/teemate.js, which opens the result and verifies the receipt.
func (p *standalone) jsClient(t *testing.T, name string, cs canaries) {
	t.Helper()
	dir := filepath.Join(p.repo, "controller-adapter", "test")
	if !exists(filepath.Join(dir, "node_modules", "openwhisk", "package.json")) {
		testtool.Missing(t, "the npm openwhisk client is missing (npm install in controller-adapter/test, or make deps)")
		return
	}
	cmd := exec.Command("node", "sealedclient.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OW_APIHOST="+p.apiHost, "OW_AUTH="+p.auth, "OW_ACTION="+name, `OW_PARAMS={"b":"`+cs.b+`"}`)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			out = append(out, ee.Stderr...)
		}
		t.Fatalf("sealedclient.js: %v\n%s", err, out)
	}
	var got struct {
		Result  map[string]any `json:"result"`
		Logs    []string       `json:"logs"`
		Receipt map[string]any `json:"receipt"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("sealedclient.js printed %q: %v", out, err)
	}
	if got.Result["c"] != cs.c || len(got.Logs) != 1 || !strings.Contains(got.Logs[0], cs.b) || got.Receipt["sig"] == nil {
		t.Errorf("sealedclient.js: %s", out)
	}
}

func (p *standalone) runUnsealed(ctx context.Context, t *testing.T, cs canaries) {
	const name = "plaincanary"
	file := filepath.Join(p.work, "plain.js")
	if err := os.WriteFile(file, []byte(cs.code()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := p.teemate(t, "action", "create", name, file); code != 0 {
		t.Fatalf("teemate action create: exit %d: %s", code, out)
	}
	out, code := p.teemate(t, "invoke", name, "-p", "b", cs.b)
	if code != 0 || !strings.Contains(out, cs.c) {
		t.Fatalf("teemate invoke (unsealed): exit %d: %s", code, out)
	}
	out, code = p.teemate(t, "invoke", name, "-p", "b", cs.b, "--no-wait", "--json")
	if code != 0 {
		t.Fatalf("teemate invoke --no-wait (unsealed): exit %d: %s", code, out)
	}
	var nb struct {
		ActivationID string `json:"activationId"`
	}
	if err := json.Unmarshal([]byte(out), &nb); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{APIHost: p.apiHost, Auth: p.auth})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if a, err := c.WaitActivation(wctx, nb.ActivationID); err != nil || !a.Done() {
		t.Fatalf("the non-blocking unsealed activation: %v", err)
	}
}

// standalone is bin/controller-adapter --standalone, started by the test.
type standalone struct {
	work, dataDir, logDir string
	repo                  string
	apiHost, auth         string
	teemateBin, home      string
	pid                   int
	cmd                   *exec.Cmd
	exited                chan struct{}
}

var apiReady = regexp.MustCompile(`^OpenWhisk API ready at (http://127\.0\.0\.1:\d+) `)

func startStandalone(t *testing.T, repo string) *standalone {
	t.Helper()
	work := t.TempDir()
	p := &standalone{repo: repo, work: work, dataDir: filepath.Join(work, "data"), logDir: filepath.Join(work, "logs"),
		home: filepath.Join(work, "home"), auth: app.GuestUUID + ":" + app.GuestKey, exited: make(chan struct{})}
	if err := os.Mkdir(p.logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	bins := filepath.Join(work, "bin")
	for _, b := range []string{"controller-adapter", "teemate"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bins, b), "./controller-adapter/cmd/"+b)
		build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	p.teemateBin = filepath.Join(bins, "teemate")
	stdout, err := os.Create(filepath.Join(p.logDir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(p.logDir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(bins, "controller-adapter"), "--standalone", "--port", "0",
		"--embedded-kafka-addr", "127.0.0.1:0", "--data-dir", p.dataDir, "--sandbox", "process",
		"--enclave", "direct", "--model", "teemate", "--repo-dir", repo)
	p.cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS=", "TMPDIR="+tmp)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		if err := p.cmd.Wait(); err != nil {
			t.Logf("the platform exited: %v", err)
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		// Already written to disk; the handles are only closed here.
		_ = stdout.Close()
		_ = stderr.Close()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(p.logDir, "stderr")); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of the platform's stderr:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for p.apiHost == "" {
		b, err := os.ReadFile(filepath.Join(p.logDir, "stdout"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if m := apiReady.FindStringSubmatch(sc.Text()); m != nil {
				p.apiHost = m[1]
			}
		}
		select {
		case <-p.exited:
			t.Fatal("the platform exited before it was ready")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the platform was not ready within 2 minutes")
		}
	}
	return p
}

// waitEvidence waits until the nodejs:20 image's evidence is published (the invoker's health test
// action starts its enclave).
func (p *standalone) waitEvidence(ctx context.Context, t *testing.T, c *client.Client) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, _, err := c.AttestKind(ctx, "nodejs:20")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verified evidence of nodejs:20 within 2 minutes: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the platform (and its enclave owners) to stop; after 30 s it
// kills it.
func (p *standalone) stop(t *testing.T) {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Logf("stop the platform: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Logf("the platform did not stop within 30 s; killing it")
		if err := p.cmd.Process.Kill(); err != nil {
			t.Logf("kill the platform: %v", err)
		}
		<-p.exited
	}
}

// teemate runs bin/teemate against the platform (simulated evidence allowed) and returns its
// stdout and stderr together, and its exit code.
func (p *standalone) teemate(t *testing.T, args ...string) (string, int) {
	return p.teemateEnv(t, []string{"TEEMATE_ALLOW_SIMULATED=1"}, args...)
}

func (p *standalone) teemateEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(p.teemateBin, append([]string{"--apihost", p.apiHost, "--auth", p.auth}, args...)...)
	cmd.Env = append(os.Environ(), append([]string{"TEEMATE_HOME=" + p.home, "WSK_CONFIG_FILE=/nonexistent"}, env...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run teemate: %v", err)
	}
	return string(out), 0
}

// searchFiles reads every regular file below dir and says, per needle, which files hold it.
func searchFiles(t *testing.T, dir string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	n := 0
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		rel, _ := filepath.Rel(dir, path)
		names = append(names, rel)
		for _, s := range needles {
			if bytes.Contains(b, []byte(s)) {
				found[s] = append(found[s], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("search %s: %v", dir, err)
	}
	t.Logf("searched %d files under %s: %s", n, dir, strings.Join(names, " "))
	return found
}

// processMemory reads every readable mapping of a process (/proc/PID/maps, /proc/PID/mem) and
// says, per needle, at which mappings it is found.
func processMemory(pid int, needles []string) (map[string][]string, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	found := map[string][]string{}
	longest := 0
	for _, s := range needles {
		longest = max(longest, len(s))
	}
	const chunk = 4 << 20
	buf := make([]byte, chunk+longest)
	var read, regions int64
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[1][0] != 'r' {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		name := ""
		if len(f) > 5 {
			name = f[5]
		}
		if name == "[vvar]" || name == "[vsyscall]" {
			continue // not readable through /proc/PID/mem
		}
		regions++
		carry := 0
		for off := start; off < end; off += chunk {
			n := min(uint64(chunk), end-off)
			got, err := mem.ReadAt(buf[carry:carry+int(n)], int64(off))
			if err != nil && !errors.Is(err, io.EOF) && got == 0 {
				break // an unreadable region (guard pages of a mapping): nothing to find there
			}
			read += int64(got)
			window := buf[:carry+got]
			for _, s := range needles {
				if bytes.Contains(window, []byte(s)) {
					found[s] = append(found[s], fmt.Sprintf("%s@%x", mapName(name), start))
				}
			}
			carry = min(longest-1, len(window))
			copy(buf, window[len(window)-carry:])
		}
	}
	if regions == 0 || read == 0 {
		return nil, fmt.Errorf("read no memory of pid %d", pid)
	}
	return dedupe(found), nil
}

func mapName(n string) string {
	if n == "" {
		return "anon"
	}
	return filepath.Base(n)
}

func dedupe(m map[string][]string) map[string][]string {
	for k, v := range m {
		seen := map[string]bool{}
		var out []string
		for _, s := range v {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		m[k] = out
	}
	return m
}
