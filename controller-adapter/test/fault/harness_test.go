package fault

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/kafka"
)

// The test binary doubles as the split deployment's broker: run with brokerEnv set to
// "ADDR DIR" it is a kfake broker with the embedded broker's users and grants (invoker0,
// controller0; credentials under DIR/users), stopped by SIGTERM. A broker of its own, apart from
// the invoker and the controller-adapter, is what a broker restart needs.
const brokerEnv = "TEEMATE_FAULT_BROKER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(brokerEnv); spec != "" {
		if err := runBroker(spec); err != nil {
			fmt.Fprintln(os.Stderr, "fault broker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The suite is a subreaper: what a killed platform process leaves running is re-parented to
	// the test, which can then see it (left behind), kill it and reap it; nothing escapes to the
	// host's init.
	if err := setSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "fault: PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setSubreaper() error {
	const prSetChildSubreaper = 36
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return e
	}
	return nil
}

func runBroker(spec string) error {
	addr, dir, ok := strings.Cut(spec, " ")
	if !ok {
		return fmt.Errorf("%s=%q: want \"ADDR DIR\"", brokerEnv, spec)
	}
	users := filepath.Join(dir, "users")
	if err := os.MkdirAll(users, 0o700); err != nil {
		return err
	}
	inv, err := credentials.KafkaUser(users, kafka.InvokerUser(0))
	if err != nil {
		return err
	}
	ctrl, err := credentials.KafkaUser(users, kafka.ControllerUser("0"))
	if err != nil {
		return err
	}
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: filepath.Join(dir, "kafka"), Addr: addr,
		Users: []kafka.EmbeddedUser{
			{SASL: inv, Grants: kafka.InvokerGrants(0)},
			{SASL: ctrl, Grants: kafka.ControllerGrants("0")},
		}})
	if err != nil {
		return err
	}
	fmt.Println("broker ready", emb.Addrs())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	emb.Close()
	return nil
}

// proc is one platform process the test started; it can be killed and started again with the
// same command line (same ports, same directories).
type proc struct {
	name string
	bin  string
	args []string
	env  []string
	log  string // stdout and stderr of every start, appended

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// If the test itself dies, its platform dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close() // the start error is the one to report
		t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // a killed process exits with an error by design; exited says it is gone
		_ = f.Close()  // the log's content is written by the process; nothing is lost here
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signal sends sig and, when wait > 0, waits that long for the exit; it reports whether the
// process is gone.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) bool {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false
	}
	select {
	case <-exited:
		return true
	case <-time.After(wait):
		return false
	}
}

// stop ends the process for the test's cleanup: SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	if !p.signal(syscall.SIGTERM, grace) {
		p.signal(syscall.SIGKILL, 10*time.Second)
	}
}

// waitLine waits until the process's log has a line containing s (after the last start), or
// the process exits, or timeout.
func (p *proc) waitLine(s string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(p.log)
		if err == nil {
			out := string(b)
			if i := strings.LastIndex(out, "=== "+p.name+" start "); i >= 0 {
				out = out[i:]
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, s) {
					return line, nil
				}
			}
		}
		if !p.running() {
			return "", fmt.Errorf("%s exited before logging %q (log %s)", p.name, s, p.log)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not log %q within %s (log %s)", p.name, s, timeout, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// freePorts are n distinct loopback TCP ports nobody listens on now: every listener stays open
// until all are chosen, so the kernel cannot hand one port out twice.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close() // closed once all are chosen; a close error leaves the port free all the same
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// task is one process as /proc shows it; start tells a pid apart from a later process that
// reuses it.
type task struct {
	pid, ppid int
	start     string
	state     string
}

// tasks reads every process of the machine.
func tasks() map[int]task {
	out := map[int]task{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if tk, ok := readTask(pid); ok {
			out[pid] = tk
		}
	}
	return out
}

func readTask(pid int) (task, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return task{}, false
	}
	// The command name is in parentheses and may hold spaces; the fields after it are fixed.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return task{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return task{}, false
	}
	ppid, _ := strconv.Atoi(f[1]) // the kernel writes a number here
	return task{pid: pid, ppid: ppid, state: f[0], start: f[19]}, true
}

// descendants are the processes below root (not root itself).
func descendants(root int) []task {
	all := tasks()
	kids := map[int][]int{}
	for _, tk := range all {
		kids[tk.ppid] = append(kids[tk.ppid], tk.pid)
	}
	var out []task
	queue := append([]int(nil), kids[root]...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		out = append(out, all[pid])
		queue = append(queue, kids[pid]...)
	}
	return out
}

// alive is whether tk still runs (same pid, same start time, not a zombie).
func alive(tk task) bool {
	now, ok := readTask(tk.pid)
	return ok && now.start == tk.start && now.state != "Z"
}

func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// mountsBelow are the mount ids (mountinfo's first field, unique while mounted) of the mounts
// below dir, but for an invoker's runtime directory's own tmpfs mounts (tm-*/o and tm-*/s), which
// a restarted invoker keeps or makes again (the kernel may hand the new one the old id).
func mountsBelow(dir string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			if base := filepath.Base(f[4]); (base == "o" || base == "s") && strings.HasPrefix(filepath.Base(filepath.Dir(f[4])), "tm-") {
				continue
			}
			out[f[0]] = f[4]
		}
	}
	return out
}

// sweep kills and reaps everything below the test process except its own running children
// (the processes still owned by a proc): what killed platforms left, re-parented to the
// subreaper. It returns how many it killed.
func sweep(keep map[int]bool) int {
	n := 0
	self := os.Getpid()
	for _, tk := range descendants(self) {
		if keep[tk.pid] || tk.ppid != self {
			continue
		}
		// Kill the orphan's whole tree: its children are re-parented to us in turn and are
		// killed by a later round.
		if tk.state != "Z" {
			_ = syscall.Kill(tk.pid, syscall.SIGKILL) // it may have exited meanwhile; reaped below either way
			n++
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(tk.pid, &ws, 0, nil) // reaps the orphan; an error means another waiter had it
	}
	return n
}

// unmountBelow detaches every mount below dir, deepest first.
func unmountBelow(t *testing.T, dir string) {
	var paths []string
	for _, p := range mountsBelow(dir) {
		paths = append(paths, p)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for _, p := range paths {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", p, err)
		}
	}
}

// get is a GET with Basic auth.
func get(c *http.Client, url string, key [2]string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(key[0], key[1])
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}
