package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestNamespaceLimits(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	ctx := context.Background()
	if err := s.EnsureNamespace(ctx, "guest", guestUUID, guestKey); err != nil {
		t.Fatal(err)
	}
	id, err := s.Authenticate(ctx, guestUUID, guestKey)
	if err != nil || id.Limits != nil {
		t.Fatalf("a new namespace's identity carries limits %s (%v), want none", id.Limits, err)
	}
	n, zero := 500, 0
	got, err := s.SetLimits(ctx, "guest", LimitsChange{Set: Limits{InvocationsPerMinute: &n, FiresPerMinute: &zero}})
	if err != nil || got.InvocationsPerMinute == nil || *got.InvocationsPerMinute != 500 || got.ConcurrentInvocations != nil ||
		got.FiresPerMinute == nil || *got.FiresPerMinute != 0 {
		t.Fatalf("SetLimits = %+v, %v", got, err)
	}
	// The identity carries them from the next authentication on, as OpenWhisk's does.
	id, err = s.Authenticate(ctx, guestUUID, guestKey)
	if err != nil || string(id.Limits) != `{"invocationsPerMinute":500,"firesPerMinute":0}` {
		t.Fatalf("identity limits %s, %v", id.Limits, err)
	}
	if owner, err := s.IdentityForNamespace(ctx, "guest"); err != nil || string(owner.Limits) != string(id.Limits) {
		t.Fatalf("owner identity limits %s, %v", owner.Limits, err)
	}
	// A scheduled fire runs as the identity of the key that registered it: the limits are there too.
	if owner, err := s.IdentityForUUID(ctx, guestUUID); err != nil || string(owner.Limits) != string(id.Limits) {
		t.Fatalf("scheduled fire identity limits %s, %v", owner.Limits, err)
	}
	var reset LimitsChange
	reset.Reset.InvocationsPerMinute = true
	if got, err = s.SetLimits(ctx, "guest", reset); err != nil || got.InvocationsPerMinute != nil || got.FiresPerMinute == nil {
		t.Fatalf("reset = %+v, %v", got, err)
	}
	if l, err := s.GetLimits(ctx, "guest"); err != nil || l.InvocationsPerMinute != nil || *l.FiresPerMinute != 0 {
		t.Fatalf("GetLimits = %+v, %v", l, err)
	}
	if _, err := s.SetLimits(ctx, "nobody", reset); !errors.Is(err, ErrNotFound) {
		t.Fatalf("limits of a missing namespace: %v, want ErrNotFound", err)
	}
	if _, err := s.GetLimits(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetLimits of a missing namespace: %v, want ErrNotFound", err)
	}
	neg := -1
	if _, err := s.SetLimits(ctx, "guest", LimitsChange{Set: Limits{ConcurrentInvocations: &neg}}); err == nil {
		t.Fatal("a negative limit was accepted")
	}
	if _, err := ParseLimits([]byte(`{"concurrentInvocations":-3}`)); err == nil {
		t.Fatal("ParseLimits accepted a negative limit")
	}
	if l, err := ParseLimits([]byte(`{"allowedKinds":["nodejs:20"],"concurrentInvocations":7}`)); err != nil || *l.ConcurrentInvocations != 7 {
		t.Fatalf("ParseLimits with fields this platform does not apply: %+v, %v", l, err)
	}
}

// An explicit version is stored as given, on create and on overwrite; without one the patch
// number goes up (OpenWhisk: content.version getOrElse action.version.upPatch).
func TestActionExplicitVersion(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite"))
	in := newAction("guest", "v", "function main(){return {}}")
	in.Version = "1.2.3"
	a, err := s.PutAction(ctx, in, false)
	if err != nil || a.Version != "1.2.3" {
		t.Fatalf("create with 1.2.3: %+v, %v", a, err)
	}
	in.Version = ""
	if a, err = s.PutAction(ctx, in, true); err != nil || a.Version != "1.2.4" {
		t.Fatalf("update without a version: %v, %v (want 1.2.4)", a.Version, err)
	}
	in.Version = "0.9.0"
	if a, err = s.PutAction(ctx, in, true); err != nil || a.Version != "0.9.0" {
		t.Fatalf("update with 0.9.0: %v, %v", a.Version, err)
	}
}
