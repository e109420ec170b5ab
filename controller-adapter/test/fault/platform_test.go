package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// platform is one deployment under test: the standalone controller-adapter, or a broker, a
// controller-adapter --kafka and a bin/invoker. Ports and directories are fixed at setup, so a
// restarted process comes back where its peers expect it.
type platform struct {
	repo, work, dataDir, runDir string
	split                       bool
	apiPort, kafkaPort, cbPort  int
	api                         string
	key                         [2]string
	client                      *http.Client

	standalone *proc // standalone only
	broker     *proc // split only
	controller *proc // split only
	invoker    *proc // split only
}

// options of one platform.
type options struct {
	split   bool
	sandbox string // the invoker's sandbox backend: process or oci
	// dataSize, when set, puts the data directory on a tmpfs of that size ("64m").
	dataSize string
}

// newPlatform sets up directories, ports and the namespace, and starts the deployment; the
// test's cleanup stops every process it started, kills and reaps what they left, unmounts and
// removes the directories, even when the test fails.
func newPlatform(t *testing.T, repo string, cbPort int, o options) *platform {
	t.Helper()
	work, err := os.MkdirTemp("", "fault-")
	if err != nil {
		t.Fatal(err)
	}
	p := &platform{repo: repo, work: work, split: o.split, cbPort: cbPort,
		dataDir: filepath.Join(work, "d"), runDir: filepath.Join(work, "t"),
		client: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(func() { p.cleanup(t) })
	for _, d := range []string{p.dataDir, p.runDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if o.dataSize != "" {
		if err := syscall.Mount("tmpfs", p.dataDir, "tmpfs", 0, "size="+o.dataSize+",mode=0700"); err != nil {
			t.Fatalf("tmpfs on the data directory: %v", err)
		}
	}
	ports := freePorts(t, 2)
	p.apiPort, p.kafkaPort = ports[0], ports[1]
	p.api = "http://127.0.0.1:" + strconv.Itoa(p.apiPort)

	bin := filepath.Join(repo, "bin", "controller-adapter")
	out, err := exec.Command(bin, "namespace", "--data-dir", p.dataDir, "add", "fault").CombinedOutput()
	if err != nil {
		t.Fatalf("namespace add: %v\n%s", err, out)
	}
	u, s, ok := strings.Cut(strings.TrimSpace(string(out)), ":")
	if !ok {
		t.Fatalf("namespace add printed %q, want uuid:key", out)
	}
	p.key = [2]string{u, s}
	// The suite measures faults, not throttling: the namespace gets room above OpenWhisk's 60 a
	// minute, as an operator gives a busy tenant.
	if out, err := exec.Command(bin, "namespace", "--data-dir", p.dataDir, "limits", "fault",
		"--invocations-per-minute", "100000", "--concurrent", "1000").CombinedOutput(); err != nil {
		t.Fatalf("namespace limits: %v\n%s", err, out)
	}

	// TMPDIR holds the invoker's runtime directory (sandboxes, sockets), so that what a killed
	// invoker leaves there is found and removed with the work directory.
	env := []string{"TMPDIR=" + p.runDir, "NODE_EXTRA_CA_CERTS="}
	egress := "127.0.0.1:" + strconv.Itoa(cbPort)
	backends := []string{"--sandbox", o.sandbox, "--enclave", "direct", "--model", "teemate", "--egress-allow", egress}
	kafkaAddr := "127.0.0.1:" + strconv.Itoa(p.kafkaPort)
	if !o.split {
		p.standalone = &proc{name: "standalone", bin: bin, env: env, log: filepath.Join(work, "standalone.log"),
			args: append([]string{"--standalone", "--host", "127.0.0.1", "--port", strconv.Itoa(p.apiPort),
				"--embedded-kafka-addr", kafkaAddr, "--data-dir", p.dataDir, "--repo-dir", repo}, backends...)}
		p.standalone.start(t)
		p.waitReady(t, p.standalone)
		return p
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	brokerDir := filepath.Join(work, "broker")
	users := filepath.Join(brokerDir, "users")
	p.broker = &proc{name: "broker", bin: self, log: filepath.Join(work, "broker.log"),
		env: []string{brokerEnv + "=" + kafkaAddr + " " + brokerDir}}
	p.controller = &proc{name: "controller", bin: bin, env: env, log: filepath.Join(work, "controller.log"),
		args: []string{"--kafka", kafkaAddr, "--kafka-sasl-file", filepath.Join(users, "controller0.sasl"),
			"--host", "127.0.0.1", "--port", strconv.Itoa(p.apiPort), "--data-dir", p.dataDir}}
	p.invoker = &proc{name: "invoker", bin: filepath.Join(repo, "bin", "invoker"), env: env, log: filepath.Join(work, "invoker.log"),
		args: append([]string{"--id", "0", "--kafka", kafkaAddr, "--kafka-sasl-file", filepath.Join(users, "invoker0.sasl"),
			"--invoker-token-file", filepath.Join(p.dataDir, "invoker.token"), "--api-host", p.api,
			"--state-dir", filepath.Join(work, "invoker-state"), "--repo", repo, "--port", "0"}, backends...)}
	p.broker.start(t)
	if _, err := p.broker.waitLine("broker ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	p.controller.start(t)
	if _, err := p.controller.waitLine("OpenWhisk API ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	p.invoker.start(t)
	p.waitReady(t, p.invoker)
	return p
}

// procs are the platform's processes.
func (p *platform) procs() []*proc {
	var out []*proc
	for _, pr := range []*proc{p.standalone, p.broker, p.controller, p.invoker} {
		if pr != nil {
			out = append(out, pr)
		}
	}
	return out
}

// waitReady waits until the controller reports invoker0 up (its health test action ran).
func (p *platform) waitReady(t *testing.T, pr *proc) {
	t.Helper()
	if err := p.ready(pr, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (p *platform) ready(pr *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, b, err := get(p.client, p.api+"/invokers", [2]string{})
		if err == nil && code == http.StatusOK && bytes.Contains(b, []byte(`"up"`)) {
			return nil
		}
		if !pr.running() {
			return fmt.Errorf("%s exited before invoker0 was up; its log:\n%s", pr.name, pr.tail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("invoker0 not up within %s: %d %s %v; %s's log:\n%s", timeout, code, b, err, pr.name, pr.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// invokerPid is the process that runs invoker0 (and so owns the enclave owners).
func (p *platform) invokerPid() int {
	if p.split {
		return p.invoker.pid()
	}
	return p.standalone.pid()
}

func (p *platform) cleanup(t *testing.T) {
	keep := map[int]bool{}
	for _, pr := range p.procs() {
		if pr.running() {
			keep[pr.pid()] = true
		}
	}
	if t.Failed() {
		for _, pr := range p.procs() {
			t.Logf("last lines of the %s's log:\n%s", pr.name, pr.tail(25))
		}
	}
	// The invoker first (it drains and removes its sandboxes), then the rest.
	for _, pr := range []*proc{p.invoker, p.standalone, p.controller, p.broker} {
		if pr != nil {
			pr.stop(15 * time.Second)
		}
	}
	// Orphans re-parent to the test one generation at a time: sweep until none is left.
	for i := 0; i < 20 && sweep(map[int]bool{}) > 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if dir := os.Getenv(envLogs); dir != "" {
		p.keepLogs(t, filepath.Join(dir, filepath.Base(t.Name())))
	}
	removeContainers(t, p.work, p.runDir)
	unmountBelow(t, p.work)
	if err := syscall.Unmount(p.dataDir, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
		t.Logf("cleanup: unmount %s: %v", p.dataDir, err)
	}
	if err := os.RemoveAll(p.work); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// deploy creates the suite's action: it reports the start of every run to the test's server,
// sleeps the given milliseconds and returns its activation id. Without the report it fails, so
// a run that was not counted cannot succeed.
func (p *platform) deploy(t *testing.T, name string) {
	t.Helper()
	code := `async function main(p) {
  const id = process.env.__OW_ACTIVATION_ID;
  const r = await fetch(p.cb + '/start/' + id, { method: 'POST' });
  if (r.status !== 204) throw new Error('the start was not counted: HTTP ' + r.status);
  await new Promise((ok) => setTimeout(ok, p.ms));
  return { id };
}`
	body, err := json.Marshal(map[string]any{
		"exec":        map[string]any{"kind": "nodejs:20", "code": code},
		"limits":      map[string]any{"memory": 128, "timeout": 60000},
		"parameters":  []map[string]any{{"key": "cb", "value": "http://127.0.0.1:" + strconv.Itoa(p.cbPort)}},
		"annotations": []map[string]any{{"key": "network", "value": true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, p.api+"/api/v1/namespaces/_/actions/"+name+"?overwrite=true", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(p.key[0], p.key[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("deploy %s: %v", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body) // only for the message below
		t.Fatalf("deploy %s: HTTP %d %s", name, resp.StatusCode, b.String())
	}
}

// keepLogs copies the processes' logs to dir (TEEMATE_FAULT_LOGS).
func (p *platform) keepLogs(t *testing.T, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	for _, pr := range p.procs() {
		b, err := os.ReadFile(pr.log)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(pr.log)), b, 0o644)
		}
		if err != nil {
			t.Logf("keep logs: %v", err)
		}
	}
}

// removeContainers deletes the oci backend's runc containers below work (state roots named
// "runtime") and the cgroups of the runs whose bundles are below runDir (named
// wsk0_<run>_<n>): a killed invoker leaves both, and a cgroup is removable only once its
// processes are gone.
func removeContainers(t *testing.T, work, runDir string) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		return // no runc: the process backend made no containers
	}
	_ = filepath.WalkDir(work, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() != "runtime" {
			return nil // an unreadable corner holds no runc root
		}
		out, err := exec.Command(runc, "--root", path, "list", "-q").Output()
		if err != nil {
			t.Logf("cleanup: runc list %s: %v", path, err)
		}
		for _, id := range strings.Fields(string(out)) {
			if b, err := exec.Command(runc, "--root", path, "delete", "--force", id).CombinedOutput(); err != nil {
				t.Logf("cleanup: runc delete %s: %v %s", id, err, b)
			}
		}
		return filepath.SkipDir
	})
	bundles, _ := filepath.Glob(filepath.Join(runDir, "tm*", "o", "wsk*_*_*")) // a bad pattern is a constant's bug
	runs := map[string]bool{}
	for _, b := range bundles {
		if f := strings.Split(filepath.Base(b), "_"); len(f) == 3 {
			runs[f[0]+"_"+f[1]] = true
		}
	}
	for run := range runs {
		var left []string
		for try := 0; try < 50; try++ {
			left = nil
			for _, pattern := range []string{"/sys/fs/cgroup/*/teemate/" + run + "_*", "/sys/fs/cgroup/teemate/" + run + "_*"} {
				cgs, _ := filepath.Glob(pattern) // as above
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
}
