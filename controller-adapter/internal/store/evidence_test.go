package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestEvidenceLatestWinsAndSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	if _, _, err := s.GetEvidence(ctx, "nodejs:20"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before any: %v, want ErrNotFound", err)
	}
	// Spaces and key order are kept: clients hash what was served.
	first := []byte(`{"v":1, "kid":"a"}`)
	second := []byte(`{"kid":"b","v":1}`)
	if err := s.PutEvidence(ctx, "nodejs:20", first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEvidence(ctx, "nodejs:18", first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutEvidence(ctx, "nodejs:20", second); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	got, when, err := s2.GetEvidence(ctx, "nodejs:20")
	if err != nil || string(got) != string(second) || when.IsZero() {
		t.Fatalf("nodejs:20 = %q %v %v", got, when, err)
	}
	if got, _, err := s2.GetEvidence(ctx, "nodejs:18"); err != nil || string(got) != string(first) {
		t.Fatalf("nodejs:18 = %q %v", got, err)
	}
	var rows int
	if err := s2.r.QueryRow(`SELECT COUNT(*) FROM evidence`).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("rows = %d, %v; want one per image", rows, err)
	}
	if err := s2.PutEvidence(ctx, "", first); err == nil {
		t.Fatal("empty image accepted")
	}
	if err := s2.PutEvidence(ctx, "x", []byte{'"', 0xff, '"'}); err == nil {
		t.Fatal("non-UTF-8 document accepted")
	}
}
