package app

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/teemate/platform/controller-adapter/internal/store"
)

// `controller-adapter namespace limits` (SetNamespaceLimits) on a running platform's data
// directory takes effect at the namespace's next request: 0 invocations a minute refuses guest's
// invocations with OpenWhisk's 429, default gives the system's limit back.
func TestNamespaceLimitsWhileRunning(t *testing.T) {
	dir := t.TempDir()
	p, err := startStandalone(t, dir, "none", "none")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	guest := [2]string{GuestUUID, GuestKey}
	zero := 0
	if _, err := SetNamespaceLimits(context.Background(), dir, "guest", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &zero}}); err != nil {
		t.Fatal(err)
	}
	code, b := p.call(t, http.MethodPost, "/api/v1/namespaces/_/actions/hello", guest, "")
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "Too many requests in the last minute (count: 1, allowed: 0).") {
		t.Fatalf("with 0 a minute: %d %s", code, b)
	}
	code, b = p.call(t, http.MethodGet, "/api/v1/namespaces/_/limits", guest, "")
	if code != http.StatusOK || !strings.Contains(string(b), `"invocationsPerMinute":0,"concurrentInvocations":30,"firesPerMinute":60`) {
		t.Fatalf("limits: %d %s", code, b)
	}
	var reset store.LimitsChange
	reset.Reset.InvocationsPerMinute = true
	if _, err := SetNamespaceLimits(context.Background(), dir, "guest", reset); err != nil {
		t.Fatal(err)
	}
	// Not throttled any more: the action does not exist.
	if code, b = p.call(t, http.MethodPost, "/api/v1/namespaces/_/actions/hello", guest, ""); code != http.StatusNotFound {
		t.Fatalf("after the reset: %d %s", code, b)
	}
	if _, err := SetNamespaceLimits(context.Background(), dir, "nobody", reset); err == nil {
		t.Fatal("limits of a namespace that does not exist were set")
	}
}
