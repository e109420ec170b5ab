package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestContentsKeptUntilAnswered: content kept by reference is readable in its own namespace only,
// goes with the activation's record, and goes after its time (at the next put, at reopen, and is
// never served once past it).
func TestContentsKeptUntilAnswered(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	clock := time.UnixMilli(1_700_000_000_000)
	s.now = func() time.Time { return clock }
	big := bytes.Repeat([]byte("x"), 1500_000)
	answered, expiring, failed := actID(1), actID(2), actID(3)
	for _, id := range []string{answered, expiring, failed} {
		if err := s.PutContent(ctx, "guest", id, big, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.GetContent(ctx, "guest", answered); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("GetContent: %d bytes, %v", len(got), err)
	}
	if _, err := s.GetContent(ctx, "other", answered); !errors.Is(err, ErrNotFound) {
		t.Fatalf("content visible from another namespace: %v", err)
	}

	if err := s.PutActivation(ctx, activation("guest", answered, "hello", 1000, "ran")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetContent(ctx, "guest", answered); !errors.Is(err, ErrNotFound) {
		t.Fatalf("content of an answered activation still there: %v", err)
	}
	if err := s.DeleteContent(ctx, "guest", failed); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContent(ctx, "guest", failed); err != nil {
		t.Fatalf("deleting nothing: %v", err)
	}
	if _, err := s.GetContent(ctx, "guest", failed); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted content still there: %v", err)
	}

	clock = clock.Add(time.Minute + time.Millisecond)
	if _, err := s.GetContent(ctx, "guest", expiring); !errors.Is(err, ErrNotFound) {
		t.Fatalf("content past its time served: %v", err)
	}
	if n := rows(t, s); n != 1 {
		t.Fatalf("%d rows before the sweep, want the expired one", n)
	}
	if err := s.PutContent(ctx, "guest", actID(4), []byte(`{}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := rows(t, s); n != 1 {
		t.Fatalf("%d rows after a put past the first one's time, want 1 (the new one)", n)
	}

	// A store reopened after the time of what it kept drops it.
	s.Close()
	s2 := open(t, path)
	if n := rows(t, s2); n != 0 {
		t.Fatalf("%d rows kept past their time across a reopen", n)
	}
	if err := s2.PutContent(ctx, "guest", "nope", big, time.Minute); err == nil {
		t.Fatal("invalid activation id accepted")
	}
	if err := s2.PutContent(ctx, "guest", actID(5), nil, time.Minute); err == nil {
		t.Fatal("empty content accepted")
	}
}

func rows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM activation_contents`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
