package memsample

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures a Sampler.
type Options struct {
	// Root is the process whose descendants are measured (not Root itself: the bench process is the
	// invoker's host and its own heap is not what the models are compared on).
	Root int
	// IncludeRoot also counts Root.
	IncludeRoot bool
	// Interval between samples (5 ms by default).
	Interval time.Duration
	// CgroupGlobs name container cgroup directories (cgroup v2 memory.current or v1
	// memory.usage_in_bytes) to add; their processes are then not counted again from /proc.
	CgroupGlobs []string
	// ProcDir is /proc unless a test says otherwise.
	ProcDir string
}

// Result of a sampling run.
type Result struct {
	PeakBytes int64 `json:"peak_bytes"`
	// PeakProcesses is the number of processes counted in the peak sample.
	PeakProcesses int `json:"peak_processes"`
	Samples       int `json:"samples"`
	// Source is "pss", "rss" or "pss+rss" (some processes only had RSS), plus "+cgroup" when
	// container cgroups were added.
	Source string `json:"source"`
}

// Sampler samples in a goroutine between Start and Stop.
type Sampler struct {
	opts Options
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	res  Result
	srcs map[string]bool
}

// Start begins sampling.
func Start(opts Options) (*Sampler, error) {
	if opts.Root <= 0 {
		return nil, fmt.Errorf("memsample: invalid root pid %d", opts.Root)
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Millisecond
	}
	if opts.ProcDir == "" {
		opts.ProcDir = "/proc"
	}
	s := &Sampler{opts: opts, stop: make(chan struct{}), done: make(chan struct{}), srcs: map[string]bool{}}
	if _, err := os.Stat(filepath.Join(opts.ProcDir, strconv.Itoa(opts.Root))); err != nil {
		return nil, fmt.Errorf("memsample: root process: %w", err)
	}
	s.sample()
	go s.loop()
	return s, nil
}

func (s *Sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.sample() // one last look so a short run has at least its end measured
			return
		case <-t.C:
			s.sample()
		}
	}
}

// Stop ends sampling and returns the peak.
func (s *Sampler) Stop() Result {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, k := range []string{"pss", "rss", "cgroup"} {
		if s.srcs[k] {
			parts = append(parts, k)
		}
	}
	s.res.Source = strings.Join(parts, "+")
	return s.res
}

func (s *Sampler) sample() {
	total, n := int64(0), 0
	inCgroup := map[int]bool{}
	for _, dir := range s.cgroupDirs() {
		b, ok := readCgroupBytes(dir)
		if !ok {
			continue
		}
		total += b
		s.mark("cgroup")
		for _, pid := range readPids(filepath.Join(dir, "cgroup.procs")) {
			inCgroup[pid] = true
			n++
		}
	}
	pids := Descendants(s.opts.ProcDir, s.opts.Root)
	if s.opts.IncludeRoot {
		pids = append(pids, s.opts.Root)
	}
	for _, pid := range pids {
		if inCgroup[pid] {
			continue
		}
		b, src, err := ProcessBytes(s.opts.ProcDir, pid)
		if err != nil {
			continue // the process exited between the listing and the read
		}
		total += b
		n++
		s.mark(src)
	}
	s.mu.Lock()
	s.res.Samples++
	if total > s.res.PeakBytes {
		s.res.PeakBytes, s.res.PeakProcesses = total, n
	}
	s.mu.Unlock()
}

func (s *Sampler) mark(src string) {
	s.mu.Lock()
	s.srcs[src] = true
	s.mu.Unlock()
}

func (s *Sampler) cgroupDirs() []string {
	var out []string
	for _, g := range s.opts.CgroupGlobs {
		m, _ := filepath.Glob(g) // a bad pattern just matches nothing; globs are fixed by the caller
		out = append(out, m...)
	}
	return out
}

func readCgroupBytes(dir string) (int64, bool) {
	for _, f := range []string{"memory.current", "memory.usage_in_bytes"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil {
			return v, true
		}
	}
	return 0, false
}

func readPids(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Descendants lists every process below root (children, grandchildren, ...) from procDir.
func Descendants(procDir string, root int) []int {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := readPPid(filepath.Join(procDir, e.Name(), "stat")); ok {
			parent[pid] = pp
		}
	}
	return DescendantsOf(parent, root)
}

// DescendantsOf is the pure part of Descendants: given each pid's parent, the pids below root.
func DescendantsOf(parent map[int]int, root int) []int {
	children := map[int][]int{}
	for pid, pp := range parent {
		children[pp] = append(children[pp], pid)
	}
	var out []int
	queue := []int{root}
	seen := map[int]bool{root: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// readPPid reads field 4 of /proc/<pid>/stat; the command name (field 2) may contain spaces and
// parentheses, so parsing starts after its last ')'.
func readPPid(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	return ParseStatPPid(b)
}

// ParseStatPPid extracts the parent pid from the contents of /proc/<pid>/stat.
func ParseStatPPid(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// ProcessBytes returns one process's PSS, or its RSS when smaps_rollup cannot be read.
func ProcessBytes(procDir string, pid int) (int64, string, error) {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	if v, err := fieldKB(filepath.Join(dir, "smaps_rollup"), "Pss:"); err == nil {
		return v * 1024, "pss", nil
	}
	v, err := fieldKB(filepath.Join(dir, "status"), "VmRSS:")
	if err != nil {
		return 0, "", fmt.Errorf("memsample: pid %d: %w", pid, err)
	}
	return v * 1024, "rss", nil
}

var errNoField = errors.New("field not found")

func fieldKB(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		fs := strings.Fields(line[len(key):])
		if len(fs) == 0 {
			break
		}
		return strconv.ParseInt(fs[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s in %s: %w", key, path, errNoField)
}
