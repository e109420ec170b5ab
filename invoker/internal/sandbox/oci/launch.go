package oci

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/mountinfo"
	"github.com/teemate/platform/invoker/internal/reap"
)

// The teemate-launch runtime: the container's fixed shape, from its config.json, set up by one
// clone of this process and a small static init (shim/launch/teemate-launch.c) instead of runc's
// create, start and delete processes. See doc.go, "teemate-launch".

// kindLaunch is the runtime kind of the launcher (its binary's name).
const kindLaunch = "teemate-launch"

// launchFormat is the plan's format tag, the launcher's first argument.
const launchFormat = "teemate-launch/1"

// launchNamespaces are the namespaces a sandbox gets, as clone flags.
var launchNamespaces = map[string]uintptr{
	"pid": unix.CLONE_NEWPID, "ipc": unix.CLONE_NEWIPC, "uts": unix.CLONE_NEWUTS,
	"mount": unix.CLONE_NEWNS, "network": unix.CLONE_NEWNET,
}

// mountFlags are the OCI mount options that are mount(2) flags; the others are data.
var mountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"strictatime": unix.MS_STRICTATIME, "relatime": unix.MS_RELATIME, "noatime": unix.MS_NOATIME,
	"bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC,
}

// mountPropagation are the OCI options that set a mount's propagation, applied after the mount.
var mountPropagation = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
}

// capabilityNumbers are the capabilities the spec may keep.
var capabilityNumbers = map[string]uint{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "CAP_FSETID": unix.CAP_FSETID,
	"CAP_FOWNER": unix.CAP_FOWNER, "CAP_MKNOD": unix.CAP_MKNOD, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT,
	"CAP_KILL": unix.CAP_KILL, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
}

// rlimitNumbers are the rlimits the spec may set.
var rlimitNumbers = map[string]int{
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_CORE": unix.RLIMIT_CORE,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE,
}

// launchPlan turns a container's config.json into the launcher's clone flags and command line.
// It takes the shape buildSpec makes and refuses what the launcher does not do (user
// namespaces, namespace paths, differing capability sets, hooks), so a spec it cannot honour
// fails instead of running with less isolation.
func launchPlan(s runtimeSpec) (uintptr, []string, error) {
	var flags uintptr
	for _, ns := range s.Linux.Namespaces {
		f, ok := launchNamespaces[ns.Type]
		if !ok {
			return 0, nil, fmt.Errorf("launch plan: namespace %q is not supported", ns.Type)
		}
		flags |= f
	}
	if s.Process.Terminal {
		return 0, nil, errors.New("launch plan: a terminal is not supported")
	}
	c := s.Process.Capabilities
	if !slices.Equal(c.Bounding, c.Effective) || !slices.Equal(c.Bounding, c.Permitted) || len(c.Inheritable) > 0 || len(c.Ambient) > 0 {
		return 0, nil, errors.New("launch plan: the capability sets must be one set (bounding = effective = permitted, no inheritable or ambient)")
	}
	var caps uint64
	for _, n := range c.Bounding {
		v, ok := capabilityNumbers[n]
		if !ok {
			return 0, nil, fmt.Errorf("launch plan: capability %s is not supported", n)
		}
		caps |= 1 << v
	}
	args := []string{kindLaunch, launchFormat, "-r", s.Root.Path, "-h", s.Hostname, "-d", s.Process.Cwd,
		"-u", strconv.FormatUint(uint64(s.Process.User.UID), 10), strconv.FormatUint(uint64(s.Process.User.GID), 10),
		"-c", strconv.FormatUint(caps, 16)}
	if s.Root.Readonly {
		args = append(args, "-o")
	}
	if s.Process.NoNewPrivileges {
		args = append(args, "-n")
	}
	for _, m := range s.Mounts {
		var fl, prop uintptr
		var data []string
		for _, o := range m.Options {
			if f, ok := mountFlags[o]; ok {
				fl |= f
			} else if p, ok := mountPropagation[o]; ok {
				prop |= p
			} else {
				data = append(data, o)
			}
		}
		if m.Type == "bind" {
			fl |= unix.MS_BIND
			if len(data) > 0 {
				return 0, nil, fmt.Errorf("launch plan: bind mount %s: options %q are not supported", m.Destination, data)
			}
		}
		args = append(args, "-m", m.Destination, m.Type, m.Source, strconv.FormatUint(uint64(fl), 16),
			strconv.FormatUint(uint64(prop), 16), strings.Join(data, ","))
	}
	for _, p := range s.Linux.MaskedPaths {
		args = append(args, "-M", p)
	}
	for _, p := range s.Linux.ReadonlyPaths {
		args = append(args, "-R", p)
	}
	for _, l := range s.Process.Rlimits {
		n, ok := rlimitNumbers[l.Type]
		if !ok {
			return 0, nil, fmt.Errorf("launch plan: rlimit %s is not supported", l.Type)
		}
		args = append(args, "-l", strconv.Itoa(n), strconv.FormatUint(l.Soft, 10), strconv.FormatUint(l.Hard, 10))
	}
	filter, err := seccompBPF(s.Linux.Seccomp)
	if err != nil {
		return 0, nil, fmt.Errorf("launch plan: %w", err)
	}
	if filter != nil {
		args = append(args, "-s", hex.EncodeToString(filter))
	}
	for _, e := range s.Process.Env {
		args = append(args, "-e", e)
	}
	// The start stub's whole work is reading the start configuration and exec'ing what it names:
	// the init does that itself, and the sandbox's command is exec'd once instead of twice.
	if conf := path.Join(SlotGuestDir, StartConfigName); slices.Equal(s.Process.Args, []string{StubPath, conf}) {
		args = append(args, "-S", conf)
	}
	if len(s.Process.Args) == 0 || !filepath.IsAbs(s.Process.Args[0]) {
		return 0, nil, errors.New("launch plan: the process needs an absolute path")
	}
	args = append(append(args, "--", s.Process.Args[0]), s.Process.Args...)
	return flags, args, nil
}

// launchControllers are the cgroup v1 controllers a launched container joins: the limits
// (memory, pids, devices) and the CPU accounting runc's containers have too.
var launchControllers = []string{"memory", "pids", "devices", "cpu", "cpuacct"}

// requiredControllers must be there for the limits to hold.
var requiredControllers = []string{"memory", "pids", "devices"}

// launchDevices are the devices a container may use (runc's default list): the devices
// cgroup denies every other, whatever the container's capabilities let it create.
var launchDevices = []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
	"c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"}

// v1Controllers finds the mount point of each cgroup v1 controller, or says why the launcher
// cannot limit containers here.
func v1Controllers() (map[string]string, error) {
	ms, err := mountinfo.Self()
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	out := map[string]string{}
	for _, m := range ms {
		if m.FSType != "cgroup" {
			continue
		}
		for _, o := range m.Super {
			if slices.Contains(launchControllers, o) {
				out[o] = m.Point
			}
		}
	}
	for _, c := range requiredControllers {
		if out[c] == "" {
			return nil, fmt.Errorf("cgroups: no cgroup v1 %s controller: teemate-launch sets limits through cgroup v1 (legacy and hybrid hosts); use runc or crun on a unified (v2) host", c)
		}
	}
	return out, nil
}

// launchCgroup makes the container's cgroup in each controller and writes its limits; the
// returned directories are where its pid goes, before the container runs anything of its own.
func (r *Runtime) launchCgroup(rel string, s specResources) ([]string, error) {
	var dirs []string
	write := func(dir, file, v string) error {
		if err := writeCgroupFile(filepath.Join(dir, file), v); err != nil {
			return fmt.Errorf("cgroup %s: %w", file, err)
		}
		return nil
	}
	for _, c := range launchControllers {
		root, ok := r.controllers[c]
		if !ok {
			continue
		}
		d := filepath.Join(root, rel)
		if slices.Contains(dirs, d) {
			continue // controllers mounted together (cpu,cpuacct)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return dirs, fmt.Errorf("cgroup: %w", err)
		}
		dirs = append(dirs, d)
		var err error
		switch c {
		case "memory":
			if s.Memory != nil {
				err = write(d, "memory.limit_in_bytes", strconv.FormatInt(s.Memory.Limit, 10))
				// memsw exists only with swap accounting; without it there is no swap to limit.
				if err == nil && s.Memory.Swap > 0 && r.memsw {
					err = write(d, "memory.memsw.limit_in_bytes", strconv.FormatInt(s.Memory.Swap, 10))
				}
			}
		case "pids":
			if s.Pids != nil {
				err = write(d, "pids.max", strconv.FormatInt(s.Pids.Limit, 10))
			}
		case "devices":
			err = write(d, "devices.deny", "a")
			for _, dev := range launchDevices {
				if err == nil {
					err = write(d, "devices.allow", dev)
				}
			}
		}
		if err != nil {
			return dirs, err
		}
	}
	return dirs, nil
}

// writeCgroupFile writes v to a cgroup control file with three system calls. os.WriteFile
// would also try to register the file with Go's poller (two fcntl and an epoll_ctl that
// fails for such files), and a container's creation writes about twenty of them.
func writeCgroupFile(path, v string) error {
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	n, err := ignoringEINTR(func() (int, error) { return unix.Write(fd, []byte(v)) })
	if err == nil && n < len(v) {
		err = io.ErrShortWrite
	}
	cerr := unix.Close(fd)
	switch {
	case err != nil:
		return &os.PathError{Op: "write", Path: path, Err: err}
	case cerr != nil:
		return &os.PathError{Op: "close", Path: path, Err: cerr}
	}
	return nil
}

// ignoringEINTR calls fn again while a signal interrupts it.
func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// removeLaunchCgroup removes the container's cgroup directories; its processes are gone (the
// init was reaped), so a busy directory only waits for the kernel to finish their exit.
func removeLaunchCgroup(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// recordDir is where the launcher's containers are recorded (pid and start time, see package
// reap), so that a later invoker kills those a crash left.
func (r *Runtime) recordDir() string { return filepath.Join(r.cfg.StateDir, "launched") }

// launch starts a container's init: one clone into the new namespaces, the init's pid into the
// cgroups, then it waits for the init to report its filesystem ready. The listener becomes the
// container's descriptor 3, out and errw its standard output and error.
func (r *Runtime) launch(b *box, s runtimeSpec, listener, out, errw *os.File) (err error) {
	flags, args, err := launchPlan(s)
	if err != nil {
		return err
	}
	b.cgroupDirs, err = r.launchCgroup(s.Linux.CgroupsPath, s.Linux.Resources)
	if err != nil {
		return err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("start socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "start"), os.NewFile(uintptr(fds[1]), "start")
	defer closeAll(theirs)
	pidfd := -1
	proc, err := os.StartProcess(r.bin, args, &os.ProcAttr{
		Env:   []string{},
		Files: []*os.File{r.devNull, out, errw, listener, theirs},
		// Setsid: no signal meant for the invoker's terminal or process group reaches a sandbox.
		Sys: &syscall.SysProcAttr{Cloneflags: flags, Setsid: true, PidFD: &pidfd},
	})
	if err != nil {
		closeAll(ours)
		return fmt.Errorf("clone the container: %w", err)
	}
	b.pid, b.pidfd, b.proc, b.sync = proc.Pid, pidfd, proc, ours
	defer func() {
		if err != nil {
			b.killLaunched()
		}
	}()
	pid := strconv.Itoa(proc.Pid)
	for _, d := range b.cgroupDirs {
		if err := writeCgroupFile(filepath.Join(d, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("join cgroup %s: %w", d, err)
		}
	}
	if err := reap.Record(r.recordDir(), b.id, proc.Pid); err != nil {
		return err
	}
	closeAll(theirs)
	var ready [1]byte
	if n, err := ours.Read(ready[:]); n != 1 || ready[0] != 'R' {
		return fmt.Errorf("the container's init did not report ready: %w", errors.Join(err, errors.New("it exited")))
	}
	return nil
}

// killLaunched ends a launched container whose creation failed: kill, reap, forget, remove
// its cgroups. The caller reports the failure.
func (b *box) killLaunched() {
	if err := unix.PidfdSendSignal(b.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		b.rt.log.Warn("killing a failed container failed", zap.String("id", b.id), zap.Error(err))
	}
	_, _ = b.proc.Wait()    // reaps it; the exit status of a failed creation says nothing more
	_ = unix.Close(b.pidfd) // ours; the process is gone
	closeAll(b.sync)
	_ = reap.Forget(b.rt.recordDir(), b.id) // best effort: a later Reap finds the record's process gone
	_ = removeLaunchCgroup(b.cgroupDirs)    // best effort: the creation's error is the one to report
}

// startLaunched releases a launched container: one byte on its start socket.
func (b *box) startLaunched() error {
	f := b.sync
	b.sync = nil
	if f == nil {
		return errors.New("the container was already started")
	}
	defer closeAll(f)
	if _, err := f.Write([]byte{'S'}); err != nil {
		return fmt.Errorf("start the container: %w", err)
	}
	return nil
}
