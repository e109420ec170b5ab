package process

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

// BenchmarkCreateToProxy measures what an activation waits for before its action proxy answers:
// Create, then one HTTP request answered by the proxy (the repository's built teemate shim, which
// answers /run before /init with 403 at once). Pooled sandboxes were created ahead; direct ones
// start a process in Create.
//
//	make build && go test -run '^$' -bench CreateToProxy ./invoker/internal/sandbox/process/
func BenchmarkCreateToProxy(b *testing.B) {
	shim, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "bin", "teemate-shim"))
	if err != nil {
		b.Fatal(err)
	}
	stub := filepath.Join(filepath.Dir(shim), "teemate-start")
	for _, s := range []string{shim, stub} {
		if _, err := os.Stat(s); err != nil {
			b.Skipf("%s not built (make build)", s)
		}
	}
	for _, mode := range []struct {
		name string
		cfg  Config
	}{{"direct", Config{}}, {"pooled", Config{StartStub: stub, PoolSize: 2}}} {
		b.Run(mode.name, func(b *testing.B) {
			cfg := mode.cfg
			cfg.StateDir = b.TempDir()
			rt, err := New(cfg, zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close(context.Background())
			dir := b.TempDir()
			var total time.Duration
			for i := 0; i < b.N; i++ {
				if rt.pool != nil {
					for len(rt.pool.ready) < cap(rt.pool.ready) {
						time.Sleep(time.Millisecond)
					}
				} else {
					time.Sleep(5 * time.Millisecond) // the same spacing as the pooled runs get
				}
				sock := filepath.Join(dir, "p.sock")
				t0 := time.Now()
				sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_1_guest_b", ProxySocket: sock,
					Command: []string{shim}, Env: map[string]string{"TEEMATE_PROXY_SOCKET": sock, "TEEMATE_GATE": "/nonexistent"}})
				if err != nil {
					b.Fatal(err)
				}
				c, err := net.Dial("unix", sb.ProxySocket())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write([]byte("POST /run HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\n\r\n{}")); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 512)
				n, err := c.Read(buf)
				if err != nil || !strings.Contains(string(buf[:n]), " 403 ") {
					b.Fatalf("reply %q %v", buf[:n], err)
				}
				total += time.Since(t0)
				c.Close()
				sb.Destroy(context.Background())
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/activation")
		})
	}
}
