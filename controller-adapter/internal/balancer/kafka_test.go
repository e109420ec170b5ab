package balancer

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// waitFor bounds every wait on the broker; the tests finish far sooner.
const waitFor = 15 * time.Second

var systemIdentity = whisk.Identity{
	Subject:   "whisk.system",
	Namespace: whisk.Namespace{Name: "whisk.system", UUID: "789c46b1-71f6-4ed5-8c54-816aa4f8c502"},
	AuthKey:   whisk.AuthKey{APIKey: "789c46b1-71f6-4ed5-8c54-816aa4f8c502:abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"},
	Rights:    []string{"READ", "PUT", "DELETE", "ACTIVATE"},
}

var guestIdentity = whisk.Identity{
	Subject:   "guest",
	Namespace: whisk.Namespace{Name: "guest", UUID: "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"},
	AuthKey:   whisk.AuthKey{APIKey: "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"},
	Rights:    []string{"READ", "PUT", "DELETE", "ACTIVATE"},
}

// errNoRecord is memRecords' answer for an id it does not hold.
var errNoRecord = errors.New("no such activation record")

// memRecords is the activation store in these tests: the scripted invoker writes to it, as the
// real invoker writes to the controller-adapter's store, and the balancer only reads it.
type memRecords struct {
	mu    sync.Mutex
	recs  map[string]*whisk.WhiskActivation // by ns/id
	reads atomic.Int32
}

func (r *memRecords) put(a *whisk.WhiskActivation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.recs == nil {
		r.recs = map[string]*whisk.WhiskActivation{}
	}
	r.recs[a.Namespace+"/"+a.ActivationID] = a
}

func (r *memRecords) GetActivation(_ context.Context, ns, id string) (*whisk.WhiskActivation, error) {
	r.reads.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.recs[ns+"/"+id]; a != nil {
		return a, nil
	}
	return nil, errNoRecord
}

type fixture struct {
	kcfg kafka.Config
	bal  *Balancer
	rec  *memRecords
}

// newFixture starts an embedded broker on a free loopback port and a Balancer on it.
func newFixture(t *testing.T, adjust func(*Config)) *fixture {
	t.Helper()
	log := zaptest.NewLogger(t)
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(emb.Close)
	kcfg := kafka.Config{Brokers: emb.Addrs(), ClientID: "controller0", Logger: log}
	prod, err := kafka.NewProducer(kcfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	rec := &memRecords{}
	cfg := Config{Kafka: kcfg, SystemIdentity: systemIdentity, Records: rec, TickInterval: 50 * time.Millisecond}
	if adjust != nil {
		adjust(&cfg)
	}
	bal, err := New(cfg, prod, log)
	if err != nil {
		t.Fatalf("balancer.New: %v", err)
	}
	t.Cleanup(func() {
		if err := bal.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &fixture{kcfg: kcfg, bal: bal, rec: rec}
}

// scriptedInvoker speaks the invoker's side of the protocol under the test's control: it reads
// invoker{N} with invoker/kafka, answers health test actions by itself when autoHealth is on,
// hands every other message to the test, and pings.
type scriptedInvoker struct {
	t          *testing.T
	inst       whisk.InvokerInstanceID
	prod       *kafka.Producer
	msgs       chan *whisk.ActivationMessage
	autoHealth atomic.Bool
	healthAcks atomic.Int32
	enabled    atomic.Bool
	stopPing   context.CancelFunc
	pingDone   chan struct{}
}

func startScriptedInvoker(t *testing.T, kcfg kafka.Config, id, memoryMB int, autoHealth bool) *scriptedInvoker {
	t.Helper()
	unique := "0"
	inst := whisk.InvokerInstanceID{Instance: id, UniqueName: &unique, UserMemory: whisk.MB(int64(memoryMB)),
		Tags: []string{}, DedicatedNamespaces: []string{}}
	topic := kafka.InvokerTopic(id)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, kcfg, topic, 1, kafka.MaxMessageBytes); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	prod, err := kafka.NewProducer(kcfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	cons, err := kafka.NewConsumer(kcfg, topic, topic, kafka.ConsumerOptions{AtMostOnce: true})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	s := &scriptedInvoker{t: t, inst: inst, prod: prod, msgs: make(chan *whisk.ActivationMessage, 64), pingDone: make(chan struct{})}
	s.autoHealth.Store(autoHealth)
	s.enabled.Store(true)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for m := range cons.Messages() {
			msg, err := whisk.ParseActivationMessage(m.Value)
			if err != nil {
				t.Errorf("invoker%d got a malformed activation message: %v", id, err)
				continue
			}
			if msg.TransID.ID == whisk.TransIDInvokerHealth && s.autoHealth.Load() {
				// Counted before it is sent: the balancer may act on the ack before this
				// goroutine runs again.
				s.healthAcks.Add(1)
				s.answer(msg, whisk.Success(json.RawMessage(`{}`)), false)
				continue
			}
			s.msgs <- msg
		}
	}()
	t.Cleanup(func() { _ = cons.Close(); <-readDone })
	pctx, stop := context.WithCancel(context.Background())
	s.stopPing = stop
	go func() {
		defer close(s.pingDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if s.enabled.Load() {
				s.ping(true)
			}
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(s.silence)
	return s
}

func (s *scriptedInvoker) ping(enabled bool) {
	v, err := json.Marshal(whisk.PingMessage{Name: s.inst, IsEnabled: enabled})
	if err != nil {
		s.t.Errorf("marshal ping: %v", err)
		return
	}
	s.send(kafka.HealthTopic, v)
}

// disable sends one disabled ping and stops the periodic ones, as the invoker's /disable does.
func (s *scriptedInvoker) disable() {
	s.enabled.Store(false)
	s.ping(false)
}

func (s *scriptedInvoker) enable() { s.enabled.Store(true) }

// silence stops pinging altogether, as a crashed invoker would.
func (s *scriptedInvoker) silence() {
	s.stopPing()
	<-s.pingDone
}

func (s *scriptedInvoker) send(topic string, v []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.prod.Send(ctx, topic, v); err != nil {
		s.t.Errorf("send to %s: %v", topic, err)
	}
}

func (s *scriptedInvoker) next() *whisk.ActivationMessage {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(waitFor):
		s.t.Fatalf("invoker%d received no activation in %v", s.inst.Instance, waitFor)
		return nil
	}
}

func (s *scriptedInvoker) record(msg *whisk.ActivationMessage, resp whisk.ActivationResponse) *whisk.WhiskActivation {
	now := time.Now()
	return &whisk.WhiskActivation{Namespace: msg.User.Namespace.Name, Name: msg.Action.Name, Subject: msg.User.Subject,
		ActivationID: msg.ActivationID, Start: now, End: now, Response: resp, Logs: []string{"2024-01-01T00:00:00Z stdout: hi"},
		Version: whisk.DefaultVersion}
}

func (s *scriptedInvoker) sendAck(msg *whisk.ActivationMessage, ack whisk.Ack) {
	v, err := ack.Serialize()
	if err != nil {
		s.t.Errorf("serialize ack: %v", err)
		return
	}
	s.send(msg.RootControllerIndex.AckTopic(), v)
}

// answer sends a Combined ack (shrunk if asked).
func (s *scriptedInvoker) answer(msg *whisk.ActivationMessage, resp whisk.ActivationResponse, shrink bool) {
	var ack whisk.Ack = whisk.NewCombined(msg.TransID, s.record(msg, resp), s.inst)
	if shrink {
		ack = ack.Shrink()
	}
	s.sendAck(msg, ack)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) state(idx int) string {
	for i, inv := range f.bal.Invokers() {
		if i == idx {
			return inv.State
		}
	}
	return "absent"
}

func (f *fixture) waitState(t *testing.T, idx int, want string) {
	t.Helper()
	eventually(t, "invoker state "+want, func() bool { return f.state(idx) == want })
}

func (f *fixture) freeMB(idx int) int {
	f.bal.mu.Lock()
	defer f.bal.mu.Unlock()
	return f.bal.invokers[idx].freeMB
}

func testAction(memoryMB, timeoutMs int) *whisk.Action {
	l := whisk.DefaultLimits()
	l.Memory, l.Timeout = memoryMB, timeoutMs
	return &whisk.Action{Namespace: "guest", Name: "hello", Version: whisk.DefaultVersion,
		Exec: whisk.Exec{Kind: "nodejs:20", Code: "function main(a){return a}"}, Limits: l, Revision: "1-abc"}
}

func userMessage(a *whisk.Action, blocking bool) *whisk.ActivationMessage {
	rev := a.Revision
	return &whisk.ActivationMessage{
		TransID: whisk.NewRandomTransactionID(time.Now()), Action: a.FullyQualifiedName(), Revision: &rev,
		User: guestIdentity, ActivationID: whisk.ActivationIDNew(), RootControllerIndex: whisk.NewControllerInstanceID("0"),
		Blocking: blocking, Content: json.RawMessage(`{"name":"Bob"}`),
	}
}

func receiveCompletion(t *testing.T, ch <-chan Completion) Completion {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(waitFor):
		t.Fatalf("no completion in %v", waitFor)
		return Completion{}
	}
}

func assertPending(t *testing.T, ch <-chan Completion, d time.Duration) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("completion %+v arrived early", c)
	case <-time.After(d):
	}
}

// healthyInvoker starts a scripted invoker that answers test actions and waits until it is up.
func healthyInvoker(t *testing.T, f *fixture, id, memoryMB int) *scriptedInvoker {
	t.Helper()
	inv := startScriptedInvoker(t, f.kcfg, id, memoryMB, true)
	f.waitState(t, id, "up")
	return inv
}

func TestPublishBlockingResultThenCompletion(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)
	msg := userMessage(action, true)
	ch, err := f.bal.Publish(context.Background(), action, msg)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	if got.ActivationID != msg.ActivationID || !got.TransID.Equal(msg.TransID) || !got.Blocking ||
		string(got.Content) != `{"name":"Bob"}` || got.Action.String() != "guest/hello" {
		t.Fatalf("invoker received %+v, want the published message", got)
	}
	if free := f.freeMB(0); free != 1024-256 {
		t.Fatalf("free memory while running = %d MB, want %d", free, 1024-256)
	}

	rec := inv.record(got, whisk.Success(json.RawMessage(`{"greeting":"Hello Bob"}`)))
	inv.sendAck(got, whisk.NewResult(got.TransID, rec))
	c := receiveCompletion(t, ch)
	if c.Forced || c.ActivationID != msg.ActivationID || c.Activation == nil ||
		string(c.Activation.Response.Result) != `{"greeting":"Hello Bob"}` {
		t.Fatalf("completion %+v, want the result", c)
	}
	if n := f.rec.reads.Load(); n != 0 {
		t.Fatalf("a result that carries its record read the store %d times", n)
	}
	// The Result frees nothing: the slot is held until the Completion.
	if free := f.freeMB(0); free != 1024-256 {
		t.Fatalf("free memory after the result = %d MB, want %d", free, 1024-256)
	}
	// In flight until the slot-freeing ack, for its namespace only (the concurrency throttle).
	if n, o := f.bal.ActiveActivationsFor("guest"), f.bal.ActiveActivationsFor("other"); n != 1 || o != 0 {
		t.Fatalf("in flight after the result: guest %d, other %d; want 1, 0", n, o)
	}
	// Answered, not settled: the invoker is storing the record; a reader can wait for it.
	storing := f.bal.Storing("guest", msg.ActivationID)
	if storing == nil || f.bal.Storing("other", msg.ActivationID) != nil {
		t.Fatal("Storing: want a channel for the answered activation, in its namespace only")
	}
	inv.sendAck(got, whisk.NewCompletion(got.TransID, rec, inv.inst))
	select {
	case <-storing:
	case <-time.After(waitFor):
		t.Fatal("Storing's channel not closed by the completion")
	}
	if f.bal.Storing("guest", msg.ActivationID) != nil {
		t.Fatal("Storing after the completion: want nil")
	}
	eventually(t, "slot freed by the completion", func() bool { return f.freeMB(0) == 1024 })
	if n := f.bal.ActiveActivationsFor("guest"); n != 0 {
		t.Fatalf("in flight after the completion: %d", n)
	}
	if f.state(0) != "up" {
		t.Fatalf("invoker state %s after a success, want up", f.state(0))
	}
}

// TestShrunkResultWaitsForTheStoredRecord: a Result too large for Kafka comes as the id alone and
// answers nobody (the record is not stored yet); the Completion, sent after the invoker stored the
// record, answers the caller with the stored record, logs included.
func TestShrunkResultWaitsForTheStoredRecord(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)
	ch, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	rec := inv.record(got, whisk.Success(json.RawMessage(`{"large":1}`)))
	inv.sendAck(got, whisk.NewResult(got.TransID, rec).Shrink())
	assertPending(t, ch, 300*time.Millisecond)
	f.rec.put(rec)
	inv.sendAck(got, whisk.NewCompletion(got.TransID, rec, inv.inst))
	c := receiveCompletion(t, ch)
	if c.Forced || c.Activation == nil || string(c.Activation.Response.Result) != `{"large":1}` || len(c.Activation.Logs) != 1 {
		t.Fatalf("completion %+v, want the stored record with its logs", c)
	}
	eventually(t, "slot freed", func() bool { return f.freeMB(0) == 1024 })
}

// TestIdOnlyAckWaitsForALateRecord: the store could not take the record when the invoker sent its
// id-only slot-freeing ack; the invoker's outbox stores it a little later, and the blocking caller
// is answered with it rather than with the id alone.
func TestIdOnlyAckWaitsForALateRecord(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)
	ch, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	rec := inv.record(got, whisk.Success(json.RawMessage(`{"late":true}`)))
	inv.sendAck(got, whisk.NewCombined(got.TransID, rec, inv.inst).Shrink())
	eventually(t, "the balancer reading the store", func() bool { return f.rec.reads.Load() > 0 })
	assertPending(t, ch, 300*time.Millisecond)
	f.rec.put(rec)
	c := receiveCompletion(t, ch)
	if c.Forced || c.Activation == nil || string(c.Activation.Response.Result) != `{"late":true}` {
		t.Fatalf("completion %+v, want the record stored after the ack", c)
	}
	eventually(t, "slot freed", func() bool { return f.freeMB(0) == 1024 })
}

func TestPublishNonBlockingWaitsForTheCompletion(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)
	ch, err := f.bal.Publish(context.Background(), action, userMessage(action, false))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	rec := inv.record(got, whisk.Success(json.RawMessage(`{}`)))
	// A Result (the invoker would not send one for a non-blocking activation) does not resolve it.
	inv.sendAck(got, whisk.NewResult(got.TransID, rec))
	assertPending(t, ch, 300*time.Millisecond)
	inv.sendAck(got, whisk.NewCompletion(got.TransID, rec, inv.inst))
	c := receiveCompletion(t, ch)
	if c.Forced || c.Activation != nil || c.ActivationID != got.ActivationID {
		t.Fatalf("completion %+v, want an id-only completion", c)
	}
	eventually(t, "slot freed", func() bool { return f.freeMB(0) == 1024 })
}

func TestPublishCombinedAndShrunkCombined(t *testing.T) {
	// A short wait for a record that never comes (the last case below).
	f := newFixture(t, func(c *Config) { c.RecordWait = 500 * time.Millisecond })
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)

	ch, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	inv.answer(got, whisk.ApplicationError("bad input"), false)
	c := receiveCompletion(t, ch)
	if c.Activation == nil || c.Activation.Response.StatusCode != whisk.StatusApplicationError || len(c.Activation.Logs) != 1 {
		t.Fatalf("combined completion %+v, want the full record", c)
	}
	eventually(t, "slot freed by the combined ack", func() bool { return f.freeMB(0) == 1024 })

	// Too large for Kafka: the invoker stores the record, then acks with the id only; the caller
	// gets the stored record.
	ch, err = f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got = inv.next()
	stored := inv.record(got, whisk.Success(json.RawMessage(`{"big":true}`)))
	f.rec.put(stored)
	inv.sendAck(got, whisk.NewCombined(got.TransID, stored, inv.inst).Shrink())
	c = receiveCompletion(t, ch)
	if c.Forced || c.ActivationID != got.ActivationID || c.Activation == nil ||
		string(c.Activation.Response.Result) != `{"big":true}` || len(c.Activation.Logs) != 1 {
		t.Fatalf("shrunk completion %+v, want the stored record", c)
	}
	eventually(t, "slot freed by the shrunk ack", func() bool { return f.freeMB(0) == 1024 })

	// Shrunk and nothing stored within RecordWait: the caller learns the id only.
	ch, err = f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got = inv.next()
	inv.answer(got, whisk.Success(json.RawMessage(`{}`)), true)
	c = receiveCompletion(t, ch)
	if c.Activation != nil || c.Forced || c.ActivationID != got.ActivationID {
		t.Fatalf("shrunk completion without a stored record %+v, want id only", c)
	}
	// Application errors are the action's fault, not the invoker's.
	if f.state(0) != "up" {
		t.Fatalf("invoker state %s, want up", f.state(0))
	}
}

func TestForcedCompletionCountsAsTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MinAckTimeout = time.Millisecond
		c.AckTimeoutFactor = 1
		c.AckTimeoutAddon = 200 * time.Millisecond
	})
	inv := healthyInvoker(t, f, 0, 2048)
	action := testAction(128, 100) // ack timeout 100 ms * 1 + 200 ms
	var chans []<-chan Completion
	for i := 0; i < 4; i++ {
		ch, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
		if err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		chans = append(chans, ch)
	}
	var late *whisk.ActivationMessage
	for i := range chans {
		c := receiveCompletion(t, chans[i])
		if !c.Forced || c.Activation != nil {
			t.Fatalf("completion %d = %+v, want forced", i, c)
		}
		late = inv.next()
	}
	if free := f.freeMB(0); free != 2048 {
		t.Fatalf("free memory after forced completions = %d, want 2048", free)
	}
	// Four timeouts in the buffer: more than the tolerated three.
	f.waitState(t, 0, "unresponsive")
	// A late ack for a forced activation changes nothing and does not crash anything.
	inv.answer(late, whisk.Success(json.RawMessage(`{}`)), false)
	time.Sleep(200 * time.Millisecond)
	if free := f.freeMB(0); free != 2048 {
		t.Fatalf("a late ack changed the free memory to %d", free)
	}
}

func TestHealthFromPingsAndTestActions(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Health.PingTimeout = time.Second
	})
	if _, err := f.bal.Publish(context.Background(), testAction(256, 1000), userMessage(testAction(256, 1000), true)); !errors.Is(err, ErrNoInvokers) {
		t.Fatalf("Publish with no invokers: err = %v, want ErrNoInvokers", err)
	}

	// Invoker 1 pings first: invoker 0 is a placeholder, down until it pings.
	inv := startScriptedInvoker(t, f.kcfg, 1, 2048, false)
	f.waitState(t, 1, "unhealthy")
	if got := f.bal.Invokers(); len(got) != 2 || got[0].State != "down" || got[0].Name != "invoker0" || got[1].Name != "invoker1/0" {
		t.Fatalf("Invokers() = %+v, want invoker0 down and invoker1/0", got)
	}
	// Unhealthy: no user activations.
	if _, err := f.bal.Publish(context.Background(), testAction(256, 1000), userMessage(testAction(256, 1000), true)); !errors.Is(err, ErrNoInvokers) {
		t.Fatalf("Publish with an unhealthy invoker: err = %v, want ErrNoInvokers", err)
	}

	// The test action arrives at once, as the whisk.system identity, with the balancer's transid.
	test := inv.next()
	if test.TransID.ID != whisk.TransIDInvokerHealth || !test.TransID.Equal(f.bal.HealthTransactionID()) ||
		test.Revision != nil || test.Blocking || test.Content != nil ||
		test.Action.String() != "whisk.system/invokerHealthTestAction0" ||
		test.User.AuthKey.APIKey != systemIdentity.AuthKey.APIKey {
		t.Fatalf("test action message %+v is not the health test action", test)
	}
	// A whisk error keeps it unhealthy (priming buffer).
	inv.answer(test, whisk.WhiskError("no runtime"), true)
	time.Sleep(300 * time.Millisecond)
	if s := f.state(1); s != "unhealthy" {
		t.Fatalf("state after a failed test = %s, want unhealthy", s)
	}
	// A success makes it healthy; another test goes out at once.
	inv.answer(test, whisk.Success(json.RawMessage(`{}`)), false)
	f.waitState(t, 1, "up")
	if next := inv.next(); next.TransID.ID != whisk.TransIDInvokerHealth {
		t.Fatalf("expected another test action after the success, got %+v", next)
	}

	// A transid that is not the balancer's does not count as a test ack.
	inv.autoHealth.Store(true)
	action := testAction(256, 60000)
	ch, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish to a healthy invoker: %v", err)
	}
	inv.answer(inv.next(), whisk.Success(json.RawMessage(`{}`)), false)
	receiveCompletion(t, ch)

	// Disabled ping: down at once; enabled again: unhealthy, tested, up.
	inv.disable()
	f.waitState(t, 1, "down")
	if _, err := f.bal.Publish(context.Background(), action, userMessage(action, true)); !errors.Is(err, ErrNoInvokers) {
		t.Fatalf("Publish with the invoker disabled: err = %v, want ErrNoInvokers", err)
	}
	before := inv.healthAcks.Load()
	inv.enable()
	f.waitState(t, 1, "up")
	if inv.healthAcks.Load() == before {
		t.Fatal("the invoker came back up without a test action")
	}

	// Silence: down after the ping timeout.
	inv.silence()
	f.waitState(t, 1, "down")
}

func TestMalformedRecordsAreSkipped(t *testing.T) {
	f := newFixture(t, nil)
	p, err := kafka.NewProducer(f.kcfg)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, bad := range []string{`not json`, `{"transid":"x"}`, `[]`, `{"name":{"instance":-1,"userMemory":"1 MB"}}`,
		`{"name":{"instance":999999,"userMemory":"1 MB"}}`} {
		for _, topic := range []string{"completed0", kafka.HealthTopic} {
			if err := p.Send(ctx, topic, []byte(bad)); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}
	// The balancer still works after them.
	healthyInvoker(t, f, 0, 512)
	if n := len(f.bal.Invokers()); n != 1 {
		t.Fatalf("%d invokers registered, want 1 (the out-of-range ping must be refused)", n)
	}
}

func TestNoRoomOvercommitsAHealthyInvoker(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 256)
	action := testAction(256, 60000)
	ch1, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish 1: %v", err)
	}
	ch2, err := f.bal.Publish(context.Background(), action, userMessage(action, true))
	if err != nil {
		t.Fatalf("Publish 2 (forced placement): %v", err)
	}
	if free := f.freeMB(0); free != -256 {
		t.Fatalf("free memory = %d, want -256 (overcommitted)", free)
	}
	for _, ch := range []<-chan Completion{ch1, ch2} {
		inv.answer(inv.next(), whisk.Success(json.RawMessage(`{}`)), false)
		receiveCompletion(t, ch)
	}
	eventually(t, "all slots freed", func() bool { return f.freeMB(0) == 256 })
}

// Acks are consumed at least once: a completion delivered twice frees its slot once.
func TestRedeliveredCompletionFreesOnce(t *testing.T) {
	f := newFixture(t, nil)
	inv := healthyInvoker(t, f, 0, 1024)
	action := testAction(256, 60000)
	first, err := f.bal.Publish(context.Background(), action, userMessage(action, false))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got := inv.next()
	rec := inv.record(got, whisk.Success(json.RawMessage(`{}`)))
	inv.sendAck(got, whisk.NewCompletion(got.TransID, rec, inv.inst))
	receiveCompletion(t, first)
	eventually(t, "slot freed", func() bool { return f.freeMB(0) == 1024 })
	// A second activation holds 256 MB while the first one's completion arrives again.
	second, err := f.bal.Publish(context.Background(), action, userMessage(action, false))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	got2 := inv.next()
	inv.sendAck(got, whisk.NewCompletion(got.TransID, rec, inv.inst))
	assertPending(t, second, 300*time.Millisecond)
	if free := f.freeMB(0); free != 1024-256 {
		t.Fatalf("free memory after a redelivered completion = %d MB, want %d", free, 1024-256)
	}
	inv.sendAck(got2, whisk.NewCompletion(got2.TransID, inv.record(got2, whisk.Success(json.RawMessage(`{}`))), inv.inst))
	receiveCompletion(t, second)
	eventually(t, "second slot freed", func() bool { return f.freeMB(0) == 1024 })
}
