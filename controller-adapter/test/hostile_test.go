// Package test holds the controller-adapter's end-to-end tests that drive a real standalone
// platform from outside (hostile_test.go; sealed_test.go, with sealedclient.js) and the npm client
// check (owclient.js, run by internal/api's tests).
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/controller-adapter/internal/app"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/functions/hostile"
	"github.com/teemate/platform/internal/testtool"
)

// Benign stream: four at a time, each worker pausing benignPause between its activations, until
// the hostile mix is over and at least benignMin ran (at most benignMax). The pause is short so
// that benign activations are in flight nearly all the time: a hostile case that takes the shared
// enclave down must meet some.
const (
	benignConcurrency = 4
	benignMin         = 60
	benignMax         = 2000
	benignPause       = 200 * time.Millisecond
)

// TestHostileTenant is issue #13 item 3, "no tenant can hurt another beyond its own limits", end to
// end: a standalone platform on the oci sandbox; tenant "benign" runs a benign stream while tenant
// "hostile" runs the mix of functions/hostile one case after another. Every benign activation must
// return its exact result, the benign tenant's secret must appear in none of the hostile
// activations' results or logs, every hostile case must meet its target, and the platform must
// answer afterwards. The observed table must equal SECURITY.md's hostile section
// (TEEMATE_UPDATE_SECURITY=1 rewrites it).
//
// The platform runs as bin/controller-adapter in a PID namespace of its own: on a runtime without
// the capability set, process.kill(1) would otherwise signal this machine's init and
// process.kill(process.ppid) the test process itself.
func TestHostileTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform and runs the hostile mix (about two minutes)")
	}
	repo := testtool.Root(t)
	for _, need := range []struct {
		ok  bool
		why string
	}{
		{os.Geteuid() == 0, "needs root (runc, PID namespace)"},
		{exists(filepath.Join(repo, ".state", "images", "teemate", "image.json")), "needs the function images (make images)"},
		{exists(filepath.Join(repo, "bin", "teemate-shim")), "needs the shims (make build)"},
	} {
		if !need.ok {
			t.Skip(need.why)
		}
	}
	testtool.Require(t, "node", "unshare")
	if !onPath("runc") && !onPath("crun") {
		testtool.Missing(t, "needs runc or crun (make deps)")
	}
	p := startPlatform(t, repo)

	secret := "teemate-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-benign"
	benign := hostile.BenignActions(secret)
	for _, b := range benign {
		p.deploy(t, p.keyA, b.Name, b.Code, hostile.DefaultMemoryMB, 30000, b.Bound, false)
	}
	cases := hostile.Cases()
	for _, c := range cases {
		p.deploy(t, p.keyB, c.Name, c.Code, c.MemoryMB, c.TimeoutMs, nil, c.Network)
	}
	params := hostile.Params{APIPort: p.apiPort, KafkaPort: p.kafkaPort, DataDir: p.dataDir}
	subst := map[string]string{secret: "<A's secret>", p.dataDir: "<data-dir>", p.workDir: "<work-dir>",
		":" + strconv.Itoa(p.apiPort): ":<api-port>", ":" + strconv.Itoa(p.kafkaPort): ":<kafka-port>"}

	// Warm up: the warm enclave starts with the first activation, and every benign action must work
	// before the mix (else the failures below would say nothing about the hostile tenant).
	for _, b := range benign {
		if r := p.invokeBenign(b, 0); !r.ok {
			t.Fatalf("benign %s before the mix: %s", b.Name, r.err)
		}
	}
	// The warm enclave runs now: the attacker is handed its gate socket's path, as if it knew
	// the platform's layout.
	_ = filepath.WalkDir(p.workDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "gate.sock" && params.Gate == "" {
			params.Gate = path
		}
		return nil // an unreadable corner of the data dir is not where the socket is
	})
	if params.Gate == "" {
		t.Fatal("no gate.sock under the platform's directories once the warm enclave runs")
	}

	var (
		mu        sync.Mutex
		runs      []benignRun
		mixDone   atomic.Bool
		next      atomic.Int64
		wg        sync.WaitGroup
		intervals = map[string][2]time.Time{}
	)
	for w := 0; w < benignConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= benignMax || (i >= benignMin && mixDone.Load()) {
					return
				}
				b := benign[i%len(benign)]
				r := p.invokeBenign(b, i)
				mu.Lock()
				runs = append(runs, r)
				mu.Unlock()
				time.Sleep(benignPause)
			}
		}()
	}

	var outs []hostile.Outcome
	leaks := 0
	for _, c := range cases {
		start := time.Now()
		o, raw := p.invokeHostile(c, params)
		intervals[c.Name] = [2]time.Time{start, time.Now()}
		if strings.Contains(raw, secret) {
			leaks++
			o.Text = "LEAKED A's SECRET: " + o.Text
		}
		if err := c.Expect(o); err != nil {
			t.Errorf("hostile %s: %v", c.Name, err)
		} else {
			o.Meets = true
		}
		o.Text = hostile.Normalize(o.Text, subst)
		o.LogNote = hostile.Normalize(o.LogNote, subst)
		t.Logf("hostile %-20s %-24s %s [logs: %s]", c.Name, o.Status, o.Text, o.LogNote)
		outs = append(outs, o)
	}
	mixDone.Store(true)
	wg.Wait()

	failures := 0
	for _, r := range runs {
		if r.ok {
			continue
		}
		failures++
		if failures <= 10 {
			t.Errorf("benign %s #%d failed: %s", r.action, r.i, r.err)
		}
		for i := range outs {
			iv := intervals[outs[i].Case]
			if !r.start.After(iv[1]) && !r.end.Before(iv[0]) {
				outs[i].BenignFailures++
			}
		}
	}
	after := p.invokeBenign(benign[len(benign)-1], benignMax+1)
	if !after.ok {
		t.Errorf("the platform does not answer after the mix: %s", after.err)
	}
	t.Logf("benign: %d activations, %d failed; secret leaks %d; answers after the mix %v", len(runs), failures, leaks, after.ok)
	if leaks > 0 {
		t.Errorf("tenant A's secret appeared in %d hostile activations' results or logs", leaks)
	}

	table := hostile.Table(cases, outs, hostile.Summary{Platform: p.describe, BenignTotal: len(runs),
		BenignFailures: failures, SecretLeaks: leaks, AnswersAfterMix: after.ok})
	checkSecurityMD(t, filepath.Join(repo, "SECURITY.md"), table)
}

// checkSecurityMD compares the section with what was observed, or rewrites it when
// TEEMATE_UPDATE_SECURITY=1.
func checkSecurityMD(t *testing.T, path, table string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("SECURITY.md: %v", err)
	}
	if os.Getenv("TEEMATE_UPDATE_SECURITY") == "1" {
		doc, err := hostile.ReplaceSection(string(b), table)
		if err != nil {
			t.Fatalf("SECURITY.md: %v", err)
		}
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatalf("SECURITY.md: %v", err)
		}
		t.Logf("rewrote the hostile section of %s", path)
		return
	}
	have, err := hostile.Section(string(b))
	if err != nil {
		t.Fatalf("SECURITY.md: %v", err)
	}
	if have != strings.Trim(table, "\n") {
		t.Errorf("SECURITY.md's hostile section differs from what this run observed (TEEMATE_UPDATE_SECURITY=1 rewrites it).\n"+
			"--- SECURITY.md\n%s\n--- observed\n%s", have, table)
	}
}

type benignRun struct {
	action     string
	i          int
	ok         bool
	err        string
	start, end time.Time
}

// platform is bin/controller-adapter --standalone in its own PID namespace.
type platform struct {
	apiHost, dataDir, describe string
	workDir                    string // holds dataDir and the platform's TMPDIR
	apiPort, kafkaPort         int
	keyA, keyB                 [2]string
	client                     *http.Client
}

var readyLine = regexp.MustCompile(`^OpenWhisk API ready at (http://127\.0\.0\.1:(\d+)) \(kafka \[127\.0\.0\.1:(\d+)\]\)`)

// startPlatform builds the controller-adapter, adds the two tenants to a fresh data directory and
// starts the platform on free ports. Cleanup stops it and removes what it left: the PID namespace
// (every process of the platform, the owners and the containers' processes die with it), runc's
// containers, mounts below the data directory, and the directories.
func startPlatform(t *testing.T, repo string) *platform {
	t.Helper()
	work, err := os.MkdirTemp("", "hostile-")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(work, "d")
	// The invoker's runtime directory (os.MkdirTemp: runc's root, the bundles, the sockets) goes
	// below work too, so that cleanup finds what a platform killed mid-run left.
	tmp := filepath.Join(work, "t")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	var run string // the oci backend's run id: its containers are wsk0_<run>_<n>
	t.Cleanup(func() { cleanupDir(t, work, run) })
	bin := filepath.Join(work, "controller-adapter")
	build := exec.Command("go", "build", "-o", bin, "./controller-adapter/cmd/controller-adapter")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build controller-adapter: %v\n%s", err, out)
	}
	p := &platform{dataDir: dataDir, workDir: work, client: &http.Client{Timeout: 3 * time.Minute}}
	ctx := context.Background()
	for _, ns := range []struct {
		name string
		key  *[2]string
	}{{"benign", &p.keyA}, {"hostile", &p.keyB}} {
		k, err := app.AddNamespace(ctx, dataDir, ns.name)
		if err != nil {
			t.Fatal(err)
		}
		u, s, _ := strings.Cut(k, ":")
		*ns.key = [2]string{u, s}
	}
	// The benign stream runs far beyond OpenWhisk's 60 invocations a minute: its namespace gets
	// its own limit, as an operator gives one to a busy tenant. The hostile tenant keeps the
	// defaults.
	many := 100000
	if _, err := app.SetNamespaceLimits(ctx, dataDir, "benign", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &many}}); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(work, "platform.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// sh is the namespace's init: it has no handler for SIGTERM, so a signal to pid 1 from inside
	// is dropped, and when the platform exits, sh exits and the kernel kills the rest. runc reads
	// /proc by the pids it sees, hence a /proc of the namespace (and so a mount namespace, whose
	// mounts vanish with it).
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--", "sh", "-c", `"$@" & wait`, "sh",
		bin, "--standalone", "--port", "0", "--embedded-kafka-addr", "127.0.0.1:0", "--data-dir", dataDir, "--sandbox", "oci", "--enclave", "direct",
		"--model", "teemate", "--repo-dir", repo)
	// The platform's containers run on its default runtime, teemate-launch (built by make
	// build); TEEMATE_TEST_OCI_RUNTIME runs them on another (runc, crun).
	if rt := os.Getenv("TEEMATE_TEST_OCI_RUNTIME"); rt != "" {
		cmd.Args = append(cmd.Args, "--oci-runtime", rt)
	}
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS=", "TMPDIR="+tmp)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the platform: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		stopPlatform(t, cmd.Process.Pid, bin, exited)
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of the platform's log:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := readyLine.FindStringSubmatch(line); m != nil {
				p.apiHost = m[1]
				p.apiPort, _ = strconv.Atoi(m[2])
				p.kafkaPort, _ = strconv.Atoi(m[3])
			}
			if rest, ok := strings.CutPrefix(line, "invoker0 runs in this process: "); ok {
				p.describe = "standalone, " + rest
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("the platform exited before it was ready (log %s)", logPath)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the platform was not ready within 2 minutes")
	}
	// The invoker turns healthy once its test action ran.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, b, err := p.do(http.MethodGet, "/invokers", [2]string{}, nil)
		if err == nil && code == http.StatusOK && bytes.Contains(b, []byte(`"up"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("invoker0 not healthy within 2 minutes: %d %s %v", code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if bundles, _ := filepath.Glob(filepath.Join(tmp, "tm*", "o", "wsk0_*_*")); len(bundles) > 0 {
		run = strings.Split(filepath.Base(bundles[0]), "_")[1]
	}
	t.Logf("platform at %s (kafka port %d, oci run %q, data %s)", p.apiHost, p.kafkaPort, run, dataDir)
	return p
}

// stopPlatform sends SIGTERM to the controller-adapter (the child of the namespace's sh running
// bin; sh also adopts the containers' runc init processes, which the platform deletes itself) and
// waits for it to drain; after 30 s it kills the unshare process, which takes the namespace down.
func stopPlatform(t *testing.T, unsharePid int, bin string, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	for _, pid := range children(unsharePid) {
		for _, grand := range children(pid) {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", grand)); err == nil && exe == bin {
				_ = syscall.Kill(grand, syscall.SIGTERM)
			}
		}
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Logf("the platform did not stop within 30 s after SIGTERM; killing its PID namespace")
		_ = syscall.Kill(unsharePid, syscall.SIGKILL)
		<-exited
	}
}

func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// cleanupDir deletes runc's containers under work (state roots named "runtime"), the cgroups of
// this run's containers that runc could not remove while they were dying, what is still mounted
// below work (the platform's own mounts die with its mount namespace), and work itself.
func cleanupDir(t *testing.T, work, run string) {
	runtime := "runc"
	if !onPath(runtime) {
		runtime = "crun"
	}
	_ = filepath.WalkDir(work, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() != "runtime" {
			return nil
		}
		out, _ := exec.Command(runtime, "--root", path, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			if b, err := exec.Command(runtime, "--root", path, "delete", "--force", id).CombinedOutput(); err != nil {
				t.Logf("cleanup: %s delete %s: %v %s", runtime, id, err, b)
			}
		}
		return filepath.SkipDir
	})
	if run != "" {
		// rmdir succeeds once the cgroup is empty; processes killed with the namespace may take a
		// moment to leave.
		var left []string
		for try := 0; try < 50; try++ {
			left = nil
			for _, pattern := range []string{"/sys/fs/cgroup/*/teemate/wsk0_" + run + "_*", "/sys/fs/cgroup/teemate/wsk0_" + run + "_*"} {
				cgs, _ := filepath.Glob(pattern)
				for _, cg := range cgs {
					if err := os.Remove(cg); err != nil && !errors.Is(err, os.ErrNotExist) {
						left = append(left, cg+": "+err.Error())
					}
				}
			}
			if len(left) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, l := range left {
			t.Logf("cleanup: cgroup %s", l)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mounts []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], work+"/") {
				mounts = append(mounts, f[4])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // deepest first
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				t.Logf("cleanup: unmount %s: %v", m, err)
			}
		}
	}
	if err := os.RemoveAll(work); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

func (p *platform) do(method, path string, auth [2]string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, p.apiHost+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if auth[0] != "" {
		req.SetBasicAuth(auth[0], auth[1])
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

func (p *platform) deploy(t *testing.T, key [2]string, name, code string, memoryMB, timeoutMs int, bound map[string]any, network bool) {
	t.Helper()
	params := []map[string]any{}
	for k, v := range bound {
		params = append(params, map[string]any{"key": k, "value": v})
	}
	annotations := []map[string]any{}
	if network {
		annotations = append(annotations, map[string]any{"key": "network", "value": true})
	}
	body, _ := json.Marshal(map[string]any{
		"exec":        map[string]any{"kind": "nodejs:20", "code": code},
		"limits":      map[string]any{"memory": memoryMB, "timeout": timeoutMs},
		"parameters":  params,
		"annotations": annotations,
	})
	code2, b, err := p.do(http.MethodPut, "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", key, body)
	if err != nil || code2 != http.StatusOK {
		t.Fatalf("deploy %s: %d %s %v", name, code2, b, err)
	}
}

// activation is the part of the REST API's activation record the test reads.
type activation struct {
	ActivationID string `json:"activationId"`
	Response     struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	} `json:"response"`
}

// invoke runs a blocking invoke; a 202 (the blocking wait expired) is followed by polling the
// record. It returns the record or why there is none.
func (p *platform) invoke(key [2]string, name string, params any) (*activation, error) {
	body, _ := json.Marshal(params)
	code, b, err := p.do(http.MethodPost, "/api/v1/namespaces/_/actions/"+name+"?blocking=true", key, body)
	if err != nil {
		return nil, err
	}
	var a activation
	switch {
	case code == http.StatusAccepted:
		if json.Unmarshal(b, &a) != nil || a.ActivationID == "" {
			return nil, fmt.Errorf("HTTP 202 without an activation id: %s", b)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			code, b, err = p.do(http.MethodGet, "/api/v1/namespaces/_/activations/"+a.ActivationID, key, nil)
			if err == nil && code == http.StatusOK {
				break
			}
		}
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("activation %s: no record: HTTP %d %v", a.ActivationID, code, err)
		}
	}
	if err := json.Unmarshal(b, &a); err != nil || a.Response.Status == "" {
		return nil, fmt.Errorf("HTTP %d, not an activation record: %s", code, truncate(b, 300))
	}
	return &a, nil
}

func (p *platform) invokeBenign(b hostile.Benign, i int) benignRun {
	r := benignRun{action: b.Name, i: i, start: time.Now()}
	a, err := p.invoke(p.keyA, b.Name, b.Input(i))
	r.end = time.Now()
	switch {
	case err != nil:
		r.err = err.Error()
	case a.Response.Status != hostile.StatusSuccess:
		r.err = a.Response.Status + ": " + truncate(a.Response.Result, 300)
	case !hostile.SameJSON(a.Response.Result, b.Want(i, b.Bound)):
		r.err = "wrong result " + truncate(a.Response.Result, 300)
	default:
		r.ok = true
	}
	return r
}

// invokeHostile runs one case and returns its outcome (not yet normalised) and everything the
// hostile tenant got back (result and logs), which must not hold the benign tenant's secret.
func (p *platform) invokeHostile(c hostile.Case, params hostile.Params) (hostile.Outcome, string) {
	o := hostile.Outcome{Case: c.Name}
	a, err := p.invoke(p.keyB, c.Name, params)
	if err != nil {
		o.Status, o.Text, o.LogNote = hostile.StatusNoAnswer, err.Error(), "-"
		return o, err.Error()
	}
	o.Status, o.Text = a.Response.Status, hostile.ResultText(a.Response.Result)
	raw := string(a.Response.Result)
	var logs struct {
		Logs []string `json:"logs"`
	}
	var code int
	var b []byte
	// The record with its logs is stored shortly after the blocking answer; a case whose
	// expectation reads them waits for them a little.
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, b, err = p.do(http.MethodGet, "/api/v1/namespaces/_/activations/"+url.PathEscape(a.ActivationID)+"/logs", p.keyB, nil)
		if err == nil && code == http.StatusOK && json.Unmarshal(b, &logs) == nil && len(logs.Logs) > 0 ||
			!c.Logs || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &logs) != nil {
		o.LogNote = fmt.Sprintf("logs not readable: HTTP %d %v", code, err)
	} else {
		o.LogNote = hostile.LogNote(logs.Logs)
		raw += "\n" + strings.Join(logs.Logs, "\n")
	}
	return o, raw
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func onPath(name string) bool { _, err := exec.LookPath(name); return err == nil }
