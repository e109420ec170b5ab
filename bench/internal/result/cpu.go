package result

import (
	"fmt"
	"strings"
)

// CPU is a case's CPU time per activation (ms) by component, over its sequential latency
// samples (warm-up excluded), pooled over repetitions. See bench/README.md for what each
// component holds and where it is read from.
type CPU struct {
	// Owner: the warm enclave owners and their network helper (teemate).
	Owner float64 `json:"owner"`
	// SandboxRuntime: what makes and removes the sandboxes (runc create/delete, and runc's init
	// inside each container until the container is started); 0 on the process sandbox.
	SandboxRuntime float64 `json:"sandbox_runtime"`
	// Platform: the bench process, which hosts the client and the in-process controller, invoker
	// and Kafka broker (one Go process, not split further).
	Platform float64 `json:"platform"`
	// Shim: the start stub and the teemate shim in the sandbox (teemate). Proxy: the native
	// model's Node action proxy with the stub. StrawmanRuntime: the strawman's launcher, its own
	// enclave runtime and its shim.
	Shim            float64 `json:"shim"`
	Proxy           float64 `json:"proxy,omitempty"`
	StrawmanRuntime float64 `json:"strawman_runtime,omitempty"`
	Total           float64 `json:"total"`
	// Activations is how many activations the figures are divided by.
	Activations int `json:"activations"`
	// RuntimeInContainer is the runtime's init inside one created container (part of
	// SandboxRuntime), the mean over PooledSeen containers seen waiting in the pool.
	RuntimeInContainer float64 `json:"runtime_in_container"`
	PooledSeen         int     `json:"pooled_seen"`
	// Settled: the counters had stopped moving (pool refilled, owner idle) at both ends of every
	// repetition; otherwise some work spills over the phase's edges.
	Settled bool `json:"settled"`
	// Notes say what was not counted.
	Notes []string `json:"notes,omitempty"`
}

// Add pools another repetition's figures into c, weighting each by its activations.
func (c *CPU) Add(o CPU) {
	n, m := float64(c.Activations), float64(o.Activations)
	if n+m == 0 {
		return
	}
	w := func(a, b float64) float64 { return (a*n + b*m) / (n + m) }
	c.Owner, c.SandboxRuntime, c.Platform = w(c.Owner, o.Owner), w(c.SandboxRuntime, o.SandboxRuntime), w(c.Platform, o.Platform)
	c.Shim, c.Proxy, c.StrawmanRuntime = w(c.Shim, o.Shim), w(c.Proxy, o.Proxy), w(c.StrawmanRuntime, o.StrawmanRuntime)
	c.Total = w(c.Total, o.Total)
	if c.PooledSeen+o.PooledSeen > 0 {
		c.RuntimeInContainer = (c.RuntimeInContainer*float64(c.PooledSeen) + o.RuntimeInContainer*float64(o.PooledSeen)) /
			float64(c.PooledSeen+o.PooledSeen)
	}
	c.PooledSeen += o.PooledSeen
	c.Settled = (c.Activations == 0 || c.Settled) && o.Settled
	c.Activations += o.Activations
	for _, nt := range o.Notes {
		if !contains(c.Notes, nt) {
			c.Notes = append(c.Notes, nt)
		}
	}
}

// InSandbox is what runs in the sandbox, whichever model's field holds it.
func (c *CPU) InSandbox() float64 { return c.Shim + c.Proxy + c.StrawmanRuntime }

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// cpuMarkdown is the report's section on CPU per activation.
func (r *Result) cpuMarkdown() string {
	var b strings.Builder
	found := false
	for _, c := range r.Cases {
		if c.CPU != nil {
			found = true
		}
	}
	if !found {
		return ""
	}
	b.WriteString("\n## CPU per activation (ms, latency samples)\n\n" +
		"owner: the warm enclave owners and their network helper; sandbox runtime: the runtime's commands (runc create, delete) and its init inside each container until started " +
		"(a prestarted shim's container until its use, the shim's own start included); " +
		"platform: the bench process (client, controller, invoker, Kafka broker: one Go process); in sandbox: the start stub with the shim (teemate), the Node proxy (native), or the strawman's own runtime and shim.\n\n" +
		"| model | function | n | owner | sandbox runtime | of which the runtime's init in container | platform (Go) | in sandbox | total | settled |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.Cases {
		u := c.CPU
		if u == nil {
			continue
		}
		in := f2(u.InSandbox())
		switch {
		case u.Proxy > 0:
			in += " (proxy)"
		case u.StrawmanRuntime > 0:
			in += " (strawman runtime)"
		case u.Shim > 0:
			in += " (shim)"
		}
		fmt.Fprintf(&b, "| %s | %s/%s | %d | %s | %s | %s | %s | %s | %s | %v |\n", c.Model, c.Function, c.Size, u.Activations,
			f2(u.Owner), f2(u.SandboxRuntime), f2(u.RuntimeInContainer), f2(u.Platform), in, f2(u.Total), u.Settled)
	}
	var notes []string
	for _, c := range r.Cases {
		if c.CPU != nil {
			for _, n := range c.CPU.Notes {
				if !contains(notes, n) {
					notes = append(notes, n)
				}
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "\nNote: %s\n", n)
	}
	return b.String()
}
