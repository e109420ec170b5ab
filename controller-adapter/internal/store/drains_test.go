package store

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestInvokerDrainsSurviveReopen: a drain put is read back after a reopen, a second put replaces
// it, a delete forgets it (twice is no error), and a negative invoker is refused.
func TestInvokerDrainsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := open(t, path)
	if got, err := s.InvokerDrains(ctx); err != nil || len(got) != 0 {
		t.Fatalf("before any: %v %v", got, err)
	}
	started := time.UnixMilli(time.Now().UnixMilli())
	one := InvokerDrain{Invoker: 1, To: 2, Started: started, Moved: map[string]int{"nodejs:20": 2}}
	three := InvokerDrain{Invoker: 3, To: -1, Force: true, Started: started, Drained: true,
		Moved: map[string]int{"nodejs:20": -1}, NotMoved: map[string]string{"python:3": "invoker0 did not report it"}}
	for _, d := range []InvokerDrain{{Invoker: 1, To: -1, Started: started}, one, three} {
		if err := s.PutInvokerDrain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	got, err := s2.InvokerDrains(ctx)
	one.NotMoved = map[string]string{} // a nil map comes back empty
	if err != nil || !reflect.DeepEqual(got, []InvokerDrain{one, three}) {
		t.Fatalf("after reopen:\n got %+v %v\nwant %+v", got, err, []InvokerDrain{one, three})
	}
	for range 2 {
		if err := s2.DeleteInvokerDrain(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s2.InvokerDrains(ctx); err != nil || len(got) != 1 || got[0].Invoker != 3 {
		t.Fatalf("after delete: %+v %v", got, err)
	}
	if err := s2.PutInvokerDrain(ctx, InvokerDrain{Invoker: -1}); err == nil {
		t.Fatal("a negative invoker accepted")
	}
}
