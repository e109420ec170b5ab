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

// TestNodeOpenWhiskClient runs controller-adapter/test/owclient.js and
// owpackages.js, which drive this API with the npm openwhisk client. `make deps` installs the
// client; without it the test skips locally and fails on CI.
func TestNodeOpenWhiskClient(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, nodeErr := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "openwhisk", "package.json"))
	if nodeErr != nil || modErr != nil {
		msg := "node or the npm openwhisk client is missing (run `npm install` in controller-adapter/test or `make deps`)"
		testtool.Missing(t, msg)
	}
	// owpackages.js: packages, bindings and shared packages (issue #18), as guest and other.
	// owsequences.js: sequences and conductor actions, with components that mark their trail;
	// owtriggers.js: triggers, rules and the alarms feed.
	setups := map[string]func(*env){
		"owsequences.js": func(e *env) {
			for _, n := range []string{"a", "b", "c"} {
				e.inv.set(n, mark(n))
			}
			e.inv.set("bad", failing)
			e.inv.set("cond", conductTrail(""))
		},
	}
	for _, script := range []string{"owclient.js", "owpackages.js", "owsequences.js", "owtriggers.js"} {
		t.Run(script, func(t *testing.T) {
			e := newEnvForScript(t, script)
			if setup := setups[script]; setup != nil {
				setup(e)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, script)
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
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
			t.Logf("%s:\n%s", script, out)
		})
	}
}
