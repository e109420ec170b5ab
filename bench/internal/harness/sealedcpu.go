package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/teemate/platform/bench/internal/cpuacct"
	"github.com/teemate/platform/bench/internal/memsample"
)

// The sealed comparison's CPU per process (sealed.go): finer than the cases' components
// (cpu.go, cpuacct), it splits an owner's main thread from its isolate threads.

// cpuSnapshot is the CPU time spent so far by this process (its Go code: the in-process controller,
// broker, invoker and the bench's client), by its children that have exited and were waited for
// (the sandboxes and the shims), and by each live descendant (the enclave owner), which is only
// counted in its parent's children time once it exits.
type cpuSnapshot struct {
	self, reaped time.Duration
	live         map[int]liveCPU
}

type liveCPU struct {
	name string
	cpu  time.Duration
}

func takeCPU() (cpuSnapshot, error) {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		return cpuSnapshot{}, fmt.Errorf("getrusage: %w", err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		return cpuSnapshot{}, fmt.Errorf("getrusage: %w", err)
	}
	s := cpuSnapshot{self: rusageCPU(self), reaped: rusageCPU(children), live: map[int]liveCPU{}}
	for _, pid := range memsample.Descendants("/proc", os.Getpid()) {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue // it exited between the listing and the read: its time is in reaped (or lost with it)
		}
		name, cpu, ok := parseStatCPU(b)
		if !ok {
			continue
		}
		// The main thread apart from the others (an enclave owner's main thread runs the
		// trusted JS, its slot threads the isolates): "name" and "name threads".
		if tb, err := os.ReadFile(filepath.Join(dir, "task", strconv.Itoa(pid), "stat")); err == nil {
			if _, main, ok := parseStatCPU(tb); ok && main <= cpu {
				s.live[-pid] = liveCPU{name: name + " threads", cpu: cpu - main}
				cpu = main
			}
		}
		s.live[pid] = liveCPU{name: name, cpu: cpu}
	}
	return s, nil
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// parseStatCPU reads the command name (field 2) and utime + stime (cpuacct.ParseProcStat) of a
// /proc/<pid>/stat line.
func parseStatCPU(stat []byte) (string, time.Duration, bool) {
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return "", 0, false
	}
	t, err := cpuacct.ParseProcStat(stat)
	if err != nil {
		return "", 0, false
	}
	return string(stat[i+1 : j]), t.Self, true
}

// cpuSince is the CPU time spent between before and after, in ms, by group: "bench" (this
// process), "exited children", each live descendant's command name (its main thread) and that
// name with " threads" (its other threads, exited ones included); processes that lived through
// both snapshots, one that started in between counted from its start.
func cpuSince(before, after cpuSnapshot) map[string]float64 {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	out := map[string]float64{"bench": ms(after.self - before.self), "exited children": ms(after.reaped - before.reaped)}
	for pid, b := range before.live {
		if _, ok := after.live[pid]; !ok {
			// Exited in between: its whole time is in after.reaped if this process waited for it.
			out["exited children"] -= ms(b.cpu)
		}
	}
	for pid, a := range after.live {
		d := a.cpu
		if b, ok := before.live[pid]; ok && b.name == a.name {
			d -= b.cpu
		}
		out[a.name] += ms(d)
	}
	return out
}
