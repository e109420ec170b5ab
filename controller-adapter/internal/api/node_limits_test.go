package api

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

// TestNodeOpenWhiskClientLimits runs controller-adapter/test/owlimits.js: throttling, GET /,
// limits, api-docs, CORS, /metrics, count=true and explicit versions through the npm openwhisk
// client (issue #18 items 4 and 5). `make deps` installs the client.
func TestNodeOpenWhiskClientLimits(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, nodeErr := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "openwhisk", "package.json"))
	if nodeErr != nil || modErr != nil {
		testtool.Missing(t, "node or the npm openwhisk client is missing (run `npm install` in controller-adapter/test or `make deps`)")
	}
	e := newEnv(t, Config{})
	e.inv.slow["sleepy"] = true
	avoidMinuteEdge(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "owlimits.js")
	cmd.Dir = dir
	env := []string{"OW_APIHOST=" + e.srv.URL, "OW_AUTH=" + guestAuth, "OW_OTHER_AUTH=" + otherAuth}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "ok") {
		t.Fatalf("owlimits.js: %v\n%s", err, out)
	}
	t.Logf("owlimits.js:\n%s", out)
}
