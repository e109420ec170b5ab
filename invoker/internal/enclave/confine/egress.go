package confine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/teemate/platform/invoker/internal/reap"
)

// ErrNoPasta: pasta is not installed (or disabled); the owner has no egress.
var ErrNoPasta = errors.New("pasta not available: the owner has no network egress")

// Egress is a running pasta attached to one owner's network namespace.
type Egress struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *tailBuffer

	once    sync.Once
	stopErr error
}

// PastaArgs is pasta's command line (0.0~git20230309) for the namespace at nsFile: run in
// the foreground (it is the invoker's child), configure the namespace's interface from the host's,
// never map the gateway to the host's loopback, no inbound forwards at all, no UDP forwards, and
// TCP forwards from the namespace's loopback to the host's only for the allow-listed loopback
// ports. It keeps root (--runas 0) because this version drops to nobody before joining the
// namespace, which then fails; it drops every capability but CAP_SYS_ADMIN and
// CAP_NET_BIND_SERVICE and sandboxes itself (own namespaces, seccomp) either way.
func PastaArgs(nsFile string, allow []HostPort) []string {
	var ports []string
	for _, p := range forwardedPorts(allow) {
		ports = append(ports, strconv.Itoa(p))
	}
	tcpNS := "none"
	if len(ports) > 0 {
		tcpNS = strings.Join(ports, ",")
	}
	return []string{"--foreground", "--quiet", "--stderr", "--runas", "0", "--config-net", "--no-map-gw",
		"--tcp-ports", "none", "--udp-ports", "none", "--udp-ns", "none", "--tcp-ns", tcpNS,
		"--netns", nsFile}
}

// forwardedPorts are the allow-list's host-loopback ports, once each.
func forwardedPorts(allow []HostPort) []int {
	var ports []int
	seen := map[int]bool{}
	for _, h := range allow {
		if h.Loopback() && !seen[h.Port] {
			seen[h.Port] = true
			ports = append(ports, h.Port)
		}
	}
	return ports
}

// StartEgress attaches pasta to the network namespace of pid (the confined owner) and returns
// once the namespace has its default route, or an error (ErrNoPasta when pasta is missing or
// disabled). Release stops it. started, when set, is called with pasta's pid the moment it runs,
// before its setup (a backend puts it where the owner is: at the owner's CPU priority).
func (j *Jail) StartEgress(ctx context.Context, pid int, started func(pastaPid int)) (*Egress, error) {
	pasta := j.cfg.Pasta
	if pasta == "-" {
		return nil, fmt.Errorf("%w (disabled)", ErrNoPasta)
	}
	if pasta == "" {
		pasta = "pasta"
	}
	path, err := exec.LookPath(pasta)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoPasta, err)
	}
	// pasta cannot open /proc/PID/ns/net itself once it has dropped its capabilities (ptrace
	// access check), but it can open its own inherited descriptor of it: no host mount needed, so
	// nothing is left behind if the invoker dies.
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("%w: egress: open the owner's network namespace: %w", ErrConfine, err)
	}
	defer ns.Close() // pasta has its own copy once started
	// Were the owner gone and its pid reused, this could be another process's namespace; pasta
	// reconfiguring the host's own would be the worst case, so that one is refused outright.
	if same, err := sameFile(ns, "/proc/self/ns/net"); err != nil || same {
		return nil, fmt.Errorf("%w: egress: pid %d is not in a network namespace of its own (%v)", ErrConfine, pid, err)
	}
	e := &Egress{done: make(chan struct{}), stderr: &tailBuffer{max: 4096}}
	e.cmd = exec.Command(path, PastaArgs("/proc/self/fd/3", j.cfg.EgressAllow)...)
	e.cmd.ExtraFiles = []*os.File{ns}
	e.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	e.cmd.Stderr = e.stderr
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: egress: start pasta: %w", ErrConfine, err)
	}
	if started != nil {
		started(e.cmd.Process.Pid)
	}
	record := filepath.Base(j.stateDir) + ".pasta"
	if j.cfg.RecordDir != "" {
		if err := reap.Record(j.cfg.RecordDir, record, e.cmd.Process.Pid); err != nil {
			// Unrecorded, a crash of the invoker could leak it: no egress then.
			_ = e.cmd.Process.Kill() // gone already is fine; Wait below reaps it
			_ = e.cmd.Wait()         // its status says nothing now
			return nil, fmt.Errorf("%w: egress: %w", ErrConfine, err)
		}
	}
	go func() {
		_ = e.cmd.Wait() // pasta's exit status says nothing Stop could act on; its stderr is kept for the diagnosis
		if j.cfg.RecordDir != "" {
			// A record left behind names a process that is gone: a later reap only removes it.
			_ = reap.Forget(j.cfg.RecordDir, record)
		}
		close(e.done)
	}()
	j.mu.Lock()
	released := j.released
	j.egress = e
	j.mu.Unlock()
	if released { // the owner is gone already: nothing to serve
		return nil, errors.Join(fmt.Errorf("%w: egress: the owner exited during setup", ErrConfine), e.Stop())
	}
	if err := e.waitReady(ctx, pid, forwardedPorts(j.cfg.EgressAllow)); err != nil {
		return nil, errors.Join(fmt.Errorf("%w: egress: %w", ErrConfine, err), e.Stop())
	}
	return e, nil
}

// waitReady polls the owner's network namespace until pasta has configured a default route and
// listens on the owner's loopback for every forwarded port (it binds those after the route).
func (e *Egress) waitReady(ctx context.Context, pid int, ports []int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		if hasDefaultRoute(fmt.Sprintf("/proc/%d", pid)) && listening(fmt.Sprintf("/proc/%d/net/tcp", pid), ports) {
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("pasta exited during setup: %v: %s", e.cmd.ProcessState, strings.TrimSpace(e.stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("pasta did not set up the owner's network (default route, forwards %v): %w", ports, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// listening reports whether every port has a listening socket in file (a /proc/PID/net/tcp).
func listening(file string, ports []int) bool {
	if len(ports) == 0 {
		return true
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	found := map[int]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 4 || fs[3] != "0A" { // TCP_LISTEN
			continue
		}
		if _, hexPort, ok := strings.Cut(fs[1], ":"); ok {
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				found[int(p)] = true
			}
		}
	}
	for _, p := range ports {
		if !found[p] {
			return false
		}
	}
	return true
}

func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// hasDefaultRoute reports whether the namespace of /proc/PID has an IPv4 or an IPv6 default route
// (pasta copies whichever the host has).
func hasDefaultRoute(proc string) bool {
	return hasDefaultRoute4(proc+"/net/route") || hasDefaultRoute6(proc+"/net/ipv6_route")
}

func hasDefaultRoute6(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// destination, prefix length, ..., flags in the 9th field: up (RTF_UP) and not a reject
		// route (RTF_REJECT, what the kernel keeps for unreachable destinations)
		if fs := strings.Fields(line); len(fs) >= 9 && fs[0] == strings.Repeat("0", 32) && fs[1] == "00" {
			if fl, err := strconv.ParseUint(fs[8], 16, 32); err == nil && fl&0x1 != 0 && fl&0x0200 == 0 {
				return true
			}
		}
	}
	return false
}

func hasDefaultRoute4(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 1 && fs[1] == "00000000" {
			return true
		}
	}
	return false
}

// Pid is pasta's process id.
func (e *Egress) Pid() int { return e.cmd.Process.Pid }

// Stop terminates pasta (SIGTERM, SIGKILL after a second) and waits for it. Safe to call more
// than once.
func (e *Egress) Stop() error {
	e.once.Do(func() {
		_ = e.cmd.Process.Signal(syscall.SIGTERM) // already gone is fine; the wait below decides
		select {
		case <-e.done:
		case <-time.After(time.Second):
			if err := e.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				e.stopErr = fmt.Errorf("kill pasta: %w", err)
			}
			<-e.done
		}
	})
	return e.stopErr
}

// tailBuffer keeps the last max bytes written (pasta's stderr, for errors): a long-lived pasta
// must not grow the invoker's memory.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
