package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/whisk"
)

// TestTriggersAndRules checks the revision semantics of triggers and rules and that a rule's state
// and link follow it: kept on update, moved to another trigger, gone with a recreated trigger.
func TestTriggersAndRules(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	t1, err := s.PutTrigger(ctx, &whisk.Trigger{Namespace: "ns", Name: "t1"}, false)
	if err != nil || t1.Version != "0.0.1" || !strings.HasPrefix(t1.Revision, "1-") {
		t.Fatalf("create: %+v %v", t1, err)
	}
	if _, err := s.PutTrigger(ctx, &whisk.Trigger{Namespace: "ns", Name: "t1"}, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("create again: %v", err)
	}
	if _, err := s.PutTrigger(ctx, &whisk.Trigger{Namespace: "ns", Name: "t2"}, false); err != nil {
		t.Fatal(err)
	}
	act := whisk.EntityRef{Path: "ns", Name: "a"}
	if _, err := s.PutRule(ctx, &whisk.Rule{Namespace: "ns", Name: "r", Trigger: whisk.EntityRef{Path: "ns", Name: "nope"}, Action: act}, false); !errors.Is(err, ErrTriggerNotFound) {
		t.Fatalf("rule of a missing trigger: %v", err)
	}
	r, err := s.PutRule(ctx, &whisk.Rule{Namespace: "ns", Name: "r", Trigger: whisk.EntityRef{Path: "ns", Name: "t1"}, Action: act}, false)
	if err != nil || r.Status != whisk.RuleActive {
		t.Fatalf("rule: %+v %v", r, err)
	}
	if changed, err := s.SetRuleStatus(ctx, "ns", "r", whisk.RuleInactive); err != nil || !changed {
		t.Fatalf("disable: %v %v", changed, err)
	}
	if changed, err := s.SetRuleStatus(ctx, "ns", "r", whisk.RuleInactive); err != nil || changed {
		t.Fatalf("disable again: %v %v", changed, err)
	}
	// Updating the trigger keeps its rules; moving the rule keeps its state and moves its link.
	if up, err := s.PutTrigger(ctx, &whisk.Trigger{Namespace: "ns", Name: "t1"}, true); err != nil || up.Version != "0.0.2" || len(up.Rules) != 1 {
		t.Fatalf("trigger update: %+v %v", up, err)
	}
	r, err = s.PutRule(ctx, &whisk.Rule{Namespace: "ns", Name: "r", Trigger: whisk.EntityRef{Path: "ns", Name: "t2"}, Action: act}, true)
	if err != nil || r.Status != whisk.RuleInactive || r.Version != "0.0.2" {
		t.Fatalf("rule moved: %+v %v", r, err)
	}
	g1, _ := s.GetTrigger(ctx, "ns", "t1")
	g2, _ := s.GetTrigger(ctx, "ns", "t2")
	if len(g1.Rules) != 0 || g2.Rules["ns/r"].Status != whisk.RuleInactive {
		t.Fatalf("links after the move: %v %v", g1.Rules, g2.Rules)
	}
	// A deleted and recreated trigger has no rules: the rule reads inactive until enabled.
	if _, err := s.SetRuleStatus(ctx, "ns", "r", whisk.RuleActive); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteTrigger(ctx, "ns", "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRuleStatus(ctx, "ns", "r", whisk.RuleActive); !errors.Is(err, ErrTriggerNotFound) {
		t.Fatalf("enable without its trigger: %v", err)
	}
	again, err := s.PutTrigger(ctx, &whisk.Trigger{Namespace: "ns", Name: "t2"}, false)
	if err != nil || len(again.Rules) != 0 || !strings.HasPrefix(again.Revision, "5-") {
		t.Fatalf("recreated trigger: %+v %v", again, err)
	}
	if got, err := s.GetRule(ctx, "ns", "r"); err != nil || got.Status != whisk.RuleInactive {
		t.Fatalf("rule of a recreated trigger: %+v %v", got, err)
	}
	if _, err := s.DeleteRule(ctx, "ns", "r"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountRules(ctx, "ns", 0); err != nil || n != 0 {
		t.Fatalf("rules left: %d %v", n, err)
	}
}
