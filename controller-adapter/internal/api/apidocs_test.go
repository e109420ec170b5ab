package api

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
)

// routesServed is the set "METHOD template" of the requests counted in reg under a route other
// than unmatched.
func routesServed(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "teemate_controller_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[l["method"]+" "+l["route"]] += m.GetCounter().GetValue()
		}
	}
	return out
}

// The API document and the router agree: every documented operation is served under its
// template, and every route the router serves (its own, and every collection, entity form and
// method namespaceRoutes may dispatch) is documented. A route added without its line in
// apiOperations, or a line whose route went away, fails here.
func TestAPIDocsCoverRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Config{Metrics: reg, Throttles: Throttles{InvocationsPerMinute: 100000, ConcurrentInvocations: 1000}})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", guestAuth, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	var act struct{ ActivationID string }
	if err := json.Unmarshal(body, &act); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{namespace}", "_", "{name}", "hello", "{package}", "tools",
		"{activationid}", act.ActivationID, "{action}", "hello", "{invoker}", "0")
	documented := map[string]bool{}
	// The metrics count a request once its answer is written, so a snapshot waits until every
	// request made so far is counted.
	issued := 2.0
	settled := func() map[string]float64 {
		for i := 0; ; i++ {
			m, sum := routesServed(t, reg), 0.0
			for _, v := range m {
				sum += v
			}
			if sum == issued || i == 500 {
				return m
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	probe := func(method, path string) string {
		before := settled()
		e.do(t, method, path, guestAuth, "application/json", strings.NewReader(`{}`))
		issued++
		var served []string
		for k, v := range settled() {
			if v > before[k] {
				served = append(served, k)
			}
		}
		if len(served) != 1 {
			t.Fatalf("%s %s counted under %v", method, path, served)
		}
		return served[0]
	}

	// Document -> router: each operation is served, under its own template.
	doc := map[string]any{}
	resp, body = e.do(t, "GET", "/api/v1/api-docs", "", "", nil)
	issued++
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 || doc["openapi"] != "3.0.3" {
		t.Fatalf("api-docs: %d %v %.200s", resp.StatusCode, err, body)
	}
	paths := doc["paths"].(map[string]any)
	for path, item := range paths {
		for method := range item.(map[string]any) {
			op := strings.ToUpper(method) + " " + path
			documented[op] = true
			if strings.HasPrefix(path, "/api/v1/web/") {
				continue // the web actions' route takes any method; its template is checked below
			}
			if got := probe(strings.ToUpper(method), fill.Replace(path)); got != op {
				t.Errorf("documented %s is served as %s", op, got)
			}
		}
	}
	if len(documented) != len(apiOperations) {
		t.Errorf("the document has %d operations, apiOperations %d", len(documented), len(apiOperations))
	}

	// Router -> document: the router's own routes...
	engine := New(Config{}, e.st, e.inv, zaptest.NewLogger(t)).(*gin.Engine)
	for _, r := range engine.Routes() {
		if strings.HasPrefix(r.Path, "/internal/") || r.Path == "/api/v1/namespaces/:ns/*rest" {
			continue
		}
		if r.Path == "/api/v1/web/*path" {
			if r.Method == http.MethodGet && !documented["GET /api/v1/web/{namespace}/{package}/{action}"] {
				t.Error("web actions are not documented")
			}
			continue
		}
		tmpl := r.Path // written as routeLabel writes it
		for _, p := range strings.Split(r.Path, "/") {
			if strings.HasPrefix(p, ":") {
				tmpl = strings.Replace(tmpl, p, "{"+p[1:]+"}", 1)
			}
		}
		if !documented[r.Method+" "+tmpl] {
			t.Errorf("route %s %s is not in the API document", r.Method, tmpl)
		}
	}
	// ... and whatever namespaceRoutes dispatches.
	var missing []string
	for _, coll := range []string{"actions", "packages", "activations", "triggers", "rules", "limits", "apis", "namespaces", "nosuch"} {
		for _, rest := range []string{"", "/hello", "/tools/hello", "/tools/", "/" + act.ActivationID + "/logs", "/" + act.ActivationID + "/result"} {
			for _, m := range []string{"GET", "PUT", "POST", "DELETE", "PATCH"} {
				if got := probe(m, "/api/v1/namespaces/_/"+coll+rest); !strings.HasSuffix(got, " "+routeUnmatched) && !documented[got] {
					missing = append(missing, got)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("served but not in the API document: %v", missing)
	}
}
