package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/whisk"
)

const (
	guestUUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	guestKey  = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newAction(ns, name, code string) *whisk.Action {
	return &whisk.Action{
		Namespace: ns, Name: name,
		Exec:   whisk.Exec{Kind: "nodejs:20", Code: code},
		Limits: whisk.DefaultLimits(),
	}
}

func revN(t *testing.T, rev string) int {
	t.Helper()
	n, hexPart, ok := strings.Cut(rev, "-")
	if !ok || len(hexPart) != 32 {
		t.Fatalf("revision %q is not N-<32 hex>", rev)
	}
	v, err := strconv.Atoi(n)
	if err != nil {
		t.Fatalf("revision %q: %v", rev, err)
	}
	return v
}

func TestSchemaMigratedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	v, err := s.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
	}
	s.Close()
	s2 := open(t, path) // reopening must not re-run migration 1 (it would fail on CREATE TABLE)
	if v, err := s2.SchemaVersion(context.Background()); err != nil || v != len(migrations) {
		t.Fatalf("after reopen: %d, %v", v, err)
	}
	var mode string
	if err := s2.r.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestSubjects(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	for i := 0; i < 2; i++ { // idempotent
		if err := s.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
			t.Fatalf("EnsureNamespace #%d: %v", i, err)
		}
	}
	id, err := s.Authenticate(ctx, guestUUID, guestKey)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if id.Subject != "guest" || id.Namespace.Name != "guest" || id.Namespace.UUID != guestUUID ||
		id.AuthKey.APIKey != guestUUID+":"+guestKey || len(id.Rights) != 4 {
		t.Fatalf("identity = %+v", id)
	}
	for _, c := range []struct{ uuid, key string }{
		{guestUUID, "wrong"}, {guestUUID, ""}, {"unknown", guestKey}, {"", ""},
	} {
		if _, err := s.Authenticate(ctx, c.uuid, c.key); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("Authenticate(%q,%q) = %v, want ErrUnauthorized", c.uuid, c.key, err)
		}
	}
	// A uuid cannot be rebound to another namespace or key.
	if err := s.EnsureNamespace(ctx, "other", guestUUID, guestKey); !errors.Is(err, ErrConflict) {
		t.Fatalf("rebinding uuid: %v, want ErrConflict", err)
	}
	if err := s.AddKey(ctx, "guest", "second-uuid", "k2"); err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	if err := s.AddKey(ctx, "nosuch", "u3", "k3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AddKey to missing namespace: %v", err)
	}
	id2, err := s.Authenticate(ctx, "second-uuid", "k2")
	if err != nil || id2.Namespace.Name != "guest" {
		t.Fatalf("second key: %+v %v", id2, err)
	}
	owner, err := s.IdentityForNamespace(ctx, "guest")
	// The owner is the first key's uuid; its key is not in the store to give back.
	if err != nil || owner.Namespace.UUID != guestUUID || owner.AuthKey.APIKey != "" {
		t.Fatalf("owner = %+v, %v; want the first key's uuid and no key", owner, err)
	}
	if _, err := s.IdentityForNamespace(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("IdentityForNamespace(nosuch) = %v", err)
	}
	nss, err := s.ListNamespaces(ctx, id)
	if err != nil || len(nss) != 1 || nss[0] != "guest" {
		t.Fatalf("ListNamespaces = %v, %v", nss, err)
	}
	if err := s.EnsureNamespace(ctx, "bad/name", "u4", "k4"); err == nil {
		t.Fatal("invalid namespace name accepted")
	}
}

func TestActionRevisionsAndVersions(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	in := newAction("guest", "hello", "function main(){return {}}")
	a1, err := s.PutAction(ctx, in, false)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if in.Revision != "" || in.Updated != 0 {
		t.Fatal("PutAction modified its argument")
	}
	if revN(t, a1.Revision) != 1 || a1.Version != "0.0.1" || a1.Updated == 0 {
		t.Fatalf("created: rev %s version %s updated %d", a1.Revision, a1.Version, a1.Updated)
	}
	if _, err := s.PutAction(ctx, in, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("create again without overwrite: %v, want ErrConflict", err)
	}
	in.Exec.Code = "function main(){return {v:2}}"
	a2, err := s.PutAction(ctx, in, true)
	if err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if revN(t, a2.Revision) != 2 || a2.Version != "0.0.2" {
		t.Fatalf("after overwrite: rev %s version %s", a2.Revision, a2.Version)
	}
	got, err := s.GetAction(ctx, "guest", "hello")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Revision != a2.Revision || got.Exec.Code != in.Exec.Code || got.Version != "0.0.2" {
		t.Fatalf("get = %+v", got)
	}
	del, err := s.DeleteAction(ctx, "guest", "hello")
	if err != nil || del.Revision != a2.Revision {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	if _, err := s.GetAction(ctx, "guest", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := s.DeleteAction(ctx, "guest", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Recreating continues the revision sequence (never reuses a cached
	// revision) and restarts the version.
	a3, err := s.PutAction(ctx, in, false)
	if err != nil {
		t.Fatalf("recreate: %v", err)
	}
	if revN(t, a3.Revision) <= revN(t, a2.Revision) || a3.Version != "0.0.1" {
		t.Fatalf("recreated: rev %s version %s", a3.Revision, a3.Version)
	}
}

func TestBumpPatch(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.1": "0.0.2", "0.0.9": "0.0.10", "1.2.3": "1.2.4", "": "0.0.1", "x.y.z": "0.0.1", "1.2": "0.0.1",
	} {
		if got := bumpPatch(in); got != want {
			t.Errorf("bumpPatch(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestListActions(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	for i := 0; i < 5; i++ {
		if _, err := s.PutAction(ctx, newAction("guest", fmt.Sprintf("a%d", i), "x"), false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutAction(ctx, newAction("other", "b", "x"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteAction(ctx, "guest", "a2"); err != nil {
		t.Fatal(err)
	}
	names := func(as []*whisk.Action) string {
		var n []string
		for _, a := range as {
			n = append(n, a.Name)
		}
		return strings.Join(n, ",")
	}
	for _, c := range []struct {
		limit, skip int
		want        string
	}{
		{0, 0, "a4,a3,a1,a0"},
		{2, 0, "a4,a3"},
		{2, 2, "a1,a0"},
		{30, 3, "a0"},
		{30, 10, ""},
	} {
		got, err := s.ListActions(ctx, "guest", c.limit, c.skip)
		if err != nil {
			t.Fatal(err)
		}
		if names(got) != c.want {
			t.Errorf("ListActions(limit %d, skip %d) = %q, want %q", c.limit, c.skip, names(got), c.want)
		}
	}
}

func activation(ns, id, name string, start int64, logs ...string) *whisk.WhiskActivation {
	d := int64(5)
	return &whisk.WhiskActivation{
		Namespace: ns, Name: name, Subject: ns, ActivationID: id,
		Start: time.UnixMilli(start), End: time.UnixMilli(start + 5), Duration: &d,
		Response:    whisk.Success(json.RawMessage(`{"ok":true}`)),
		Logs:        logs,
		Annotations: whisk.Parameters{{Key: "path", Value: json.RawMessage(`"` + ns + "/" + name + `"`)}},
	}
}

func actID(i int) string { return fmt.Sprintf("%032x", i+1) }

// TestActivationWrittenAgainReplaces: the invoker is the only writer, so a second write of an id
// (a retried request, a redelivered activation) replaces the first: one record per id.
func TestActivationWrittenAgainReplaces(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	id := actID(0)
	if err := s.PutActivation(ctx, activation("guest", id, "hello", 1000, "line 1", "line 2")); err != nil {
		t.Fatal(err)
	}
	again := activation("guest", id, "hello", 2000, "rerun")
	again.Response = whisk.Success(json.RawMessage(`{"ok":"again"}`))
	if err := s.PutActivation(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetActivation(ctx, "guest", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Logs) != 1 || got.Logs[0] != "rerun" || string(got.Response.Result) != `{"ok":"again"}` || got.Start.UnixMilli() != 2000 {
		t.Fatalf("second write did not replace the first: %+v", got)
	}
	if n, err := s.CountActivations(ctx, "guest", ActivationFilter{}); err != nil || n != 1 {
		t.Fatalf("records for one id = %d (%v), want 1", n, err)
	}
	if _, err := s.GetActivation(ctx, "other", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("activation visible from another namespace: %v", err)
	}
	if err := s.PutActivation(ctx, activation("guest", "not-an-id", "x", 1)); err == nil {
		t.Fatal("invalid activation id accepted")
	}
}

func TestListActivationsFilters(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	// ids 0..9: even ones are "hello", odd ones "bye"; start = 1000*(i+1).
	for i := 0; i < 10; i++ {
		name := "hello"
		if i%2 == 1 {
			name = "bye"
		}
		if err := s.PutActivation(ctx, activation("guest", actID(i), name, int64(1000*(i+1)))); err != nil {
			t.Fatal(err)
		}
	}
	pkgAct := activation("guest", actID(50), "hello", 20000)
	pkgAct.Annotations = whisk.Parameters{{Key: "path", Value: json.RawMessage(`"guest/pkg/hello"`)}}
	if err := s.PutActivation(ctx, pkgAct); err != nil {
		t.Fatal(err)
	}
	if err := s.PutActivation(ctx, activation("other", actID(60), "hello", 5000)); err != nil {
		t.Fatal(err)
	}
	ids := func(as []*whisk.WhiskActivation) string {
		var out []string
		for _, a := range as {
			n, _ := strconv.ParseInt(a.ActivationID, 16, 64)
			out = append(out, strconv.FormatInt(n-1, 10))
		}
		return strings.Join(out, ",")
	}
	ms := func(v int64) time.Time { return time.UnixMilli(v) }
	for _, c := range []struct {
		name string
		f    ActivationFilter
		want string
	}{
		{"all newest first", ActivationFilter{}, "50,9,8,7,6,5,4,3,2,1,0"},
		{"limit", ActivationFilter{Limit: 3}, "50,9,8"},
		{"skip", ActivationFilter{Limit: 3, Skip: 2}, "8,7,6"},
		{"name", ActivationFilter{Name: "hello"}, "8,6,4,2,0"},
		{"package name", ActivationFilter{Name: "pkg/hello"}, "50"},
		{"since inclusive", ActivationFilter{Since: ms(8000)}, "50,9,8,7"},
		{"upto inclusive", ActivationFilter{Upto: ms(2000)}, "1,0"},
		{"window and name", ActivationFilter{Name: "bye", Since: ms(3000), Upto: ms(8000)}, "7,5,3"},
		{"nothing", ActivationFilter{Name: "nosuch"}, ""},
	} {
		got, err := s.ListActivations(ctx, "guest", c.f)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != c.want {
			t.Errorf("%s: got %q, want %q", c.name, ids(got), c.want)
		}
		if c.f.Limit == 0 && c.f.Skip == 0 {
			n, err := s.CountActivations(ctx, "guest", c.f)
			if err != nil || int(n) != len(got) {
				t.Errorf("%s: count = %d, %v; list has %d", c.name, n, err, len(got))
			}
		}
	}
}

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	if err := s.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	a, err := s.PutAction(ctx, newAction("guest", "hello", "code"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutActivation(ctx, activation("guest", actID(1), "hello", 42, "log")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	if _, err := s2.Authenticate(ctx, guestUUID, guestKey); err != nil {
		t.Fatalf("key lost: %v", err)
	}
	got, err := s2.GetAction(ctx, "guest", "hello")
	if err != nil || got.Revision != a.Revision || got.Exec.Code != "code" {
		t.Fatalf("action after reopen = %+v, %v", got, err)
	}
	act, err := s2.GetActivation(ctx, "guest", actID(1))
	if err != nil || len(act.Logs) != 1 || act.Start.UnixMilli() != 42 {
		t.Fatalf("activation after reopen = %+v, %v", act, err)
	}
	a2, err := s2.PutAction(ctx, newAction("guest", "hello", "code2"), true)
	if err != nil || revN(t, a2.Revision) != 2 {
		t.Fatalf("revision after reopen = %+v, %v", a2, err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	if _, err := s.PutAction(ctx, newAction("guest", "hot", "x"), false); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := s.PutAction(ctx, newAction("guest", "hot", "x"), true)
			errs <- err
		}()
		go func(i int) {
			defer wg.Done()
			errs <- s.PutActivation(ctx, activation("guest", actID(100+i), "hot", int64(i)))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.GetAction(ctx, "guest", "hot")
	if err != nil || revN(t, a.Revision) != 21 || a.Version != "0.0.21" {
		t.Fatalf("after 20 concurrent overwrites: %+v, %v; want revision 21, version 0.0.21", a, err)
	}
}

// Activation records commit relaxed; the writer connection is back to synchronous=FULL for
// entities afterwards, also when the activation write fails.
func TestActivationWritesLeaveTheWriterDurable(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	mode := func() int {
		var m int
		if err := s.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	const full = 2
	if m := mode(); m != full {
		t.Fatalf("writer starts with synchronous=%d, want FULL (2)", m)
	}
	if err := s.PutActivation(ctx, activation("guest", actID(1), "hello", 1000, "l")); err != nil {
		t.Fatal(err)
	}
	if m := mode(); m != full {
		t.Fatalf("after an activation write synchronous=%d, want FULL (2)", m)
	}
	// A write that fails inside its transaction (cancelled context) restores it as well.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutActivation(cctx, activation("guest", actID(2), "hello", 1000)); err == nil {
		t.Fatal("a write with a cancelled context succeeded")
	}
	if m := mode(); m != full {
		t.Fatalf("after a failed activation write synchronous=%d, want FULL (2)", m)
	}
	if _, err := s.GetActivation(ctx, "guest", actID(1)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkStore_PutActivation: the store write of one activation's record (the invoker's PUT,
// once per activation), in CPU per record as well as wall time.
func BenchmarkStore_PutActivation(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "store.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	cpu0 := testtool.ProcessCPU(b)
	b.ResetTimer()
	for i := range b.N {
		if err := s.PutActivation(ctx, activation("guest", actID(i), "hello", int64(1000*(i+1)), "a log line")); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((testtool.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu_us/op")
}
