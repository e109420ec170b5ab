package daemon

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
	"github.com/teemate/platform/invoker/whisk"
)

var (
	containersOnce sync.Once
	containersErr  string
)

// needContainers starts dockerd and builds the function images once (as root), or skips; under
// CI=true a missing engine fails the test instead, so CI cannot go green by skipping.
func needContainers(t *testing.T) {
	t.Helper()
	root := testtool.Root(t)
	containersOnce.Do(func() {
		if os.Geteuid() != 0 {
			containersErr = "not root: real containers need root"
			return
		}
		if err := sandboxtest.StartDocker(root); err != nil {
			containersErr = err.Error()
		}
	})
	sandboxtest.Require(t, containersErr)
}

// TestInvoker_Containers runs activations in real containers on both container backends: the
// teemate model (fresh container attached to the warm enclave) and the native model, whose memory
// bomb is stopped by the container's cgroup limit and answered with OpenWhisk's message.
func TestInvoker_Containers(t *testing.T) {
	needContainers(t)
	for _, sb := range []string{"docker", "oci"} {
		for _, model := range []string{"teemate", "native"} {
			t.Run(sb+"/"+model, func(t *testing.T) {
				e := newEnv(t)
				e.api.addCode("hello", `function main(p) {
					const fs = require("fs"), seen = fs.existsSync("/tmp/marker");
					try { fs.writeFileSync("/tmp/marker", "x") } catch (e) {}
					return {greeting: "hello " + p.name, seen} }`, 256, 60000)
				e.api.addCode("bomb", `function main() { const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1)); }`, 128, 30000)
				ex, cleanup, err := buildExecutor(zapTest(t), 0, Backends{Sandbox: sb, Enclave: "direct", Model: model,
					RepoDir: testtool.Root(t), SlotsPerOwner: 4})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(cleanup)
				e.startInvoker(func(c *Config) { c.Executor = ex })

				for i := 0; i < 2; i++ {
					e.send(message(id(300+i), "hello", true, ""))
					a, _ := e.nextAck(60 * time.Second)
					act := a.(*whisk.ResultMessage).Response.Activation
					if act.Response.StatusCode != 0 || !strings.Contains(string(act.Response.Result), `"greeting":"hello Bob"`) {
						t.Fatalf("result %d %s", act.Response.StatusCode, act.Response.Result)
					}
					// A fresh container has a fresh /tmp: a marker left by the previous activation
					// must not be there (in the teemate model the action runs in the enclave owner).
					if model == "native" && strings.Contains(string(act.Response.Result), `"seen":true`) {
						t.Fatalf("activation %d saw the previous activation's file: a container was reused", i)
					}
					e.nextAck(10 * time.Second)
				}
				if model != "native" {
					return
				}
				e.send(message(id(310), "bomb", true, ""))
				a, _ := e.nextAck(60 * time.Second)
				act := a.(*whisk.ResultMessage).Response.Activation
				if act.Response.StatusCode != whisk.StatusDeveloperError || !strings.Contains(string(act.Response.Result), whisk.MsgMemoryExhausted) {
					t.Fatalf("memory bomb: %d %s", act.Response.StatusCode, act.Response.Result)
				}
			})
		}
	}
}
