package sandboxtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

// Drain reads a sandbox's two streams to the end in the background; each returned function waits
// for both streams to end and returns what one of them carried.
func Drain(sb sandbox.Sandbox) (stdout, stderr func() string) {
	var wg sync.WaitGroup
	var out, errb bytes.Buffer
	wg.Add(2)
	// A stream ends with the sandbox; a read error there ends it the same way, and what came is kept.
	go func() { defer wg.Done(); _, _ = io.Copy(&out, sb.Stdout()) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&errb, sb.Stderr()) }() // as above
	return func() string { wg.Wait(); return out.String() }, func() string { wg.Wait(); return errb.String() }
}

// WaitExit fails t unless sb's process exits within d.
func WaitExit(t testing.TB, sb sandbox.Sandbox, d time.Duration) {
	t.Helper()
	select {
	case <-sb.Exited():
	case <-time.After(d):
		t.Fatalf("sandbox %s did not exit within %s", sb.ID(), d)
	}
}

// StartStubCommand runs the teemate image's start stub with a configuration that does not exist:
// it prints its error and exits 127, a real process whose output must come back.
func StartStubCommand() []string { return []string{"/sbin/teemate-start", "/no/config.json"} }

// CheckStartStubRun checks a sandbox running StartStubCommand: it exits, its error comes back on
// stderr and nothing on stdout, the exit is not taken for an OOM kill, and Destroy succeeds twice.
func CheckStartStubRun(t testing.TB, sb sandbox.Sandbox) {
	t.Helper()
	stdout, stderr := Drain(sb)
	WaitExit(t, sb, 20*time.Second)
	if got := stderr(); !strings.Contains(got, "teemate-start: read the start configuration") {
		t.Errorf("stderr %q", got)
	}
	if got := stdout(); got != "" {
		t.Errorf("stdout %q", got)
	}
	if sb.OOMKilled() {
		t.Error("a plain exit reported as OOM")
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
}

// MemoryBombCommand allocates memory in the native image until something stops it.
func MemoryBombCommand() []string {
	return []string{"/usr/bin/node", "-e", "const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))"}
}

// CheckOOMKilled waits for a sandbox running MemoryBombCommand under a memory limit to exit,
// requires OOMKilled, and destroys it.
func CheckOOMKilled(t testing.TB, sb sandbox.Sandbox) {
	t.Helper()
	defer sb.Destroy(context.Background())
	_, _ = Drain(sb)
	WaitExit(t, sb, 60*time.Second)
	if !sb.OOMKilled() {
		t.Fatal("the memory bomb exited but OOMKilled is false")
	}
}

// ProxyPoster returns a function that POSTs a JSON body to path of the action proxy listening on
// the unix socket sock, retrying for up to 20 s while the proxy is not listening yet; it returns the
// status code and body and fails t when the proxy never answers.
func ProxyPoster(t testing.TB, sock string) func(path, body string) (int, string) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 20 * time.Second}
	return func(path, body string) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err = hc.Post("http://proxy"+path, "application/json", strings.NewReader(body))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond) // the proxy is not listening yet
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
}

// CreateDestroyConcurrently runs n sandbox lives at once: create(ctx, i), drain, (when waitExit)
// wait for the exit, destroy. Each life has two minutes. It fails t on any error or on an id seen
// twice, and returns the ids seen.
func CreateDestroyConcurrently(t testing.TB, n int, waitExit bool, create func(ctx context.Context, i int) (sandbox.Sandbox, error)) map[string]bool {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]bool{}
	errs := make(chan error, 3*n) // at most three per life: duplicate id, no exit, destroy
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			sb, err := create(ctx, i)
			if err != nil {
				errs <- err
				return
			}
			_, _ = Drain(sb)
			mu.Lock()
			if seen[sb.ID()] {
				errs <- fmt.Errorf("id %s twice", sb.ID())
			}
			seen[sb.ID()] = true
			mu.Unlock()
			if waitExit {
				select {
				case <-sb.Exited():
				case <-ctx.Done():
					errs <- fmt.Errorf("%s did not exit", sb.ID())
				}
			}
			if err := sb.Destroy(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != n {
		t.Errorf("%d sandboxes, want %d", len(seen), n)
	}
	return seen
}
