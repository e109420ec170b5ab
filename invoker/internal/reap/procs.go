package reap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pidSuffix ends every record file.
const pidSuffix = ".pid"

// Record writes dir/name.pid with pid and its start time, so that a later Kill finds the process
// and can tell it from another that reused the pid. dir must be writable by the invoker only (a
// process that could write it could make the invoker kill any process). The record is replaced
// atomically.
func Record(dir, name string, pid int) error {
	if err := checkName(name); err != nil {
		return err
	}
	st, err := StartTime(pid)
	if err != nil {
		return fmt.Errorf("record process %s: %w", name, err)
	}
	path := filepath.Join(dir, name+pidSuffix)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, st)), 0o600); err != nil {
		return fmt.Errorf("record process %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record process %s: %w", name, err)
	}
	return nil
}

// Forget removes the record of name (the process was stopped and reaped by its owner). A missing
// record is not an error.
func Forget(dir, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, name+pidSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget process %s: %w", name, err)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("process record name %q is not a plain name", name)
	}
	return nil
}

// Recorded is one record of dir.
type Recorded struct {
	Name  string // the record's name (its file without .pid)
	Pid   int
	Start uint64 // clock ticks after boot, /proc/PID/stat field 22
}

// Alive reports whether the recorded process still runs: its pid exists with the recorded start
// time (a zombie counts as gone: it holds nothing any more).
func (r Recorded) Alive() bool {
	st, err := StartTime(r.Pid)
	return err == nil && st == r.Start && !zombie(r.Pid)
}

// Records lists dir's records (none when dir does not exist). A malformed record is listed with
// Pid 0: it names no process, and Kill removes it.
func Records(dir string) ([]Recorded, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("process records: %w", err)
	}
	var out []Recorded
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), pidSuffix)
		if !ok || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("process record %s: %w", name, err))
			continue
		}
		r := Recorded{Name: name}
		if _, err := fmt.Sscanf(string(b), "%d %d", &r.Pid, &r.Start); err != nil || r.Pid <= 0 {
			// Torn by a crash while written (Record renames, so only by hand): it names nothing
			// to kill, and Kill removes it.
			r.Pid = 0
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// Kill kills every recorded process of dir that is still alive (SIGKILL to its process group, for
// records of group leaders, and to the process itself), waits up to a second for each to go, and
// removes the records, also those of processes already gone. skip, when set, leaves out the names
// it returns true for (the caller's own live processes). It returns how many processes it killed.
func Kill(dir string, skip func(name string) bool) (int, error) {
	recs, err := Records(dir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	killed := 0
	for _, r := range recs {
		if skip != nil && skip(r.Name) {
			continue
		}
		if r.Pid > 0 && r.Alive() {
			if err := killVerified(r.Pid, r.Start); err != nil {
				errs = append(errs, fmt.Errorf("kill %s (pid %d): %w", r.Name, r.Pid, err))
				continue
			}
			killed++
		}
		if err := os.Remove(filepath.Join(dir, r.Name+pidSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove process record %s: %w", r.Name, err))
		}
	}
	return killed, errors.Join(errs...)
}

// killVerified sends SIGKILL to pid's process group (when pid leads one) and to pid, then waits
// for it to go. The start time was checked just before; a pidfd makes the signal itself race-free.
func killVerified(pid int, start uint64) error {
	fd, err := pidfdOpen(pid)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	defer closeFD(fd)
	// With the pidfd open the pid cannot be reused: check the start time once more.
	if st, err := StartTime(pid); err != nil || st != start {
		return nil // gone (or reused) between the checks: nothing of ours to kill
	}
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill group: %w", err)
		}
	}
	if err := pidfdKill(fd); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return waitGone(pid, start, time.Second)
}

// waitGone waits until pid with start time start no longer runs (exited: reaped or a zombie).
func waitGone(pid int, start uint64, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		st, err := StartTime(pid)
		if err != nil || st != start || zombie(pid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still runs %s after SIGKILL", pid, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StartTime is field 22 of /proc/PID/stat: when the process started, in clock ticks after boot.
func StartTime(pid int) (uint64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// After ")" come state (field 3) ... starttime (field 22): index 22-3 = 19.
	if len(f) < 20 {
		return 0, fmt.Errorf("process %d: stat too short", pid)
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("process %d start time: %w", pid, err)
	}
	return v, nil
}

// zombie reports whether pid has exited but is not reaped yet.
func zombie(pid int) bool {
	f, err := statFields(pid)
	return err == nil && len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// statFields are the fields of /proc/PID/stat after the parenthesised command name (which may
// hold spaces and parentheses): state first.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("process %d: stat malformed", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}
