package journal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

func open(t *testing.T, path string, opts Options) *Journal {
	t.Helper()
	j, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("Close: %v", err)
		}
	})
	return j
}

func lookup(t *testing.T, j *Journal, id string) Entry {
	t.Helper()
	e, err := j.Lookup(context.Background(), id)
	if err != nil {
		t.Fatalf("Lookup %s: %v", id, err)
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestJournal_Lifecycle: an id goes none → started → finished → answered, and each state keeps
// what the invoker needs to answer a redelivery.
func TestJournal_Lifecycle(t *testing.T) {
	ctx := context.Background()
	j := open(t, filepath.Join(t.TempDir(), "journal.db"), Options{})
	if e := lookup(t, j, "a"); e.State != None {
		t.Fatalf("fresh id: %v", e.State)
	}
	must(t, j.Start(ctx, "a"))
	if e := lookup(t, j, "a"); e.State != Started || e.Record != nil {
		t.Fatalf("after Start: %+v", e)
	}
	must(t, j.Finish(ctx, "a", 2, []byte(`{"activationId":"a"}`)))
	if e := lookup(t, j, "a"); e.State != Finished || e.Plan != 2 || string(e.Record) != `{"activationId":"a"}` {
		t.Fatalf("after Finish: %+v", e)
	}
	// Start never goes back on a later state.
	must(t, j.Start(ctx, "a"))
	if e := lookup(t, j, "a"); e.State != Finished {
		t.Fatalf("Start after Finish: %v", e.State)
	}
	acks := []Ack{{Topic: "completed0", Value: []byte(`{"transid":[ "x" , 1],"response":{}}`)}, {Topic: "completed0", Value: []byte{0, 0xff, '\n'}}}
	must(t, j.Answer(ctx, "a", acks, true, time.Time{}))
	e := lookup(t, j, "a")
	if e.State != Answered || e.Record != nil || len(e.Acks) != 2 {
		t.Fatalf("after Answer: %+v", e)
	}
	for i := range acks {
		if e.Acks[i].Topic != acks[i].Topic || !bytes.Equal(e.Acks[i].Value, acks[i].Value) {
			t.Fatalf("ack %d = %q, want %q byte for byte", i, e.Acks[i].Value, acks[i].Value)
		}
	}
	// An answer with no acks (none could be sent) is still an answer.
	must(t, j.Answer(ctx, "b", nil, true, time.Time{}))
	if e := lookup(t, j, "b"); e.State != Answered || len(e.Acks) != 0 {
		t.Fatalf("answer without acks: %+v", e)
	}
	if n, err := j.Depth(ctx); err != nil || n != 0 {
		t.Fatalf("outbox depth %d %v, want 0", n, err)
	}
}

// TestJournal_Outbox: a record the store did not take stays pending with its backoff until
// Delivered; Expedite makes the waiting ones due.
func TestJournal_Outbox(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	j := open(t, filepath.Join(t.TempDir(), "journal.db"), Options{Now: func() time.Time { return now }})
	for _, id := range []string{"a", "b"} {
		must(t, j.Start(ctx, id))
		must(t, j.Finish(ctx, id, 0, []byte("record-"+id)))
	}
	// Finished but not answered: the handler is still delivering, the outbox waits.
	if due, err := j.Due(ctx, now, 10); err != nil || len(due) != 0 {
		t.Fatalf("due while the handler delivers: %v %v", due, err)
	}
	must(t, j.Answer(ctx, "a", []Ack{{Topic: "t", Value: []byte("v")}}, false, now.Add(time.Second)))
	must(t, j.Answer(ctx, "b", nil, true, time.Time{}))
	if n, err := j.Depth(ctx); err != nil || n != 1 {
		t.Fatalf("depth %d %v, want 1", n, err)
	}
	if due, _ := j.Due(ctx, now, 10); len(due) != 0 {
		t.Fatalf("due before its time: %v", due)
	}
	at, ok, err := j.NextDue(ctx)
	if err != nil || !ok || !at.Equal(now.Add(time.Second)) {
		t.Fatalf("NextDue = %v %v %v", at, ok, err)
	}
	due, err := j.Due(ctx, now.Add(time.Second), 10)
	if err != nil || len(due) != 1 || due[0].ID != "a" || string(due[0].Record) != "record-a" || due[0].Attempts != 0 {
		t.Fatalf("due = %+v %v", due, err)
	}
	must(t, j.Postpone(ctx, "a", 1, now.Add(time.Minute)))
	if due, _ := j.Due(ctx, now.Add(2*time.Second), 10); len(due) != 0 {
		t.Fatalf("due after postponing: %v", due)
	}
	must(t, j.Expedite(ctx))
	due, _ = j.Due(ctx, now, 10)
	if len(due) != 1 || due[0].Attempts != 1 {
		t.Fatalf("after Expedite: %+v", due)
	}
	must(t, j.Delivered(ctx, "a"))
	if n, _ := j.Depth(ctx); n != 0 {
		t.Fatalf("depth after Delivered: %d", n)
	}
	if e := lookup(t, j, "a"); e.State != Answered || e.Record != nil || len(e.Acks) != 1 {
		t.Fatalf("delivered answered row: %+v", e)
	}
	if _, ok, _ := j.NextDue(ctx); ok {
		t.Fatal("NextDue reports a record in an empty outbox")
	}
}

// childEnv names the journal a child process writes and then kills itself over.
const childEnv = "TEEMATE_JOURNAL_CHILD"

// TestJournal_ChildProcess is the child of TestJournal_SurvivesKill, not a test of its own.
func TestJournal_ChildProcess(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("only run as the child of TestJournal_SurvivesKill")
	}
	ctx := context.Background()
	j, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	steps := []error{
		j.Start(ctx, "started"),
		j.Start(ctx, "finished"), j.Finish(ctx, "finished", 1, []byte("rec-f")),
		j.Start(ctx, "answered"), j.Finish(ctx, "answered", 0, []byte("rec-a")),
		j.Answer(ctx, "answered", []Ack{{Topic: "completed0", Value: []byte("ack-bytes")}}, true, time.Time{}),
		j.Start(ctx, "undelivered"), j.Finish(ctx, "undelivered", 3, []byte("rec-u")),
		j.Answer(ctx, "undelivered", []Ack{{Topic: "completed0", Value: []byte("u")}}, false, time.Now().Add(time.Hour)),
	}
	if err := errors.Join(steps...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// No Close, no checkpoint: the process dies the way kill -9 kills an invoker.
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		os.Exit(3)
	}
	select {}
}

// TestJournal_SurvivesKill: what a process wrote before it was killed with SIGKILL is there when
// the journal is opened again (and its lock is free again), and a pending record is due at once.
func TestJournal_SurvivesKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournal_ChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("the killed child left no WAL (was it checkpointed?): %v", err)
	}
	j := open(t, path, Options{})
	for id, want := range map[string]State{"started": Started, "finished": Finished, "answered": Answered, "undelivered": Answered, "never": None} {
		if e := lookup(t, j, id); e.State != want {
			t.Errorf("%s: state %v, want %v", id, e.State, want)
		}
	}
	if e := lookup(t, j, "finished"); e.Plan != 1 || string(e.Record) != "rec-f" {
		t.Errorf("finished row: %+v", e)
	}
	if e := lookup(t, j, "answered"); len(e.Acks) != 1 || string(e.Acks[0].Value) != "ack-bytes" {
		t.Errorf("answered row: %+v", e)
	}
	// After a restart every pending record is due at once, whatever its backoff said.
	due, err := j.Due(context.Background(), time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range due {
		ids[p.ID] = true
	}
	if len(due) != 2 || !ids["undelivered"] || !ids["finished"] {
		t.Fatalf("due after restart = %+v, want the undelivered and the finished record", due)
	}
}

// TestJournal_Pruning: answered rows go by age, count and bytes; rows whose record is still in
// the outbox stay whatever their age.
func TestJournal_Pruning(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	j := open(t, filepath.Join(t.TempDir(), "journal.db"), Options{KeepAnswered: 3, KeepFor: time.Hour, KeepBytes: 1 << 20, Now: clock})
	answer := func(id string, size int, delivered bool) {
		t.Helper()
		must(t, j.Start(ctx, id))
		must(t, j.Finish(ctx, id, 0, []byte("r")))
		must(t, j.Answer(ctx, id, []Ack{{Topic: "t", Value: bytes.Repeat([]byte("x"), size)}}, delivered, now))
		now = now.Add(time.Minute)
	}
	answer("old-undelivered", 10, false)
	must(t, j.Start(ctx, "old-started"))
	now = now.Add(2 * time.Hour)
	for i := range 5 {
		answer(fmt.Sprintf("a%d", i), 10, true)
	}
	n, err := j.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// old-started by age, a0 and a1 beyond the 3 newest answered.
	if n != 3 {
		t.Fatalf("pruned %d rows, want 3", n)
	}
	for id, want := range map[string]State{"old-undelivered": Answered, "old-started": None, "a0": None, "a1": None, "a2": Answered, "a4": Answered} {
		if e := lookup(t, j, id); e.State != want {
			t.Errorf("%s: %v, want %v", id, e.State, want)
		}
	}
	// Bytes: one large answer pushes the older ones out.
	answer("big", 1<<20-10, true)
	if _, err := j.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]State{"big": Answered, "a4": None, "a3": None, "a2": None, "old-undelivered": Answered} {
		if e := lookup(t, j, id); e.State != want {
			t.Errorf("after the large answer, %s: %v, want %v", id, e.State, want)
		}
	}
	// Once delivered, the old row goes by age too.
	must(t, j.Delivered(ctx, "old-undelivered"))
	if _, err := j.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if e := lookup(t, j, "old-undelivered"); e.State != None {
		t.Errorf("old delivered row kept: %v", e.State)
	}
}

// TestJournal_RefusesWhatIsNotAJournal: garbage, another program's database and a newer schema
// are refused with ErrCorrupt and a message naming the file; nothing is overwritten.
func TestJournal_RefusesWhatIsNotAJournal(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	must(t, os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 400), 0o600))
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	must(t, err)
	_, err = db.Exec(`CREATE TABLE t (x)`)
	must(t, errors.Join(err, db.Close()))
	newer := filepath.Join(dir, "newer.db")
	j := open(t, newer, Options{})
	_, err = j.db.Exec(`PRAGMA user_version = 99`)
	must(t, errors.Join(err, j.Close()))

	for _, path := range []string{garbage, other, newer} {
		before, err := os.ReadFile(path)
		must(t, err)
		_, err = Open(path, Options{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v, want ErrCorrupt naming the file", filepath.Base(path), err)
		}
		after, err := os.ReadFile(path)
		must(t, err)
		if !bytes.Equal(before, after) {
			t.Errorf("Open(%s) changed the file", filepath.Base(path))
		}
	}
}

// TestJournal_OneProcessAtATime: a second Open of a journal in use fails with ErrLocked; after
// Close it opens.
func TestJournal_OneProcessAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path, Options{})
	must(t, err)
	if _, err := Open(path, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	must(t, j.Close())
	open(t, path, Options{})
}

func TestAcks_RoundTripAndDamage(t *testing.T) {
	acks := []Ack{{Topic: "completed0", Value: []byte(`{"a":1}`)}, {Topic: "", Value: []byte{}}, {Topic: "x", Value: bytes.Repeat([]byte{0xff}, 300)}}
	got, err := decodeAcks(encodeAcks(acks))
	if err != nil || len(got) != 3 || !bytes.Equal(got[2].Value, acks[2].Value) || got[0].Topic != "completed0" {
		t.Fatalf("round trip = %+v %v", got, err)
	}
	for name, b := range map[string][]byte{
		"empty":      {},
		"format":     {9},
		"truncated":  encodeAcks(acks)[:15],
		"huge count": {acksFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	} {
		if _, err := decodeAcks(b); !errors.Is(err, errBadAcks) {
			t.Errorf("%s: %v, want errBadAcks", name, err)
		}
	}
}

// BenchmarkJournal_OneActivation is the journal's cost on an activation's path: a lookup and
// the three writes (start, finish with a 1 KiB record, answer with two acks).
func BenchmarkJournal_OneActivation(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "journal.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := j.Close(); err != nil {
			b.Error(err)
		}
	}()
	ctx := context.Background()
	record := bytes.Repeat([]byte("r"), 1024)
	acks := []Ack{{Topic: "completed0", Value: bytes.Repeat([]byte("a"), 900)}, {Topic: "completed0", Value: bytes.Repeat([]byte("c"), 300)}}
	cpu0 := testtool.ProcessCPU(b)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("%032x", i)
		if _, err := j.Lookup(ctx, id); err != nil {
			b.Fatal(err)
		}
		if err := errors.Join(j.Start(ctx, id), j.Finish(ctx, id, 0, record), j.Answer(ctx, id, acks, true, time.Time{})); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// CPU rather than wall time: the figure the machine's other load barely moves.
	b.ReportMetric(float64((testtool.ProcessCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu_us/op")
}
