package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
)

// box is one container, first pooled (created, not started), then one sandbox.
type box struct {
	rt   *Runtime
	id   string
	name string // the sandbox's OpenWhisk name once acquired
	// proxySocket is the host path of the action proxy's socket once acquired.
	proxySocket string
	key         PoolKey
	bundle      string
	slot        string
	cgroup      string
	pid         int
	pidfd       int // of the container's init; closed by destroy once the exit is seen

	// The launcher's containers (kindLaunch): this process is the init's parent.
	proc       *os.Process // the init, reaped by watch
	sync       *os.File    // the start socket, until the container is started
	cgroupDirs []string    // the container's cgroup in each controller

	stdout, stderr *os.File
	exited         chan struct{}
	oom            atomic.Bool
	started        atomic.Bool

	slotMounted bool
	mu          sync.Mutex
	startConf   *os.File // the slot's empty start configuration, open from create until the use writes it
	useMounts   []string // per-use mounts below the slot, innermost last

	destroyOnce sync.Once
	destroyErr  error
}

func (b *box) ID() string              { return b.id }
func (b *box) ProxySocket() string     { return b.proxySocket }
func (b *box) Stdout() io.Reader       { return b.stdout }
func (b *box) Stderr() io.Reader       { return b.stderr }
func (b *box) Exited() <-chan struct{} { return b.exited }
func (b *box) OOMKilled() bool         { return b.oom.Load() }

// prepare mounts the per-use directories into the slot (they propagate into the created
// container, see the package doc) and writes the start configuration.
func (b *box) prepare(mounts []sandbox.Mount, startConf []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range mounts {
		target, err := slotTarget(b.slot, m.GuestPath)
		if err != nil {
			return err
		}
		if !slices.Contains(b.rt.cfg.MountPoints, filepath.Clean(m.GuestPath)) { // else made at create
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("mount point %s: %w", m.GuestPath, err)
			}
		}
		if err := bindInto(m.HostPath, target, m.ReadOnly, filepath.Join(b.bundle, "stage", strconv.Itoa(i))); err != nil {
			return fmt.Errorf("per-use mount %s: %w", m.GuestPath, err)
		}
		b.useMounts = append(b.useMounts, target)
	}
	// Written in place: the stub reads it only once the container is started, after this.
	f := b.startConf
	b.startConf = nil
	if f == nil {
		return errors.New("write the start configuration: the container was already used")
	}
	_, err := f.Write(startConf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the start configuration: %w", err)
	}
	return nil
}

// watch waits for the container's init to exit (pidfd readable), reads the OOM counter of its
// memory cgroup while the cgroup still exists, and closes exited.
func (b *box) watch(pidfd int) {
	defer close(b.exited)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINTR) {
			b.rt.log.Warn("waiting for the container failed", zap.String("id", b.id), zap.Error(err))
			return
		}
	}
	if n, err := b.oomKills(); err == nil && n > 0 {
		b.oom.Store(true)
	}
	if b.proc != nil {
		// The launcher's init is our child: reap it (it has exited, so this does not block).
		if _, err := b.proc.Wait(); err != nil {
			b.rt.log.Warn("reaping the container's init failed", zap.String("id", b.id), zap.Error(err))
		}
	}
}

// oomKills reads oom_kill of the container's memory cgroup (v1, else v2).
func (b *box) oomKills() (int64, error) {
	var errs []error
	for _, p := range []string{
		filepath.Join("/sys/fs/cgroup/memory", b.cgroup, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", b.cgroup, "memory.events"),
	} {
		t, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return parseOOMKills(string(t))
	}
	return 0, errors.Join(errs...)
}

// Destroy kills the container, waits for its exit (bounded by ctx), deletes it, unmounts the
// per-use directories and removes the bundle.
func (b *box) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() { b.destroyErr = b.destroy(ctx) })
	return b.destroyErr
}

// discard is Destroy for a container that never served (failed prepare or start, or the pool
// closing); errors are logged, the caller already has one to report.
func (b *box) discard() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Destroy(ctx); err != nil {
		b.rt.log.Warn("discarding a container failed", zap.String("id", b.id), zap.Error(err))
	}
}

func (b *box) destroy(ctx context.Context) error {
	var errs []error
	select {
	case <-b.exited:
	default:
		// The pidfd names exactly this container's init (no pid reuse race) and works even if
		// the runtime's state is damaged; killing a pid namespace's init ends all of it.
		if err := unix.PidfdSendSignal(b.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill: %w", err))
		}
	}
	select {
	case <-b.exited:
		_ = unix.Close(b.pidfd) // ours; the watcher is done with it
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("waiting for the exit: %w", ctx.Err()))
	}
	if b.proc != nil {
		// The init was reaped and its pid namespace is empty: nothing to delete but its
		// cgroups and record.
		closeAll(b.sync)
		if err := removeLaunchCgroup(b.cgroupDirs); err != nil {
			errs = append(errs, err)
		}
		if err := reap.Forget(b.rt.recordDir(), b.id); err != nil {
			errs = append(errs, err)
		}
	} else if _, err := b.rt.runtime(context.WithoutCancel(ctx), "delete", "--force", b.id); err != nil {
		errs = append(errs, err)
	}
	if err := b.removeFiles(); err != nil {
		errs = append(errs, err)
	}
	b.rt.mu.Lock()
	delete(b.rt.live, b.id)
	b.rt.mu.Unlock()
	// Readers normally see EOF as soon as the container's processes are gone; closing our ends
	// after a grace guarantees they never block forever.
	time.AfterFunc(2*time.Second, func() { closeAll(b.stdout, b.stderr) })
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy sandbox %s (%s): %w", b.name, b.id, err)
	}
	return nil
}

// removeFiles unmounts the per-use mounts and the slot and removes the bundle directory.
func (b *box) removeFiles() error {
	var errs []error
	b.mu.Lock()
	if b.startConf != nil {
		closeAll(b.startConf) // never written: nothing to report
		b.startConf = nil
	}
	for i := len(b.useMounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(b.useMounts[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", b.useMounts[i], err))
		}
	}
	b.useMounts = nil
	b.mu.Unlock()
	if b.slotMounted {
		// MNT_DETACH of the slot also detaches what is mounted below it (leftovers included).
		if err := unix.Unmount(b.slot, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount slot %s: %w", b.slot, err))
		}
	}
	if len(errs) == 0 {
		// Nothing may be mounted below the bundle any more, or removing it would empty a host
		// directory the activation owns: RemoveUnmounted stops at any mount.
		if err := reap.RemoveUnmounted(b.bundle); err != nil {
			errs = append(errs, fmt.Errorf("bundle not removed: %w", err))
		}
	}
	return errors.Join(errs...)
}
