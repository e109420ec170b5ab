package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/whisk"
)

// A sandbox whose shim never becomes ready (it exits at once) is the platform's failure: through
// Kafka, the invoker and the store, the activation is a whisk internal error, tried once more on a
// fresh sandbox, and its record says so (retried, retryReason) and names nothing of the host.
func TestInvoker_ShimNeverReadyIsWhiskError(t *testing.T) {
	testtool.Require(t, "node")
	e := newEnv(t)
	e.api.addCode("hello", `function main(p) { return {greeting: "hello " + p.name} }`, 256, 60000)
	dir := t.TempDir()
	bad := filepath.Join(dir, "teemate-shim")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: testtool.Root(t), ShimPath: bad, SlotsPerOwner: 4}
	exec, cleanup, err := buildExecutor(zapTest(t), 0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	e.startInvoker(func(c *Config) { c.Executor = exec })

	e.send(message(id(200), "hello", true, ""))
	a, _ := e.nextAck(30 * time.Second)
	res, ok := a.(*whisk.ResultMessage)
	if !ok || res.Response.Activation == nil {
		t.Fatalf("first ack %#v", a)
	}
	if got := res.Response.Activation.Response; got.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("status %d %s, want a whisk internal error", got.StatusCode, got.Result)
	}
	e.nextAck(10 * time.Second)
	rec := e.api.record(id(200))
	if rec == nil {
		t.Fatal("no record stored")
	}
	if v, _ := rec.Annotations.Get("retried"); string(v) != "true" {
		t.Fatalf("retried annotation %s, want true", v)
	}
	reason, _ := rec.Annotations.Get("retryReason")
	if !strings.Contains(string(reason), whisk.MsgResourceProvisionError) {
		t.Fatalf("retryReason %s, want %q", reason, whisk.MsgResourceProvisionError)
	}
	if strings.Contains(string(rec.Response.Result)+string(reason), dir) {
		t.Fatalf("the record names a host path: %s / %s", rec.Response.Result, reason)
	}
}
