package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/teemate/platform/bench/internal/cpuacct"
	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/invoker/daemon"
)

// cpuSource is a platform whose processes this bench process can account: direct mode, where
// the invoker, its owners and its sandboxes are this process and its descendants.
type cpuSource interface {
	// CPUConfig is the probe's configuration for the running model; containers says the
	// sandboxes are containers below Config.CgroupParent; notes say what is not counted.
	CPUConfig() (cfg cpuacct.Config, containers bool, notes []string, err error)
}

// CPUConfig: the bench process is the root; the oci backend puts the invoker's containers below
// /teemate/<runtime dir name> (invoker/daemon's buildOCI).
func (d *Direct) CPUConfig() (cpuacct.Config, bool, []string, error) {
	d.mu.Lock()
	id := d.invoker
	d.mu.Unlock()
	cfg := cpuacct.Config{Root: os.Getpid()}
	if id < 0 {
		return cfg, false, nil, fmt.Errorf("direct: no invoker running")
	}
	switch d.cfg.Sandbox {
	case "process":
		return cfg, false, nil, nil
	case "oci":
		dir, err := daemon.RuntimeDir(d.invokerState(id), id)
		if err != nil {
			return cfg, true, nil, fmt.Errorf("cpu accounting: %w", err)
		}
		cfg.CgroupParent = "/teemate/" + filepath.Base(dir)
		return cfg, true, nil, nil
	default:
		return cfg, true, []string{d.cfg.Sandbox + " sandbox: the engine's daemons and the containers themselves are not this process's descendants and are not counted"}, nil
	}
}

func (d *Direct) invokerState(id int) string {
	return filepath.Join(d.cfg.StateDir, fmt.Sprintf("invoker%d", id))
}

// cpuPhase measures the CPU of one phase of a case: begin before it, end after it.
type cpuPhase struct {
	probe      *cpuacct.Probe
	containers bool
	notes      []string
	start      cpuacct.Snapshot
	settled    bool
}

// settleWait bounds how long a phase's edge waits for the counters to stop moving.
const settleWait = 3 * time.Second

func beginCPU(p Platform, done <-chan struct{}) (*cpuPhase, error) {
	src, ok := p.(cpuSource)
	if !ok {
		return nil, nil
	}
	cfg, containers, notes, err := src.CPUConfig()
	if err != nil {
		return nil, err
	}
	probe, err := cpuacct.New(cfg)
	if err != nil {
		return nil, err
	}
	ph := &cpuPhase{probe: probe, containers: containers, notes: notes}
	// Take the start once the previous phase's work is done: the pool refilled, the owner idle.
	base, err := probe.Snapshot()
	if err != nil {
		return nil, err
	}
	ph.settled = probe.Settle(base, 50*time.Millisecond, settleWait, done)
	if ph.start, err = probe.Snapshot(); err != nil {
		return nil, err
	}
	return ph, nil
}

// end takes the closing snapshot once the phase's work has settled and returns the figures per
// activation for model.
func (ph *cpuPhase) end(model string, n int, done <-chan struct{}) (result.CPU, error) {
	settled := ph.probe.Settle(ph.start, 50*time.Millisecond, settleWait, done)
	end, err := ph.probe.Snapshot()
	if err != nil {
		return result.CPU{}, err
	}
	s := cpuacct.Between(ph.start, end, n, ph.containers)
	out := result.CPU{Owner: s.Owner, SandboxRuntime: s.SandboxRuntime, Platform: s.Platform, Total: s.Total(),
		Activations: n, RuntimeInContainer: s.RuntimeInContainer, PooledSeen: s.Pooled, Settled: ph.settled && settled,
		Notes: ph.notes}
	switch model {
	case "native":
		out.Proxy = s.InSandbox
	case "strawman":
		out.StrawmanRuntime = s.InSandbox
	default:
		out.Shim = s.InSandbox
	}
	if ph.containers && !s.ContainersRead && len(ph.notes) == 0 {
		out.Notes = append(out.Notes, "the containers' cgroup was not found: the CPU inside them is not counted")
	}
	return out, nil
}
