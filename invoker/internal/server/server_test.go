package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teemate/platform/invoker/internal/enclave"
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
	routes := [][2]string{{"POST", "/disable"}, {"POST", "/enable"}, {"GET", "/isEnabled"}, {"GET", "/metrics"},
		{"POST", "/keys/rotate?image=nodejs:20"}}
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

// rotator stands in for the executor: the HTTP mapping is what is tested here (the rotation
// itself is tested with real owners in enclave's tests).
type rotator struct{ images []string }

func (r *rotator) RotateKey(_ context.Context, image string) (string, string, error) {
	r.images = append(r.images, image)
	switch image {
	case "nodejs:20":
		return "22", "11", nil
	case "gone:1":
		return "", "", fmt.Errorf("rotate image key of %s: %w", image, enclave.ErrNoOwner)
	}
	return "", "", fmt.Errorf("rotate image key of %s: the owner refused", image)
}

func TestKeysRotate(t *testing.T) {
	r := &rotator{}
	h := Handler(Config{User: "admin", Password: "s3cret", Keys: r}, &fakeSwitch{on: true}, prometheus.NewRegistry())
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/keys/rotate?image=nodejs:20", 200, `{"image":"nodejs:20","kid":"22","previous":"11"}`},
		{"/keys/rotate?image=gone:1", 404, "rotate image key of gone:1: no enclave owner of the image"},
		{"/keys/rotate?image=bad:1", 500, "rotate image key of bad:1: the owner refused"},
		{"/keys/rotate", 400, "the image to rotate the key of is missing: POST /keys/rotate?image=IMAGE"},
	} {
		if code, body := call(t, h, "POST", c.path, "admin", "s3cret"); code != c.code || strings.TrimSpace(body) != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.path, code, body, c.code, c.body)
		}
	}
	if strings.Join(r.images, ",") != "nodejs:20,gone:1,bad:1" {
		t.Errorf("rotated %q", r.images)
	}
	if code, _ := call(t, h, "GET", "/keys/rotate?image=nodejs:20", "admin", "s3cret"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /keys/rotate: %d", code)
	}
	none := Handler(Config{User: "admin", Password: "s3cret"}, &fakeSwitch{on: true}, prometheus.NewRegistry())
	if code, _ := call(t, none, "POST", "/keys/rotate?image=nodejs:20", "admin", "s3cret"); code != http.StatusNotImplemented {
		t.Errorf("without keys: %d", code)
	}
}
