package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeSwitch struct{ on bool }

func (f *fakeSwitch) Enable()       { f.on = true }
func (f *fakeSwitch) Disable()      { f.on = false }
func (f *fakeSwitch) Enabled() bool { return f.on }

func call(t *testing.T, h http.Handler, method, path, user, pass string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestEveryAdminEndpointNeedsCredentials(t *testing.T) {
	sw := &fakeSwitch{on: true}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	h := Handler(Config{User: "admin", Password: "s3cret"}, sw, reg)
	routes := [][2]string{{"POST", "/disable"}, {"POST", "/enable"}, {"GET", "/isEnabled"}, {"GET", "/metrics"}}
	for _, r := range routes {
		for _, cred := range [][2]string{{"", ""}, {"admin", ""}, {"admin", "s3cre"}, {"Admin", "s3cret"}, {"", "s3cret"}} {
			code, body := call(t, h, r[0], r[1], cred[0], cred[1])
			if code != http.StatusUnauthorized || strings.TrimSpace(body) != "The supplied authentication is invalid" {
				t.Errorf("%s %s with %q: %d %q", r[0], r[1], cred, code, body)
			}
		}
	}
	if !sw.on {
		t.Fatal("an unauthenticated /disable disabled the invoker")
	}
	if code, body := call(t, h, "GET", "/ping", "", ""); code != 200 || body != "pong" {
		t.Fatalf("/ping = %d %q; it stays open for health checks", code, body)
	}
	if code, _ := call(t, h, "POST", "/disable", "admin", "s3cret"); code != 200 || sw.on {
		t.Fatal("/disable with the right credentials did not disable")
	}
	if code, body := call(t, h, "GET", "/metrics", "admin", "s3cret"); code != 200 || !strings.Contains(body, "x_total") {
		t.Fatalf("/metrics with credentials: %d", code)
	}
}

func TestNoPasswordAcceptsNobody(t *testing.T) {
	h := Handler(Config{}, &fakeSwitch{on: true}, prometheus.NewRegistry())
	if code, _ := call(t, h, "POST", "/disable", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no password configured: %d, want 401", code)
	}
}
