package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

func TestPackageRevisionsAndVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	in := &whisk.Package{Namespace: "guest", Name: "utils", Publish: true,
		Parameters: whisk.Parameters{{Key: "a", Value: json.RawMessage(`1`)}}}
	p1, err := s.PutPackage(ctx, in, false)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Version != whisk.DefaultVersion || revN(t, p1.Revision) != 1 || p1.Updated == 0 || in.Revision != "" {
		t.Fatalf("created %+v (argument %+v)", p1, in)
	}
	if _, err := s.PutPackage(ctx, in, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("create again: %v, want ErrConflict", err)
	}
	p2, err := s.PutPackage(ctx, in, true)
	if err != nil || p2.Version != "0.0.2" || revN(t, p2.Revision) != 2 {
		t.Fatalf("overwrite: %+v %v", p2, err)
	}
	explicit := *in
	explicit.Version = "2.0.0"
	if p3, err := s.PutPackage(ctx, &explicit, true); err != nil || p3.Version != "2.0.0" {
		t.Fatalf("explicit version: %+v %v", p3, err)
	}
	// The document survives a reopen; a binding comes back as a binding.
	if _, err := s.PutPackage(ctx, &whisk.Package{Namespace: "other", Name: "b", Binding: &whisk.Binding{Namespace: "guest", Name: "utils"}}, false); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	got, err := s.GetPackage(ctx, "guest", "utils")
	if err != nil || got.Version != "2.0.0" || revN(t, got.Revision) != 3 || !got.Publish || got.Binding != nil {
		t.Fatalf("get: %+v %v", got, err)
	}
	if v, _ := got.Parameters.Get("a"); string(v) != "1" {
		t.Fatalf("parameters = %+v", got.Parameters)
	}
	b, err := s.GetPackage(ctx, "other", "b")
	if err != nil || b.Binding == nil || b.Binding.Path() != "guest/utils" {
		t.Fatalf("binding: %+v %v", b, err)
	}
	if _, err := s.GetPackage(ctx, "guest", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	// Delete keeps the revision counter: a recreated package continues it.
	if _, err := s.DeletePackage(ctx, "guest", "utils", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePackage(ctx, "guest", "utils", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	p5, err := s.PutPackage(ctx, in, false)
	if err != nil || revN(t, p5.Revision) != 5 || p5.Version != whisk.DefaultVersion {
		t.Fatalf("recreate: %+v %v", p5, err)
	}
}

func TestPackageActionsAndDelete(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }

	// An action of a package needs the package, and not a binding.
	if _, err := s.PutAction(ctx, newAction("guest/p_1", "a", "x"), false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("action without its package: %v", err)
	}
	for _, p := range []*whisk.Package{
		{Namespace: "guest", Name: "p_1"},
		{Namespace: "guest", Name: "p_10"}, // sorts right after p_1: the range must not take it in
		{Namespace: "guest", Name: "bnd", Binding: &whisk.Binding{Namespace: "guest", Name: "p_1"}},
	} {
		if _, err := s.PutPackage(ctx, p, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutAction(ctx, newAction("guest/bnd", "a", "x"), false); !errors.Is(err, ErrIsBinding) {
		t.Fatalf("action in a binding: %v", err)
	}
	for _, a := range []*whisk.Action{newAction("guest/p_1", "a", "x"), newAction("guest/p_1", "b", "x"),
		newAction("guest/p_10", "c", "x"), newAction("guest", "top", "x")} {
		if _, err := s.PutAction(ctx, a, false); err != nil {
			t.Fatal(err)
		}
	}
	names := func(as []*whisk.Action) string {
		var n []string
		for _, a := range as {
			n = append(n, a.Namespace+"/"+a.Name)
		}
		return strings.Join(n, ",")
	}
	as, err := s.ListPackageActions(ctx, "guest/p_1", 0, 0)
	if err != nil || names(as) != "guest/p_1/b,guest/p_1/a" {
		t.Fatalf("package actions = %s, %v", names(as), err)
	}
	if as, _ := s.ListPackageActions(ctx, "guest/p_1", 1, 1); names(as) != "guest/p_1/a" {
		t.Fatalf("limit 1 skip 1 = %s", names(as))
	}
	// Every action of the namespace, packaged ones included.
	if as, _ := s.ListActions(ctx, "guest", 0, 0); len(as) != 4 {
		t.Fatalf("namespace actions = %s", names(as))
	}

	var ne *NotEmptyError
	if _, err := s.DeletePackage(ctx, "guest", "p_1", false); !errors.As(err, &ne) || ne.Actions != 2 {
		t.Fatalf("delete non-empty: %v", err)
	}
	// A binding holds no actions: it goes even though its package has some.
	if _, err := s.DeletePackage(ctx, "guest", "bnd", false); err != nil {
		t.Fatalf("delete binding: %v", err)
	}
	before, err := s.GetAction(ctx, "guest", "p_1/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePackage(ctx, "guest", "p_1", true); err != nil {
		t.Fatalf("force delete: %v", err)
	}
	if _, err := s.GetAction(ctx, "guest", "p_1/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("action of a force-deleted package: %v", err)
	}
	if as, _ := s.ListPackageActions(ctx, "guest/p_10", 0, 0); names(as) != "guest/p_10/c" {
		t.Fatalf("the neighbour package lost its action: %s", names(as))
	}
	// The deleted action's revision counter went on: recreated, it continues after the tombstone.
	if _, err := s.PutPackage(ctx, &whisk.Package{Namespace: "guest", Name: "p_1"}, false); err != nil {
		t.Fatal(err)
	}
	again, err := s.PutAction(ctx, newAction("guest/p_1", "a", "x"), false)
	if err != nil || revN(t, again.Revision) != revN(t, before.Revision)+2 {
		t.Fatalf("recreated action revision %q after %q: %v", again.Revision, before.Revision, err)
	}
}

func TestListPackagesPublic(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	for _, p := range []*whisk.Package{
		{Namespace: "whisk.system", Name: "utils", Publish: true},
		{Namespace: "whisk.system", Name: "private"},
		{Namespace: "whisk.system", Name: "bnd", Publish: true, Binding: &whisk.Binding{Namespace: "whisk.system", Name: "utils"}},
		{Namespace: "whisk.system", Name: "alarms", Publish: true},
		{Namespace: "guest", Name: "mine", Publish: true},
	} {
		if _, err := s.PutPackage(ctx, p, false); err != nil {
			t.Fatal(err)
		}
	}
	names := func(ps []*whisk.Package) string {
		var n []string
		for _, p := range ps {
			n = append(n, p.Name)
		}
		return strings.Join(n, ",")
	}
	for _, c := range []struct {
		public      bool
		limit, skip int
		want        string
		count       int
	}{
		{false, 0, 0, "alarms,bnd,private,utils", 4},
		{true, 0, 0, "alarms,utils", 2},
		{true, 1, 1, "utils", 1},
		{false, 2, 3, "utils", 1},
		{true, 0, 5, "", 0},
	} {
		ps, err := s.ListPackages(ctx, "whisk.system", c.public, c.limit, c.skip)
		if err != nil || names(ps) != c.want {
			t.Errorf("public %v limit %d skip %d = %q, %v; want %q", c.public, c.limit, c.skip, names(ps), err, c.want)
		}
		if n, err := s.CountPackages(ctx, "whisk.system", c.public, c.skip); err != nil || n != c.count {
			t.Errorf("count public %v skip %d = %d, %v; want %d", c.public, c.skip, n, err, c.count)
		}
	}
}

func TestEnsurePackage(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	p := &whisk.Package{Namespace: "whisk.system", Name: "alarms", Publish: true}
	if made, err := s.EnsurePackage(ctx, p); err != nil || !made {
		t.Fatalf("first: %v %v", made, err)
	}
	// An operator's change is kept.
	changed := *p
	changed.Publish = false
	if _, err := s.PutPackage(ctx, &changed, true); err != nil {
		t.Fatal(err)
	}
	if made, err := s.EnsurePackage(ctx, p); err != nil || made {
		t.Fatalf("again: %v %v", made, err)
	}
	if got, err := s.GetPackage(ctx, "whisk.system", "alarms"); err != nil || got.Publish || got.Version != "0.0.2" {
		t.Fatalf("after ensure: %+v %v", got, err)
	}
}
