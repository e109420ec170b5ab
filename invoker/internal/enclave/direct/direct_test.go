package direct

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/confine/confinetest"
	"github.com/teemate/platform/invoker/internal/gate"
)

// launcher is the confinement launcher built for these tests ("" when not root: owners then run
// unconfined as the test's user, as the backend does).
var launcher string

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		var err error
		if _, launcher, err = confinetest.Launcher(); err != nil {
			fmt.Fprintln(os.Stderr, "build the confinement launcher:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func TestStartPingStop(t *testing.T) {
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, "enclave-runtime/trusted/owner.js: "+err.Error())
	}
	core, logs := observer.New(zap.InfoLevel)
	b, err := New(Config{OwnerJS: js}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("NO confidentiality").Len() != 1 {
		t.Fatal("direct mode did not say it gives no confidentiality")
	}
	dir, _ := os.MkdirTemp("", "dt")
	defer os.RemoveAll(dir)
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "n-1", Image: "nodejs:20", Dir: dir, Slots: 3})
	if err != nil {
		t.Fatal(err)
	}
	if o.Mode() != "direct" || o.ID() != "n-1" {
		t.Fatalf("%s %s", o.Mode(), o.ID())
	}
	p, err := gate.Ping(context.Background(), o.GateSocket())
	if err != nil || p.Slots != 3 || p.Free != 3 {
		t.Fatalf("pong %+v %v", p, err)
	}
	// The owner's environment is the invoker's PATH and HOME and the malloc arena cap, no more.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", o.(interface{ Pid() int }).Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(strings.TrimRight(string(environ), "\x00"), "\x00") {
		if name, _, _ := strings.Cut(kv, "="); name != "PATH" && name != "HOME" && kv != OwnerMallocArenas {
			t.Errorf("owner environment has %q", kv)
		}
	}
	if !strings.Contains(string(environ), OwnerMallocArenas) {
		t.Errorf("owner environment %q lacks %s", environ, OwnerMallocArenas)
	}
	// The gate requires a token derived from the owner's key, and the key went in on standard
	// input: it is neither in the owner's environment nor in its arguments.
	key := o.(gate.KeyHolder).GateKey()
	if len(key) != gate.KeySize || !p.Auth {
		t.Fatalf("gate key of %d bytes, pong auth %v", len(key), p.Auth)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", o.(interface{ Pid() int }).Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if k := hex.EncodeToString(key); strings.Contains(string(environ), k) || strings.Contains(string(cmdline), k) {
		t.Error("the gate key is visible in the owner's /proc environ or cmdline")
	}
	// As root the owner runs confined by default: its own uid, no capabilities, seccomp (the
	// launcher's filter and the lockdown's), its own pid namespace.
	if launcher != "" {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", o.(interface{ Pid() int }).Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Uid:\t64000\t64000\t64000\t64000", "NoNewPrivs:\t1", "Seccomp:\t2", "Seccomp_filters:\t2"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("owner status lacks %q:\n%s", want, status)
			}
		}
		// No capability, or CAP_SYS_NICE alone where RLIMIT_NICE cannot be raised (see
		// teemate-confine's nice_by_rlimit; seccomp narrows it to nice 0..19 of its own threads).
		for _, set := range []string{"CapEff", "CapBnd", "CapPrm"} {
			if !regexp.MustCompile(`(?m)^` + set + `:\t(0000000000000000|0000000000800000)$`).Match(status) {
				t.Errorf("owner %s holds more than CAP_SYS_NICE:\n%s", set, status)
			}
		}
		if !regexp.MustCompile(`(?m)^NSpid:\t[0-9]+\t1$`).Match(status) {
			t.Errorf("the owner is not pid 1 of its own pid namespace:\n%s", status)
		}
	}
	if err := o.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-o.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if !errors.Is(o.Err(), enclave.ErrOwnerDied) {
		t.Fatalf("err %v", o.Err())
	}
}

func TestUnavailable(t *testing.T) {
	if _, err := New(Config{Node: "/nonexistent/node", OwnerJS: "/x"}, zap.NewNop()); !errors.Is(err, enclave.ErrUnavailable) {
		t.Fatalf("missing node: %v", err)
	}
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := New(Config{OwnerJS: "/nonexistent/owner.js"}, zap.NewNop()); !errors.Is(err, enclave.ErrUnavailable) {
			t.Fatalf("missing owner.js: %v", err)
		}
	}
	if _, err := FindOwnerJS("/"); !errors.Is(err, enclave.ErrUnavailable) {
		t.Fatalf("FindOwnerJS from /: %v", err)
	}
}

func TestStartTimeoutAndBadSpec(t *testing.T) {
	testtool.Require(t, "node")
	dir, _ := os.MkdirTemp("", "dt")
	defer os.RemoveAll(dir)
	// An "owner" that never opens its gate (confined, without the runtime's lockdown files).
	js := dir + "/silent.js"
	os.WriteFile(js, []byte("setInterval(() => {}, 1000)\n"), 0o644)
	b, err := New(Config{OwnerJS: js, StartTimeout: 200 * time.Millisecond, StopTimeout: 100 * time.Millisecond,
		Confine: confine.Config{Launcher: launcher}, Lockdown: LockdownNone}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(context.Background(), enclave.StartSpec{ID: "s", Image: "i", Dir: dir, Slots: 1}); err == nil {
		t.Fatal("an owner whose gate never answers was accepted")
	}
	if _, err := b.Start(context.Background(), enclave.StartSpec{ID: "s", Image: "i", Dir: dir}); err == nil {
		t.Fatal("zero slots accepted")
	}
}

// As root, an owner that cannot be confined is not started unconfined unless asked for with
// UnsafeOwnerAsRoot (the invoker's --unsafe-owner-as-root), which then says how unsafe it is.
func TestRefusesRootUnconfinedUnlessUnsafe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal concerns an invoker running as root")
	}
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, err.Error())
	}
	_, err = New(Config{OwnerJS: js, Confine: confine.Config{Launcher: "/nonexistent/teemate-confine"}}, zap.NewNop())
	if !errors.Is(err, confine.ErrConfine) || !strings.Contains(err.Error(), "--unsafe-owner-as-root") ||
		!strings.Contains(err.Error(), "/nonexistent/teemate-confine") {
		t.Fatalf("a missing launcher gave %v", err)
	}
	core, logs := observer.New(zap.InfoLevel)
	b, err := New(Config{OwnerJS: js, Confine: confine.Config{Launcher: "/nonexistent/teemate-confine"}, UnsafeOwnerAsRoot: true}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("UNSAFE: owners run as root without confinement").Len() != 1 {
		t.Fatal("no warning that owners run as root unconfined")
	}
	dir := t.TempDir()
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "u-1", Image: "nodejs:20", Dir: dir, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop(context.Background())
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", o.(interface{ Pid() int }).Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Uid:\t0\t") {
		t.Fatalf("the unsafe owner does not run as root:\n%s", status)
	}
}

// The confinement arguments owner.js gets: the scratch dir on the private tmpfs, the lockdown, the egress allow-list and the
// host's addresses. A stand-in owner.js records them and runs the real one without them.
func TestOwnerArgs(t *testing.T) {
	if launcher == "" {
		t.Skip("confinement needs root")
	}
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	real, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, err.Error())
	}
	stand := filepath.Join(t.TempDir(), "owner.js")
	if err := os.WriteFile(stand, []byte(`'use strict';
const fs = require('fs');
const names = ['--scratch-dir', '--egress-allow', '--deny-hosts', '--lockdown'];
const rec = {}; const keep = [process.argv[0], `+strconv.Quote(real)+`];
for (let i = 2; i < process.argv.length; i++) {
  if (names.includes(process.argv[i])) rec[process.argv[i]] = process.argv[++i]; else keep.push(process.argv[i]);
}
const wd = keep[keep.indexOf('--work-dir') + 1];
fs.writeFileSync(wd + '/args.json', JSON.stringify(rec));
process.argv = keep;
require('module').runMain();
`), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{OwnerJS: stand, Lockdown: LockdownNone,
		Confine: confine.Config{Launcher: launcher, ReadOnly: []string{filepath.Dir(filepath.Dir(real))}, // the real runtime
			EgressAllow: []confine.HostPort{{Host: "127.0.0.1", Port: 3233}}}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "a-1", Image: "nodejs:20", Dir: dir, Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop(context.Background())
	raw, err := os.ReadFile(filepath.Join(dir, "args.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got["--scratch-dir"] != confine.ScratchDir || got["--lockdown"] != "none" || got["--egress-allow"] != "127.0.0.1:3233" {
		t.Fatalf("owner args %v", got)
	}
	hosts, _ := confine.HostAddrs()
	if len(hosts) > 0 && got["--deny-hosts"] != strings.Join(hosts, ",") {
		t.Fatalf("--deny-hosts %q, want %q", got["--deny-hosts"], strings.Join(hosts, ","))
	}
}

// addonBackend is a backend whose owners run the isolate addon (skipped without node or the addon;
// failed under CI=true), with the observed logs, where the owners' own info lines arrive at debug.
func addonBackend(t *testing.T) (*Backend, *observer.ObservedLogs) {
	t.Helper()
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, err.Error())
	}
	addon := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(js))), "node-isolate-patch", "build", "teemate_isolate.node")
	if _, err := os.Stat(addon); err != nil {
		testtool.Missing(t, "the isolate addon (make build): "+err.Error())
	}
	core, logs := observer.New(zap.DebugLevel) // the owner's own info lines come through at debug
	b, err := New(Config{OwnerJS: js, UnsafeOwnerAsRoot: true, StartTimeout: 20 * time.Second}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return b, logs
}

// StartSpec.IsolateReuse reaches the owner: with the isolate addon it starts in the mode (its start
// log says so), with worker isolates the owner refuses it and the start fails with its reason, and
// a mode the backend does not know is refused before any owner starts.
func TestIsolateReuseReachesTheOwner(t *testing.T) {
	b, logs := addonBackend(t)
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: "r-1", Image: "nodejs:20", Dir: t.TempDir(), Slots: 1,
		Isolate: "addon", IsolateReuse: enclave.IsolateReuseTenant})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Stop(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	listening := func(e observer.LoggedEntry) bool {
		line := e.ContextMap()["line"]
		s, _ := line.(string)
		return strings.Contains(s, `"msg":"gate listening"`) && strings.Contains(s, `"isolateReuse":"tenant"`)
	}
	for logs.Filter(listening).Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the owner did not say it reuses isolates per tenant: %v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = b.Start(context.Background(), enclave.StartSpec{ID: "r-2", Image: "nodejs:20", Dir: t.TempDir(), Slots: 1,
		Isolate: "worker", IsolateReuse: enclave.IsolateReuseTenant})
	if err == nil || !strings.Contains(err.Error(), "needs the isolate addon") {
		t.Fatalf("worker isolates with reuse: %v", err)
	}
	_, err = b.Start(context.Background(), enclave.StartSpec{ID: "r-3", Image: "nodejs:20", Dir: t.TempDir(), Slots: 1,
		IsolateReuse: "always"})
	if err == nil || !strings.Contains(err.Error(), `isolate reuse "always"`) {
		t.Fatalf("an unknown mode: %v", err)
	}
}

// StartSpec.PagePoolMB reaches the owner (its start log names the pool it got), nil leaves the
// addon's default, and a budget out of range is refused before any owner starts.
func TestPagePoolReachesTheOwner(t *testing.T) {
	b, logs := addonBackend(t)
	zero, big := 0, enclave.MaxPagePoolMB+1
	for i, c := range []struct {
		mb   *int
		want string
	}{{nil, `"pagePool":"16 MiB"`}, {&zero, `"pagePool":"off (off)"`}} {
		id := fmt.Sprintf("p-%d", i)
		o, err := b.Start(context.Background(), enclave.StartSpec{ID: id, Image: "nodejs:20", Dir: t.TempDir(), Slots: 1,
			Isolate: "addon", PagePoolMB: c.mb})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Stop(context.Background())
		listening := func(e observer.LoggedEntry) bool {
			s, _ := e.ContextMap()["line"].(string)
			return strings.Contains(s, `"msg":"gate listening"`) && strings.Contains(s, c.want)
		}
		deadline := time.Now().Add(5 * time.Second)
		for logs.Filter(listening).Len() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("owner %s did not say %s: %v", id, c.want, logs.All())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_, err := b.Start(context.Background(), enclave.StartSpec{ID: "p-big", Image: "nodejs:20", Dir: t.TempDir(), Slots: 1, PagePoolMB: &big})
	if err == nil || !strings.Contains(err.Error(), "page pool 4097 MiB") {
		t.Fatalf("a budget out of range: %v", err)
	}
}
