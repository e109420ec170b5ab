package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = utc(s)
}

// recorder is a Target that records fires; gone makes every fire answer ErrGone.
type recorder struct {
	mu      sync.Mutex
	fires   []string // trigger@payload
	deleted []string
	gone    bool
}

func (r *recorder) Fire(_ context.Context, s *store.Schedule, payload json.RawMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return ErrGone
	}
	r.fires = append(r.fires, s.Trigger+"@"+string(payload))
	return nil
}

func (r *recorder) DeleteTrigger(_ context.Context, s *store.Schedule, withRules bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, s.Trigger+map[bool]string{true: "+rules", false: ""}[withRules])
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.fires)
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func tick(t *testing.T, s *Scheduler, r *recorder, want int) {
	t.Helper()
	n, err := s.Tick(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("fired %d, want %d", n, want)
	}
}

var reg = Registration{Namespace: "guest", Trigger: "t", OwnerUUID: "u"}

// TestIntervalAndRestart runs an interval schedule on a test clock: first fire 30 s after
// creation, then every period; a restart (the store reopened, a new scheduler) after due times
// were missed fires once, not once per missed time, and never fires a claimed time again.
func TestIntervalAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	st := openStore(t, path)
	clk := &clock{}
	clk.set("2024-05-01T10:00:00Z")
	s := New(st, Options{Now: clk.now, Logger: zaptest.NewLogger(t)})
	r := &recorder{}
	ctx := context.Background()
	if err := s.Create(ctx, reg, FeedInterval, raw(map[string]any{"minutes": 1, "trigger_payload": map[string]any{"k": "v"}})); err != nil {
		t.Fatal(err)
	}
	tick(t, s, r, 0)
	clk.set("2024-05-01T10:00:30Z")
	tick(t, s, r, 1)
	tick(t, s, r, 0) // the same due time never fires twice
	clk.set("2024-05-01T10:01:31Z")
	tick(t, s, r, 1)
	if r.fires[0] != `guest/t@{"k":"v"}` {
		t.Fatalf("fire = %s", r.fires[0])
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Down for five periods: at start the missed due times coalesce into one fire.
	st = openStore(t, path)
	t.Cleanup(func() { st.Close() })
	clk.set("2024-05-01T10:07:00Z")
	s = New(st, Options{Now: clk.now, Logger: zaptest.NewLogger(t)})
	tick(t, s, r, 1)
	tick(t, s, r, 0)
	sc, err := st.GetSchedule(ctx, "guest/t")
	if err != nil || sc.Fires != 3 || !sc.NextDue.Equal(utc("2024-05-01T10:07:30Z")) {
		t.Fatalf("after restart: %+v %v", sc, err)
	}

	// A second scheduler on the same store (another controller): each due time fires once.
	other := New(st, Options{Now: clk.now, Logger: zaptest.NewLogger(t)})
	clk.set("2024-05-01T10:07:30Z")
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, sch := range []*Scheduler{s, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := sch.Tick(ctx, r)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 || r.count() != 4 {
		t.Fatalf("two schedulers fired %v (total fires %d), want one fire", counts, r.count())
	}

	// PAUSE: nothing fires; UNPAUSE moves on from now without firing what was missed.
	if err := s.SetActive(ctx, reg, FeedInterval, false); err != nil {
		t.Fatal(err)
	}
	clk.set("2024-05-01T10:09:00Z")
	tick(t, s, r, 0)
	if err := s.SetActive(ctx, reg, FeedInterval, true); err != nil {
		t.Fatal(err)
	}
	tick(t, s, r, 0)
	clk.set("2024-05-01T10:09:30Z")
	tick(t, s, r, 1)

	// READ shows the configuration; DELETE forgets it.
	b, err := s.Read(ctx, reg, FeedInterval)
	var got struct {
		Config struct {
			Minutes int             `json:"minutes"`
			Payload json.RawMessage `json:"payload"`
		} `json:"config"`
		Status struct {
			Active bool `json:"active"`
			Fires  int  `json:"fires"`
		} `json:"status"`
	}
	if err != nil || json.Unmarshal(b, &got) != nil || got.Config.Minutes != 1 || !got.Status.Active || got.Status.Fires != 5 {
		t.Fatalf("READ: %s %v", b, err)
	}
	if _, err := s.Read(ctx, reg, FeedAlarm); err == nil {
		t.Fatal("READ through another feed accepted")
	}
	if err := s.Delete(ctx, reg); err != nil {
		t.Fatal(err)
	}
	var ae Error
	if _, err := s.Read(ctx, reg, FeedInterval); !errors.As(err, &ae) {
		t.Fatalf("READ after DELETE: %v", err)
	}
}

// TestOnceAndGone: a once schedule fires once and is disabled, or deletes its trigger (and
// rules) when asked; a schedule whose trigger is gone is disabled at its fire.
func TestOnceAndGone(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "store.db"))
	t.Cleanup(func() { st.Close() })
	clk := &clock{}
	clk.set("2024-05-01T10:00:00Z")
	s := New(st, Options{Now: clk.now, Logger: zaptest.NewLogger(t)})
	r := &recorder{}
	ctx := context.Background()
	if err := s.Create(ctx, reg, FeedOnce, raw(map[string]any{"date": "2024-05-01T10:05:00Z"})); err != nil {
		t.Fatal(err)
	}
	del := Registration{Namespace: "guest", Trigger: "d", OwnerUUID: "u"}
	if err := s.Create(ctx, del, FeedOnce, raw(map[string]any{"date": "2024-05-01T10:05:00Z", "deleteAfterFire": "rules"})); err != nil {
		t.Fatal(err)
	}
	clk.set("2024-05-01T10:06:00Z")
	tick(t, s, r, 2)
	clk.set("2024-05-02T10:06:00Z")
	tick(t, s, r, 0)
	sc, err := st.GetSchedule(ctx, "guest/t")
	if err != nil || sc.Active || sc.Reason != "Automatically disabled after firing once" || sc.Fires != 1 {
		t.Fatalf("once after its fire: %+v %v", sc, err)
	}
	if _, err := st.GetSchedule(ctx, "guest/d"); !errors.Is(err, store.ErrNotFound) || len(r.deleted) != 1 || r.deleted[0] != "guest/d+rules" {
		t.Fatalf("deleteAfterFire: %v %v", err, r.deleted)
	}

	if err := s.Create(ctx, reg, FeedAlarm, raw(map[string]any{"cron": "* * * * *"})); err != nil {
		t.Fatal(err)
	}
	r.gone = true
	clk.set("2024-05-02T10:07:00Z")
	tick(t, s, r, 1)
	sc, err = st.GetSchedule(ctx, "guest/t")
	if err != nil || sc.Active || sc.Reason == "" {
		t.Fatalf("gone trigger: %+v %v", sc, err)
	}
}

// TestRealClock runs the loop on the real clock with a cron of seconds: it fires about once a
// second, and Stop ends it.
func TestRealClock(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "store.db"))
	t.Cleanup(func() { st.Close() })
	s := New(st, Options{Logger: zaptest.NewLogger(t)})
	r := &recorder{}
	if err := s.Start(r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Start(r); err == nil {
		t.Fatal("second Start accepted")
	}
	if err := s.Create(context.Background(), reg, FeedAlarm, raw(map[string]any{"cron": "* * * * * *"})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	s.Stop()
	n := r.count()
	if n < 2 || n > 4 {
		t.Fatalf("fired %d times in 3.5 s, want 3 or so", n)
	}
	time.Sleep(1200 * time.Millisecond)
	if r.count() != n {
		t.Fatal("fired after Stop")
	}
}
