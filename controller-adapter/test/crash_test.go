package test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/controller-adapter/internal/app"
	"github.com/teemate/platform/internal/testtool"
)

// TestCrashLeavesNothing is issue #17 item 2 end to end: the standalone platform (a separate OS
// process, bin/controller-adapter --standalone, on the machine's own PID and mount namespaces as an
// operator runs it) is killed with SIGKILL while it runs concurrent activations, then started
// again on the same data directory. After the restart, nothing of the killed instance may remain:
// no process (its descendants, its containers' processes: pid and start time), no runc container,
// no mount below its runtime directory and no cgroup of its containers; and the restarted platform
// serves. A clean stop (SIGTERM) afterwards must leave nothing either. Both sandbox backends
// that keep state on the host run: oci (on its default runtime, teemate-launch, whose
// containers' inits are the platform's children and in its containers' cgroups; runc's
// containers are listed too when it runs them) and process. The figures (what the kill left, what
// the restart removed) go to the test log.
func TestCrashLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Missing(t, "the platform's sandboxes need root (runc, mounts, cgroups)")
	}
	testtool.Require(t, "node", "go")
	repo := testtool.Root(t)
	for _, f := range []string{"bin/teemate-shim", "bin/teemate-start", "bin/teemate-confine"} {
		if !exists(filepath.Join(repo, f)) {
			testtool.Missing(t, f+" is not built (make build)")
		}
	}
	for _, sb := range []string{"oci", "process"} {
		t.Run(sb, func(t *testing.T) {
			if sb == "oci" {
				if !exists(filepath.Join(repo, "bin", "teemate-launch")) {
					testtool.Missing(t, "bin/teemate-launch, the oci sandbox's runtime, is not built (make build)")
				}
				if !exists(filepath.Join(repo, ".state", "images", "teemate", "image.json")) {
					testtool.Missing(t, "the function images are not built (make images)")
				}
			}
			crashAndRestart(t, repo, sb)
		})
	}
}

// crashAndRestart runs the scenario on one sandbox backend.
func crashAndRestart(t *testing.T, repo, sandbox string) {
	work, err := os.MkdirTemp("", "crash-")
	if err != nil {
		t.Fatal(err)
	}
	c := &crashRun{t: t, repo: repo, sandbox: sandbox, work: work, dataDir: filepath.Join(work, "d"), tmp: filepath.Join(work, "t")}
	if err := os.Mkdir(c.tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cleanup)
	c.bin = filepath.Join(work, "controller-adapter")
	build := exec.Command("go", "build", "-o", c.bin, "./controller-adapter/cmd/controller-adapter")
	build.Dir, build.Env = repo, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build controller-adapter: %v\n%s", err, out)
	}
	k, err := app.AddNamespace(context.Background(), c.dataDir, "crash")
	if err != nil {
		t.Fatal(err)
	}
	u, s, _ := strings.Cut(k, ":")
	key := [2]string{u, s}

	first := c.start("first")
	first.deploy(t, key, "sleeper", `function main(p) { return new Promise(r => setTimeout(() => r({ok: true, i: p.i}), p.ms)); }`,
		128, 60000, nil, false)
	if a, err := first.invoke(key, "sleeper", map[string]any{"ms": 10, "i": -1}); err != nil || a.Response.Status != "success" {
		t.Fatalf("the first instance does not serve: %+v %v", a, err)
	}

	// Load: concurrent blocking activations, each running 10 s; the kill comes while they run.
	const load = 16
	var wg sync.WaitGroup
	answers := make(chan string, load)
	for i := range load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The platform dies under most of them: an answer before that is only reported.
			code, b, err := first.do(http.MethodPost, "/api/v1/namespaces/_/actions/sleeper?blocking=true", key,
				[]byte(fmt.Sprintf(`{"ms": 10000, "i": %d}`, i)))
			if err == nil {
				answers <- fmt.Sprintf("%d %s", code, truncate(b, 200))
			}
		}()
	}
	c.runtime = c.findRuntimeDir()
	old := c.waitRunning(load / 4)
	t.Logf("%s: before the kill: %s", sandbox, old)
	for _, p := range old.procs {
		t.Logf("  %d %s", p.pid, p.cmd)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	first.client.CloseIdleConnections()
	wg.Wait()
	close(answers)
	for a := range answers {
		t.Logf("answered before the kill: %s", a)
	}
	time.Sleep(500 * time.Millisecond) // what dies with the platform (Pdeathsig) has died
	left := old.alive()
	t.Logf("%s: left by the SIGKILL: %s", sandbox, left)
	for _, p := range left.procs {
		t.Logf("  left by the kill: %d %s", p.pid, p.cmd)
	}
	recs, _ := filepath.Glob(filepath.Join(c.runtime, "p", "*.pid")) // valid pattern
	for _, r := range recs {
		b, _ := os.ReadFile(r) // gone meanwhile: empty
		t.Logf("  record %s: %s", filepath.Base(r), strings.TrimSpace(string(b)))
	}
	c.old = old

	second := c.start("second")
	if rt := c.findRuntimeDir(); rt != c.runtime {
		t.Fatalf("the restarted instance uses runtime dir %s, the first used %s", rt, c.runtime)
	}
	after := old.alive()
	t.Logf("%s: left of the killed instance after the restart: %s", sandbox, after)
	if !after.empty() {
		t.Errorf("%s: the restart left the killed instance's %s", sandbox, after)
		for _, p := range after.procs {
			t.Logf("  left: %d %s", p.pid, p.cmd)
		}
	}
	if m := c.foreignMounts(); len(m) > 0 {
		t.Errorf("%s: mounts below the runtime dir that no container of the restarted instance has: %v", sandbox, m)
	}
	if line := second.logLine("removed what an earlier instance of this invoker left"); line == "" {
		t.Errorf("%s: the restarted invoker did not log what it removed", sandbox)
	} else {
		t.Logf("%s: the restart logged: %s", sandbox, line)
	}
	a, err := second.invoke(key, "sleeper", map[string]any{"ms": 10, "i": 1})
	if err != nil || a.Response.Status != "success" {
		t.Fatalf("the restarted platform does not serve: %+v %v", a, err)
	}

	// A clean stop leaves nothing of the second instance either.
	now := c.snapshot(second)
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.exited:
	case <-time.After(90 * time.Second):
		t.Fatal("the platform did not stop within 90 s of SIGTERM")
	}
	time.Sleep(200 * time.Millisecond)
	if left := now.alive(); !left.empty() {
		t.Errorf("%s: a clean stop left %s", sandbox, left)
	}
	if exists(c.runtime) {
		t.Errorf("%s: a clean stop left the runtime dir %s", sandbox, c.runtime)
	}
}

// crashRun is one scenario's platform, directories and what the killed instance had.
type crashRun struct {
	t                                      *testing.T
	repo, sandbox, work, dataDir, tmp, bin string
	runtime                                string // the invoker's runtime directory
	instances                              []*crashInstance
	old                                    *footprint
}

// crashInstance is one start of the platform.
type crashInstance struct {
	platform
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

func (i *crashInstance) logLine(substr string) string {
	b, err := os.ReadFile(i.log)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

var crashReady = regexp.MustCompile(`^OpenWhisk API ready at (http://127\.0\.0\.1:\d+) `)

// start starts the platform and waits until its invoker is healthy.
func (c *crashRun) start(name string) *crashInstance {
	t := c.t
	t.Helper()
	i := &crashInstance{platform: platform{client: &http.Client{Timeout: 2 * time.Minute}}, exited: make(chan struct{}),
		log: filepath.Join(c.work, name+".log")}
	logf, err := os.Create(i.log)
	if err != nil {
		t.Fatal(err)
	}
	i.cmd = exec.Command(c.bin, "--standalone", "--port", "0", "--embedded-kafka-addr", "127.0.0.1:0", "--data-dir", c.dataDir,
		"--sandbox", c.sandbox, "--enclave", "direct", "--model", "teemate", "--repo-dir", c.repo)
	i.cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS=", "TMPDIR="+c.tmp)
	i.cmd.Stderr = logf
	// Were this test to die, the platform goes with it (what it leaves is what the test is about).
	i.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := i.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := i.cmd.Start(); err != nil {
		t.Fatalf("start the platform: %v", err)
	}
	c.instances = append(c.instances, i)
	go func() {
		// Wait's error is the SIGKILL or the exit status; the test looks at what is left instead.
		_ = i.cmd.Wait()
		_ = logf.Close() // written by the platform only; nothing left to flush
		close(i.exited)
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := crashReady.FindStringSubmatch(line); m != nil {
				i.apiHost = m[1]
			}
			if strings.HasPrefix(line, "invoker0 runs in this process: ") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-i.exited:
		t.Fatalf("the platform (%s) exited before it was ready: %s", name, tail(i.log))
	case <-time.After(2 * time.Minute):
		t.Fatalf("the platform (%s) was not ready within 2 minutes: %s", name, tail(i.log))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, b, err := i.do(http.MethodGet, "/invokers", [2]string{}, nil)
		if err == nil && code == http.StatusOK && bytes.Contains(b, []byte(`"up"`)) {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("invoker0 (%s) not healthy within 2 minutes: %d %s %v", name, code, b, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// findRuntimeDir is the invoker's runtime directory: the one tm-* directory in the platform's
// TMPDIR.
func (c *crashRun) findRuntimeDir() string {
	c.t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(c.tmp, "tm-*-0")) // the pattern is valid
	if len(dirs) != 1 {
		c.t.Fatalf("runtime dirs in %s: %v, want one", c.tmp, dirs)
	}
	return dirs[0]
}

// waitRunning waits until at least n activations run (n sandboxes beyond the pool), then returns
// the first instance's footprint.
func (c *crashRun) waitRunning(n int) *footprint {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := c.snapshot(c.instances[len(c.instances)-1])
		if f.sandboxes >= n || time.Now().After(deadline) {
			if f.sandboxes < n {
				c.t.Logf("only %d sandboxes ran when the kill came", f.sandboxes)
			}
			return f
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// footprint is what one instance has on the host.
type footprint struct {
	procs      []proc
	containers []string // runc container ids
	mounts     []string // below the runtime dir
	cgroups    []string // container cgroup directories
	sandboxes  int      // running activation sandboxes (started containers, or shims)
	runtime    string
	runcRoot   string
}

func (f *footprint) String() string {
	return fmt.Sprintf("%d processes, %d runc containers, %d mounts, %d cgroups", len(f.procs), len(f.containers), len(f.mounts), len(f.cgroups))
}

func (f *footprint) empty() bool {
	return len(f.procs)+len(f.containers)+len(f.mounts)+len(f.cgroups) == 0
}

// snapshot takes an instance's footprint: its descendants, the processes in its containers'
// cgroups, its runc containers, the mounts below the runtime dir and the containers' cgroups.
func (c *crashRun) snapshot(i *crashInstance) *footprint {
	f := &footprint{runtime: c.runtime, runcRoot: filepath.Join(c.runtime, "o", "runtime")}
	seen := map[int]bool{}
	add := func(pid int) {
		if seen[pid] || pid == i.cmd.Process.Pid {
			return
		}
		if p, ok := readProc(pid); ok {
			seen[pid] = true
			f.procs = append(f.procs, p)
		}
	}
	// Descendants (children lists, transitively).
	queue := []int{i.cmd.Process.Pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, ch := range allChildren(p) {
			if !seen[ch] {
				add(ch)
				queue = append(queue, ch)
			}
		}
	}
	f.containers = runcList(f.runcRoot)
	f.cgroups = containerCgroups(filepath.Base(c.runtime))
	for _, cg := range f.cgroups {
		b, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs")) // gone meanwhile: no processes
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				add(pid)
			}
		}
	}
	f.mounts = instanceMounts(c.runtime)
	for _, p := range f.procs {
		if strings.Contains(p.cmd, "teemate-shim") {
			f.sandboxes++
		}
	}
	return f
}

// alive is what of f still exists.
func (f *footprint) alive() *footprint {
	out := &footprint{runtime: f.runtime, runcRoot: f.runcRoot}
	for _, p := range f.procs {
		if p.alive() {
			out.procs = append(out.procs, p)
		}
	}
	now := runcList(f.runcRoot)
	for _, id := range f.containers {
		if contains(now, id) {
			out.containers = append(out.containers, id)
		}
	}
	mounts := instanceMounts(f.runtime)
	for _, m := range f.mounts {
		if contains(mounts, m) {
			out.mounts = append(out.mounts, m)
		}
	}
	for _, cg := range f.cgroups {
		if exists(cg) {
			out.cgroups = append(out.cgroups, cg)
		}
	}
	return out
}

// foreignMounts are the mounts below the runtime dir that are not a container's of the restarted
// instance: the only mounts the platform makes there are its containers' slots (and per-use mounts
// below them), in bundles named by container id, wsk0_<run>_<n>, whose run differs per start.
func (c *crashRun) foreignMounts() []string {
	oldRuns := map[string]bool{}
	for _, id := range c.old.containers {
		oldRuns[runOf(id)] = true
	}
	var out []string
	for _, m := range instanceMounts(c.runtime) {
		rel, _ := filepath.Rel(filepath.Join(c.runtime, "o"), m)
		id, _, _ := strings.Cut(rel, "/")
		if !strings.HasPrefix(rel, "..") && runOf(id) != "" && !oldRuns[runOf(id)] {
			continue
		}
		out = append(out, m)
	}
	return out
}

// runOf is the run of a container id wsk0_<run>_<n>, or "".
func runOf(id string) string {
	f := strings.Split(id, "_")
	if len(f) != 3 {
		return ""
	}
	return f[1]
}

// cleanup removes whatever is left, also when the test failed: the platforms (SIGKILL), the
// processes of the killed instance (by pid and start time), runc's containers, mounts below the
// work dir, the runtime dir's cgroups, and the work dir.
func (c *crashRun) cleanup() {
	for _, i := range c.instances {
		select {
		case <-i.exited:
		default:
			_ = i.cmd.Process.Kill() // ours; gone already is fine
			<-i.exited
		}
	}
	if c.old != nil {
		for _, p := range c.old.alive().procs {
			_ = syscall.Kill(p.pid, syscall.SIGKILL) // checked by start time just above
		}
	}
	if c.runtime != "" {
		root := filepath.Join(c.runtime, "o", "runtime")
		for _, id := range runcList(root) {
			if b, err := exec.Command("runc", "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
				c.t.Logf("cleanup: runc delete %s: %v %s", id, err, b)
			}
		}
		for try := 0; try < 50; try++ {
			cgs := containerCgroups(filepath.Base(c.runtime))
			sort.Sort(sort.Reverse(sort.StringSlice(cgs)))
			parents, _ := filepath.Glob("/sys/fs/cgroup/*/teemate/" + filepath.Base(c.runtime)) // valid pattern
			var left []error
			for _, cg := range append(cgs, parents...) {
				if err := os.Remove(cg); err != nil && !errors.Is(err, os.ErrNotExist) {
					left = append(left, err)
				}
			}
			if len(left) == 0 {
				break
			}
			if try == 49 {
				c.t.Logf("cleanup: cgroups: %v", left)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	mounts := mountsBelow(c.work)
	sort.Sort(sort.Reverse(sort.StringSlice(mounts))) // deepest first
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			c.t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	if left := mountsBelow(c.work); len(left) > 0 {
		c.t.Logf("cleanup: %s not removed, still mounted below it: %v", c.work, left)
		return
	}
	if err := os.RemoveAll(c.work); err != nil {
		c.t.Logf("cleanup: %v", err)
	}
}

// allChildren lists the children of every thread of pid.
func allChildren(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)) // gone: no children
	var out []int
	for _, tk := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func runcList(root string) []string {
	if !exists(root) || !onPath("runc") {
		return nil
	}
	out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// containerCgroups are the cgroup directories below the runtime dir's cgroup parent, in every
// hierarchy.
func containerCgroups(runtimeName string) []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/teemate/" + runtimeName + "/*", "/sys/fs/cgroup/teemate/" + runtimeName + "/*"} {
		m, _ := filepath.Glob(pattern) // valid patterns
		for _, d := range m {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				out = append(out, d)
			}
		}
	}
	return out
}

// instanceMounts are the mounts below an invoker's runtime directory but for the directory's own
// tmpfs mounts (o/ and s/), which a restarted invoker keeps or makes again: the containers' and
// their per-use mounts.
func instanceMounts(runtime string) []string {
	var out []string
	for _, m := range mountsBelow(runtime) {
		if m != filepath.Join(runtime, "o") && m != filepath.Join(runtime, "s") {
			out = append(out, m)
		}
	}
	return out
}

func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
