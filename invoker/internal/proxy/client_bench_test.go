package proxy

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// BenchmarkInitRun is one sandbox's two calls on a fresh client, against a proxy that answers at
// once, with the process's CPU per pair (the client's share and the proxy's, which is the same
// for any client).
func BenchmarkInitRun(b *testing.B) {
	sock, _ := rawProxy(b, func(<-chan struct{}) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", true
	})
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := New(sock)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WaitReady(context.Background(), time.Now().Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Init(context.Background(), map[string]any{"code": "function main(){}"}, time.Second); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(context.Background(), map[string]any{"value": map[string]int{"n": 42}}, time.Second); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(b.N)
	b.ReportMetric(float64(cpu.Microseconds()), "cpu-µs/op")
}
