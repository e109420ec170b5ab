package docker

import (
	"context"
	"fmt"
	"testing"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// BenchmarkCreateStartWaitRemove is one whole sandbox life on the teemate image: create, attach,
// start, wait for the exit, remove. deploy/images/bench-docker-run.sh compares it with a bare
// `docker run --rm` of the same image and command.
func BenchmarkCreateStartWaitRemove(b *testing.B) {
	rt := needEngine(b)
	p := fmt.Sprintf("wskbench%d_", b.N)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		sb, err := rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("%s%d", p, i), Rootfs: "teemate",
			Command: sandboxtest.StartStubCommand(), MemoryMB: 64})
		if err != nil {
			b.Fatal(err)
		}
		_, _ = sandboxtest.Drain(sb)
		<-sb.Exited()
		if err := sb.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
