package cpuacct

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is the unit of /proc/<pid>/stat's times (USER_HZ, 100 on Linux for every
// architecture the platform builds for: the kernel fixes it for user space).
const clockTick = 10 * time.Millisecond

// ProcTimes are one process's CPU times from /proc/<pid>/stat.
type ProcTimes struct {
	// Self is utime + stime: the process's own threads, live and exited.
	Self time.Duration
	// Children is cutime + cstime: its children that exited and were waited for.
	Children time.Duration
}

// ParseProcStat reads utime, stime, cutime and cstime (fields 14 to 17) of a /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are counted from after
// its last ')'.
func ParseProcStat(stat []byte) (ProcTimes, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ProcTimes{}, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 15 {
		return ProcTimes{}, fmt.Errorf("proc stat: %d fields after the command name, want at least 15", len(f))
	}
	var v [4]int64
	for k := range v {
		n, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil || n < 0 {
			return ProcTimes{}, fmt.Errorf("proc stat field %d: %q", 14+k, f[11+k])
		}
		v[k] = n
	}
	return ProcTimes{Self: time.Duration(v[0]+v[1]) * clockTick, Children: time.Duration(v[2]+v[3]) * clockTick}, nil
}

// ParseCPUAcctUsage parses cgroup v1's cpuacct.usage (nanoseconds).
func ParseCPUAcctUsage(b []byte) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("cpuacct.usage: %q is not a count of nanoseconds", strings.TrimSpace(string(b)))
	}
	return time.Duration(n), nil
}

// ParseCPUStat parses usage_usec from cgroup v2's cpu.stat ("key value" lines).
func ParseCPUStat(b []byte) (time.Duration, error) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != "usage_usec" {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("cpu.stat: usage_usec %q", v)
		}
		return time.Duration(n) * time.Microsecond, nil
	}
	return 0, errors.New("cpu.stat: no usage_usec line")
}

// CgroupUsage reads the CPU a cgroup directory's processes used, its descendants' included (and
// those already removed: both versions charge every ancestor): cpuacct.usage on a v1 cpuacct
// hierarchy, cpu.stat on v2.
func CgroupUsage(dir string) (time.Duration, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage")); err == nil {
		return ParseCPUAcctUsage(b)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("cgroup cpu usage of %s: %w", dir, err)
	}
	return ParseCPUStat(b)
}

// CgroupDirs are the directories a cgroup path (e.g. /teemate/tm-1a2b3c4d-0) has under root
// (/sys/fs/cgroup) with CPU accounting, in the order they are tried: the v1 cpuacct hierarchy
// (alone or joined with cpu), then v2 (unified, or the hybrid layout's unified mount).
func CgroupDirs(root, path string) []string {
	var out []string
	for _, h := range []string{"cpuacct", "cpu,cpuacct", "", "unified"} {
		out = append(out, filepath.Join(root, h, path))
	}
	return out
}

// Config says what a Probe looks at.
type Config struct {
	// Root is the bench process (os.Getpid()): its own and its reaped children's times come from
	// getrusage, so Root must be this process.
	Root int
	// CgroupParent is the cgroup path below which the invoker puts its containers
	// ("/teemate/<runtime dir name>"); empty when the sandboxes are not containers of ours.
	CgroupParent string
	// ProcDir and CgroupRoot are /proc and /sys/fs/cgroup unless a test says otherwise.
	ProcDir, CgroupRoot string
}

// Snapshot is one reading of every counter.
type Snapshot struct {
	At time.Time
	// Self is the bench process (getrusage RUSAGE_SELF): the bench's client, and in direct mode
	// the controller, the invoker and the Kafka broker, which share the process.
	Self time.Duration
	// Reaped is the bench's children that exited and were waited for (RUSAGE_CHILDREN): the OCI
	// runtime's commands, or the process sandbox's sandboxes.
	Reaped time.Duration
	// Owner is the live enclave owners and their network helpers, with their reaped children.
	Owner time.Duration
	// OwnerPids are the processes counted in Owner.
	OwnerPids []int
	// Other is every other live descendant outside the containers (a runtime command still
	// running, a process sandbox waiting in its pool), with its reaped children.
	Other time.Duration
	// Containers is the CPU of the cgroup parent, removed containers included; ContainersOK says
	// it was read.
	Containers   time.Duration
	ContainersOK bool
	// Pooled is the CPU of each container that is created but not used (its processes are all
	// the runtime's init, or a prestarted shim, waiting): the runtime's share inside a container.
	Pooled []time.Duration
}

// Probe takes snapshots.
type Probe struct {
	cfg Config
}

// New checks the configuration.
func New(cfg Config) (*Probe, error) {
	if cfg.Root != os.Getpid() {
		return nil, fmt.Errorf("cpuacct: root %d is not this process (%d): its times come from getrusage", cfg.Root, os.Getpid())
	}
	if cfg.ProcDir == "" {
		cfg.ProcDir = "/proc"
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/sys/fs/cgroup"
	}
	return &Probe{cfg: cfg}, nil
}

// Snapshot reads every counter once.
func (p *Probe) Snapshot() (Snapshot, error) {
	s := Snapshot{At: time.Now()}
	var self, kids unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return s, fmt.Errorf("cpuacct: getrusage: %w", err)
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &kids); err != nil {
		return s, fmt.Errorf("cpuacct: getrusage children: %w", err)
	}
	s.Self = tv(self.Utime) + tv(self.Stime)
	s.Reaped = tv(kids.Utime) + tv(kids.Stime)

	inContainer := map[int]bool{}
	if dir := p.containerDir(); dir != "" {
		if u, err := CgroupUsage(dir); err == nil {
			s.Containers, s.ContainersOK = u, true
		}
		entries, err := os.ReadDir(dir)
		if err == nil {
			for _, e := range entries {
				if !e.IsDir() {
					continue
				}
				pids := readPids(filepath.Join(dir, e.Name(), "cgroup.procs"))
				pooled := len(pids) > 0
				for _, pid := range pids {
					inContainer[pid] = true
					if !runtimeInit(p.comm(pid)) {
						pooled = false
					}
				}
				if pooled {
					if u, err := CgroupUsage(filepath.Join(dir, e.Name())); err == nil {
						s.Pooled = append(s.Pooled, u)
					}
				}
			}
		}
	}

	parent, times := p.table()
	children := map[int][]int{}
	for pid, pp := range parent {
		children[pp] = append(children[pp], pid)
	}
	// Each child of the bench decides its subtree's component: an owner (and its helpers) or not.
	for _, top := range children[p.cfg.Root] {
		owner := p.isOwner(top)
		for _, pid := range subtree(children, top) {
			if inContainer[pid] {
				continue
			}
			t := times[pid]
			if owner {
				s.Owner += t.Self + t.Children
				s.OwnerPids = append(s.OwnerPids, pid)
			} else {
				s.Other += t.Self + t.Children
			}
		}
	}
	return s, nil
}

// Quick reads the counters that settle after a phase (reaped children, the containers, the owners
// of snapshot base), cheaply enough to poll: no walk of /proc.
func (p *Probe) Quick(base Snapshot) time.Duration {
	var kids unix.Rusage
	var sum time.Duration
	if unix.Getrusage(unix.RUSAGE_CHILDREN, &kids) == nil {
		sum += tv(kids.Utime) + tv(kids.Stime)
	}
	if dir := p.containerDir(); dir != "" {
		if u, err := CgroupUsage(dir); err == nil {
			sum += u
		}
	}
	for _, pid := range base.OwnerPids {
		if b, err := os.ReadFile(filepath.Join(p.cfg.ProcDir, strconv.Itoa(pid), "stat")); err == nil {
			if t, err := ParseProcStat(b); err == nil {
				sum += t.Self + t.Children
			}
		}
	}
	return sum
}

// Settle waits until the counters Quick reads stop moving (the pool refilled, the owner prepared
// its next environment) for two polls in a row, or until max has passed; it says whether they did.
func (p *Probe) Settle(base Snapshot, poll, max time.Duration, done <-chan struct{}) bool {
	deadline := time.Now().Add(max)
	last, still := p.Quick(base), 0
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return false
		case <-time.After(poll):
		}
		now := p.Quick(base)
		if now == last {
			if still++; still >= 2 {
				return true
			}
			continue
		}
		last, still = now, 0
	}
	return false
}

func (p *Probe) containerDir() string {
	if p.cfg.CgroupParent == "" {
		return ""
	}
	for _, d := range CgroupDirs(p.cfg.CgroupRoot, p.cfg.CgroupParent) {
		if _, err := CgroupUsage(d); err == nil {
			return d
		}
	}
	return ""
}

// table reads every process's parent and times.
func (p *Probe) table() (map[int]int, map[int]ProcTimes) {
	parent, times := map[int]int{}, map[int]ProcTimes{}
	entries, err := os.ReadDir(p.cfg.ProcDir)
	if err != nil {
		return parent, times
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.cfg.ProcDir, e.Name(), "stat"))
		if err != nil {
			continue // the process exited between the listing and the read
		}
		pp, ok := parsePPid(b)
		t, err := ParseProcStat(b)
		if !ok || err != nil {
			continue
		}
		parent[pid], times[pid] = pp, t
	}
	return parent, times
}

// isOwner: a warm enclave owner (Node running the enclave runtime's owner.js, directly or through
// the confinement launcher) or the owners' network helper (pasta).
func (p *Probe) isOwner(pid int) bool {
	c := p.comm(pid)
	if strings.HasPrefix(c, "passt") || strings.HasPrefix(c, "pasta") || strings.HasPrefix(c, "teemate-confin") {
		return true
	}
	b, err := os.ReadFile(filepath.Join(p.cfg.ProcDir, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("enclave-runtime/trusted/owner.js"))
}

func (p *Probe) comm(pid int) string {
	b, err := os.ReadFile(filepath.Join(p.cfg.ProcDir, strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// runtimeInit says a container's process is still the sandbox's creation: the OCI runtime's
// init in a created container, before its process is started (runc names it "runc:[2:INIT]";
// crun's and the launcher's keep their binary's name), or a prestarted shim waiting for its use
// (it names itself so until then; oci doc.go, "Prestarted containers"), whose own start is then
// counted with the creation.
func runtimeInit(comm string) bool {
	return strings.HasPrefix(comm, "runc") || strings.HasPrefix(comm, "crun") || strings.HasPrefix(comm, "teemate-launch") ||
		comm == "teemate-waiting"
}

func subtree(children map[int][]int, top int) []int {
	out := []int{top}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

func parsePPid(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

func readPids(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func tv(t unix.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

// Split is the CPU per activation (ms) of a phase, by component.
type Split struct {
	// Platform is the bench process: its client, and in direct mode the controller, the invoker
	// and the Kafka broker (one Go process: per-component time inside it is not accounted).
	Platform float64
	// Owner is the warm enclave owners and their network helper.
	Owner float64
	// SandboxRuntime is what makes and removes the sandboxes: the runtime's commands (runc
	// create and delete), and its init inside each container until the container is started.
	SandboxRuntime float64
	// InSandbox is what runs in the sandbox once started: the start stub and the shim, the native
	// model's Node proxy, the strawman's own runtime.
	InSandbox float64
	// RuntimeInContainer is the runtime's init inside one container (part of SandboxRuntime),
	// the mean over the created containers seen waiting in the pool; Pooled is how many.
	RuntimeInContainer float64
	Pooled             int
	// ContainersRead says the containers' cgroup was read at both ends.
	ContainersRead bool
}

// Between splits the CPU spent from a to b over n activations. containers says the sandboxes are
// containers below the cgroup parent (oci): the bench's reaped children and other live descendants
// are then the runtime's commands; otherwise (the process sandbox) they are the sandboxes.
// Containers created during the phase stand for its activations (one fresh container each, and a
// pool full again at both ends), so the runtime's share inside the containers is n times the
// mean of the waiting ones. runc's bootstrap stages of its init are charged to the container's
// cgroup once placed there and are also reaped through runc create, so that part of their CPU is
// in SandboxRuntime twice (the runtime's share only; InSandbox is not affected).
func Between(a, b Snapshot, n int, containers bool) Split {
	if n < 1 {
		return Split{}
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }
	s := Split{Platform: per(b.Self - a.Self), Owner: per(b.Owner - a.Owner)}
	outside := per(b.Reaped + b.Other - a.Reaped - a.Other)
	if !containers {
		s.InSandbox = max(outside, 0)
		return s
	}
	s.SandboxRuntime = outside
	if a.ContainersOK && b.ContainersOK {
		s.ContainersRead = true
		var sum time.Duration
		for _, u := range append(append([]time.Duration(nil), a.Pooled...), b.Pooled...) {
			sum += u
			s.Pooled++
		}
		inside := per(b.Containers - a.Containers)
		if s.Pooled > 0 {
			s.RuntimeInContainer = min(float64(sum)/float64(time.Millisecond)/float64(s.Pooled), inside)
		}
		s.SandboxRuntime += s.RuntimeInContainer
		s.InSandbox = inside - s.RuntimeInContainer
	}
	s.Owner, s.SandboxRuntime = max(s.Owner, 0), max(s.SandboxRuntime, 0)
	return s
}

// Total is the sum of the components.
func (s Split) Total() float64 { return s.Platform + s.Owner + s.SandboxRuntime + s.InSandbox }
