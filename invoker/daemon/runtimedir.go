package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
)

// The runtime directory holds what an invoker's backends keep on the host while it runs: the
// owners' gate sockets and work directories (e/), the activations' proxy directories (s/), the
// process backend's records and pool (p/), the oci backend's runc root and bundles (o/), and the
// records of the owner processes and their network helpers (pids/). s/ and, with the oci backend,
// o/ are tmpfs mounts of their own (onTmpfs), which a restarted invoker keeps. Unix socket paths
// are limited to 107 bytes, so it lives under a short path rather than under the (possibly deep)
// state directory: TMPDIR/tm-<8 hex>-<id>, where the hex are the first of the SHA-256 of the
// absolute state directory. It is the same at every start of one invoker (state directory and id),
// so a restarted invoker finds there what its predecessor left (Reap), and it differs for two
// invokers (or tests) on one machine with different state directories. A lock in the state
// directory (invoker<id>.lock) makes a second invoker with the same state directory and id refuse
// to start.

// ErrAlreadyRunning is returned when another invoker holds the lock of the state directory and id.
var ErrAlreadyRunning = errors.New("another invoker runs with this state directory and id")

// RuntimeDir is the runtime directory of invoker id with state directory state (see above). The
// state directory must exist (its symlinks are resolved, so two spellings of one directory give
// one runtime directory).
func RuntimeDir(state string, id int) (string, error) {
	abs, err := filepath.Abs(state)
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), fmt.Sprintf("tm-%s-%d", hex.EncodeToString(sum[:4]), id)), nil
}

// runtimeDir is an invoker's runtime directory, locked for it.
type runtimeDir struct {
	path string
	lock *os.File // nil for a temporary directory (no state directory)
}

// openRuntimeDir locks invoker id's state directory and makes its runtime directory (private to
// the invoker; one that exists must be a directory of the invoker's user, not a symlink, with no
// access for others, since its name is predictable in a shared /tmp). Without a state directory
// (tests that build an executor alone) the directory is a fresh temporary one, unlocked.
func openRuntimeDir(state string, id int) (*runtimeDir, error) {
	if state == "" {
		dir, err := os.MkdirTemp("", fmt.Sprintf("tm%d-", id))
		if err != nil {
			return nil, fmt.Errorf("runtime dir: %w", err)
		}
		return &runtimeDir{path: dir}, nil
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lockPath := filepath.Join(state, fmt.Sprintf("invoker%d.lock", id))
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600) // close-on-exec: no child inherits it
	if err != nil {
		return nil, fmt.Errorf("lock the state directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath) // for the message only; empty when unreadable
		_ = lock.Close()                   // not ours to hold
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: invoker%d, state directory %s (lock %s held by pid %s)", ErrAlreadyRunning, id, state, lockPath,
				strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock the state directory: %w", err)
	}
	d := &runtimeDir{lock: lock}
	fail := func(err error) (*runtimeDir, error) {
		d.unlock()
		return nil, err
	}
	// The holder's pid, for the message of an invoker that finds the lock taken.
	if err := lock.Truncate(0); err != nil {
		return fail(fmt.Errorf("lock the state directory: %w", err))
	}
	if _, err := lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return fail(fmt.Errorf("lock the state directory: %w", err))
	}
	if d.path, err = RuntimeDir(state, id); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(d.path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fail(fmt.Errorf("runtime dir: %w", err))
	}
	st, err := os.Lstat(d.path)
	if err != nil {
		return fail(fmt.Errorf("runtime dir: %w", err))
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&0o077 != 0 {
		return fail(fmt.Errorf("runtime dir %s exists but is not a private directory of uid %d (mode %s): remove it",
			d.path, os.Geteuid(), st.Mode()))
	}
	return d, nil
}

// onTmpfs makes dir (below the runtime directory) a tmpfs mount of its own, unless it is one
// already (a crashed predecessor's, still holding what Reap is to remove) or holds anything (an
// older version's leftovers, which a tmpfs would hide from Reap: it then stays on disk for this
// run). The sandboxes' bundles, slots and records and the activations' proxy directories come and
// go there, dozens of files a second, and on a journalled filesystem each costs the journal's work:
// a container's whole life takes 0.6 ms less CPU and 1.1 ms less time with its bundle on tmpfs
// (BenchmarkContainerCPU in package oci). The files are small; what a sandbox writes into the
// directories bound into it is charged to its memory limit, as page cache on disk is. remove
// (RemoveTree) unmounts it with the rest.
func onTmpfs(dir string) (mounted bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return false, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return false, nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return false, fmt.Errorf("tmpfs %s: %w", dir, err)
	}
	return true, nil
}

// unlock releases the lock (closing the file releases the flock).
func (d *runtimeDir) unlock() {
	if d.lock != nil {
		_ = d.lock.Close() // closing releases the lock; nothing was written that could be lost
		d.lock = nil
	}
}

// recordDir holds the records of the owner processes and their network helpers.
func (d *runtimeDir) recordDir() string { return filepath.Join(d.path, "pids") }

// reapOwners removes what an earlier instance left outside the sandbox backends: it kills the
// owner processes and network helpers it recorded, then detaches the mounts below the owners'
// and proxies' directories and removes them (sockets, work directories). It runs before any
// owner of this instance starts, so everything there is a leftover.
func (d *runtimeDir) reapOwners() (sandbox.Reaped, error) {
	var got sandbox.Reaped
	var errs []error
	killed, err := reap.Kill(d.recordDir(), nil)
	got.Processes += killed
	if err != nil {
		errs = append(errs, err)
	}
	if err := os.MkdirAll(d.recordDir(), 0o700); err != nil {
		errs = append(errs, fmt.Errorf("owner records: %w", err))
	}
	for _, sub := range []string{"e", "s"} {
		dir := filepath.Join(d.path, sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		n, err := reap.RemoveTree(dir)
		got.Mounts += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got.Files += len(entries)
	}
	return got, errors.Join(errs...)
}

// remove detaches every mount below the runtime directory and removes it (a normal shutdown,
// once the backends are closed), then releases the lock.
func (d *runtimeDir) remove(log *zap.Logger) {
	if _, err := reap.RemoveTree(d.path); err != nil {
		log.Warn("remove the runtime directory", zap.String("dir", d.path), zap.Error(err))
	}
	d.unlock()
}

// legacyRuntimeDirs lists the runtime directories older versions made for invoker id
// (TMPDIR/tm<id>-<random>, a new one per start). They are not removed: nothing tells a crashed
// invoker's from one an older invoker still uses.
func legacyRuntimeDirs(id int) []string {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("tm%d-*", id)))
	if err != nil {
		return nil // the pattern is fixed and valid
	}
	var out []string
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), fmt.Sprintf("tm%d-", id))
		if _, err := strconv.ParseUint(rest, 10, 64); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// reapedFields are the counts of r as log fields.
func reapedFields(r sandbox.Reaped) []zap.Field {
	return []zap.Field{zap.Int("processes", r.Processes), zap.Int("containers", r.Containers), zap.Int("mounts", r.Mounts),
		zap.Int("cgroups", r.Cgroups), zap.Int("files", r.Files)}
}
