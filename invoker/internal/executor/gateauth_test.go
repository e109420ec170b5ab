package executor

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
	"github.com/teemate/platform/invoker/whisk"
)

// recorder passes every sandbox on to the real backend and keeps the environment it was given:
// what the sandbox of an activation, and only it, knew.
type recorder struct {
	sandbox.Runtime
	mu   sync.Mutex
	envs []map[string]string
}

func (r *recorder) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	r.mu.Lock()
	r.envs = append(r.envs, maps.Clone(spec.Env))
	r.mu.Unlock()
	return r.Runtime.Create(ctx, spec)
}

// The gate of a direct owner admits only the sandbox created for an activation: the activation
// runs through a real sandbox and shim with its token; afterwards the same hello, replayed by a
// client that is not that sandbox, is refused and counted, and so is a hello without a token.
func TestGateAuthReplayRefused(t *testing.T) {
	if skipReason != "" {
		testtool.Missing(t, skipReason)
	}
	testGateAuth(t, shimBin)
}

func testGateAuth(t *testing.T, shim string) {
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	b, err := direct.New(direct.Config{OwnerJS: ownerJS, StopTimeout: 500 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := enclave.NewManager(b, enclave.ManagerConfig{BaseDir: shortDir(t, "ea"), SlotsPerOwner: 2, HealthInterval: -1}, log)
	rt, err := process.New(process.Config{StateDir: shortDir(t, "es")}, log)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Runtime: rt}
	x, err := New(m, rec, Config{Model: SharedEnclave{ShimPath: shim}, ProxyDir: shortDir(t, "ep"), Grace: 2 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := x.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := rt.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := m.Close(ctx); err != nil {
			t.Error(err)
		}
	})

	j := job(`function main() { return { id: process.env.__OW_ACTIVATION_ID, ns: process.env.__OW_NAMESPACE }; }`,
		`{}`, 10*time.Second)
	o := x.Run(context.Background(), j)
	if o.Response.StatusCode != whisk.StatusSuccess {
		t.Fatalf("status %d %s", o.Response.StatusCode, o.Response.Result)
	}
	if r := resultOf(t, o); r["id"] != j.Run.ActivationID || r["ns"] != "guest" {
		t.Fatalf("result %v", r)
	}

	// The owner and what the sandbox was given.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := m.Reserve(ctx, j.Image)
	if err != nil {
		t.Fatal(err)
	}
	sock := lease.GateSocket()
	key := lease.Owner.(gate.KeyHolder).GateKey()
	lease.Release()
	if len(key) != gate.KeySize {
		t.Fatalf("the direct owner's gate key has %d bytes", len(key))
	}
	rec.mu.Lock()
	env := rec.envs[0]
	rec.mu.Unlock()
	captured := gate.Credentials{Activation: env[envActivationID], Namespace: env[envNamespace], Token: env[envGateToken]}
	if captured != (gate.Credentials{Activation: j.Run.ActivationID, Namespace: "guest",
		Token: gate.Token(key, j.Run.ActivationID, "guest")}) {
		t.Fatalf("the sandbox was given %+v", captured)
	}
	p, err := gate.Ping(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Auth || p.AuthRefused != 0 {
		t.Fatalf("pong after the activation: auth %v, refused %d", p.Auth, p.AuthRefused)
	}

	attempts := []struct {
		name string
		cred gate.Credentials
	}{
		{"the sandbox's hello replayed", captured},
		{"no token", gate.Credentials{}},
		{"the token presented for another activation", gate.Credentials{Activation: "another", Namespace: "guest", Token: captured.Token}},
	}
	for i, a := range attempts {
		c, err := gate.Dial(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Hello(ctx, "not-a-sandbox", a.cred)
		c.Close()
		if !gate.IsClass(err, gate.ClassAuth) {
			t.Fatalf("%s: hello answered %v, want an auth error", a.name, err)
		}
		p, err := gate.Ping(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		if p.AuthRefused != int64(i+1) {
			t.Fatalf("%s: authRefused %d, want %d", a.name, p.AuthRefused, i+1)
		}
	}
	var ge *gate.Error
	c, err := gate.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Acquire(ctx); !errors.As(err, &ge) || ge.Class != gate.ClassState {
		t.Fatalf("acquire without hello: %v", err)
	}
}
