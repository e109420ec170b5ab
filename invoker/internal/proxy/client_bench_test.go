package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkInitRun is one sandbox's two calls on a fresh client, against a proxy that answers at
// once, with the process's CPU per pair (the client's share and the proxy's, which is the same
// for any client).
func BenchmarkInitRun(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "p.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"); err != nil {
						return
					}
				}
			}()
		}
	}()
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
