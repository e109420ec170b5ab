package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// The invoke path's cached reads see every write made through this package, by this process or
// by another one on the same file (the operator's `namespace` commands): the next read after the
// write returns the new value. Two Stores on one file stand for the two processes.
func TestCacheSeesWritesOfAnotherStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	ctrl, cli := open(t, path), open(t, path)
	if err := ctrl.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.PutAction(ctx, newAction("guest", "hello", "function main(){return {v:1}}"), false); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second read is served from the cache
		if id, err := ctrl.Authenticate(ctx, guestUUID, guestKey); err != nil || id.Limits != nil {
			t.Fatalf("Authenticate = %s, %v", id.Limits, err)
		}
		if a, err := ctrl.GetAction(ctx, "guest", "hello"); err != nil || a.Exec.Code != "function main(){return {v:1}}" {
			t.Fatalf("GetAction = %v", err)
		}
	}
	if _, hit := ctrl.cache.auth.at(guestUUID, mustGeneration(t, ctrl)); !hit {
		t.Fatal("the identity is not cached")
	}

	// A wrong key is refused on a cached entry as on a read from the database.
	if _, err := ctrl.Authenticate(ctx, guestUUID, guestKey+"x"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a wrong key on a cached identity: %v", err)
	}

	// Limits set by the other process apply from the next request.
	n := 7
	if _, err := cli.SetLimits(ctx, "guest", LimitsChange{Set: Limits{InvocationsPerMinute: &n}}); err != nil {
		t.Fatal(err)
	}
	if id, err := ctrl.Authenticate(ctx, guestUUID, guestKey); err != nil || string(id.Limits) != `{"invocationsPerMinute":7}` {
		t.Fatalf("after the other store's SetLimits: limits %s, %v", id.Limits, err)
	}

	// An action updated, then deleted, by the other process.
	if _, err := cli.PutAction(ctx, newAction("guest", "hello", "function main(){return {v:2}}"), true); err != nil {
		t.Fatal(err)
	}
	a, err := ctrl.GetAction(ctx, "guest", "hello")
	if err != nil || a.Exec.Code != "function main(){return {v:2}}" || revN(t, a.Revision) != 2 {
		t.Fatalf("after the other store's update: %+v, %v", a, err)
	}
	if _, err := cli.DeleteAction(ctx, "guest", "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.GetAction(ctx, "guest", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the other store's delete: %v, want ErrNotFound", err)
	}

	// A key added by the other process authenticates at once.
	const uuid2, key2 = "11111111-2222-3333-4444-555555555555", "second-key-of-guest-0123456789abcdef0123456789abcdef0123456789"
	if _, err := ctrl.Authenticate(ctx, uuid2, key2); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("an unknown key: %v", err)
	}
	if err := cli.AddKey(ctx, "guest", uuid2, key2); err != nil {
		t.Fatal(err)
	}
	if id, err := ctrl.Authenticate(ctx, uuid2, key2); err != nil || id.Namespace.Name != "guest" {
		t.Fatalf("after the other store's AddKey: %+v, %v", id.Namespace, err)
	}
}

// Each caller gets an action of its own: changing one does not change what the next read returns.
func TestCachedActionIsACopy(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	if _, err := s.PutAction(ctx, newAction("guest", "hello", "function main(){}"), false); err != nil {
		t.Fatal(err)
	}
	a, err := s.GetAction(ctx, "guest", "hello")
	if err != nil {
		t.Fatal(err)
	}
	a.Exec.Code = "changed by a caller"
	b, err := s.GetAction(ctx, "guest", "hello")
	if err != nil || b.Exec.Code != "function main(){}" {
		t.Fatalf("second read %q, %v", b.Exec.Code, err)
	}
}

// The cache serves while nothing was written through the store: a hand edit of the database with
// another SQLite client (no generation bump) is not seen until the next write, as the package
// says. This is also what shows that the cache is used at all.
func TestCacheServesUntilTheNextWrite(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	if err := s.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE namespaces SET limits = '{"invocationsPerMinute":3}' WHERE name = 'guest'`); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Authenticate(ctx, guestUUID, guestKey); err != nil || id.Limits != nil {
		t.Fatalf("a hand edit was seen without a write through the store: %s, %v", id.Limits, err)
	}
	if _, err := s.PutAction(ctx, newAction("guest", "any", "function main(){}"), false); err != nil {
		t.Fatal(err)
	}
	if id, err := s.Authenticate(ctx, guestUUID, guestKey); err != nil || string(id.Limits) != `{"invocationsPerMinute":3}` {
		t.Fatalf("after a write through the store: %s, %v", id.Limits, err)
	}
}

func mustGeneration(t *testing.T, s *Store) int64 {
	t.Helper()
	n, ok := s.generation()
	if !ok {
		t.Fatal("the generation cannot be read")
	}
	return n
}
