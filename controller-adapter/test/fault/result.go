package fault

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Result is what one scenario observed. Every request the load sent ends in exactly one of OK,
// Failed, Broken or Lost, so Sent is their sum; Refused requests found no listening platform
// and are not in Sent.
type Result struct {
	Scenario   string `json:"scenario"`
	Fault      string `json:"fault"`
	Deployment string `json:"deployment"`
	// Sent: requests the platform accepted a connection for.
	Sent int `json:"sent"`
	// OK: the activation succeeded (the blocking answer, or the record of a non-blocking one).
	OK int `json:"succeeded"`
	// Failed: answered with an error (an HTTP error status, or a record that is not a success).
	Failed int `json:"failed"`
	// Broken: the connection broke, or no answer came within the client's timeout, before an
	// activation id reached the caller.
	Broken int `json:"broken"`
	// Lost: the caller was given an activation id whose record never became readable within the
	// recovery window.
	Lost int `json:"lost"`
	// Refused: no connection (the platform was down); not counted in Sent.
	Refused int `json:"refused"`
	// Duplicated: activations whose code started more than once.
	Duplicated int `json:"duplicated"`
	// MaxStarts: the most starts of one activation's code.
	MaxStarts int `json:"maxStarts"`
	// RerunAfterAnswer: activations whose code started again after their caller had the answer.
	RerunAfterAnswer int `json:"rerunAfterAnswer"`
	// Blamed: activations answered as "action developer error" (the action never fails by
	// itself, so each is a platform fault blamed on the developer).
	Blamed int `json:"blamed"`
	// LeftBehind: processes and mounts of the faulted instance still there after the recovery
	// window.
	LeftBehind int `json:"leftBehind"`
	// RecoverySeconds: from the fault to the first successful blocking invocation sent after
	// the harness undid it (restarted what it killed, freed the disk, put the clock back);
	// negative when none succeeded.
	RecoverySeconds float64 `json:"recoverySeconds"`
	// Statuses counts the answers by kind ("success", "HTTP 503", "whisk internal error", ...).
	Statuses map[string]int `json:"statuses"`
	// Notes say what the harness did (how long the fault was held) and what it saw.
	Notes []string `json:"notes,omitempty"`
	// Violations are the guarantees this run broke; Asserted says whether they fail the test.
	Violations []string `json:"violations"`
	Asserted   bool     `json:"asserted"`
}

// Guarantee is what a scenario must show once issue #17 is fixed.
type Guarantee struct {
	// Rerun: the fault kills runs midway (the invoker's process dies), so an activation may run
	// once more (at-least-once execution), never after its answer and never a third time.
	Rerun bool
	// NoBroken: no caller may see a broken connection (the graceful shutdown).
	NoBroken bool
}

// Violations lists the guarantees r breaks: never an answered activation run again (nor any run
// twice unless g.Rerun, nor three times), no record lost, nothing left behind, no platform fault
// blamed on the developer, a platform that answers again, and under g.NoBroken no broken
// connection.
func (r Result) Check(g Guarantee) []string {
	var v []string
	if r.Lost > 0 {
		v = append(v, fmt.Sprintf("%d activation records lost", r.Lost))
	}
	if r.RerunAfterAnswer > 0 {
		v = append(v, fmt.Sprintf("%d answered activations ran again", r.RerunAfterAnswer))
	}
	switch {
	case !g.Rerun && r.Duplicated > 0:
		v = append(v, fmt.Sprintf("%d activations ran twice", r.Duplicated))
	case r.MaxStarts > 2:
		v = append(v, fmt.Sprintf("an activation ran %d times", r.MaxStarts))
	}
	if r.Blamed > 0 {
		v = append(v, fmt.Sprintf("%d platform faults answered as developer errors", r.Blamed))
	}
	if r.LeftBehind > 0 {
		v = append(v, fmt.Sprintf("%d processes or mounts of the old instance left behind", r.LeftBehind))
	}
	if g.NoBroken && r.Broken > 0 {
		v = append(v, fmt.Sprintf("%d callers saw a broken connection", r.Broken))
	}
	if r.RecoverySeconds < 0 {
		v = append(v, "no successful invocation after the fault")
	}
	return v
}

// Asserted decides which scenarios' violations fail the test. spec is TEEMATE_FAULT_ASSERT:
// empty keeps defaults; "all" or "none" start from every or no scenario; then comma-separated
// names add a scenario and "-name" removes one ("all,-clock-jump"). Unknown names are an error,
// so that a typo cannot silently assert nothing.
func Asserted(spec string, names []string, defaults map[string]bool) (map[string]bool, error) {
	known := map[string]bool{}
	out := map[string]bool{}
	for _, n := range names {
		known[n] = true
		out[n] = defaults[n]
	}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case f == "all" || f == "none":
			for _, n := range names {
				out[n] = f == "all"
			}
		case strings.HasPrefix(f, "-") && known[f[1:]]:
			out[f[1:]] = false
		case known[strings.TrimPrefix(f, "+")]:
			out[strings.TrimPrefix(f, "+")] = true
		default:
			return nil, fmt.Errorf("TEEMATE_FAULT_ASSERT: unknown scenario %q (known: all, none, %s)", f, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Meta says how a table was made.
type Meta struct {
	Date    string `json:"date"`
	Commit  string `json:"commit"`
	Command string `json:"command"`
	Setup   string `json:"setup"`
}

// Markdown is docs/faults.md: the table and what its columns mean.
func Markdown(m Meta, results []Result) string {
	var b strings.Builder
	b.WriteString("# Fault suite\n\n")
	b.WriteString("<!-- Generated by the fault suite (controller-adapter/test/fault); do not edit by hand. -->\n\n")
	fmt.Fprintf(&b, "Generated %s at commit `%s` by `%s`.\n\n%s\n\n", m.Date, m.Commit, m.Command, m.Setup)
	b.WriteString("| scenario | deployment | sent | succeeded | failed | broken | lost | duplicated | re-run after answer | blamed | left behind | recovery | guarantees |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range results {
		rec := "never"
		if r.RecoverySeconds >= 0 {
			rec = fmt.Sprintf("%.1f s", r.RecoverySeconds)
		}
		held := "held"
		if len(r.Violations) > 0 {
			held = "**broken**: " + strings.Join(r.Violations, "; ")
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %s |\n", r.Fault, r.Deployment,
			r.Sent, r.OK, r.Failed, r.Broken, r.Lost, r.Duplicated, r.RerunAfterAnswer, r.Blamed, r.LeftBehind, rec, held)
	}
	b.WriteString("\nAnswers by kind, and what the harness did:\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- **%s**: %s", r.Scenario, statuses(r.Statuses))
		if r.Refused > 0 {
			fmt.Fprintf(&b, "; %d requests refused while nothing listened (not in sent)", r.Refused)
		}
		for _, n := range r.Notes {
			b.WriteString("; " + n)
		}
		b.WriteString(".\n")
	}
	b.WriteString(columns)
	return b.String()
}

const columns = `
Columns: **sent** requests the platform accepted a connection for, each counted once as
**succeeded** (the blocking answer, or the stored record of a non-blocking activation, says success),
**failed** (answered with an error: an HTTP error status or a record that is not a success),
**broken** (the connection broke, or no answer within the client's timeout, before the caller had an
activation id) or **lost** (the caller had an activation id, from a 202 or a blocking answer, whose record
never became readable with GET /activations/{id} within the recovery window). **duplicated**: activations
whose code started more than once; every start is reported by the action itself to an HTTP server of the
test, so runs killed midway count too. **re-run after answer**: blocking activations whose code started
again after the caller had the answer. **blamed**: activations answered as "action developer error"; the
action never fails by itself, so each is a platform fault blamed on the developer. **left behind**:
processes and mounts of the faulted instance still there after the recovery window. **recovery**: from
the fault to the first successful blocking invocation sent after the harness undid it (restarted what it
killed, freed the disk, put the clock back; a killed owner is restarted by the invoker itself); besides the
callers, a probe sends a blocking invocation every 0.5 s from then on, without waiting for the earlier ones,
until one succeeds.

Guarantees checked (issue #17): no record lost; no answered activation run again; no activation run twice
unless the fault killed it midway (invoker or standalone SIGKILL: at most once more); nothing left behind;
no platform fault blamed on the developer; after SIGTERM no broken connection; the platform answers again.
`

func statuses(m map[string]int) string {
	if len(m) == 0 {
		return "no answers"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

// JSON is docs/faults.json: the same results with the meta data.
func JSON(m Meta, results []Result) ([]byte, error) {
	b, err := json.MarshalIndent(struct {
		Meta
		Results []Result `json:"results"`
	}{m, results}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("fault results: %w", err)
	}
	return append(b, '\n'), nil
}
