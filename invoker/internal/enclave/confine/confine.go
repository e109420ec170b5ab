package confine

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Defaults.
const (
	// DefaultUID and DefaultGID are the owner's ids: high, unused by Debian's allocation ranges, and
	// need no passwd entry.
	DefaultUID = 64000
	DefaultGID = 64000
	// DefaultTmpSizeMB bounds the owner's private /tmp (scratch for activations).
	DefaultTmpSizeMB = 64
	// ScratchDir is the activations' scratch inside the owner: a directory of its own on the
	// private /tmp tmpfs (a state dir under the host's /tmp appears under /tmp too, never in it).
	ScratchDir = "/tmp/scratch"
)

// ErrConfine marks every confinement failure; errors say which step failed.
var ErrConfine = errors.New("owner confinement")

// Cloneflags are the namespaces a confined owner gets at clone time. The launcher refuses to run
// without a new pid namespace (it must be pid 1 of it).
const Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET

// Config describes how owners are confined. The zero value takes the defaults noted, except
// Launcher, which must be set.
type Config struct {
	// Launcher is the path of teemate-confine (bin/teemate-confine after `make build`).
	Launcher string
	// UID and GID run the owner (DefaultUID, DefaultGID when 0). Root (0) is not allowed.
	UID, GID int
	// TmpSizeMB bounds the private /tmp (DefaultTmpSizeMB when 0).
	TmpSizeMB int
	// ReadOnly lists host paths the owner may read (the runtime files, the addons, node when it
	// lives outside /usr), visible at the same paths. The system runtime (/usr, /etc, /bin, /lib*)
	// is always there, read-only.
	ReadOnly []string
	// ReadWrite lists further host paths the owner may write, at the same paths, besides its state
	// directory: the sealed image key's directory (enclave/direct), which outlives the owner.
	ReadWrite []string
	// Pasta is the pasta binary; "" looks it up in PATH, "-" disables egress altogether.
	Pasta string
	// EgressAllow lists the host-loopback endpoints the owner may reach (forwarded by pasta from
	// the owner's own loopback, same port). Other hosts are reached by pasta's NAT.
	EgressAllow []HostPort
	// DenyAddrs are addresses made unreachable in the owner's network namespace: the host's own
	// (HostAddrs), where pasta's NAT would otherwise reach every host service bound to all
	// addresses (the invoker's admin port, for one).
	DenyAddrs []string
	// RecordDir, when set, keeps a record of each owner's pasta (package reap) while it runs, so
	// that an invoker restarted after a crash kills a pasta its predecessor left. It must be
	// writable by the invoker only.
	RecordDir string
}

// HostPort is one egress allow-list entry.
type HostPort struct {
	Host string
	Port int
}

func (h HostPort) String() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// Loopback reports whether the entry names the host's loopback (what pasta must forward).
func (h HostPort) Loopback() bool {
	if h.Host == "localhost" {
		return true
	}
	ip := net.ParseIP(h.Host)
	return ip != nil && ip.IsLoopback()
}

// ParseEgressAllow parses "host:port,..." (spaces allowed; empty gives none).
func ParseEgressAllow(s string) ([]HostPort, error) {
	var out []HostPort
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		host, port, err := net.SplitHostPort(f)
		if err != nil {
			return nil, fmt.Errorf("egress allow-list entry %q: %w", f, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || host == "" {
			return nil, fmt.Errorf("egress allow-list entry %q: want host:port with port 1-65535", f)
		}
		out = append(out, HostPort{Host: host, Port: p})
	}
	return out, nil
}

// URLEndpoint is the host:port of an http(s) URL (the default port of its scheme when absent), for
// allow-listing e.g. the invoker's --api-host.
func URLEndpoint(raw string) (HostPort, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return HostPort{}, fmt.Errorf("parse %q: %w", raw, err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.Atoi(port)
	if err != nil || u.Hostname() == "" {
		return HostPort{}, fmt.Errorf("%q has no host and port", raw)
	}
	return HostPort{Host: u.Hostname(), Port: p}, nil
}

// HostAddrs are the host's own non-loopback interface addresses: what an owner must not connect to
// through its egress (its own services listen there). Passed to the owner as --deny-hosts.
func HostAddrs() ([]string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	return out, nil
}

// Check validates cfg, fills in its defaults and says why confinement cannot work here: not root,
// no launcher. It does not look for pasta (egress is optional; see Jail.StartEgress).
func (c *Config) Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (the invoker runs as uid %d)", ErrConfine, os.Geteuid())
	}
	if c.UID == 0 {
		c.UID = DefaultUID
	}
	if c.GID == 0 {
		c.GID = DefaultGID
	}
	if c.UID < 0 || c.GID < 0 {
		return fmt.Errorf("%w: owner uid:gid %d:%d", ErrConfine, c.UID, c.GID)
	}
	if c.TmpSizeMB <= 0 {
		c.TmpSizeMB = DefaultTmpSizeMB
	}
	if c.Launcher == "" {
		return fmt.Errorf("%w: no launcher configured", ErrConfine)
	}
	st, err := os.Stat(c.Launcher)
	if err != nil {
		return fmt.Errorf("%w: launcher: %w (run make build)", ErrConfine, err)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%w: launcher %s is not an executable file", ErrConfine, c.Launcher)
	}
	for _, p := range c.ReadOnly {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%w: read-only path %q is not absolute", ErrConfine, p)
		}
	}
	for _, p := range c.ReadWrite {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%w: read-write path %q is not absolute", ErrConfine, p)
		}
	}
	for _, a := range c.DenyAddrs {
		if net.ParseIP(a) == nil {
			return fmt.Errorf("%w: deny address %q is not an IP address", ErrConfine, a)
		}
	}
	return nil
}

// Jail is the host side of one confined owner: its state directory, the launcher's new-root
// mount point, and pasta once StartEgress ran. Release undoes all of it; call it once the owner
// has exited.
type Jail struct {
	cfg      Config
	stateDir string
	rootDir  string

	// mu guards egress and released: the owner may exit (and Release run) while StartEgress
	// still sets pasta up.
	mu       sync.Mutex
	egress   *Egress
	released bool
}

// NewJail prepares stateDir (created, owned by the owner's uid:gid, 0755 so the invoker's sandboxes
// reach the gate socket in it) and the launcher's new-root mount point next to it. cfg must have
// passed Check.
func (c Config) NewJail(stateDir string) (*Jail, error) {
	if !filepath.IsAbs(stateDir) {
		return nil, fmt.Errorf("%w: state dir %q is not absolute", ErrConfine, stateDir)
	}
	stateDir = filepath.Clean(stateDir)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: state dir: %w", ErrConfine, err)
	}
	if err := os.Chown(stateDir, c.UID, c.GID); err != nil {
		return nil, fmt.Errorf("%w: chown state dir to %d:%d: %w", ErrConfine, c.UID, c.GID, err)
	}
	// Root's only: the launcher mounts its tmpfs here inside its own mount namespace, so the host
	// only ever sees an empty directory.
	root := stateDir + ".root"
	if err := os.Mkdir(root, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: new-root mount point: %w", ErrConfine, err)
	}
	return &Jail{cfg: c, stateDir: stateDir, rootDir: root}, nil
}

// Command returns the command that runs prog (an absolute path) with args and env confined. The
// caller may set Stdout, Stderr and Setpgid; it must not replace SysProcAttr.Cloneflags.
func (j *Jail) Command(prog string, args, env []string) *exec.Cmd {
	a := []string{"--root", j.rootDir, "--uid", strconv.Itoa(j.cfg.UID), "--gid", strconv.Itoa(j.cfg.GID),
		"--tmp-size", strconv.Itoa(j.cfg.TmpSizeMB)}
	for _, p := range j.cfg.ReadOnly {
		a = append(a, "--ro", p)
	}
	for _, ip := range j.cfg.DenyAddrs {
		a = append(a, "--deny-addr", ip)
	}
	for _, p := range j.cfg.ReadWrite {
		a = append(a, "--rw", p)
	}
	a = append(a, "--rw", j.stateDir, "--", prog)
	a = append(a, args...)
	cmd := exec.Command(j.cfg.Launcher, a...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: Cloneflags,
		// The owner never outlives the invoker (the launcher sets it again after its uid switch,
		// which clears it).
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd
}

// StateDir is the owner's writable directory.
func (j *Jail) StateDir() string { return j.stateDir }

// Release stops pasta (if any) and removes the new-root mount point. Safe to call more than once.
func (j *Jail) Release() error {
	j.mu.Lock()
	j.released = true
	e := j.egress
	j.mu.Unlock()
	var errs []error
	if e != nil {
		errs = append(errs, e.Stop())
	}
	if err := os.Remove(j.rootDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", j.rootDir, err))
	}
	return errors.Join(errs...)
}
