package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The request path of a pooled container: release it without running the runtime's binary,
// mount the per-use directories with one detached tree each, and a proxy socket bound before.

// Runtime kinds whose created state this package knows how to end directly (see release).
const (
	kindRunc = "runc"
	kindCrun = "crun"
)

// execFifo is the runtime's named pipe that holds a created container's init before its exec;
// the same name and place (<root>/<id>/) in runc and crun.
const execFifo = "exec.fifo"

// errNoFifo: the container has no exec FIFO where this package looks (not in the created state,
// or a runtime layout it does not know); the caller lets `<runtime> start` decide.
var errNoFifo = errors.New("no exec fifo")

// start ends the container's created state, directly through the exec FIFO when it can,
// otherwise by running `<runtime> start`.
func (r *Runtime) start(ctx context.Context, b *box) error {
	fifo := filepath.Join(r.cfg.RuntimeRoot, b.id, execFifo)
	var err error
	switch r.kind {
	case kindRunc:
		err = releaseRunc(ctx, fifo, b.pidfd)
	case kindCrun:
		err = releaseCrun(fifo)
	case kindLaunch:
		return b.startLaunched()
	default:
		err = errNoFifo
	}
	if errors.Is(err, errNoFifo) {
		_, err = r.runtime(ctx, "start", b.id)
	}
	return err
}

// releaseRunc does what `runc start` does (libcontainer's exec/handleFifoResult): runc's init
// waits in a blocking open of the FIFO for writing, then writes one byte and execs the process.
// Opening the FIFO for reading releases it. Removing the FIFO is what makes `runc state` say
// "running" instead of "created"; runc removes it later, this right after the open, while the
// init works on another CPU (nothing opens the FIFO by name any more).
//
// runc start then reads to the end of file, which the init's exec (or death) causes; the byte is
// enough here: once it is written the init is committed to its exec, and the end of file would
// not tell an exec from a death either (the pidfd does, see box.watch). So Create returns while
// the init execs the stub, and the caller's connect and first request overlap with it. With no
// byte, the pidfd tells an init that died before it could be started.
func releaseRunc(ctx context.Context, fifo string, pidfd int) error {
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return errNoFifo
	}
	if err != nil {
		return fmt.Errorf("open the exec fifo: %w", err)
	}
	defer unix.Close(fd) // read-only FIFO end of our own
	if err := removeFifo(fifo); err != nil {
		return err
	}
	var buf [16]byte
	// Until a writer came and went, a FIFO opened without writers polls neither readable nor
	// hung up (Linux pipe_poll), so the loop sleeps in poll until the init writes or exits.
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Read(fd, buf[:])
		switch {
		case n > 0:
			return nil
		case err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("read the exec fifo: %w", err)
		}
		if fds[1].Revents != 0 { // readable: exited; POLLNVAL: the pidfd was closed by a concurrent Destroy
			return errors.New("the container's init exited before it was started")
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for the container's init: %w", err)
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, int(fifoPollInterval/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll the exec fifo: %w", err)
		}
	}
}

// fifoPollInterval bounds how long a release waits before it looks at ctx again.
const fifoPollInterval = 100 * time.Millisecond

func removeFifo(fifo string) error {
	if err := os.Remove(fifo); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the exec fifo: %w", err)
	}
	return nil
}

// releaseCrun does what `crun start` does (libcrun_status_write_exec_fifo): crun's init holds
// the FIFO's read end and waits for one byte; the starter opens it for writing, unlinks it
// (crun's "created" is "the FIFO exists") and writes a NUL byte. With no reader (the init died)
// the open fails with ENXIO and `crun start` gives the real reason.
func releaseCrun(fifo string) error {
	fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
		return errNoFifo
	}
	if err != nil {
		return fmt.Errorf("open the exec fifo: %w", err)
	}
	defer unix.Close(fd) // write end of our own
	if err := unix.Unlink(fifo); err != nil {
		return fmt.Errorf("unlink the exec fifo: %w", err)
	}
	for {
		_, err := unix.Write(fd, []byte{0})
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write the exec fifo: %w", err)
		}
		return nil
	}
}

// proxyBacklog is the proxy socket's listen backlog: connections made before the action proxy
// accepts wait there. An activation makes one; a few more are harmless.
const proxyBacklog = 16

// listenProxy binds and listens on a unix socket at path and returns it as a file, to be handed
// to the container as descriptor 3 (TEEMATE_PROXY_FD).
func listenProxy(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proxy socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		_ = unix.Close(fd) // ours, never used
		return nil, fmt.Errorf("bind the proxy socket %s: %w", path, err)
	}
	if err := unix.Listen(fd, proxyBacklog); err != nil {
		_ = unix.Close(fd) // ours, never used
		return nil, fmt.Errorf("listen on the proxy socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// bindInto mounts host at target (in the shared slot, so it propagates into the container) with
// nosuid, nodev and, when asked, ro. Mount flags do not propagate, only mounts do, so the flags
// must be on the mount before it is attached: the new mount API clones host as a detached tree,
// sets its flags, and attaches it, three syscalls and no staging point. Kernels before 5.12 lack
// mount_setattr; they get the staged way (bind, remount, bind again, unmount the stage).
func bindInto(host, target string, readOnly bool, stage string) error {
	err := bindDetached(host, target, readOnly)
	if errors.Is(err, unix.ENOSYS) {
		return bindStaged(host, target, readOnly, stage)
	}
	return err
}

func bindDetached(host, target string, readOnly bool) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, host, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone %s: %w", host, err)
	}
	// Closing the descriptor of a tree that was never attached dissolves it; once attached the
	// mount stays.
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if readOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("set nosuid,nodev on %s: %w", host, err)
	}
	// No MOVE_MOUNT_T_SYMLINKS: a symbolic link at target is not followed.
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s at %s: %w", host, target, err)
	}
	return nil
}

func bindStaged(host, target string, readOnly bool, stage string) error {
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return fmt.Errorf("staging point: %w", err)
	}
	if err := unix.Mount(host, stage, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", host, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	err := unix.Mount("", stage, "", flags, "")
	if err == nil {
		err = unix.Mount(stage, target, "", unix.MS_BIND|unix.MS_REC, "")
	}
	if uerr := unix.Unmount(stage, unix.MNT_DETACH); uerr != nil {
		err = errors.Join(err, fmt.Errorf("unmount the staging point: %w", uerr))
	}
	if err != nil {
		return fmt.Errorf("bind %s at %s: %w", host, target, err)
	}
	return nil
}
