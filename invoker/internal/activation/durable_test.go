package activation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/internal/journal"
	"github.com/teemate/platform/invoker/internal/metrics"
	"github.com/teemate/platform/invoker/internal/whiskapi"
	"github.com/teemate/platform/invoker/whisk"
)

// controllerStub serves action documents and takes activation records over HTTP, the way the
// controller-adapter's /internal/v1 endpoints do, so the handler's real REST client talks to it.
// down makes every record write fail with 503.
type controllerStub struct {
	srv    *httptest.Server
	down   atomic.Bool
	mu     sync.Mutex
	stored map[string]*whisk.WhiskActivation
}

func newControllerStub(t *testing.T) *controllerStub {
	c := &controllerStub{stored: map[string]*whisk.WhiskActivation{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(whiskapi.TokenHeader) != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/internal/v1/actions/guest/"):
			name := strings.TrimPrefix(r.URL.Path, "/internal/v1/actions/guest/")
			fmt.Fprintf(w, `{"namespace":"guest","name":%q,"version":"0.0.1","publish":false,
				"exec":{"kind":"nodejs:20","code":"function main(p){return p}","binary":false},
				"annotations":[],"parameters":[],"limits":{"timeout":60000,"memory":256,"logs":10,"concurrency":1},"rev":"1-abc"}`, name)
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/internal/v1/activations/"):
			if c.down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			body, err := io.ReadAll(r.Body)
			var a whisk.WhiskActivation
			if err == nil {
				err = json.Unmarshal(body, &a)
			}
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			c.mu.Lock()
			c.stored[a.ActivationID] = &a
			c.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *controllerStub) record(id string) *whisk.WhiskActivation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored[id]
}

// ackSink is the handler's Producer in these tests: it keeps what would have gone onto Kafka
// (the daemon's tests send acks through a real broker).
type ackSink struct {
	mu   sync.Mutex
	acks []SentAck
}

func (s *ackSink) Send(_ context.Context, topic string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks = append(s.acks, SentAck{Topic: topic, Value: append([]byte(nil), value...)})
	return nil
}

func (s *ackSink) take() []SentAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.acks
	s.acks = nil
	return out
}

// countingExecutor answers every job with its run value and counts runs per activation id.
type countingExecutor struct {
	mu   sync.Mutex
	runs map[string]int
}

func (e *countingExecutor) Run(_ context.Context, job *Job) Outcome {
	e.mu.Lock()
	e.runs[job.Msg.ActivationID]++
	e.mu.Unlock()
	now := time.Now()
	return Outcome{Response: whisk.Success(job.Run.Value), Logs: []string{"2026-01-01T00:00:00.000Z stdout: ran"}, Start: now, End: now}
}

func (e *countingExecutor) count(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id]
}

// world is one invoker's handler over a journal file that outlives it, as the state directory
// outlives an invoker process.
type world struct {
	t           *testing.T
	ctl         *controllerStub
	exec        *countingExecutor
	journalPath string
}

func newWorld(t *testing.T) *world {
	return &world{t: t, ctl: newControllerStub(t), exec: &countingExecutor{runs: map[string]int{}},
		journalPath: filepath.Join(t.TempDir(), "journal-invoker0.db")}
}

type invokerUnderTest struct {
	h     *Handler
	j     *journal.Journal
	acks  *ackSink
	m     *metrics.Metrics
	close func()
}

// start opens the journal and builds a handler with its background loop, as the daemon does.
func (w *world) start() *invokerUnderTest {
	w.t.Helper()
	j, err := journal.Open(w.journalPath, journal.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	api, err := whiskapi.New(whiskapi.Config{APIHost: w.ctl.srv.URL, StoreToken: "tok"})
	if err != nil {
		w.t.Fatal(err)
	}
	unique := "0"
	inst := whisk.InvokerInstanceID{Instance: 0, UniqueName: &unique, UserMemory: whisk.MB(1024), Tags: []string{}, DedicatedNamespaces: []string{}}
	m := metrics.New("invoker0")
	sink := &ackSink{}
	h := NewHandler(Config{Instance: inst, UserMemoryMB: 1024, Journal: j},
		zaptest.NewLogger(w.t, zaptest.Level(zap.WarnLevel)), api, api, sink, w.exec, m)
	stop := h.StartBackground()
	var once sync.Once
	u := &invokerUnderTest{h: h, j: j, acks: sink, m: m}
	u.close = func() {
		once.Do(func() {
			stop()
			if err := j.Close(); err != nil {
				w.t.Errorf("close journal: %v", err)
			}
		})
	}
	w.t.Cleanup(u.close)
	return u
}

func testMessage(id string, blocking bool) []byte {
	return []byte(fmt.Sprintf(`{"transid":["tid-%s",%d],"action":{"path":"guest","name":"echo","version":"0.0.1"},
	 "revision":"1-abc","user":{"subject":"guest","namespace":{"name":"guest","uuid":"u"},"authkey":{},"rights":[],"limits":{}},
	 "activationId":%q,"rootControllerIndex":{"asString":"0","instanceType":"controller"},
	 "blocking":%v,"content":{"n":1}}`, id, time.Now().UnixMilli(), id, blocking))
}

func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, x := range f.GetMetric() {
			sum += x.GetCounter().GetValue() + x.GetGauge().GetValue()
		}
	}
	return sum
}

// TestHandler_AnsweredIsResentAfterRestart: an activation answered by one handler is answered by
// the next one on the same journal with the same bytes, and not run again.
func TestHandler_AnsweredIsResentAfterRestart(t *testing.T) {
	w := newWorld(t)
	id := strings.Repeat("a", 32)
	msg := testMessage(id, true)
	first := w.start()
	first.h.Handle(context.Background(), msg)
	sent := first.acks.take()
	if len(sent) != 2 { // Result, then Completion (logs are on)
		t.Fatalf("first answer: %d acks", len(sent))
	}
	first.close()

	again := w.start()
	again.h.Handle(context.Background(), msg)
	resent := again.acks.take()
	if len(resent) != len(sent) {
		t.Fatalf("resent %d acks, want %d", len(resent), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(resent[i].Value, sent[i].Value) || resent[i].Topic != sent[i].Topic {
			t.Fatalf("ack %d differs:\n%s\n%s", i, sent[i].Value, resent[i].Value)
		}
	}
	if n := w.exec.count(id); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	if got := counter(t, again.m, "teemate_invoker_journal_redeliveries_total"); got != 1 {
		t.Fatalf("journal redeliveries = %v, want 1", got)
	}
}

// TestHandler_StartedButNotAnsweredIsInterrupted: an id the journal has as Started (the invoker
// died mid-run) is answered with a whisk error saying so, and never run; a further redelivery gets
// the same answer.
func TestHandler_StartedButNotAnsweredIsInterrupted(t *testing.T) {
	w := newWorld(t)
	id := strings.Repeat("b", 32)
	u := w.start()
	if err := u.j.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	u.h.Handle(context.Background(), testMessage(id, true))
	acks := u.acks.take()
	if len(acks) != 1 {
		t.Fatalf("%d acks, want one Combined", len(acks))
	}
	a, err := whisk.ParseAcknowledgement(acks[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := a.(*whisk.CombinedCompletionAndResultMessage)
	if !ok || !c.IsSystemError || c.Response.Activation == nil {
		t.Fatalf("ack = %s, want a Combined whisk error", acks[0].Value)
	}
	r := c.Response.Activation.Response
	if r.StatusCode != whisk.StatusWhiskError || !strings.Contains(string(r.Result), "interrupted by a restart of the invoker") {
		t.Fatalf("response = %d %s", r.StatusCode, r.Result)
	}
	if w.exec.count(id) != 0 {
		t.Fatal("an interrupted activation ran again")
	}
	if rec := w.ctl.record(id); rec == nil || rec.Response.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("stored record = %+v, want the whisk error", rec)
	}
	if got := counter(t, u.m, "teemate_invoker_interrupted_activations_total"); got != 1 {
		t.Fatalf("interrupted = %v", got)
	}
	u.close()
	again := w.start()
	again.h.Handle(context.Background(), testMessage(id, true))
	if re := again.acks.take(); len(re) != 1 || !bytes.Equal(re[0].Value, acks[0].Value) {
		t.Fatalf("second redelivery answered differently: %q", re)
	}
}

// TestHandler_FinishedIsAnsweredFromTheRecord: the invoker died after the run but before its acks
// were recorded: the redelivery is answered from the saved record (what a caller may have seen
// already), stored, and not run.
func TestHandler_FinishedIsAnsweredFromTheRecord(t *testing.T) {
	w := newWorld(t)
	id := strings.Repeat("c", 32)
	u := w.start()
	now := time.Now()
	d := int64(5)
	rec := &whisk.WhiskActivation{Namespace: "guest", Name: "echo", Subject: "guest", ActivationID: id, Start: now, End: now,
		Duration: &d, Response: whisk.Success(json.RawMessage(`{"from":"the first run"}`)), Logs: []string{"l"}, Version: "0.0.1"}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := errors.Join(u.j.Start(ctx, id), u.j.Finish(ctx, id, int(ResultThenCompletion), b)); err != nil {
		t.Fatal(err)
	}
	u.h.Handle(ctx, testMessage(id, true))
	acks := u.acks.take()
	if len(acks) != 2 {
		t.Fatalf("%d acks, want Result and Completion", len(acks))
	}
	a, err := whisk.ParseAcknowledgement(acks[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := a.(*whisk.ResultMessage); !ok || res.Response.Activation == nil ||
		string(res.Response.Activation.Response.Result) != `{"from":"the first run"}` {
		t.Fatalf("result ack = %s", acks[0].Value)
	}
	if w.exec.count(id) != 0 {
		t.Fatal("a finished activation ran again")
	}
	if got := w.ctl.record(id); got == nil || len(got.Logs) != 1 {
		t.Fatalf("stored record = %+v", got)
	}
	if e, err := u.j.Lookup(ctx, id); err != nil || e.State != journal.Answered {
		t.Fatalf("journal after the answer: %+v %v", e, err)
	}
}

// TestHandler_OutboxDeliversWhenTheStoreIsBack: while the store refuses records the slot-freeing
// ack still goes out at once and the record waits in the outbox, across a restart; once the
// store answers, the outbox delivers it.
func TestHandler_OutboxDeliversWhenTheStoreIsBack(t *testing.T) {
	w := newWorld(t)
	ids := []string{strings.Repeat("d", 32), strings.Repeat("e", 32)}
	u := w.start()
	w.ctl.down.Store(true)
	for _, id := range ids {
		start := time.Now()
		u.h.Handle(context.Background(), testMessage(id, false))
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("the slot-freeing ack waited %v for the store", took)
		}
	}
	if acks := u.acks.take(); len(acks) != 2 {
		t.Fatalf("%d acks, want a Completion per activation", len(acks))
	}
	waitFor(t, "outbox depth 2", func() bool { return counter(t, u.m, "teemate_invoker_outbox_depth") == 2 })
	waitFor(t, "a failed retry", func() bool { return counter(t, u.m, "teemate_invoker_outbox_retries_total") >= 1 })
	u.close()

	again := w.start()
	if w.ctl.record(ids[0]) != nil {
		t.Fatal("stored while the store was down")
	}
	w.ctl.down.Store(false)
	waitFor(t, "records delivered from the outbox", func() bool { return w.ctl.record(ids[0]) != nil && w.ctl.record(ids[1]) != nil })
	waitFor(t, "outbox depth 0", func() bool { return counter(t, again.m, "teemate_invoker_outbox_depth") == 0 })
	for _, id := range ids {
		if w.exec.count(id) != 1 {
			t.Fatalf("%s ran %d times", id, w.exec.count(id))
		}
	}
}

// TestHandler_NoJournalNoRun: an activation the journal cannot record is answered with a whisk
// error and not run.
func TestHandler_NoJournalNoRun(t *testing.T) {
	w := newWorld(t)
	u := w.start()
	u.close() // the journal is closed under the handler: every read and write fails
	id := strings.Repeat("f", 32)
	u.h.Handle(context.Background(), testMessage(id, true))
	acks := u.acks.take()
	if len(acks) != 1 || !bytes.Contains(acks[0].Value, []byte("could not record the activation in its journal")) {
		t.Fatalf("acks = %q", acks)
	}
	if w.exec.count(id) != 0 {
		t.Fatal("ran without a journal")
	}
}

func TestOutboxBackoff(t *testing.T) {
	for _, c := range []struct {
		n    int
		want time.Duration
	}{{0, 250 * time.Millisecond}, {1, 250 * time.Millisecond}, {2, 500 * time.Millisecond}, {6, 8 * time.Second},
		{7, 15 * time.Second}, {100, 15 * time.Second}} {
		if got := OutboxBackoff(c.n); got != c.want {
			t.Errorf("OutboxBackoff(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fullDisk is a journal whose writes fail, as on a full disk; reads still work.
type fullDisk struct{ Journal }

var errFull = errors.New("database or disk is full")

func (fullDisk) Start(context.Context, string) error               { return errFull }
func (fullDisk) Finish(context.Context, string, int, []byte) error { return errFull }
func (fullDisk) Answer(context.Context, string, []journal.Ack, bool, time.Time) error {
	return errFull
}

// TestHandler_RecordsSpillToMemoryWhenTheDiskIsFull: with the journal and the store both refusing
// writes (the data directory full), the activation is answered as a whisk error and its record is
// held in memory and stored once the store takes writes again: nothing the caller was told of is
// lost.
func TestHandler_RecordsSpillToMemoryWhenTheDiskIsFull(t *testing.T) {
	w := newWorld(t)
	j, err := journal.Open(w.journalPath, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("close journal: %v", err)
		}
	})
	api, err := whiskapi.New(whiskapi.Config{APIHost: w.ctl.srv.URL, StoreToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	unique := "0"
	inst := whisk.InvokerInstanceID{Instance: 0, UniqueName: &unique, UserMemory: whisk.MB(1024), Tags: []string{}, DedicatedNamespaces: []string{}}
	sink := &ackSink{}
	h := NewHandler(Config{Instance: inst, UserMemoryMB: 1024, Journal: fullDisk{j}},
		zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)), api, api, sink, w.exec, metrics.New("invoker0"))
	stop := h.StartBackground()
	t.Cleanup(stop)

	w.ctl.down.Store(true)
	id := strings.Repeat("a1", 16)
	h.Handle(context.Background(), testMessage(id, false))
	if acks := sink.take(); len(acks) != 1 || !bytes.Contains(acks[0].Value, []byte(`"isSystemError":true`)) {
		t.Fatalf("acks = %q", acks)
	}
	if w.exec.count(id) != 0 {
		t.Fatal("ran without a journal")
	}
	time.Sleep(300 * time.Millisecond)
	if w.ctl.record(id) != nil {
		t.Fatal("stored while the store was down")
	}
	w.ctl.down.Store(false)
	waitFor(t, "the spilled record stored", func() bool { return w.ctl.record(id) != nil })
	if got := w.ctl.record(id).Response.Result; !bytes.Contains(got, []byte("could not record the activation in its journal")) {
		t.Fatalf("record result %s", got)
	}
}
