// Package hostile is the hostile tenant of issue #13 item 3 ("no tenant can hurt another beyond its
// own limits"): one table of hostile actions with the outcome each must have, the benign actions a
// second tenant runs beside them, and the stable record of what was observed that SECURITY.md keeps.
//
// The end-to-end test (controller-adapter/test) and the bench's --hostile mode both take their
// actions from here, so the mix measured is the mix tested.
//
// Expectations are written for the target platform: the capability set of the enclave runtime
// refuses the call with a catchable error that names what was refused ("TeeMate: child_process is
// not available to actions in a shared enclave"), and the limits (time, memory, result size, logs)
// end the activation with the usual OpenWhisk developer error. To adjust an expectation after a
// change of wording, edit the Expect field of the case: nothing else depends on the texts.
package hostile

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Statuses of an activation as the REST API reports them (response.status), plus NoAnswer for an
// invoke that got no activation record at all (the platform died or refused the request).
const (
	StatusSuccess   = "success"
	StatusAppError  = "application error"
	StatusDevError  = "action developer error"
	StatusWhiskErr  = "whisk internal error"
	StatusNoAnswer  = "no answer"
	DefaultMemoryMB = 256
	DefaultTimeout  = 10000
)

// Case is one hostile action.
type Case struct {
	Name string
	// What the action tries, in a few words (the table's first column).
	Tries string
	// Code is the action's source. Every hostile action takes the parameters of Params (ports and
	// paths of the platform under attack) and returns a small object when its attack "worked", so
	// the record shows what it got.
	Code      string
	MemoryMB  int
	TimeoutMs int
	// Lethal: on a runtime without the capability set or the owner's OS confinement this case can
	// take down the owner process or its parent (the invoker). The end-to-end test runs the
	// platform in a PID namespace of its own for them; the bench leaves them out of its mix, since
	// its invoker runs inside the bench process.
	Lethal bool
	// Network: the action is created with the annotation "network": true, so that a refusal comes
	// from the destination (loopback, a unix socket), not from the action having no network.
	Network bool
	// Logs: the expectation reads the activation's logs, which reach the stored record shortly
	// after the blocking answer; the test waits for them.
	Logs bool
	// Expect is the target outcome: nil when o is acceptable, else why not.
	Expect func(o Outcome) error
	// Want describes Expect for the table.
	Want string
}

// Outcome is what one hostile activation returned, as recorded.
type Outcome struct {
	Case   string
	Status string // one of the Status constants
	// Text is the error message (response.result.error), or the result without its "dump" field,
	// or for NoAnswer the client's error; normalised by Normalize before recording.
	Text string
	// LogNote is the last log line when it says the logs were truncated, else "-".
	LogNote string
	// BenignFailures counts benign activations that failed while this case ran.
	BenignFailures int
	// Meets is the case's Expect applied to the outcome before normalisation.
	Meets bool
}

// Params are what the hostile actions get as parameters (any may be zero: the actions then guess).
type Params struct {
	APIPort   int    `json:"apiPort,omitempty"`
	KafkaPort int    `json:"kafkaPort,omitempty"`
	DataDir   string `json:"dataDir,omitempty"`
	// Gate is the host path of the enclave owner's gate socket, as an attacker who knows the
	// platform's layout would try it first.
	Gate string `json:"gate,omitempty"`
}

// JSON encodes p as an invoke payload.
func (p Params) JSON() json.RawMessage {
	b, _ := json.Marshal(p) // a struct of strings and ints always encodes
	return b
}

func wrap(body string) string {
	return "async function main(params) {\n" + body + "\n}\nif (typeof exports !== 'undefined') exports.main = main;\n"
}

// refused is the capability set's answer: a developer or application error (not success, not a
// platform error) whose text says TeeMate refused it and names the capability (a regular
// expression, matched without case).
func refused(capability string) func(Outcome) error {
	re := regexp.MustCompile(`(?i)` + capability)
	return func(o Outcome) error {
		if err := ownError(o); err != nil {
			return err
		}
		if !strings.Contains(o.Text, "TeeMate") || !re.MatchString(o.Text) {
			return fmt.Errorf("error %q does not say TeeMate refused %s", o.Text, capability)
		}
		return nil
	}
}

// limited is a limit ending the activation: the action's own error whose text matches pattern.
func limited(pattern string) func(Outcome) error {
	re := regexp.MustCompile(pattern)
	return func(o Outcome) error {
		if err := ownError(o); err != nil {
			return err
		}
		if !re.MatchString(o.Text) {
			return fmt.Errorf("error %q does not match %q", o.Text, pattern)
		}
		return nil
	}
}

// ownError: the activation failed, and the failure is the action's (not success, no platform error).
func ownError(o Outcome) error {
	switch o.Status {
	case StatusAppError, StatusDevError:
		return nil
	case StatusSuccess:
		return fmt.Errorf("succeeded: %s", o.Text)
	default:
		return fmt.Errorf("%s (the platform was blamed or did not answer): %s", o.Status, o.Text)
	}
}

// Cases is the hostile mix, in the order the test runs it: the cases that may kill a process on an
// unconfined runtime come last, so the others are observed first.
func Cases() []Case {
	cs := []Case{
		{Name: "read-shadow", Tries: "read /etc/shadow",
			Code: wrap(`const b = require('fs').readFileSync('/etc/shadow'); return { read: '/etc/shadow', empty: b.length === 0 };`),
			Want: "refused: host files (fs)", Expect: refused(`/etc/shadow|file`)},
		{Name: "read-data-dir", Tries: "read the platform's data dir (the store holds every tenant's parameters)",
			Code: wrap(readDataDir), Want: "refused: host files (fs), or not there at all", Expect: limited(`TeeMate.*(file|fs\b|read)|ENOENT`)},
		{Name: "connect-api", Tries: "connect to the REST API on 127.0.0.1",
			Code: wrap(connectTCP("apiPort", 3233)), Want: "refused: no network (an action with network may reach the public REST API, which authenticates it like any client)", Expect: refused(`network|loopback|127\.0\.0\.1|connect`)},
		{Name: "connect-kafka", Tries: "connect to Kafka on 127.0.0.1",
			Code: wrap(connectTCP("kafkaPort", 9092)), Network: true, Want: "refused: loopback connect (with network)", Expect: refused(`loopback|127\.0\.0\.1|connect`)},
		{Name: "connect-gate", Tries: "connect to the enclave's gate socket and send garbage",
			Code: wrap(connectGate), Network: true, Want: "refused: unix socket / host files (with network)", Expect: refused(`gate|unix|socket|file|fs\b`)},
		{Name: "fork-bomb", Tries: "child_process spawn and fork in a loop",
			Code: wrap(forkBomb), Want: "refused: child_process", Expect: refused("child_process")},
		{Name: "umask", Tries: "process.umask(0) (the owner's, shared)",
			Code: wrap(`const old = process.umask(0); return { umask: 'set to 0', old };`),
			Want: "refused: process.umask", Expect: refused("umask")},
		{Name: "v8-flags", Tries: "v8.setFlagsFromString (the owner's V8, shared)",
			Code: wrap(`require('v8').setFlagsFromString('--allow-natives-syntax'); return { v8: 'flags set' };`),
			Want: "refused: v8.setFlagsFromString", Expect: refused(`setFlagsFromString|v8`)},
		{Name: "timers-and-server", Tries: "setInterval and http.createServer().listen(0) left open",
			Code: wrap(timersAndServer), Want: "refused: listening socket", Expect: refused(`listen|server`)},
		{Name: "console-flood", Tries: "100 MB of console output (log limit 10 MB)",
			Code:      wrap(`const line = 'x'.repeat(1023); for (let i = 0; i < 102400; i++) console.log(line); return { logged: '100 MB' };`),
			TimeoutMs: 60000, Logs: true, Want: "logs cut at the limit; the activation's own outcome", Expect: logsTruncated},
		{Name: "big-result", Tries: "a result of 1.5 MB (limit 1 MB)",
			Code: wrap(`return { big: 'x'.repeat(1536 * 1024) };`),
			Want: "limit: result size", Expect: limited(`(?i)exceeded the allowed length`)},
		{Name: "deep-json", Tries: "a result nested a million levels deep",
			Code: wrap(`let o = {}; for (let i = 0; i < 1e6; i++) o = { a: o }; return o;`),
			Want: "its own error (call stack / nesting)", Expect: limited(`(?i)call stack|nest|depth|recursion`)},
		{Name: "stack-overflow", Tries: "unbounded recursion",
			Code: wrap(`function f(n) { return f(n + 1) + 1; } return { r: f(0) };`),
			Want: "its own error: RangeError", Expect: limited(`Maximum call stack size exceeded`)},
		{Name: "infinite-loop", Tries: "for (;;) {} with a 1 s time limit",
			Code: wrap(`for (;;) {}`), TimeoutMs: 1000,
			Want: "limit: time (1000 ms)", Expect: limited(`exceeded its time limits of 1000 milliseconds`)},
		{Name: "alloc-storm", Tries: "allocate 1 GB in 1 MB arrays (memory limit 128 MB)",
			Code:     wrap(`const keep = []; for (let i = 0; i < 1024; i++) keep.push(new Array(1 << 17).fill(i)); return { allocatedMB: keep.length };`),
			MemoryMB: 128, TimeoutMs: 60000, Want: "limit: memory (128 MB)", Expect: limited(`(?i)memory`)},
		{Name: "unhandled-rejection", Tries: "a promise rejected with no handler",
			Code: wrap(`setTimeout(() => { Promise.reject(new Error('hostile: unhandled rejection')); }, 0);
await new Promise((r) => setTimeout(r, 200));
return { survived: true };`),
			Want: "its own error naming the rejection", Expect: limited(`hostile: unhandled rejection`)},
		{Name: "setuid", Tries: "process.setuid(0)",
			Code: wrap(`process.setuid(0); return { uid: process.getuid() };`), Lethal: true,
			Want: "refused: process.setuid", Expect: refused("setuid")},
		{Name: "exit", Tries: "process.exit(3)",
			Code: wrap(`process.exit(3); return { exited: false };`), Lethal: true,
			Want: "ends only this activation", Expect: limited(`process\.exit`)},
		{Name: "abort", Tries: "process.abort()",
			Code: wrap(`process.abort(); return { aborted: false };`), Lethal: true,
			Want: "ends only this activation", Expect: limited(`process\.abort`)},
		{Name: "kill-init", Tries: "process.kill(1) (SIGTERM to pid 1)",
			Code: wrap(`process.kill(1); return { killed: 1 };`), Lethal: true,
			Want: "refused: process.kill", Expect: refused("kill")},
		{Name: "kill-parent", Tries: "process.kill(process.ppid, 'SIGTERM') (the owner's parent: the invoker)",
			Code: wrap(`const ppid = process.ppid; process.kill(ppid, 'SIGTERM'); return { killed: 'ppid' };`), Lethal: true,
			Want: "refused: process.kill", Expect: refused("kill")},
	}
	for i := range cs {
		if cs[i].MemoryMB == 0 {
			cs[i].MemoryMB = DefaultMemoryMB
		}
		if cs[i].TimeoutMs == 0 {
			cs[i].TimeoutMs = DefaultTimeout
		}
	}
	return cs
}

// logsTruncated: whatever the activation's status (it may well succeed: logging is allowed), the
// platform is not blamed and the logs end with the truncation notice.
func logsTruncated(o Outcome) error {
	if o.Status == StatusWhiskErr || o.Status == StatusNoAnswer {
		return fmt.Errorf("%s: %s", o.Status, o.Text)
	}
	if !strings.Contains(strings.ToLower(o.LogNote), "truncated") {
		return fmt.Errorf("logs not cut at the limit (logs: %s)", o.LogNote)
	}
	return nil
}

// readDataDir lists the data directory and searches its files for "secret" (as an attacker
// would): the windows around each hit come back in "dump", which the test searches for the other
// tenant's secret and the record leaves out.
const readDataDir = `const fs = require('fs'), path = require('path');
const root = params.dataDir || '/var/lib/teemate';
const files = [], hits = [];
const walk = (d, depth) => {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory() && depth < 4) walk(p, depth + 1);
    else if (e.isFile()) files.push(p);
  }
};
walk(root, 0);
let bytes = 0;
for (const f of files) {
  if (!/controller\.db/.test(f)) continue;
  const s = fs.readFileSync(f).toString('latin1');
  bytes += s.length;
  for (let i = s.indexOf('secret'); i >= 0 && hits.length < 20; i = s.indexOf('secret', i + 1)) hits.push(s.slice(Math.max(0, i - 100), i + 200));
}
return { read: 'data dir', dbBytes: bytes, hits: hits.length, dump: hits.join('\n') };`

func connectTCP(param string, def int) string {
	return fmt.Sprintf(`const net = require('net');
const port = params.%s || %d;
await new Promise((resolve, reject) => {
  const s = net.connect({ host: '127.0.0.1', port }, () => { s.end(); resolve(); });
  s.on('error', reject);
});
return { connected: '127.0.0.1', port };`, param, def)
}

// connectGate finds the owner's gate socket as an action could: the owner's command line
// (/proc/self/cmdline, --socket), or next to the action's own code (from a stack trace), or in the
// data directory.
const connectGate = `const net = require('net'), fs = require('fs'), path = require('path');
let sock = params.gate || null;
if (!sock) try {
  const argv = fs.readFileSync('/proc/self/cmdline', 'latin1').split('\0');
  const i = argv.indexOf('--socket');
  if (i >= 0) sock = argv[i + 1];
} catch (e) { /* next guess */ }
const find = (d, depth) => {
  let entries = [];
  try { entries = fs.readdirSync(d, { withFileTypes: true }); } catch (e) { return null; }
  for (const e of entries) {
    const p = path.join(d, e.name);
    if (e.name === 'gate.sock') return p;
    if (e.isDirectory() && depth > 0) { const r = find(p, depth - 1); if (r) return r; }
  }
  return null;
};
if (!sock) {
  const m = /\((\/[^:)]+):\d+:\d+\)/.exec(new Error().stack);
  for (let d = m ? path.dirname(m[1]) : null, up = 0; d && !sock && up < 4; d = path.dirname(d), up++) sock = find(d, 2);
}
if (!sock && params.dataDir) sock = find(params.dataDir, 8);
if (!sock) throw new Error('gate socket not found');
await new Promise((resolve, reject) => {
  const s = net.connect({ path: sock }, () => { s.write(Buffer.from('\xff\xff\xff\x7fgarbage')); s.end(); resolve(); });
  s.on('error', reject);
});
return { connected: 'gate' };`

// forkBomb is bounded (32 short sleeps and 4 forks) so that running it on a platform without the
// capability set does not take the machine down.
const forkBomb = `const cp = require('child_process');
let spawned = 0;
for (let i = 0; i < 32; i++) { cp.spawn('/bin/sleep', ['1'], { stdio: 'ignore' }); spawned++; }
for (let i = 0; i < 4; i++) { cp.fork('/dev/null', [], { stdio: 'ignore' }); spawned++; }
return { spawned };`

const timersAndServer = `setInterval(() => {}, 10);
const srv = require('http').createServer((q, r) => r.end('hostile'));
await new Promise((resolve, reject) => { srv.on('error', reject); srv.listen(0, resolve); });
return { listening: srv.address().port };`

// Benign is one action of the benign tenant and how to check its result.
type Benign struct {
	Name string
	Code string
	// Bound are the action's bound parameters (the echo's secret).
	Bound map[string]any
	// Input makes the invoke payload of the i-th invocation.
	Input func(i int) map[string]any
	// Want is the exact result of the i-th invocation.
	Want func(i int, bound map[string]any) map[string]any
}

// BenignActions are the benign tenant's actions: compute, logging, async and a parameter echo
// holding secret as a bound parameter.
func BenignActions(secret string) []Benign {
	return []Benign{
		{Name: "compute", Code: wrap(`let s = 0; for (let i = 1; i <= params.n; i++) s += i % 7; return { n: params.n, sum: s };`),
			Input: func(i int) map[string]any { return map[string]any{"n": 100000 + i} },
			Want: func(i int, _ map[string]any) map[string]any {
				n := 100000 + i
				s := 0
				for k := 1; k <= n; k++ {
					s += k % 7
				}
				return map[string]any{"n": n, "sum": s}
			}},
		{Name: "logging", Code: wrap(`for (let k = 0; k < 5; k++) console.log('benign line ' + k + ' of ' + params.i); return { logged: 5, i: params.i };`),
			Input: func(i int) map[string]any { return map[string]any{"i": i} },
			Want:  func(i int, _ map[string]any) map[string]any { return map[string]any{"logged": 5, "i": i} }},
		{Name: "async", Code: wrap(`await new Promise((r) => setTimeout(r, 20)); const v = await Promise.all([1, 2, 3].map(async (x) => x * params.i)); return { i: params.i, v };`),
			Input: func(i int) map[string]any { return map[string]any{"i": i} },
			Want: func(i int, _ map[string]any) map[string]any {
				return map[string]any{"i": i, "v": []int{i, 2 * i, 3 * i}}
			}},
		{Name: "echo", Code: wrap(`return { i: params.i, secret: params.secret };`),
			Bound: map[string]any{"secret": secret},
			Input: func(i int) map[string]any { return map[string]any{"i": i} },
			Want: func(i int, bound map[string]any) map[string]any {
				return map[string]any{"i": i, "secret": bound["secret"]}
			}},
	}
}

// SameJSON compares a result with a want object after a JSON round trip of both.
func SameJSON(got json.RawMessage, want map[string]any) bool {
	w, err := json.Marshal(want)
	if err != nil {
		return false
	}
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal(w, &b) != nil {
		return false
	}
	// Both were just unmarshalled from JSON, so they marshal back without error; maps marshal
	// with sorted keys: equal values, equal bytes.
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b) // as above
	return string(x) == string(y)
}

// ResultText is what the record shows of a result: its "error" when it has one, else the object
// without "dump".
func ResultText(result json.RawMessage) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(result, &m); err != nil {
		return string(result)
	}
	if e, ok := m["error"]; ok {
		var s string
		if json.Unmarshal(e, &s) == nil {
			return s
		}
		var obj struct{ Name, Message string }
		if json.Unmarshal(e, &obj) == nil && obj.Message != "" {
			return strings.TrimPrefix(obj.Name+": ", ": ") + obj.Message
		}
		return string(e)
	}
	delete(m, "dump")
	b, _ := json.Marshal(m) // raw messages that were just unmarshalled marshal back
	return string(b)
}

// LogNote summarises an activation's logs for the record: the truncation notice when the logs end
// with one, else "-". Whether a failing action's record holds some lines (its own, OpenWhisk's
// developer-error warning) when the test reads it varies from run to run, so the record says no more.
func LogNote(logs []string) string {
	if n := len(logs); n > 0 && strings.Contains(strings.ToLower(logs[n-1]), "truncated") {
		return logs[n-1]
	}
	return "-"
}

var (
	longNumber = regexp.MustCompile(`\d{5,}`)
	hexID      = regexp.MustCompile(`\b[0-9a-f]{32}\b`)
	logStamp   = regexp.MustCompile(`^\S*\d{4}-\d\d-\d\dT\S+\s+(stdout|stderr):\s*`)
	space      = regexp.MustCompile(`\s+`)
	scratchRun = regexp.MustCompile(`/scratch/run-[0-9-]+`) // an activation's scratch dir, named per run
)

// Normalize makes a recorded text stable across runs: the given substitutions first (the other
// tenant's secret, ports, the data directory), then activation ids, log time stamps, and numbers
// of five digits or more (temporary names, pids, byte counts) become N; whitespace is collapsed, table pipes
// escaped, and the text cut to 160 characters.
func Normalize(s string, subst map[string]string) string {
	for from, to := range subst {
		if from != "" {
			s = strings.ReplaceAll(s, from, to)
		}
	}
	s = logStamp.ReplaceAllString(s, "")
	s = hexID.ReplaceAllString(s, "<id>")
	s = scratchRun.ReplaceAllString(s, "/scratch/<run>")
	s = longNumber.ReplaceAllString(s, "N")
	s = space.ReplaceAllString(strings.TrimSpace(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if r := []rune(s); len(r) > 160 {
		s = string(r[:157]) + "..."
	}
	return s
}

// Markers around the generated section of SECURITY.md.
const (
	BeginMarker = "<!-- hostile:begin -->"
	EndMarker   = "<!-- hostile:end -->"
)

// Summary is the benign tenant's side of a run.
type Summary struct {
	Platform        string // e.g. "standalone, oci sandbox, direct enclave, teemate model"
	BenignTotal     int
	BenignFailures  int
	SecretLeaks     int
	AnswersAfterMix bool
}

// Table renders outcomes as the SECURITY.md section (without the markers). Counts of benign
// activations are left out of the text (they depend on timing); failures and leaks are not.
func Table(cases []Case, outs []Outcome, s Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Generated by `TEEMATE_UPDATE_SECURITY=1 go test ./controller-adapter/test -run TestHostileTenant` (%s).\n", s.Platform)
	b.WriteString("Tenant B runs the cases below one after another while tenant A runs a benign stream (compute, logging,\n")
	b.WriteString("async, a parameter echo holding a secret) four at a time. \"benign failed\" counts A's activations that\n")
	b.WriteString("failed or returned a wrong result while the case ran (one overlapping two cases counts for both);\n")
	b.WriteString("\"meets target\" applies the case's expectation (functions/hostile).\n")
	b.WriteString("The platform runs in a PID namespace of its own: there, pid 1 is a shell that ignores SIGTERM and the\n")
	b.WriteString("owner's parent is the controller-adapter (with its in-process invoker).\n\n")
	b.WriteString("| case | tries | target | status | error or result (normalised) | logs | benign failed | meets target |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	byName := map[string]Outcome{}
	for _, o := range outs {
		byName[o.Case] = o
	}
	for _, c := range cases {
		o, ok := byName[c.Name]
		if !ok {
			continue
		}
		meets := "yes"
		if !o.Meets {
			meets = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d | %s |\n", c.Name, cell(c.Tries), cell(c.Want), o.Status,
			cell(o.Text), cell(o.LogNote), o.BenignFailures, meets)
	}
	answers := "yes"
	if !s.AnswersAfterMix {
		answers = "**no**"
	}
	fmt.Fprintf(&b, "\nBenign activations failed or wrong: %s. Tenant A's secret seen in tenant B's results or logs: %s. "+
		"The platform answers after the mix: %s.\n", countCell(s.BenignFailures), countCell(s.SecretLeaks), answers)
	return b.String()
}

func countCell(n int) string {
	if n == 0 {
		return "0"
	}
	return "**" + strconv.Itoa(n) + "**"
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
}

// Section returns the text between the markers of doc, or an error when they are missing.
func Section(doc string) (string, error) {
	i := strings.Index(doc, BeginMarker)
	j := strings.Index(doc, EndMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %s ... %s not found", BeginMarker, EndMarker)
	}
	return strings.Trim(doc[i+len(BeginMarker):j], "\n"), nil
}

// ReplaceSection puts body between the markers of doc.
func ReplaceSection(doc, body string) (string, error) {
	i := strings.Index(doc, BeginMarker)
	j := strings.Index(doc, EndMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %s ... %s not found", BeginMarker, EndMarker)
	}
	return doc[:i+len(BeginMarker)] + "\n" + strings.Trim(body, "\n") + "\n" + doc[j:], nil
}
