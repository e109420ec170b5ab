package store

import (
	"bytes"
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// filesContain reports which of the store's files (main, -wal, -shm) hold needle.
func filesContain(t *testing.T, path, needle string) []string {
	t.Helper()
	var hits []string
	for _, f := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(needle)) {
			hits = append(hits, filepath.Base(f))
		}
	}
	return hits
}

func TestKeysAreNotStoredInPlaintext(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "controller.db")
	s := open(t, path)
	const key = "Zq8vKcSecretKeyThatMustNotBeOnDiskAnywhere0123456789abcdefghijk"
	if err := s.EnsureNamespace(ctx, "alice", "alice-uuid", key); err != nil {
		t.Fatal(err)
	}
	// While the store is open (the WAL not yet checkpointed) and after it is closed.
	if hits := filesContain(t, path, key); len(hits) > 0 {
		t.Fatalf("the key is in plaintext in %v", hits)
	}
	if _, err := s.Authenticate(ctx, "alice-uuid", key); err != nil {
		t.Fatalf("the key no longer authenticates: %v", err)
	}
	// Private from the first byte, whatever the umask: SQLite gives -wal and -shm the db's mode.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	var stored string
	if err := s.r.QueryRow(`SELECT secret FROM auth_keys WHERE uuid = 'alice-uuid'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, hashPrefix) || strings.Contains(stored, key) {
		t.Fatalf("stored secret %q is not a hash", stored)
	}
	// Equal keys get different hashes (a salt per key).
	if err := s.EnsureNamespace(ctx, "bob", "bob-uuid", key); err != nil {
		t.Fatal(err)
	}
	var other string
	if err := s.r.QueryRow(`SELECT secret FROM auth_keys WHERE uuid = 'bob-uuid'`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	if other == stored {
		t.Fatal("two keys with the same value have the same hash")
	}
	s.Close()
	if hits := filesContain(t, path, key); len(hits) > 0 {
		t.Fatalf("after close the key is in plaintext in %v", hits)
	}
}

// TestPlaintextStoreIsUpgradedOnOpen builds a store the way the previous release did (schema 1,
// keys in plaintext, still in the WAL) and opens it with this one.
func TestPlaintextStoreIsUpgradedOnOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "controller.db")
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	old, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	old.SetMaxOpenConns(1)
	const key = "OldReleasePlaintextKey0123456789abcdefghijklmnopqrstuvwxyzABCDE"
	for _, stmt := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY)`,
		migrations[0],
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO namespaces (name, subject) VALUES ('carol', 'carol')`,
		`INSERT INTO auth_keys (uuid, secret, namespace) VALUES ('carol-uuid', '` + key + `', 'carol')`,
		`PRAGMA wal_checkpoint(PASSIVE)`,
		`UPDATE namespaces SET subject = 'carol' WHERE name = 'carol'`, // leaves a WAL behind
	} {
		if _, err := old.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if hits := filesContain(t, path, key); len(hits) == 0 {
		t.Fatal("test setup: the old store should hold the key in plaintext")
	}
	// The old release is stopped before the new one starts; the -wal is left behind when the
	// process dies, which closing the pool without a checkpoint would not show, so copy it.
	wal, _ := os.ReadFile(path + "-wal")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if len(wal) > 0 {
		if err := os.WriteFile(path+"-wal", wal, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s := open(t, path)
	if hits := filesContain(t, path, key); len(hits) > 0 {
		t.Fatalf("after the upgrade the key is still in plaintext in %v", hits)
	}
	id, err := s.Authenticate(ctx, "carol-uuid", key)
	if err != nil || id.Namespace.Name != "carol" || id.AuthKey.APIKey != "carol-uuid:"+key {
		t.Fatalf("the upgraded key does not authenticate: %+v, %v", id, err)
	}
	if _, err := s.Authenticate(ctx, "carol-uuid", "wrong"); err == nil {
		t.Fatal("a wrong key authenticates after the upgrade")
	}
	n, err := s.hashPlaintextKeys(ctx)
	if err != nil || n != 0 {
		t.Fatalf("second upgrade = %d, %v; want nothing left to do", n, err)
	}
}
