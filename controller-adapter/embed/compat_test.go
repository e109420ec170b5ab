package embed

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	owhisk "github.com/apache/openwhisk-client-go/whisk"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/internal/testtool"
)

const (
	throttledUUID = "7d1c2e3f-3333-4444-8555-966677778888"
	throttledKey  = "thr0ttl3thr0ttl3thr0ttl3thr0ttl3thr0ttl3thr0ttl3thr0ttl3thr0ttl3"
	throttledAuth = throttledUUID + ":" + throttledKey
	// throttledPerMinute and throttledFires are the invocations and trigger fires a minute of the
	// namespace throttled, low enough that each client meets the 429 within a few requests.
	throttledPerMinute = 2
	throttledFires     = 1
	// crowded is a namespace with one activation in flight at most.
	crowdedUUID = "9e8d7c6b-5555-4666-8777-a88899990000"
	crowdedKey  = "cr0wd3dcr0wd3dcr0wd3dcr0wd3dcr0wd3dcr0wd3dcr0wd3dcr0wd3dcr0wd3d"
	crowdedAuth = crowdedUUID + ":" + crowdedKey
)

// compatRow is one row of the README's "Compatibility with OpenWhisk" table.
type compatRow struct{ feature, status, check string }

// supported tells whether the row claims the feature works (as OpenWhisk, or as the row says it
// differs) rather than that it is not supported.
func (r compatRow) supported() bool { return !strings.HasPrefix(r.status, "not supported") }

var compatCell = regexp.MustCompile("^`([a-z0-9.]+)`$")

// readCompatTable parses the table of the README's "## Compatibility with OpenWhisk" section.
func readCompatTable(t *testing.T, repo string) []compatRow {
	t.Helper()
	f, err := os.Open(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []compatRow
	in, table := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Compatibility with OpenWhisk"
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			if table {
				in = false // the first table of the section is the one
			}
			continue
		}
		table = true
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("README compatibility row without 3 cells (feature | status | check): %q", line)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cells[0] == "feature" || strings.HasPrefix(cells[0], "---") {
			continue
		}
		m := compatCell.FindStringSubmatch(cells[2])
		st := cells[1]
		if m == nil || !(st == "works" || strings.HasPrefix(st, "differs: ") || strings.HasPrefix(st, "not supported: ")) {
			t.Fatalf("README compatibility row %q: the status must be works, differs: ... or not supported: ..., and the check a `name`", line)
		}
		rows = append(rows, compatRow{feature: cells[0], status: st, check: m[1]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("README.md has no \"## Compatibility with OpenWhisk\" table")
	}
	return rows
}

// TestCompatibilityTable keeps the README's compatibility table true (issue #18 item 7): every
// row names a check, run through openwhisk-client-go (goChecks) and the npm openwhisk client
// (controller-adapter/test/owcompat.js) against one real platform, a controller and an invoker on
// the process sandbox with the direct enclave. A works or differs row needs both checks to
// succeed; a not supported row needs both to fail with an error.
func TestCompatibilityTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	repo := testtool.Root(t)
	rows := readCompatTable(t, repo)
	for _, f := range []string{"bin/teemate-shim", "bin/teemate-start", "node-isolate-patch/build/teemate_isolate.node",
		"enclave-runtime/modules/node_modules/openwhisk/package.json"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			testtool.Missing(t, f+" is not built (make build)")
		}
	}
	node, nodeErr := exec.LookPath("node")
	scripts := filepath.Join(repo, "controller-adapter", "test")
	if _, err := os.Stat(filepath.Join(scripts, "node_modules", "openwhisk", "package.json")); err != nil || nodeErr != nil {
		testtool.Missing(t, "node or the npm openwhisk client is missing (run `npm install` in controller-adapter/test or `make deps`)")
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.check] {
			t.Fatalf("README compatibility table: check %s named twice", r.check)
		}
		seen[r.check] = true
		if goChecks[r.check] == nil {
			t.Errorf("row %q: no Go check %s in compat_test.go", r.feature, r.check)
		}
	}
	if t.Failed() {
		return
	}

	p := startFidelity(t, repo, "process",
		Namespace{Name: systemNamespace, UUID: systemUUID, Key: systemKey},
		Namespace{Name: "throttled", UUID: throttledUUID, Key: throttledKey},
		Namespace{Name: "crowded", UUID: crowdedUUID, Key: crowdedKey})
	perMinute, fires, one := throttledPerMinute, throttledFires, 1
	if _, err := p.ctl.st.SetLimits(p.ctx, "throttled", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &perMinute, FiresPerMinute: &fires}}); err != nil {
		t.Fatal(err)
	}
	// The tenant runs every other check through both clients, more than OpenWhisk's 60 a minute.
	many := 1000
	if _, err := p.ctl.st.SetLimits(p.ctx, "tenant", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &many}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ctl.st.SetLimits(p.ctx, "crowded", store.LimitsChange{Set: store.Limits{ConcurrentInvocations: &one}}); err != nil {
		t.Fatal(err)
	}
	host := p.ctl.APIHost()
	archive := zippedAction(t)
	zipPath := filepath.Join(t.TempDir(), "action.zip")
	if err := os.WriteFile(zipPath, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	g := &goCompat{host: host, zip: archive, c: goClient(t, host, tenantAuth, "_"), sys: goClient(t, host, systemAuth, "_"),
		thr: goClient(t, host, throttledAuth, "_"), crowded: goClient(t, host, crowdedAuth, "_"), tenantSys: goClient(t, host, tenantAuth, systemNamespace),
		bad: goClient(t, host, tenantUUID+":wrong", "_")}

	// The Go client's checks first, then the npm client's, so that neither sees the other's
	// entities in its counts.
	goOutcome := map[string]error{}
	for _, r := range rows {
		t0 := time.Now()
		goOutcome[r.check] = goChecks[r.check](g)
		t.Logf("go %s: %v (%v)", r.check, goOutcome[r.check], time.Since(t0).Round(time.Millisecond))
	}
	jsOutcome := runNodeChecks(t, p.ctx, node, scripts, []string{"OW_APIHOST=" + host, "OW_ZIP=" + zipPath}, rows)

	for _, r := range rows {
		for client, err := range map[string]error{"openwhisk-client-go": goOutcome[r.check], "npm openwhisk": jsOutcome[r.check]} {
			switch {
			case r.supported() && err != nil:
				t.Errorf("row %q (%s) says %q, but %s through %s fails: %v", r.feature, r.check, r.status, r.check, client, err)
			case !r.supported() && err == nil:
				t.Errorf("row %q (%s) says %q, but %s through %s works: update the README", r.feature, r.check, r.status, r.check, client)
			case !r.supported() && strings.TrimSpace(err.Error()) == "":
				t.Errorf("row %q (%s): %s fails without saying why", r.feature, r.check, client)
			}
		}
	}
}

// runNodeChecks runs owcompat.js with every row's check and returns each one's outcome (nil when
// it worked). A check the script does not know is an error of the test.
func runNodeChecks(t *testing.T, ctx context.Context, node, dir string, env []string, rows []compatRow) map[string]error {
	t.Helper()
	checks := make([]string, len(rows))
	for i, r := range rows {
		checks[i] = r.check
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "owcompat.js")
	cmd.Dir = dir
	env = append(env, "OW_AUTH="+tenantAuth, "OW_SYSTEM_AUTH="+systemAuth,
		"OW_THROTTLED_AUTH="+throttledAuth, "OW_CROWDED_AUTH="+crowdedAuth, "OW_CHECKS="+strings.Join(checks, ","))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stderr = testWriter{t}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("owcompat.js: %v\n%s", err, out)
	}
	outcome := map[string]error{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var o struct {
			Check   string  `json:"check"`
			Error   *string `json:"error"`
			Missing bool    `json:"missing"`
			Ms      int     `json:"ms"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("owcompat.js printed %q: %v", line, err)
		}
		if o.Missing {
			t.Errorf("check %s: owcompat.js has no such check", o.Check)
			continue
		}
		outcome[o.Check] = nil
		if o.Error != nil {
			outcome[o.Check] = errors.New(*o.Error)
		}
		t.Logf("js %s: %v (%dms)", o.Check, outcome[o.Check], o.Ms)
	}
	for _, c := range checks {
		if _, ok := outcome[c]; !ok {
			t.Errorf("check %s: owcompat.js reported no outcome", c)
			outcome[c] = errors.New("no outcome")
		}
	}
	return outcome
}

// testWriter logs the node script's stderr in the test's output.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("owcompat.js: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func goClient(t *testing.T, host, auth, namespace string) *owhisk.Client {
	t.Helper()
	c, err := owhisk.NewClient(http.DefaultClient, &owhisk.Config{Host: host, AuthToken: auth, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// zippedAction is a Node.js action as a zip archive: package.json names lib.js, whose exported
// handler requires a module of the archive.
func zippedAction(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, text := range map[string]string{
		"package.json": `{"name":"zipped","main":"lib.js"}`,
		"lib.js":       `exports.handler = (p) => ({ zipped: true, who: p.who, dep: require('./dep').x })`,
		"dep.js":       `exports.x = 42`,
	} {
		f, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// goCompat holds openwhisk-client-go clients: the tenant's, whisk.system's, the throttled and the
// crowded namespaces', the tenant's on whisk.system's entities, and one with a wrong key.
type goCompat struct {
	host                                 string
	zip                                  []byte // a zipped action (zippedAction)
	c, sys, thr, crowded, tenantSys, bad *owhisk.Client
}

// action creates or replaces a nodejs:20 action.
func (g *goCompat) action(c *owhisk.Client, name, code string, params, annotations owhisk.KeyValueArr, limits *owhisk.Limits) error {
	_, _, err := c.Actions.Insert(&owhisk.Action{Name: name, Namespace: "_", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code},
		Parameters: params, Annotations: annotations, Limits: limits}, true)
	if err != nil {
		return fmt.Errorf("create action %s: %w", name, err)
	}
	return nil
}

func kv(pairs ...any) owhisk.KeyValueArr {
	var out owhisk.KeyValueArr
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, owhisk.KeyValue{Key: pairs[i].(string), Value: pairs[i+1]})
	}
	return out
}

func timeout(ms int) *owhisk.Limits { return &owhisk.Limits{Timeout: &ms} }

// result invokes blocking and returns the result.
func (g *goCompat) result(c *owhisk.Client, name string, params map[string]any) (map[string]any, error) {
	if params == nil {
		params = map[string]any{}
	}
	res, _, err := c.Actions.Invoke(name, params, true, true)
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", name, err)
	}
	m, ok := res.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("invoke %s: result %#v", name, res)
	}
	return m, nil
}

// activation polls until the activation's record is stored.
func (g *goCompat) activation(id string) (*owhisk.Activation, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, resp, err := g.c.Activations.Get(id)
		if err == nil {
			return a, nil
		}
		if resp == nil || resp.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			return nil, fmt.Errorf("activation %s: %w", id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// latest polls for the newest activation of the action name, started after since.
func (g *goCompat) latest(name string, since time.Time) (*owhisk.Activation, error) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		acts, _, err := g.c.Activations.List(&owhisk.ActivationListOptions{Name: name, Limit: 5, Docs: true})
		if err != nil {
			return nil, fmt.Errorf("activations of %s: %w", name, err)
		}
		if len(acts) > 0 && acts[0].Start >= since.UnixMilli() {
			return &acts[0], nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("no activation of %s", name)
}

// raw sends a request the client has no call for through the client's Do (no key: web actions,
// GET /, /metrics, preflights), returning the answer with its body.
func (g *goCompat) raw(method, path, body string, header map[string]string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, g.host+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := g.c.Do(req, nil, true)
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		return resp, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, []byte(b.String()), nil
}

// authed sends a request the client has no call for, with the client's key, decoding the JSON
// answer into v.
func authed(c *owhisk.Client, method, path string, namespaced bool, v any) error {
	req, err := c.NewRequest(method, path, nil, namespaced)
	if err != nil {
		return err
	}
	if _, err := c.Do(req, v, true); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// resultOf is an activation's result as an object (nil if it is none).
func resultOf(r owhisk.Result) map[string]any {
	m, _ := r.(map[string]any) // a result that is no object reads as none
	return m
}

// is compares a decoded JSON value with its text: openwhisk-client-go decodes numbers as
// json.Number, float64 or int depending on the call.
func is(v any, text string) bool { return fmt.Sprint(v) == text }

// statusOf is the HTTP status of an answer (0 without one).
func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func want(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// wantRefused is nil when err is the refusal with HTTP status code whose text contains text.
func wantRefused(resp *http.Response, err error, code int, text string) error {
	if err == nil {
		return fmt.Errorf("not refused, want %d %q", code, text)
	}
	return want(statusOf(resp) == code && strings.Contains(err.Error(), text), "refused with %v (%d), want %d %q", err, statusOf(resp), code, text)
}

const echoCode = `function main(p) { return p }`

// goChecks are the README table's checks through openwhisk-client-go, by name; nil means the
// feature works as the row says.
var goChecks = map[string]func(g *goCompat) error{
	"actions.crud": func(g *goCompat) error {
		code := `function main() { return { v: 1 } }`
		a := &owhisk.Action{Name: "go-crud", Namespace: "_", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code}}
		if _, _, err := g.c.Actions.Insert(a, false); err != nil {
			return err
		}
		if _, resp, err := g.c.Actions.Insert(a, false); statusOf(resp) != 409 {
			return fmt.Errorf("second create: %v, want 409", err)
		}
		if _, _, err := g.c.Actions.Insert(&owhisk.Action{Name: "go-crud", Namespace: "_", Annotations: kv("web-export", true)}, true); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		got, _, err := g.c.Actions.Get("go-crud", false)
		if err != nil || got.Exec.Code != nil || got.Version != "0.0.2" || got.Annotations.GetValue("web-export") != true {
			return fmt.Errorf("get without code: %+v %v", got, err)
		}
		if got, _, err = g.c.Actions.Get("go-crud", true); err != nil || got.Exec.Code == nil || *got.Exec.Code != code {
			return fmt.Errorf("get with code: %+v %v", got, err)
		}
		if _, err := g.c.Actions.Delete("go-crud"); err != nil {
			return err
		}
		_, resp, err := g.c.Actions.Get("go-crud", false)
		return wantRefused(resp, err, 404, "The requested resource does not exist.")
	},
	"actions.list": func(g *goCompat) error {
		for _, n := range []string{"go-list-a", "go-list-b"} {
			if err := g.action(g.c, n, echoCode, nil, nil, nil); err != nil {
				return err
			}
		}
		all, _, err := g.c.Actions.List("", &owhisk.ActionListOptions{Limit: 200})
		if err != nil {
			return err
		}
		names := map[string]bool{}
		for _, a := range all {
			names[a.Name] = true
		}
		one, _, err := g.c.Actions.List("", &owhisk.ActionListOptions{Limit: 1, Skip: 1})
		if err != nil {
			return err
		}
		return want(names["go-list-a"] && names["go-list-b"] && len(one) == 1 && one[0].Name == all[1].Name, "list: %v, skip 1 limit 1: %v", names, one)
	},
	"actions.zip": func(g *goCompat) error {
		code, binary := base64.StdEncoding.EncodeToString(g.zip), true
		a := &owhisk.Action{Name: "go-zipped", Namespace: "_", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code, Binary: &binary, Main: "handler"}}
		if _, _, err := g.c.Actions.Insert(a, true); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-zipped", map[string]any{"who": "go"})
		return want(err == nil && r["zipped"] == true && r["who"] == "go" && is(r["dep"], "42"), "zipped action: %v %v", r, err)
	},
	"actions.limits": func(g *goCompat) error {
		memory, logs := 256, 2
		if err := g.action(g.c, "go-limited", echoCode, nil, nil, &owhisk.Limits{Timeout: timeout(5000).Timeout, Memory: &memory, Logsize: &logs}); err != nil {
			return err
		}
		a, _, err := g.c.Actions.Get("go-limited", false)
		if err != nil || *a.Limits.Timeout != 5000 || *a.Limits.Memory != 256 || *a.Limits.Logsize != 2 {
			return fmt.Errorf("limits: %+v %v", a, err)
		}
		tooMuch := 100000
		_, resp, err := g.c.Actions.Insert(&owhisk.Action{Name: "go-limited", Namespace: "_", Limits: &owhisk.Limits{Memory: &tooMuch}}, true)
		return wantRefused(resp, err, 400, "memory 100000 MB is outside the allowed range")
	},
	"actions.concurrency": func(g *goCompat) error {
		code, two := echoCode, 2
		_, _, err := g.c.Actions.Insert(&owhisk.Action{Name: "go-shared-container", Namespace: "_", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code},
			Limits: &owhisk.Limits{Concurrency: &two}}, true)
		return err
	},
	"invoke.blocking": func(g *goCompat) error {
		if err := g.action(g.c, "go-echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		res, _, err := g.c.Actions.Invoke("go-echo", map[string]any{"name": "Bob"}, true, false)
		if err != nil {
			return err
		}
		m, _ := res.(map[string]any)
		r, _ := m["response"].(map[string]any)
		result, _ := r["result"].(map[string]any)
		return want(m["activationId"] != nil && r["success"] == true && result["name"] == "Bob", "blocking answer %v", res)
	},
	"invoke.nonblocking": func(g *goCompat) error {
		if err := g.action(g.c, "go-echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		res, resp, err := g.c.Actions.Invoke("go-echo", map[string]any{"name": "later"}, false, false)
		if err != nil {
			return err
		}
		id, _ := res.(map[string]any)["activationId"].(string)
		if resp.StatusCode != 202 || id == "" {
			return fmt.Errorf("non-blocking answer %d %v", resp.StatusCode, res)
		}
		a, err := g.activation(id)
		if err != nil {
			return err
		}
		return want(resultOf(a.Response.Result)["name"] == "later", "record %+v", a.Response)
	},
	"invoke.result": func(g *goCompat) error {
		if err := g.action(g.c, "go-echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-echo", map[string]any{"x": 1})
		return want(err == nil && is(r["x"], "1") && r["activationId"] == nil, "result %v %v", r, err)
	},
	"invoke.params": func(g *goCompat) error {
		if err := g.action(g.c, "go-params", echoCode, kv("a", "action", "b", "action"), nil, nil); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-params", map[string]any{"b": "invocation"})
		return want(err == nil && r["a"] == "action" && r["b"] == "invocation", "result %v %v", r, err)
	},
	"web.json": func(g *goCompat) error {
		if err := g.action(g.c, "go-web", echoCode, nil, kv("web-export", true), nil); err != nil {
			return err
		}
		_, b, err := g.raw("GET", "/api/v1/web/tenant/default/go-web.json?x=1", "", nil)
		return want(err == nil && strings.Contains(string(b), `"x":"1"`), "web .json: %s %v", b, err)
	},
	"web.http": func(g *goCompat) error {
		code := `function main() { return { statusCode: 201, headers: { 'x-compat': 'yes' }, body: 'made' } }`
		if err := g.action(g.c, "go-webhttp", code, nil, kv("web-export", true), nil); err != nil {
			return err
		}
		resp, b, err := g.raw("GET", "/api/v1/web/tenant/default/go-webhttp.http", "", nil)
		return want(err == nil && resp.StatusCode == 201 && resp.Header.Get("X-Compat") == "yes" && string(b) == "made", "web .http: %v %s %v", resp, b, err)
	},
	"web.raw": func(g *goCompat) error {
		if err := g.action(g.c, "go-raw", `function main(p) { return { body: p.__ow_body, query: p.__ow_query, plain: p.a } }`, nil,
			kv("web-export", true, "raw-http", true), nil); err != nil {
			return err
		}
		_, b, err := g.raw("POST", "/api/v1/web/tenant/default/go-raw.json?a=1", "hello", map[string]string{"Content-Type": "text/plain"})
		var r map[string]any
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		return want(err == nil && r["body"] == "hello" && r["query"] == "a=1" && r["plain"] == nil, "raw-http: %s %v", b, err)
	},
	"web.auth": func(g *goCompat) error {
		if err := g.action(g.c, "go-guarded", echoCode, nil, kv("web-export", true, "require-whisk-auth", "s3cret"), nil); err != nil {
			return err
		}
		resp, _, err := g.raw("GET", "/api/v1/web/tenant/default/go-guarded.json", "", nil)
		if statusOf(resp) != 401 {
			return fmt.Errorf("without the header: %d %v", statusOf(resp), err)
		}
		_, b, err := g.raw("GET", "/api/v1/web/tenant/default/go-guarded.json?x=1", "", map[string]string{"X-Require-Whisk-Auth": "s3cret"})
		return want(err == nil && strings.Contains(string(b), `"x":"1"`), "with the header: %s %v", b, err)
	},
	"activations.list": func(g *goCompat) error {
		if err := g.action(g.c, "go-listed", echoCode, nil, nil, nil); err != nil {
			return err
		}
		since := time.Now().Add(-time.Second)
		if _, err := g.result(g.c, "go-listed", nil); err != nil {
			return err
		}
		_, err := g.latest("go-listed", since)
		return err
	},
	"activations.get": func(g *goCompat) error {
		if err := g.action(g.c, "go-logger", `function main() { console.log('hello log'); return { done: true } }`, nil, nil, nil); err != nil {
			return err
		}
		res, _, err := g.c.Actions.Invoke("go-logger", map[string]any{}, true, false)
		if err != nil {
			return err
		}
		id, _ := res.(map[string]any)["activationId"].(string)
		a, err := g.activation(id)
		if err != nil {
			return err
		}
		logs, _, err := g.c.Activations.Logs(id)
		if err != nil || len(logs.Logs) != 1 || !strings.HasSuffix(logs.Logs[0], "stdout: hello log") {
			return fmt.Errorf("logs: %+v %v", logs, err)
		}
		r, _, err := g.c.Activations.Result(id)
		return want(err == nil && a.Name == "go-logger" && resultOf(r.Result)["done"] == true, "record %+v, result %+v %v", a, r, err)
	},
	"namespaces.list": func(g *goCompat) error {
		// Namespaces.List empties its client's namespace (wsk makes a client per command).
		c, err := owhisk.NewClient(http.DefaultClient, &owhisk.Config{Host: g.host, AuthToken: tenantAuth})
		if err != nil {
			return err
		}
		ns, _, err := c.Namespaces.List()
		return want(err == nil && len(ns) == 1 && ns[0].Name == "tenant", "namespaces %+v %v", ns, err)
	},
	"auth.errors": func(g *goCompat) error {
		_, resp, err := g.bad.Actions.List("", nil)
		if err := wantRefused(resp, err, 401, "The supplied authentication is invalid"); err != nil {
			return fmt.Errorf("wrong key: %w", err)
		}
		if err := g.action(g.sys, "go-private", echoCode, nil, nil, nil); err != nil {
			return err
		}
		_, resp, err = g.tenantSys.Actions.Invoke("go-private", map[string]any{}, true, true)
		return wantRefused(resp, err, 403, "not authorized")
	},
	"packages.crud": func(g *goCompat) error {
		if _, _, err := g.c.Packages.Insert(&owhisk.Package{Name: "go-pkg", Namespace: "_"}, false); err != nil {
			return err
		}
		if _, _, err := g.c.Packages.Insert(&owhisk.Package{Name: "go-pkg", Namespace: "_", Parameters: kv("p", 1)}, true); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if err := g.action(g.c, "go-pkg/a", echoCode, nil, nil, nil); err != nil {
			return err
		}
		p, _, err := g.c.Packages.Get("go-pkg")
		if err != nil || len(p.Actions) != 1 || p.Actions[0].Name != "a" || !is(p.Parameters.GetValue("p"), "1") {
			return fmt.Errorf("get: %+v %v", p, err)
		}
		list, _, err := g.c.Packages.List(&owhisk.PackageListOptions{Limit: 100})
		found := false
		for _, q := range list {
			found = found || q.Name == "go-pkg"
		}
		if err != nil || !found {
			return fmt.Errorf("list: %+v %v", list, err)
		}
		if resp, err := g.c.Packages.Delete("go-pkg"); statusOf(resp) != 409 {
			return fmt.Errorf("delete with an action: %v, want 409", err)
		}
		if _, err := g.c.Actions.Delete("go-pkg/a"); err != nil {
			return err
		}
		if _, err := g.c.Packages.Delete("go-pkg"); err != nil {
			return err
		}
		_, resp, err := g.c.Packages.Get("go-pkg")
		return wantRefused(resp, err, 404, "")
	},
	"packages.params": func(g *goCompat) error {
		if _, _, err := g.c.Packages.Insert(&owhisk.Package{Name: "go-inherit", Namespace: "_", Parameters: kv("a", "pkg", "b", "pkg", "c", "pkg")}, true); err != nil {
			return err
		}
		if err := g.action(g.c, "go-inherit/echo", echoCode, kv("b", "action", "c", "action"), nil, nil); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-inherit/echo", map[string]any{"c": "inv"})
		return want(err == nil && r["a"] == "pkg" && r["b"] == "action" && r["c"] == "inv", "result %v %v", r, err)
	},
	"packages.binding": func(g *goCompat) error {
		if _, _, err := g.c.Packages.Insert(&owhisk.Package{Name: "go-bound", Namespace: "_", Parameters: kv("a", "pkg", "b", "pkg")}, true); err != nil {
			return err
		}
		if err := g.action(g.c, "go-bound/echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		b := &owhisk.BindingPackage{Name: "go-binding", Namespace: "_", Binding: owhisk.Binding{Namespace: "tenant", Name: "go-bound"}, Parameters: kv("b", "binding")}
		if _, _, err := g.c.Packages.Insert(b, true); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-binding/echo", nil)
		return want(err == nil && r["a"] == "pkg" && r["b"] == "binding", "result %v %v", r, err)
	},
	"packages.shared": func(g *goCompat) error {
		pub := true
		if _, _, err := g.sys.Packages.Insert(&owhisk.Package{Name: "go-shared", Namespace: "_", Publish: &pub, Parameters: kv("who", "system")}, true); err != nil {
			return err
		}
		if err := g.action(g.sys, "go-shared/echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		if _, _, err := g.sys.Packages.Insert(&owhisk.Package{Name: "go-hidden", Namespace: "_"}, true); err != nil {
			return err
		}
		if err := g.action(g.sys, "go-hidden/echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		list, _, err := g.tenantSys.Packages.List(&owhisk.PackageListOptions{Limit: 100})
		names := map[string]bool{}
		for _, p := range list {
			names[p.Name] = true
		}
		if err != nil || !names["go-shared"] || !names["alarms"] || names["go-hidden"] {
			return fmt.Errorf("whisk.system's packages as the tenant: %v %v", names, err)
		}
		if r, err := g.result(g.tenantSys, "go-shared/echo", nil); err != nil || r["who"] != "system" {
			return fmt.Errorf("invoke the shared action: %v %v", r, err)
		}
		b := &owhisk.BindingPackage{Name: "go-mine", Namespace: "_", Binding: owhisk.Binding{Namespace: systemNamespace, Name: "go-shared"}, Parameters: kv("who", "tenant")}
		if _, _, err := g.c.Packages.Insert(b, true); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		if r, err := g.result(g.c, "go-mine/echo", nil); err != nil || r["who"] != "tenant" {
			return fmt.Errorf("invoke through the binding: %v %v", r, err)
		}
		_, resp, err := g.tenantSys.Actions.Invoke("go-hidden/echo", map[string]any{}, true, true)
		if err := wantRefused(resp, err, 403, "not authorized"); err != nil {
			return fmt.Errorf("invoke the private package's action: %w", err)
		}
		_, resp, err = g.c.Packages.Insert(&owhisk.BindingPackage{Name: "go-theirs", Namespace: "_", Binding: owhisk.Binding{Namespace: systemNamespace, Name: "go-hidden"}}, true)
		return wantRefused(resp, err, 403, "not authorized")
	},
	"packages.web": func(g *goCompat) error {
		if _, _, err := g.c.Packages.Insert(&owhisk.Package{Name: "go-webpkg", Namespace: "_", Parameters: kv("from", "pkg")}, true); err != nil {
			return err
		}
		if err := g.action(g.c, "go-webpkg/page", echoCode, nil, kv("web-export", true), nil); err != nil {
			return err
		}
		if r, err := g.result(g.c, "go-webpkg/page", nil); err != nil || r["from"] != "pkg" {
			return fmt.Errorf("invoke by the package path: %v %v", r, err)
		}
		_, b, err := g.raw("GET", "/api/v1/web/tenant/go-webpkg/page.json", "", nil)
		return want(err == nil && strings.Contains(string(b), `"from":"pkg"`), "web action in a package: %s %v", b, err)
	},
	"sequences.run": func(g *goCompat) error {
		if err := g.sequenceFixture(); err != nil {
			return err
		}
		if r, err := g.result(g.c, "go-seq", map[string]any{"n": 1}); err != nil || !is(r["n"], "3") {
			return fmt.Errorf("sequence result: %v %v", r, err)
		}
		_, _, err := g.c.Actions.Invoke("go-seqbad", map[string]any{"n": 1}, true, true)
		return want(err != nil && strings.Contains(err.Error(), "boom at 2"), "a failing component: %v", err)
	},
	"sequences.record": func(g *goCompat) error {
		if err := g.sequenceFixture(); err != nil {
			return err
		}
		res, _, err := g.c.Actions.Invoke("go-seq", map[string]any{"n": 1}, true, false)
		if err != nil {
			return err
		}
		id, _ := res.(map[string]any)["activationId"].(string)
		a, err := g.activation(id)
		if err != nil {
			return err
		}
		if len(a.Logs) != 2 {
			return fmt.Errorf("the sequence's logs: %v", a.Logs)
		}
		comp, err := g.activation(a.Logs[1])
		if err != nil {
			return err
		}
		return want(comp.Name == "go-inc" && comp.Annotations.GetValue("causedBy") == "sequence", "component %s: %+v", comp.Name, comp.Annotations)
	},
	"sequences.limit": func(g *goCompat) error {
		if err := g.sequenceFixture(); err != nil {
			return err
		}
		comps := make([]string, 51)
		for i := range comps {
			comps[i] = "/_/go-inc"
		}
		_, resp, err := g.c.Actions.Insert(&owhisk.Action{Name: "go-long", Namespace: "_", Exec: &owhisk.Exec{Kind: "sequence", Components: comps}}, true)
		return wantRefused(resp, err, 400, "Too many actions in the sequence.")
	},
	"conductor.run": func(g *goCompat) error {
		if err := g.sequenceFixture(); err != nil {
			return err
		}
		code := `function main(p) {
			if (p.step === undefined) return { action: 'go-inc', params: { n: p.n }, state: { step: 1 } };
			if (p.step === 1) return { action: 'go-inc', params: { n: p.n }, state: { step: 2 } };
			return { params: { n: p.n, steps: p.step } };
		}`
		if err := g.action(g.c, "go-conductor", code, nil, kv("conductor", true), nil); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-conductor", map[string]any{"n": 10})
		return want(err == nil && is(r["n"], "12") && is(r["steps"], "2"), "composition result %v %v", r, err)
	},
	"triggers.crud": func(g *goCompat) error {
		if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: "go-trig", Namespace: "_"}, false); err != nil {
			return err
		}
		if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: "go-trig", Namespace: "_", Parameters: kv("t", 1)}, true); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		tr, _, err := g.c.Triggers.Get("go-trig")
		if err != nil || !is(tr.Parameters.GetValue("t"), "1") || tr.Version != "0.0.2" {
			return fmt.Errorf("get: %+v %v", tr, err)
		}
		list, _, err := g.c.Triggers.List(&owhisk.TriggerListOptions{Limit: 100})
		found := false
		for _, x := range list {
			found = found || x.Name == "go-trig"
		}
		if err != nil || !found {
			return fmt.Errorf("list: %+v %v", list, err)
		}
		if _, _, err := g.c.Triggers.Delete("go-trig"); err != nil {
			return err
		}
		_, resp, err := g.c.Triggers.Get("go-trig")
		return wantRefused(resp, err, 404, "")
	},
	"rules.crud": func(g *goCompat) error {
		if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: "go-rtrig", Namespace: "_"}, true); err != nil {
			return err
		}
		if err := g.action(g.c, "go-echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		// wsk qualifies a rule's trigger and action (/_/name) before the client sends them.
		if _, _, err := g.c.Rules.Insert(&owhisk.Rule{Name: "go-rule", Trigger: "/_/go-rtrig", Action: "/_/go-echo"}, true); err != nil {
			return err
		}
		for i, st := range []string{"active", "inactive", "active"} {
			if i > 0 { // a new rule is active
				if _, _, err := g.c.Rules.SetState("go-rule", st); err != nil {
					return fmt.Errorf("set %s: %w", st, err)
				}
			}
			r, _, err := g.c.Rules.Get("go-rule")
			if err != nil || r.Status != st {
				return fmt.Errorf("get after %s: %+v %v", st, r, err)
			}
		}
		if _, err := g.c.Rules.Delete("go-rule"); err != nil {
			return err
		}
		_, resp, err := g.c.Rules.Get("go-rule")
		return wantRefused(resp, err, 404, "")
	},
	"triggers.fire": func(g *goCompat) error {
		if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: "go-ftrig", Namespace: "_", Parameters: kv("from", "trigger")}, true); err != nil {
			return err
		}
		if err := g.action(g.c, "go-fired", echoCode, nil, nil, nil); err != nil {
			return err
		}
		if _, _, err := g.c.Rules.Insert(&owhisk.Rule{Name: "go-frule", Trigger: "/_/go-ftrig", Action: "/_/go-fired"}, true); err != nil {
			return err
		}
		tr, _, err := g.c.Triggers.Fire("go-ftrig", map[string]any{"x": 1})
		if err != nil || tr.ActivationId == "" {
			return fmt.Errorf("fire: %+v %v", tr, err)
		}
		ta, err := g.activation(tr.ActivationId)
		if err != nil || len(ta.Logs) != 1 {
			return fmt.Errorf("the trigger's activation: %+v %v", ta, err)
		}
		var line struct {
			Success      bool   `json:"success"`
			ActivationID string `json:"activationId"`
		}
		if err := json.Unmarshal([]byte(ta.Logs[0]), &line); err != nil || !line.Success {
			return fmt.Errorf("the rule's outcome: %q %v", ta.Logs[0], err)
		}
		a, err := g.activation(line.ActivationID)
		if err != nil {
			return err
		}
		r := resultOf(a.Response.Result)
		return want(is(r["x"], "1") && r["from"] == "trigger", "the rule's action: %v", r)
	},
	"feeds.alarm": func(g *goCompat) error {
		_, err := g.alarm("go-alarm", echoCode, nil)
		return err
	},
	"feeds.nokey": func(g *goCompat) error {
		a, err := g.alarm("go-nokey", `function main() { return { key: process.env.__OW_API_KEY || 'none' } }`, kv("provide-api-key", true))
		if err != nil {
			return err
		}
		return want(resultOf(a.Response.Result)["key"] == "none", "a scheduled fire's action got a key: %v", a.Response.Result)
	},
	"feeds.lifecycle": func(g *goCompat) error {
		for feed, params := range map[string]map[string]any{
			"interval": {"minutes": 1},
			"once":     {"date": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
		} {
			trigger := "go-" + feed
			if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: trigger, Namespace: "_", Annotations: kv("feed", "/whisk.system/alarms/"+feed)}, true); err != nil {
				return err
			}
			for _, event := range []string{"CREATE", "READ", "DELETE"} {
				p := map[string]any{"lifecycleEvent": event, "triggerName": "/_/" + trigger, "authKey": tenantAuth}
				if event == "CREATE" {
					for k, v := range params {
						p[k] = v
					}
				}
				r, err := g.result(g.tenantSys, "alarms/"+feed, p)
				if err != nil {
					return fmt.Errorf("%s %s: %w", feed, event, err)
				}
				if event == "READ" {
					config, _ := r["config"].(map[string]any)
					for k, v := range params {
						if !is(config[k], fmt.Sprint(v)) {
							return fmt.Errorf("%s READ: %v", feed, r)
						}
					}
				}
			}
		}
		return nil
	},
	"throttle.invocations": func(g *goCompat) error {
		if err := g.action(g.thr, "go-echo", echoCode, nil, nil, nil); err != nil {
			return err
		}
		// One more than the limit and one for a minute that turns in between.
		for i := 0; i < throttledPerMinute+2; i++ {
			_, resp, err := g.thr.Actions.Invoke("go-echo", map[string]any{}, false, false)
			if err != nil {
				return wantRefused(resp, err, 429, fmt.Sprintf("Too many requests in the last minute (count: %d, allowed: %d).", throttledPerMinute+1, throttledPerMinute))
			}
		}
		return fmt.Errorf("%d invocations, none refused", throttledPerMinute+2)
	},
	"throttle.fires": func(g *goCompat) error {
		if _, _, err := g.thr.Triggers.Insert(&owhisk.Trigger{Name: "go-often", Namespace: "_"}, true); err != nil {
			return err
		}
		for i := 0; i < throttledFires+2; i++ {
			if _, resp, err := g.thr.Triggers.Fire("go-often", map[string]any{}); err != nil {
				return wantRefused(resp, err, 429, fmt.Sprintf("allowed: %d).", throttledFires))
			}
		}
		return fmt.Errorf("%d fires, none refused", throttledFires+2)
	},
	"throttle.concurrent": func(g *goCompat) error {
		if err := g.action(g.crowded, "go-hold", `function main() { return new Promise(() => {}) }`, nil, nil, timeout(1000)); err != nil {
			return err
		}
		if _, _, err := g.crowded.Actions.Invoke("go-hold", map[string]any{}, false, false); err != nil {
			return err
		}
		_, resp, err := g.crowded.Actions.Invoke("go-hold", map[string]any{}, false, false)
		return wantRefused(resp, err, 429, "Too many concurrent requests in flight (count: 1, allowed: 1).")
	},
	"limits.get": func(g *goCompat) error {
		var l map[string]any
		err := authed(g.thr, "GET", "limits", true, &l)
		return want(err == nil && is(l["invocationsPerMinute"], fmt.Sprint(throttledPerMinute)) && is(l["concurrentInvocations"], "30") &&
			is(l["firesPerMinute"], fmt.Sprint(throttledFires)), "the throttled namespace's limits %v %v", l, err)
	},
	"info.root": func(g *goCompat) error {
		_, b, err := g.raw("GET", "/", "", nil)
		var root struct {
			Runtimes map[string]any `json:"runtimes"`
			Limits   map[string]any `json:"limits"`
		}
		if err == nil {
			err = json.Unmarshal(b, &root)
		}
		return want(err == nil && root.Runtimes["nodejs"] != nil && root.Limits["actions_per_minute"] != nil, "GET /: %s %v", b, err)
	},
	"info.apidocs": func(g *goCompat) error {
		var doc struct {
			OpenAPI string         `json:"openapi"`
			Paths   map[string]any `json:"paths"`
		}
		err := authed(g.c, "GET", "api-docs", false, &doc)
		return want(err == nil && strings.HasPrefix(doc.OpenAPI, "3.") && doc.Paths["/api/v1/namespaces/{namespace}/actions/{name}"] != nil, "api-docs %v %v", doc.OpenAPI, err)
	},
	"info.metrics": func(g *goCompat) error {
		_, b, err := g.raw("GET", "/metrics", "", nil)
		return want(err == nil && strings.Contains(string(b), "teemate_controller_http_requests_total"), "metrics: %.200s %v", b, err)
	},
	"info.cors": func(g *goCompat) error {
		resp, _, err := g.raw("OPTIONS", "/api/v1/namespaces/_/actions", "", map[string]string{"Origin": "https://example.com", "Access-Control-Request-Method": "PUT"})
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			return fmt.Errorf("preflight: %v %v", resp, err)
		}
		req, err := g.c.NewRequest("GET", "actions", nil, true)
		if err != nil {
			return err
		}
		resp, err = g.c.Do(req, nil, true)
		return want(err == nil && resp.Header.Get("Access-Control-Allow-Origin") == "*", "a GET's headers: %v %v", resp, err)
	},
	"lists.count": func(g *goCompat) error {
		all, _, err := g.c.Actions.List("", &owhisk.ActionListOptions{Limit: 200})
		if err != nil {
			return err
		}
		var n map[string]int
		err = authed(g.c, "GET", "actions?count=true", true, &n)
		if err != nil || n["actions"] != len(all) {
			return fmt.Errorf("actions count %v of %d: %v", n, len(all), err)
		}
		c, _, err := g.c.Activations.Count(&owhisk.ActivationCountOptions{})
		return want(err == nil && c.Activations > 0, "activations count %+v %v", c, err)
	},
	"entities.version": func(g *goCompat) error {
		code := echoCode
		a, _, err := g.c.Actions.Insert(&owhisk.Action{Name: "go-versioned", Namespace: "_", Version: "3.0.0", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code}}, true)
		if err != nil || a.Version != "3.0.0" {
			return fmt.Errorf("create with version 3.0.0: %+v %v", a, err)
		}
		a, _, err = g.c.Actions.Insert(&owhisk.Action{Name: "go-versioned", Namespace: "_", Parameters: kv("x", 1)}, true)
		return want(err == nil && a.Version == "3.0.1", "update: %+v %v", a, err)
	},
	"runtime.fetch": func(g *goCompat) error {
		code := `async function main() { const r = await fetch(process.env.__OW_API_HOST + '/api/v1'); return { status: r.status } }`
		if err := g.action(g.c, "go-fetch", code, nil, kv("network", true), timeout(10000)); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-fetch", nil)
		return want(err == nil && is(r["status"], "200"), "fetch: %v %v", r, err)
	},
	"runtime.network": func(g *goCompat) error {
		code := `function main() {
			const u = new URL(process.env.__OW_API_HOST);
			return new Promise((resolve, reject) => {
				require('http').get({ host: u.hostname, port: u.port, path: '/api/v1' }, (res) => { res.resume(); resolve({ status: res.statusCode }) }).on('error', reject);
			});
		}`
		if err := g.action(g.c, "go-net", code, nil, kv("network", true), timeout(10000)); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-net", nil)
		return want(err == nil && is(r["status"], "200"), "http.get: %v %v", r, err)
	},
	"runtime.logvolume": func(g *goCompat) error {
		code := `function main() { for (let i = 0; i < 15000; i++) console.log(String(i).padStart(40, '.')); return { done: true } }`
		if err := g.action(g.c, "go-chatty", code, nil, nil, timeout(20000)); err != nil {
			return err
		}
		res, _, err := g.c.Actions.Invoke("go-chatty", map[string]any{}, true, false)
		if err != nil {
			return err
		}
		logs, _, err := g.c.Activations.Logs(res.(map[string]any)["activationId"].(string))
		return want(err == nil && len(logs.Logs) == 15000, "logs: %d lines, %v", len(logs.Logs), err)
	},
	"runtime.logtruncation": func(g *goCompat) error {
		code := `function main() { const l = 'y'.repeat(1000); for (let i = 0; i < 2000; i++) console.log(l); return { done: true } }`
		one := 1
		if err := g.action(g.c, "go-flood", code, nil, nil, &owhisk.Limits{Logsize: &one, Timeout: timeout(20000).Timeout}); err != nil {
			return err
		}
		res, _, err := g.c.Actions.Invoke("go-flood", map[string]any{}, true, false)
		if err != nil {
			return err
		}
		logs, _, err := g.c.Activations.Logs(res.(map[string]any)["activationId"].(string))
		if err != nil || len(logs.Logs) == 0 {
			return fmt.Errorf("logs: %v", err)
		}
		last := logs.Logs[len(logs.Logs)-1]
		return want(strings.HasSuffix(last, "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."), "last line %q", last)
	},
	"runtime.neversettles": func(g *goCompat) error {
		if err := g.action(g.c, "go-never", `function main() { return new Promise(() => {}) }`, nil, nil, timeout(1500)); err != nil {
			return err
		}
		_, resp, err := g.c.Actions.Invoke("go-never", map[string]any{}, true, true)
		return want(err != nil && resp != nil && resp.StatusCode == 502 && strings.Contains(err.Error(), "The action exceeded its time limits of 1500 milliseconds."), "never settling: %v %v", resp, err)
	},
	"runtime.openhandles": func(g *goCompat) error {
		if err := g.action(g.c, "go-lingering", `function main() { setInterval(() => {}, 10); return { resolved: true } }`, nil, nil, timeout(10000)); err != nil {
			return err
		}
		t0 := time.Now()
		r, err := g.result(g.c, "go-lingering", nil)
		return want(err == nil && r["resolved"] == true && time.Since(t0) < 5*time.Second, "after %v: %v %v", time.Since(t0), r, err)
	},
	"runtime.openwhiskmodule": func(g *goCompat) error {
		code := `async function main() { const ow = require('openwhisk')(); return { names: (await ow.actions.list()).map((a) => a.name) } }`
		if err := g.action(g.c, "go-lister", code, nil, kv("network", true, "provide-api-key", true), timeout(20000)); err != nil {
			return err
		}
		r, err := g.result(g.c, "go-lister", nil)
		return want(err == nil && strings.Contains(fmt.Sprint(r["names"]), "go-lister"), "openwhisk module: %v %v", r, err)
	},
	"runtime.nodejs18": func(g *goCompat) error { return g.kind("go-node18", "nodejs:18") },
	"runtime.otherkinds": func(g *goCompat) error {
		for _, k := range []string{"python:3", "java:8", "blackbox"} {
			if err := g.kind("go-"+strings.ReplaceAll(k, ":", ""), k); err == nil {
				return nil
			} else if !strings.Contains(err.Error(), "not supported") {
				return fmt.Errorf("%s refused without saying why: %w", k, err)
			}
		}
		return errors.New("python:3, java:8 and blackbox are not supported")
	},
	"apigw.create": func(g *goCompat) error {
		_, _, err := g.c.Apis.Insert(&owhisk.ApiCreateRequest{ApiDoc: &owhisk.Api{Namespace: "tenant", ApiName: "go", GatewayBasePath: "/go",
			GatewayRelPath: "/hello", GatewayMethod: "get", Action: &owhisk.ApiAction{Name: "go-echo", Namespace: "tenant", BackendMethod: "get",
				BackendUrl: g.host + "/api/v1/web/tenant/default/go-echo.http", Auth: tenantAuth}}}, &owhisk.ApiCreateRequestOptions{}, false)
		return err
	},
}

// sequenceFixture creates go-inc (n+1), go-bad (fails at n 2), the sequence go-seq (inc, inc)
// and go-seqbad (inc, bad, inc).
func (g *goCompat) sequenceFixture() error {
	if err := g.action(g.c, "go-inc", `function main(p) { return { n: p.n + 1 } }`, nil, nil, nil); err != nil {
		return err
	}
	if err := g.action(g.c, "go-bad", `function main(p) { return { error: 'boom at ' + p.n } }`, nil, nil, nil); err != nil {
		return err
	}
	for name, comps := range map[string][]string{"go-seq": {"/_/go-inc", "/_/go-inc"}, "go-seqbad": {"/_/go-inc", "/_/go-bad", "/_/go-inc"}} {
		if _, _, err := g.c.Actions.Insert(&owhisk.Action{Name: name, Namespace: "_", Exec: &owhisk.Exec{Kind: "sequence", Components: comps}}, true); err != nil {
			return fmt.Errorf("create sequence %s: %w", name, err)
		}
	}
	return nil
}

// alarm creates a trigger fed by /whisk.system/alarms/alarm every second (the feed action
// invoked as wsk invokes it), a rule to an action with code, and returns the action's first
// activation after the feed's creation; the feed is deleted after.
func (g *goCompat) alarm(name, code string, annotations owhisk.KeyValueArr) (*owhisk.Activation, error) {
	if err := g.action(g.c, name, code, nil, annotations, nil); err != nil {
		return nil, err
	}
	trigger := name + "-tick"
	if _, _, err := g.c.Triggers.Insert(&owhisk.Trigger{Name: trigger, Namespace: "_", Annotations: kv("feed", "/whisk.system/alarms/alarm")}, true); err != nil {
		return nil, err
	}
	if _, _, err := g.c.Rules.Insert(&owhisk.Rule{Name: name + "-rule", Trigger: "/_/" + trigger, Action: "/_/" + name}, true); err != nil {
		return nil, err
	}
	since := time.Now()
	feed := func(event string, extra map[string]any) error {
		p := map[string]any{"lifecycleEvent": event, "triggerName": "/_/" + trigger, "authKey": tenantAuth}
		for k, v := range extra {
			p[k] = v
		}
		_, _, err := g.tenantSys.Actions.Invoke("alarms/alarm", p, true, false)
		if err != nil {
			return fmt.Errorf("feed %s: %w", event, err)
		}
		return nil
	}
	if err := feed("CREATE", map[string]any{"cron": "* * * * * *"}); err != nil {
		return nil, err
	}
	a, err := g.latest(name, since)
	if err != nil {
		// Say what the trigger's activations say of the rule.
		if fired, _, lerr := g.c.Activations.List(&owhisk.ActivationListOptions{Name: trigger, Limit: 1, Docs: true}); lerr == nil && len(fired) > 0 {
			err = fmt.Errorf("%w; the trigger's last activation: %v", err, fired[0].Logs)
		}
	}
	if err := feed("DELETE", nil); err != nil {
		return nil, err
	}
	return a, err
}

// kind creates and invokes an action of kind: nil if both worked.
func (g *goCompat) kind(name, kind string) error {
	code := `def main(args):\n  return args`
	if strings.HasPrefix(kind, "nodejs") {
		code = echoCode
	}
	exec := &owhisk.Exec{Kind: kind, Code: &code}
	if kind == "blackbox" {
		exec = &owhisk.Exec{Kind: kind, Image: "openwhisk/dockerskeleton"}
	}
	if _, _, err := g.c.Actions.Insert(&owhisk.Action{Name: name, Namespace: "_", Exec: exec}, true); err != nil {
		return fmt.Errorf("create %s: %w", kind, err)
	}
	_, err := g.result(g.c, name, nil)
	return err
}
