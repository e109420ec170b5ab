package embed

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

// TestInvokerStaysUpUnderTightPingTimeout: a real invoker pinging every 200 ms must stay healthy
// under a 1 s PingTimeout for as long as it runs, idle or busy. The controller's health consumer
// once committed each ping before handing it out, behind the fetch the broker held, and fell
// behind the pings until every one looked stale and the invoker went down every few seconds.
func TestInvokerStaysUpUnderTightPingTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	repo := testtool.Root(t)
	if _, err := os.Stat(filepath.Join(repo, "bin", "teemate-shim")); err != nil {
		testtool.Missing(t, "bin/teemate-shim is not built (make build)")
	}
	p := startFidelity(t, repo, "process")
	p.action("echo", `function main(a) { return a; }`, "")
	end := time.Now().Add(6 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		if i%10 == 0 {
			if st, b := p.do("POST", "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", `{"n":1}`); st != 200 {
				t.Fatalf("invoke: %d %s", st, b)
			}
		}
		if n := p.ctl.HealthyInvokers(); n != 1 {
			t.Fatalf("%d healthy invokers after %v, want 1: the controller let invoker0's pings go stale",
				n, time.Until(end).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
