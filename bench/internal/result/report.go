package result

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/teemate/platform/bench/internal/svg"
)

// PhaseOrder is the order of the per-phase breakdown (the paper's Figure 7), from the invoker's
// "timings" annotation; "other" is end-to-end minus the recorded phases (Kafka both ways, the action
// fetch, building the record and the acks).
var PhaseOrder = []string{"sandbox_create", "proxy_ready", "attach", "tcs_acquire", "init",
	"isolate_create", "run", "isolate_teardown", "sandbox_teardown", "other"}

// Paper figures (TeeMate, Lee et al. 2024) the ratios are set against.
const (
	PaperLatencyVsStrawman    = "4.54-6.98x"
	PaperThroughputVsStrawman = "1.26-3.21x"
	PaperMemoryVsStrawman     = "2.8-5x"
)

// breakdown returns the phase medians of a case with "other" filled in, in PhaseOrder.
func breakdown(c *Case) []float64 {
	out := make([]float64, len(PhaseOrder))
	if c.Latency == nil {
		return out
	}
	sum := 0.0
	for i, p := range PhaseOrder[:len(PhaseOrder)-1] {
		out[i] = c.PhaseP50[p]
		sum += out[i]
	}
	if other := c.Latency.P50 - sum; other > 0 {
		out[len(out)-1] = other
	}
	return out
}

// WritePlots writes latency-breakdown, latency, throughput and memory SVGs into dir, named
// <name>-<plot>.svg, and returns the file names.
func (r *Result) WritePlots(dir, name string) ([]string, error) {
	var files []string
	write := func(plot string, doc []byte, err error) error {
		if err != nil {
			return fmt.Errorf("plot %s: %w", plot, err)
		}
		f := name + "-" + plot + ".svg"
		if err := os.WriteFile(filepath.Join(dir, f), doc, 0o644); err != nil {
			return fmt.Errorf("plot %s: %w", plot, err)
		}
		files = append(files, f)
		return nil
	}
	var bars []string
	var rows [][]float64
	for _, c := range r.Cases {
		if c.Latency != nil {
			bars = append(bars, c.Model+" "+c.Function+"/"+c.Size)
			rows = append(rows, breakdown(c))
		}
	}
	if len(bars) > 0 {
		doc, err := svg.StackedBars("Latency breakdown (p50 per phase, ms)", "ms", bars, PhaseOrder, rows)
		if err := write("breakdown", doc, err); err != nil {
			return files, err
		}
	}
	models, keys := r.grid()
	if len(models) == 0 || len(keys) == 0 {
		return files, nil
	}
	for _, p := range []struct {
		plot, title, unit string
		get               func(*Case) float64
	}{
		{"latency", "End-to-end latency p50", "ms", func(c *Case) float64 {
			if c.Latency == nil {
				return 0
			}
			return c.Latency.P50
		}},
		{"throughput-8", "Throughput, 8 concurrent", "requests/s", func(c *Case) float64 { return c.Throughput["8"] }},
		{"throughput-64", "Throughput, 64 concurrent", "requests/s", func(c *Case) float64 { return c.Throughput["64"] }},
		{"memory-64", "Peak memory, 64 concurrent", "MiB", func(c *Case) float64 { return c.PeakMemoryMB["64"] }},
	} {
		vals := make([][]float64, len(keys))
		for i, k := range keys {
			vals[i] = make([]float64, len(models))
			for j, m := range models {
				if c := r.find(m, k); c != nil {
					vals[i][j] = p.get(c)
				}
			}
		}
		doc, err := svg.GroupedBars(p.title, p.unit, keys, models, vals)
		if err := write(p.plot, doc, err); err != nil {
			return files, err
		}
	}
	return files, nil
}

// grid lists the models and the function/size keys present, in first-seen order.
func (r *Result) grid() (models, keys []string) {
	seenM, seenK := map[string]bool{}, map[string]bool{}
	for _, c := range r.Cases {
		if !seenM[c.Model] {
			seenM[c.Model] = true
			models = append(models, c.Model)
		}
		if k := caseKey(c); !seenK[k] {
			seenK[k] = true
			keys = append(keys, k)
		}
	}
	return models, keys
}

func (r *Result) find(model, key string) *Case {
	for _, c := range r.Cases {
		if c.Model == model && caseKey(c) == key {
			return c
		}
	}
	return nil
}

func f1(v float64) string {
	if v == 0 {
		return "-"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func f2(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

// Markdown renders the report: environment, per-case table, breakdown, summary, ratios next to the
// paper's, the noop overhead figures and warnings.
func (r *Result) Markdown(plots []string) string {
	var b strings.Builder
	e := r.Environment
	fmt.Fprintf(&b, "# Bench %s\n\n", r.Name)
	fmt.Fprintf(&b, "Started %s, profile **%s**, mode **%s**, sandbox **%s**, enclave **%s** (SGX: %v).\n\n",
		r.StartedAt.Format("2006-01-02 15:04:05 MST"), r.Config.Profile, e.Mode, e.Sandbox, e.Enclave, e.SGX)
	fmt.Fprintf(&b, "Machine: %s, %d cores, %d MiB, kernel %s, Node %s, %s, commit %s%s. Load average before: %.2f %.2f %.2f (idle: %v).\n\n",
		e.CPUModel, e.Cores, e.MemoryMB, e.Kernel, e.NodeVersion, e.GoVersion, short(e.GitCommit), dirty(e.GitDirty),
		e.LoadAvgBefore[0], e.LoadAvgBefore[1], e.LoadAvgBefore[2], e.Idle)
	if !e.SGX {
		b.WriteString("**No SGX on this machine.** The strawman's \"enclave creation\" is a fresh enclave-runtime boot (a Node process), not an SGX enclave build, and teemate attaches to a warm *direct* enclave (a normal process) instead of aliasing EPC pages. These are not SGX numbers.\n\n")
	}
	if r.Drain != nil {
		// The drain scenario measures no functions: its section and the warnings are the report.
		b.WriteString(r.drainMarkdown())
		b.WriteString(r.warningsMarkdown())
		return b.String()
	}
	b.WriteString("## Models\n\n| model | ran | how each activation starts |\n| --- | --- | --- |\n")
	for _, m := range r.Models {
		ran := "yes"
		if !m.Available {
			ran = "no: " + m.Reason
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", m.Name, ran, m.Start)
	}
	fmt.Fprintf(&b, "\n## Results per function\n\n%d warm-up + %d measured sequential invocations per case and repetition (%d repetitions); throughput = valid answers / time from first send to last answer of a burst (median of bursts); peak memory = PSS of the invoker's descendant processes (enclave owner, shims, sandboxes), sampled every %.0f ms.\n\n",
		r.Config.Warmup, r.Config.Samples, r.Config.Repeat, r.Config.MemoryIntervalMs)
	b.WriteString("| model | function | size | n | p50 ms | p95 ms | p99 ms | req/s @8 | req/s @64 | MiB @1 | MiB @64 | CPU ms/act | valid |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.Cases {
		n, p5, p95, p99 := 0, 0.0, 0.0, 0.0
		if c.Latency != nil {
			n, p5, p95, p99 = c.Latency.N, c.Latency.P50, c.Latency.P95, c.Latency.P99
		}
		valid := "yes"
		if !c.AllValid {
			valid = fmt.Sprintf("**no** (%d invalid)", c.Invalid)
		}
		cpu := 0.0
		if c.CPU != nil {
			cpu = c.CPU.Total
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.Model, c.Function, c.Size, n,
			f1(p5), f1(p95), f1(p99), f1(c.Throughput["8"]), f1(c.Throughput["64"]), f1(c.PeakMemoryMB["1"]), f1(c.PeakMemoryMB["64"]), f1(cpu), valid)
	}
	b.WriteString("\n## Latency breakdown (p50 per phase, ms)\n\n| model | function | " + strings.Join(PhaseOrder, " | ") + " |\n|---|---|" + strings.Repeat("---|", len(PhaseOrder)) + "\n")
	for _, c := range r.Cases {
		if c.Latency == nil {
			continue
		}
		cells := []string{}
		for _, v := range breakdown(c) {
			cells = append(cells, f2(v))
		}
		fmt.Fprintf(&b, "| %s | %s/%s | %s |\n", c.Model, c.Function, c.Size, strings.Join(cells, " | "))
	}
	b.WriteString(r.cpuMarkdown())
	b.WriteString("\n## Summary (geometric mean over functions)\n\n| model | cases | p50 ms | p99 ms | req/s @8 | req/s @64 | MiB @1 | MiB @64 | CPU ms/act |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, m := range sortedKeys(r.Summary.Models) {
		s := r.Summary.Models[m]
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", m, s.Cases, f1(s.P50Ms), f1(s.P99Ms), f1(s.Throughput8), f1(s.Throughput64), f1(s.PeakMemory1MB), f1(s.PeakMemory64MB), f1(s.CPUMs))
	}
	q := r.Summary.Ratios
	b.WriteString("\n## Ratios (larger is better for teemate)\n\n| ratio | this run | paper (SGX2, 64 cores) |\n| --- | --- | --- |\n")
	fmt.Fprintf(&b, "| latency strawman / teemate (p50) | %s | %s |\n", f2(q.LatencyTeemateVsStrawman), PaperLatencyVsStrawman)
	fmt.Fprintf(&b, "| latency strawman / teemate (p99) | %s | - |\n", f2(q.LatencyP99TeemateVsStrawman))
	fmt.Fprintf(&b, "| latency native / teemate (p50) | %s | - |\n", f2(q.LatencyTeemateVsNative))
	fmt.Fprintf(&b, "| throughput teemate / strawman @8 | %s | %s |\n", f2(q.Throughput8TeemateVsStrawman), PaperThroughputVsStrawman)
	fmt.Fprintf(&b, "| throughput teemate / strawman @64 | %s | %s |\n", f2(q.Throughput64TeemateVsStrawman), PaperThroughputVsStrawman)
	fmt.Fprintf(&b, "| peak memory strawman / teemate @64 | %s | %s |\n", f2(q.Memory64StrawmanVsTeemate), PaperMemoryVsStrawman)
	fmt.Fprintf(&b, "| peak memory native / teemate @64 | %s | - |\n", f2(q.Memory64NativeVsTeemate))
	if len(r.Issue3) > 0 {
		b.WriteString("\n## Overhead of a trivial action (noop)\n\n| model | n | new isolate p50 ms (isolate_create + isolate_teardown) | invoker overhead p50 ms (end-to-end − run) | overhead p99 ms | end-to-end p50 ms |\n| --- | --- | --- | --- | --- | --- |\n")
		for _, m := range sortedKeys(r.Issue3) {
			o := r.Issue3[m]
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", m, o.N, f2(o.NewIsolateP50Ms), f2(o.OverheadP50Ms), f2(o.OverheadP99Ms), f2(o.EndToEndP50Ms))
		}
	}
	if r.Hostile != nil {
		b.WriteString(r.Hostile.Markdown())
	}
	if r.Sealed != nil {
		b.WriteString(r.Sealed.Markdown())
	}
	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n", p, p)
		}
	}
	b.WriteString(r.warningsMarkdown())
	return b.String()
}

func (r *Result) warningsMarkdown() string {
	if len(r.Warnings) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Warnings\n\n")
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "- %s\n", w)
	}
	return b.String()
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func dirty(d bool) string {
	if d {
		return " (with uncommitted changes)"
	}
	return ""
}
