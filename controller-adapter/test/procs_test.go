package test

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// proc is a process seen in /proc, with its start time so that a reused pid is not mistaken for it.
type proc struct {
	pid   int
	start string // field 22 of /proc/PID/stat
	comm  string
	cmd   string // the command line, spaces for NULs; empty for a kernel thread
}

func (p proc) String() string { return fmt.Sprintf("%d (%s)", p.pid, p.comm) }

// alive reports whether the same process still exists (and is not a zombie).
func (p proc) alive() bool {
	now, ok := readProc(p.pid)
	return ok && now.start == p.start && now.comm == p.comm
}

func (p proc) kill() {
	if p.alive() {
		// Best effort: the test only cleans up after itself here.
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// readProc reads a live (not zombie) process from /proc/PID/stat and cmdline.
func readProc(pid int) (proc, bool) {
	p, _, state, ok := readStat(pid)
	if !ok || state == "Z" {
		return proc{}, false
	}
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)) // empty for a kernel thread or one gone
	p.cmd = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
	return p, true
}

// readStat reads a process's start time, command name, state and parent from /proc/PID/stat.
func readStat(pid int) (p proc, ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, 0, "", false
	}
	open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return proc{}, 0, "", false
	}
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 20 {
		return proc{}, 0, "", false
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return proc{}, 0, "", false
	}
	// After the command: state (0), ppid (1), ... starttime is field 22 of the line, 19 here.
	return proc{pid: pid, start: f[19], comm: string(b[open+1 : closing])}, ppid, f[0], true
}

// descendants lists every live process below pid now, from all of /proc: children of any of its
// threads, at any depth.
func descendants(pid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := map[int][]proc{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ppid, state, ok := readStat(n); ok && state != "Z" {
			kids[ppid] = append(kids[ppid], p)
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		for _, k := range kids[queue[0]] {
			out = append(out, k)
			queue = append(queue, k.pid)
		}
		queue = queue[1:]
	}
	return out
}
