package sgx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/wire"
)

// The test binary doubles as the fake `gramine-sgx`: with TEEMATE_FAKE_OWNER set it behaves like the
// patched loader plus owner.js as far as the invoker can see (share line on fd 3, gate pings).
func TestMain(m *testing.M) {
	if mode := os.Getenv("TEEMATE_FAKE_OWNER"); mode != "" {
		os.Exit(fakeOwner(mode))
	}
	os.Exit(m.Run())
}

var fakeShare = ShareInfo{ID: 42, Token: teemate.Token{1, 2, 3, 0xfe}, TCS: 3, Start: 0x10000, End: 0x100000000}

func fakeOwner(mode string) int {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "error: want exactly one argument, the manifest")
		return 2
	}
	if _, err := os.Stat(os.Args[1] + ".manifest.sgx"); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	fd, err := strconv.Atoi(os.Getenv("TEEMATE_SHARE_FD"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: TEEMATE_SHARE_FD:", err)
		return 2
	}
	shareOut := os.NewFile(uintptr(fd), "share")
	s := fakeShare
	switch mode {
	case "noshare":
		fmt.Fprintln(os.Stderr, "error: EINIT failed")
		return 3
	case "badshare":
		fmt.Fprintln(shareOut, `{"teemateShare":2}`)
	case "wrongtcs":
		s.TCS = 5
		fmt.Fprintln(shareOut, FormatShareLine(s))
	default:
		fmt.Fprintln(shareOut, FormatShareLine(s))
	}
	shareOut.Close()
	ln, err := net.Listen("unix", "gate.sock") // relative: the loader runs in the owner's directory
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		ln.Close()
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		go func() {
			defer c.Close()
			msg, err := gate.ReadFrame(c, wire.MaxOtherFrame)
			if err != nil || !strings.Contains(string(msg), `"ping"`) {
				return
			}
			_ = gate.WriteFrame(c, map[string]any{"type": "pong", "slots": s.TCS, "free": s.TCS, "isolate": "addon"}, wire.MaxOtherFrame)
		}()
	}
}

type fakeRunner struct {
	mu   sync.Mutex
	argv [][]string
	fail bool
}

func (r *fakeRunner) Run(_ context.Context, _ string, argv []string) error {
	r.mu.Lock()
	r.argv = append(r.argv, argv)
	r.mu.Unlock()
	if r.fail {
		return errors.New("exit status 1: gramine-sgx-sign: key not found")
	}
	switch filepath.Base(argv[0]) {
	case "gramine-manifest": // template output
		b, err := os.ReadFile(argv[2])
		if err != nil {
			return err
		}
		return os.WriteFile(argv[3], b, 0o644)
	case "gramine-sgx-sign": // --manifest M --output O --key K
		return os.WriteFile(argv[4], []byte("signed"), 0o644)
	}
	return fmt.Errorf("unexpected tool %s", argv[0])
}

func (r *fakeRunner) calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.argv...)
}

func allPresent() Probes {
	return Probes{
		Exists:   func(p string) bool { return !strings.Contains(p, "fake") },
		ReadFile: func(string) ([]byte, error) { return []byte("flags\t\t: fpu sgx sgx_lc\n"), nil },
		LookPath: func(f string) (string, error) { return "/opt/gramine/bin/" + filepath.Base(f), nil },
	}
}

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			t.Fatalf("%s not found above %s", rel, wd)
		}
	}
}

type testEnv struct {
	cfg    Config
	runner *fakeRunner
	root   string
}

func newTestEnv(t *testing.T, mode string) testEnv {
	t.Helper()
	root := t.TempDir()
	trusted := filepath.Join(root, "trusted")
	if err := os.MkdirAll(trusted, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(trusted, "owner.js"), filepath.Join(root, "node"), filepath.Join(root, "addon.node"), filepath.Join(root, "sealcrypto.node"), filepath.Join(root, "key.pem")} {
		if err := os.WriteFile(f, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &fakeRunner{}
	cfg := Config{
		GramineSGX: os.Args[0], GramineManifest: "gramine-manifest", GramineSign: "gramine-sgx-sign",
		SigningKey: filepath.Join(root, "key.pem"), Node: filepath.Join(root, "node"),
		OwnerJS: filepath.Join(trusted, "owner.js"), Addon: filepath.Join(root, "addon.node"), SealCrypto: filepath.Join(root, "sealcrypto.node"),
		Template: repoFile(t, "enclave-runtime/manifest/nodejs-owner.manifest.template"),
		BuildDir: filepath.Join(root, "build"), StartTimeout: 10 * time.Second, StopTimeout: 2 * time.Second,
		Env:    []string{"TEEMATE_FAKE_OWNER=" + mode, "PATH=" + os.Getenv("PATH")},
		Probes: allPresent(), Runner: r,
	}
	return testEnv{cfg: cfg, runner: r, root: root}
}

func TestStartOrchestration(t *testing.T) {
	env := newTestEnv(t, "ok")
	b, err := New(env.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	b.cfg.GramineSGX = os.Args[0] // New resolved it through the fake LookPath
	dir := filepath.Join(env.root, "owner-0")
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "nodejs-20-0", Image: "nodejs:20", Dir: dir, Slots: 3})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(env.cfg.BuildDir, "nodejs-20-s3")
	want := [][]string{
		{"/opt/gramine/bin/gramine-manifest", "-Darch_libdir=/lib/x86_64-linux-gnu", base + ".manifest.template", base + ".manifest"},
		{"/opt/gramine/bin/gramine-sgx-sign", "--manifest", base + ".manifest", "--output", base + ".manifest.sgx", "--key", env.cfg.SigningKey},
	}
	if got := env.runner.calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("build commands:\n got %q\nwant %q", got, want)
	}
	so, ok := o.(SharedOwner)
	if !ok {
		t.Fatalf("owner %T is not a SharedOwner", o)
	}
	if tk := so.Share().Ticket(); tk.ShareID != fakeShare.ID || tk.Token != fakeShare.Token {
		t.Fatalf("ticket %+v", tk)
	}
	if so.Share() != fakeShare || o.Mode() != "sgx" || o.ID() != "nodejs-20-0" || o.GateSocket() != filepath.Join(dir, "gate.sock") {
		t.Fatalf("owner: share %+v mode %s id %s gate %s", so.Share(), o.Mode(), o.ID(), o.GateSocket())
	}
	if p, err := gate.Ping(context.Background(), o.GateSocket()); err != nil || p.Slots != 3 {
		t.Fatalf("pong %+v %v", p, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "work")); err != nil || !st.IsDir() {
		t.Fatalf("work dir: %v", err)
	}

	// A second owner of the same image and slot count reuses the signed manifest.
	o2, err := b.Start(context.Background(), enclave.StartSpec{ID: "nodejs-20-1", Image: "nodejs:20", Dir: filepath.Join(env.root, "owner-1"), Slots: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(env.runner.calls()); n != 2 {
		t.Fatalf("manifest rebuilt for the second owner: %d tool runs", n)
	}
	// A changed trusted file makes the next start re-render and re-sign.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(env.cfg.OwnerJS, later, later); err != nil {
		t.Fatal(err)
	}
	o3, err := b.Start(context.Background(), enclave.StartSpec{ID: "nodejs-20-2", Image: "nodejs:20", Dir: filepath.Join(env.root, "owner-2"), Slots: 3})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(env.runner.calls()); n != 4 {
		t.Fatalf("manifest not re-signed after owner.js changed: %d tool runs", n)
	}
	for _, x := range []enclave.Owner{o, o2, o3} {
		if err := x.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-x.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed")
		}
		if !errors.Is(x.Err(), enclave.ErrOwnerDied) {
			t.Fatalf("err %v", x.Err())
		}
	}
}

func TestStartFailures(t *testing.T) {
	cases := []struct {
		mode, want string
		signFails  bool
		spec       enclave.StartSpec
	}{
		{mode: "noshare", want: "EINIT failed"},
		{mode: "badshare", want: "version 2"},
		{mode: "wrongtcs", want: "shared 5 TCS pages, the manifest has 3"},
		{mode: "ok", signFails: true, want: "key not found"},
		{mode: "ok", want: "sgx owners run the addon only", spec: enclave.StartSpec{Isolate: "worker"}},
		{mode: "ok", want: `isolate reuse "tenant": sgx owners keep the default`, spec: enclave.StartSpec{IsolateReuse: enclave.IsolateReuseTenant}},
		{mode: "ok", want: "page pool 0 MiB: sgx owners keep the addon's default", spec: enclave.StartSpec{PagePoolMB: new(int)}},
		{mode: "ok", want: "slots 2000 out of 1..1024", spec: enclave.StartSpec{Slots: 2000}},
	}
	for _, c := range cases {
		t.Run(c.mode+"/"+c.want, func(t *testing.T) {
			env := newTestEnv(t, c.mode)
			env.runner.fail = c.signFails
			b, err := New(env.cfg, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			b.cfg.GramineSGX = os.Args[0]
			spec := enclave.StartSpec{ID: "x-0", Image: "nodejs:20", Dir: filepath.Join(env.root, "o"), Slots: 3, Isolate: c.spec.Isolate,
				IsolateReuse: c.spec.IsolateReuse, PagePoolMB: c.spec.PagePoolMB}
			if c.spec.Slots != 0 {
				spec.Slots = c.spec.Slots
			}
			o, err := b.Start(context.Background(), spec)
			if err == nil {
				_ = o.Stop(context.Background())
				t.Fatal("start succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestNewUnavailable(t *testing.T) {
	env := newTestEnv(t, "ok")
	env.cfg.Probes.Exists = func(p string) bool { return p != "/dev/teemate" }
	_, err := New(env.cfg, zap.NewNop())
	if !errors.Is(err, enclave.ErrUnavailable) || !strings.Contains(err.Error(), "/dev/teemate is missing") {
		t.Fatalf("err %v", err)
	}
}

func TestShareLineRoundTripIsJSON(t *testing.T) {
	line := FormatShareLine(fakeShare)
	if !json.Valid([]byte(line)) {
		t.Fatalf("not JSON: %s", line)
	}
	got, err := ParseShareLine([]byte(line))
	if err != nil || got != fakeShare {
		t.Fatalf("%+v %v", got, err)
	}
}
