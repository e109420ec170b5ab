package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/teemate/platform/bench/internal/result"
)

// Environment describes this machine for the result.
func Environment(repoDir string) result.Environment {
	e := result.Environment{Cores: runtime.NumCPU(), GoVersion: runtime.Version(),
		NodeExtraCACertsUnset: os.Getenv("NODE_EXTRA_CA_CERTS") == ""}
	e.Hostname, _ = os.Hostname() // descriptive only: a result without a host name is still a result
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	e.CPUModel = procField("/proc/cpuinfo", "model name")
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64) // descriptive only: unreadable leaves 0
		e.MemoryMB = kb / 1024
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "node", "--version").Output(); err == nil {
		e.NodeVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", repoDir, "rev-parse", "HEAD").Output(); err == nil {
		e.GitCommit = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", repoDir, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		e.GitDirty = len(strings.TrimSpace(string(out))) > 0
	}
	_, err := os.Stat("/dev/sgx_enclave")
	e.SGX = err == nil
	return e
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// LoadAvg reads /proc/loadavg.
func LoadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, fmt.Errorf("loadavg: %w", err)
	}
	return ParseLoadAvg(string(b))
}

// ParseLoadAvg parses the first three fields of /proc/loadavg.
func ParseLoadAvg(s string) ([3]float64, error) {
	var l [3]float64
	f := strings.Fields(s)
	if len(f) < 3 {
		return l, fmt.Errorf("loadavg: %q has fewer than three fields", s)
	}
	for i := 0; i < 3; i++ {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return l, fmt.Errorf("loadavg field %d: %w", i+1, err)
		}
		l[i] = v
	}
	return l, nil
}

// IsIdle is the idle rule: the one-minute load average is below maxPerCore per core.
func IsIdle(load [3]float64, cores int, maxPerCore float64) bool {
	return load[0] < maxPerCore*float64(cores)
}

// WaitIdle polls the load average until the machine is idle or wait has passed; it returns the last
// reading, whether the machine was idle and how long it waited.
func WaitIdle(ctx context.Context, wait time.Duration, maxPerCore float64) ([3]float64, bool, time.Duration) {
	start := time.Now()
	cores := runtime.NumCPU()
	for {
		l, err := LoadAvg()
		if err != nil {
			return l, false, time.Since(start)
		}
		if IsIdle(l, cores, maxPerCore) {
			return l, true, time.Since(start)
		}
		if time.Since(start) >= wait || ctx.Err() != nil {
			return l, false, time.Since(start)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
