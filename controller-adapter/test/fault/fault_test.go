package fault

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

// Environment of the suite:
//
//	TEEMATE_FAULT_LONG=1        the long version (more load, longer windows); `make fault-test`
//	TEEMATE_FAULT_WRITE=1       rewrite docs/faults.md and docs/faults.json (every scenario must run)
//	TEEMATE_FAULT_ASSERT=spec   which scenarios' guarantees fail the test (see Asserted)
//	TEEMATE_FAULT_CLOCK_JUMP=d  how far the clock-jump scenario steps the clock (long default 2m;
//	                            short default 0: skipped; see clockJump)
//	TEEMATE_FAULT_COMMAND=s     the command named in docs/faults.md
//	TEEMATE_FAULT_LOGS=dir      keep every scenario's process logs in dir/<scenario>/
//	TEEMATE_FAULT_SANDBOX=name  the invoker's sandbox backend: process (default) or oci
const (
	envSandbox = "TEEMATE_FAULT_SANDBOX"
	envLogs    = "TEEMATE_FAULT_LOGS"
	envLong    = "TEEMATE_FAULT_LONG"
	envWrite   = "TEEMATE_FAULT_WRITE"
	envAssert  = "TEEMATE_FAULT_ASSERT"
	envJump    = "TEEMATE_FAULT_CLOCK_JUMP"
	envCmd     = "TEEMATE_FAULT_COMMAND"
)

// assertedByDefault are the scenarios whose guarantees fail the test when broken: all of them, now
// that issue #17's fixes landed. TEEMATE_FAULT_ASSERT narrows or widens the set ("none" measures
// only).
var assertedByDefault = map[string]bool{
	"invoker-kill": true, "controller-kill": true, "owner-kill": true, "standalone-kill": true,
	"standalone-sigterm": true, "broker-restart": true, "disk-full": true, "clock-jump": true,
}

// profile is how hard a run pushes.
type profile struct {
	workers      int
	runMs        int
	pause        time.Duration
	before       time.Duration // load before the fault
	after        time.Duration // load after the fault (the fault's hold included)
	hold         time.Duration // how long a held fault (broker down, disk full, clock off) lasts
	window       time.Duration // how long records may take to become readable after the load
	recovery     time.Duration // how long the load goes on after the fault waiting for a success
	clientTimout time.Duration
	jump         time.Duration // how far the clock jumps (0: not at all)
}

var (
	short = profile{workers: 4, runMs: 500, pause: 100 * time.Millisecond, before: 2 * time.Second,
		after: 6 * time.Second, hold: 3 * time.Second, window: 15 * time.Second, recovery: time.Minute, clientTimout: 20 * time.Second}
	long = profile{workers: 8, runMs: 1000, pause: 50 * time.Millisecond, before: 10 * time.Second,
		after: 30 * time.Second, hold: 10 * time.Second, window: 60 * time.Second, recovery: 2 * time.Minute, clientTimout: 75 * time.Second}
)

// injected is what a fault did: when, what the harness did, and what the faulted instance ran
// and mounted (to find what it left behind).
type injected struct {
	at     time.Time
	notes  []string
	procs  []task
	mounts map[string]string
}

type scenario struct {
	name, fault string
	split       bool
	dataSize    string
	guarantee   Guarantee
	inject      func(t *testing.T, p *platform, pr profile) injected
}

func scenarios() []scenario {
	return []scenario{
		{name: "invoker-kill", fault: "invoker SIGKILL", split: true, guarantee: Guarantee{Rerun: true},
			inject: func(t *testing.T, p *platform, _ profile) injected { return killRestart(t, p, p.invoker, 0) }},
		// The controller-adapter stays down for the hold: what the invoker finishes meanwhile
		// has nowhere to store its record.
		{name: "controller-kill", fault: "controller-adapter SIGKILL", split: true,
			inject: func(t *testing.T, p *platform, pr profile) injected { return killRestart(t, p, p.controller, pr.hold) }},
		{name: "owner-kill", fault: "enclave owner SIGKILL", inject: killOwner},
		{name: "standalone-kill", fault: "standalone SIGKILL", guarantee: Guarantee{Rerun: true},
			inject: func(t *testing.T, p *platform, _ profile) injected { return killRestart(t, p, p.standalone, 0) }},
		{name: "standalone-sigterm", fault: "standalone SIGTERM", guarantee: Guarantee{NoBroken: true}, inject: termRestart},
		{name: "broker-restart", fault: "broker restart", split: true, inject: restartBroker},
		{name: "disk-full", fault: "data directory full", dataSize: "128m", inject: fillDisk},
		{name: "clock-jump", fault: "clock jump", inject: jumpClock},
	}
}

// TestFaults runs every scenario on a fresh platform and reports the table; the guarantees of
// the asserted scenarios fail the test when broken.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the platform once per scenario and kills parts of it")
	}
	repo := testtool.Root(t)
	if os.Geteuid() != 0 {
		testtool.Missing(t, "the fault suite needs root (confined owners, tmpfs, the clock)")
	}
	testtool.Require(t, "node", "pasta")
	for _, b := range []string{"controller-adapter", "invoker", "teemate-shim", "teemate-confine"} {
		if _, err := os.Stat(filepath.Join(repo, "bin", b)); err != nil {
			testtool.Missing(t, "bin/"+b+" is missing (make build)")
		}
	}
	sandbox := os.Getenv(envSandbox)
	switch sandbox {
	case "", "process":
		sandbox = "process"
	case "oci":
		// The oci sandbox runs on its default runtime, the launcher (make build).
		if _, err := os.Stat(filepath.Join(repo, "bin", "teemate-launch")); err != nil {
			testtool.Missing(t, "bin/teemate-launch, the oci sandbox's runtime, is not built (make build)")
		}
		if _, err := os.Stat(filepath.Join(repo, ".state", "images", "teemate", "image.json")); err != nil {
			testtool.Missing(t, "the oci sandbox needs the function images (make images)")
		}
	default:
		t.Fatalf("%s=%q: want process or oci", envSandbox, sandbox)
	}
	pr, isLong := short, os.Getenv(envLong) == "1"
	if isLong {
		pr = long
	}
	var err error
	if pr.jump, err = clockJump(isLong); err != nil {
		t.Fatal(err)
	}
	// The commit under test, read before the suite runs for minutes.
	tested := commit(repo)
	all := scenarios()
	var names []string
	for _, s := range all {
		names = append(names, s.name)
	}
	asserted, err := Asserted(os.Getenv(envAssert), names, assertedByDefault)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := newStarts()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cb.srv.Close() }) // the listener only; nothing is buffered

	var results []Result
	for _, s := range all {
		t.Run(s.name, func(t *testing.T) {
			r := runScenario(t, repo, cb, s, pr, sandbox)
			r.Asserted = asserted[s.name]
			t.Log(summary(r))
			for _, v := range r.Violations {
				if r.Asserted {
					t.Errorf("guarantee broken: %s", v)
				} else {
					t.Logf("guarantee broken (not asserted; %s=%s asserts it): %s", envAssert, s.name, v)
				}
			}
			results = append(results, r)
		})
	}
	meta := Meta{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Commit: tested, Command: os.Getenv(envCmd),
		Setup: fmt.Sprintf("Per scenario a fresh platform (sandbox %s, enclave direct, model teemate; %d cores) and %d callers, "+
			"each alternating blocking and non-blocking invocations of an action that runs %d ms, pausing %s between calls; "+
			"load for %s before the fault and %s after it, and on until a call succeeds; held faults last %s; a caller waits %s for an answer; "+
			"records may take %s after the load to become readable.",
			sandbox, runtime.NumCPU(), pr.workers, pr.runMs, pr.pause, pr.before, pr.after, pr.hold, pr.clientTimout, pr.window)}
	if meta.Command == "" {
		meta.Command = "go test ./controller-adapter/test/fault"
	}
	t.Logf("fault table:\n%s", Markdown(meta, results))
	if os.Getenv(envWrite) != "1" {
		return
	}
	if len(results) != len(all) {
		t.Fatalf("%s=1 needs every scenario; %d of %d ran", envWrite, len(results), len(all))
	}
	js, err := JSON(meta, results)
	if err != nil {
		t.Fatal(err)
	}
	docs := filepath.Join(repo, "docs")
	if err := os.MkdirAll(docs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"faults.md": []byte(Markdown(meta, results)), "faults.json": js} {
		if err := os.WriteFile(filepath.Join(docs, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote docs/faults.md and docs/faults.json")
}

// runScenario: a fresh platform, a warm enclave, load, the fault, more load, then the count.
func runScenario(t *testing.T, repo string, cb *starts, s scenario, pr profile, sandbox string) Result {
	if s.name == "clock-jump" && pr.jump == 0 {
		t.Skipf("steps the machine's clock, which other tests running meanwhile see too: %s=2m runs it (make fault-test does)", envJump)
	}
	deployment := "standalone"
	if s.split {
		deployment = "split"
	}
	r := Result{Scenario: s.name, Fault: s.fault, Deployment: deployment}
	p := newPlatform(t, repo, cb.port, options{split: s.split, dataSize: s.dataSize, sandbox: sandbox})
	const action = "counted"
	p.deploy(t, action)
	warm := newLoad(p, action, 10, 0, time.Minute)
	for deadline := time.Now().Add(time.Minute); ; {
		c := warm.invoke(true)
		if c.class == classOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: the action does not succeed: %s %s", c.class, c.status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	l := startLoad(p, action, pr.workers, pr.runMs, pr.pause, pr.clientTimout)
	time.Sleep(pr.before)
	f := s.inject(t, p, pr)
	cleared := l.markCleared()
	// The load goes on for pr.after, and longer until a call sent after the fault was undone
	// succeeds.
	select {
	case <-l.recovered:
	case <-time.After(pr.recovery):
		r.Notes = append(r.Notes, fmt.Sprintf("no success within %s of the fault being undone", pr.recovery))
	}
	if rest := pr.after - time.Since(f.at); rest > 0 {
		time.Sleep(rest)
	}
	calls := l.stop()
	missing := l.resolve(calls, pr.window)
	// Runs that a restart starts again may come a little after the records: wait for them.
	time.Sleep(2 * time.Second)
	count(&r, calls, missing, cb, f.at, cleared)
	r.Notes = append(f.notes, r.Notes...)
	for _, tk := range f.procs {
		if alive(tk) {
			r.LeftBehind++
			t.Logf("left behind: pid %d %s", tk.pid, cmdline(tk.pid))
		}
	}
	now := mountsBelow(p.work)
	for id, path := range f.mounts {
		if now[id] == path {
			r.LeftBehind++
			t.Logf("left behind: mount %s", path)
		}
	}
	for _, pr := range p.procs() {
		if !pr.running() {
			r.Notes = append(r.Notes, pr.name+" was not running at the end")
		}
	}
	r.Violations = r.Check(s.guarantee)
	return r
}

// snapshot is what pr runs and what is mounted below the platform's directory now.
func snapshot(p *platform, pid int) injected {
	return injected{procs: descendants(pid), mounts: mountsBelow(p.work)}
}

// killRestart: SIGKILL, and the same command started again after down.
func killRestart(t *testing.T, p *platform, pr *proc, down time.Duration) injected {
	f := snapshot(p, pr.pid())
	f.at = time.Now()
	if !pr.signal(syscall.SIGKILL, 10*time.Second) {
		t.Fatalf("%s did not die of SIGKILL", pr.name)
	}
	time.Sleep(down)
	pr.start(t)
	if down == 0 {
		f.notes = append(f.notes, pr.name+" restarted at once")
	} else {
		f.notes = append(f.notes, fmt.Sprintf("%s restarted after %s", pr.name, down))
	}
	return f
}

// killOwner: SIGKILL to every enclave owner of the invoker (the processes running owner.js);
// the invoker itself starts a new one.
func killOwner(t *testing.T, p *platform, _ profile) injected {
	var owners []task
	for _, tk := range descendants(p.invokerPid()) {
		if strings.Contains(cmdline(tk.pid), "owner.js") {
			owners = append(owners, tk)
		}
	}
	if len(owners) == 0 {
		t.Fatal("no enclave owner (owner.js) below the invoker after the warm-up")
	}
	f := injected{at: time.Now(), mounts: map[string]string{}}
	for _, o := range owners {
		f.procs = append(f.procs, descendants(o.pid)...)
		if err := syscall.Kill(o.pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill owner %d: %v", o.pid, err)
		}
	}
	f.notes = append(f.notes, fmt.Sprintf("%d owner killed; the invoker starts a new one", len(owners)))
	return f
}

// termRestart: SIGTERM, wait for the exit (a graceful shutdown), start again.
func termRestart(t *testing.T, p *platform, _ profile) injected {
	pr := p.standalone
	f := snapshot(p, pr.pid())
	f.at = time.Now()
	if !pr.signal(syscall.SIGTERM, time.Minute) {
		t.Logf("the standalone did not exit within a minute of SIGTERM; killing it")
		pr.signal(syscall.SIGKILL, 10*time.Second)
		f.notes = append(f.notes, "did not exit within 60 s of SIGTERM (killed)")
	} else {
		f.notes = append(f.notes, fmt.Sprintf("exited %.1f s after SIGTERM, restarted at once", time.Since(f.at).Seconds()))
	}
	pr.start(t)
	return f
}

// restartBroker: SIGTERM to the broker (a clean stop: kfake keeps its data only across a clean
// close), down for the hold, started again on the same port and data.
func restartBroker(t *testing.T, p *platform, pr profile) injected {
	f := injected{at: time.Now()}
	if !p.broker.signal(syscall.SIGTERM, 30*time.Second) {
		t.Fatal("the broker did not stop within 30 s of SIGTERM")
	}
	time.Sleep(pr.hold)
	p.broker.start(t)
	if _, err := p.broker.waitLine("broker ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	f.notes = append(f.notes, fmt.Sprintf("broker down for %.1f s", time.Since(f.at).Seconds()))
	return f
}

// fillDisk fills the data directory's tmpfs with a file until the writes fail, keeps it full for
// the hold, and deletes the file.
func fillDisk(t *testing.T, p *platform, pr profile) injected {
	f := injected{at: time.Now()}
	path := filepath.Join(p.dataDir, "filler")
	fill, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(path) }) // gone already unless the test failed midway
	chunk := make([]byte, 1<<20)
	var n int64
	for {
		w, err := fill.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("fill the data directory: %v", err)
		}
	}
	if err := fill.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill the data directory: %v", err)
	}
	time.Sleep(pr.hold)
	if err := os.Remove(path); err != nil {
		t.Fatalf("free the data directory: %v", err)
	}
	f.notes = append(f.notes, fmt.Sprintf("data directory (tmpfs 128 MiB) full for %.1f s (filler %d MiB)", time.Since(f.at).Seconds(), n>>20))
	return f
}

// clockJump is TEEMATE_FAULT_CLOCK_JUMP. Unset, the long version steps 2 minutes and the short
// one none: `make test` runs the short version next to every other package's tests, which would
// see the machine's clock step too.
func clockJump(long bool) (time.Duration, error) {
	v := os.Getenv(envJump)
	switch {
	case v == "" && long:
		return 2 * time.Minute, nil
	case v == "":
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 2m, or 0", envJump, v)
	}
	return d, nil
}

// jumpClock steps the machine's wall clock forward by TEEMATE_FAULT_CLOCK_JUMP and, after the
// hold, back to the true time (so both a forward and a backward jump happen). Nothing else than
// the real clock is seen by the static Go binaries (they read the vDSO, so no LD_PRELOAD
// faketime) and a time namespace moves only the monotonic clocks. The step is small by default
// (the platform's stale age is 10 minutes) because the machine's other processes see it too;
// the true time is computed from the monotonic clock, which the step does not move, and is
// restored even when the test fails midway.
func jumpClock(t *testing.T, _ *platform, pr profile) injected {
	jump := pr.jump
	t0 := time.Now() // carries a monotonic reading
	var once sync.Once
	restore := func() {
		once.Do(func() {
			tv := syscall.NsecToTimeval(t0.Add(time.Since(t0)).UnixNano())
			if err := syscall.Settimeofday(&tv); err != nil {
				t.Errorf("restore the clock: %v (it is %s off)", err, jump)
			}
		})
	}
	t.Cleanup(restore)
	tv := syscall.NsecToTimeval(t0.Add(jump).UnixNano())
	if err := syscall.Settimeofday(&tv); err != nil {
		t.Fatalf("step the clock: %v", err)
	}
	f := injected{at: t0}
	time.Sleep(pr.hold)
	restore()
	f.notes = append(f.notes, fmt.Sprintf("wall clock stepped %s forward for %.1f s, then back", jump, time.Since(t0).Seconds()))
	return f
}

// commit names the checked-out commit, marked when the tree has changes outside the files the
// suite writes.
func commit(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--", ".", ":!docs/faults.md", ":!docs/faults.json").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " with local changes"
	}
	return c
}
