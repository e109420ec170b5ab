package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

const guestKey = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"

// restAPI stands in for the controller's REST API: it serves action documents and records the
// activation records the invoker stores. (The real controller-adapter is tested end to end in
// controller-adapter/.)
type restAPI struct {
	srv     *httptest.Server
	mu      sync.Mutex
	actions map[string]string // "ns/name" -> document
	stored  map[string]*whisk.WhiskActivation
	fetches int
}

func newRestAPI(t *testing.T) *restAPI {
	r := &restAPI{actions: map[string]string{}, stored: map[string]*whisk.WhiskActivation{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch {
		case req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/api/v1/namespaces/"):
			r.fetches++
			if u, p, ok := req.BasicAuth(); !ok || u+":"+p != guestKey {
				http.Error(w, `{"error":"The supplied authentication is invalid"}`, http.StatusUnauthorized)
				return
			}
			parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/api/v1/namespaces/"), "/")
			if len(parts) < 3 {
				http.NotFound(w, req)
				return
			}
			key := parts[0] + "/" + strings.Join(parts[2:], "/")
			if key == "guest/broken" {
				http.Error(w, "database down", http.StatusInternalServerError)
				return
			}
			doc, ok := r.actions[key]
			if !ok {
				http.Error(w, `{"error":"The requested resource does not exist."}`, http.StatusNotFound)
				return
			}
			_, _ = io.WriteString(w, doc)
		case req.Method == http.MethodPut && strings.HasPrefix(req.URL.Path, "/internal/v1/activations/"):
			if req.Header.Get("X-Teemate-Invoker-Token") != "tok" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			var a whisk.WhiskActivation
			body, _ := io.ReadAll(req.Body)
			if err := json.Unmarshal(body, &a); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			r.stored[a.ActivationID] = &a
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *restAPI) addAction(name string, logsMB int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions["guest/"+name] = fmt.Sprintf(`{"namespace":"guest","name":%q,"version":"0.0.1","publish":false,
	  "exec":{"kind":"nodejs:20","code":"function main(p){return p}","binary":false},
	  "annotations":[{"key":"exec","value":"nodejs:20"}],"parameters":[],
	  "limits":{"timeout":60000,"memory":256,"logs":%d,"concurrency":1},"rev":"1-abc"}`, name, logsMB)
}

func (r *restAPI) record(id string) *whisk.WhiskActivation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stored[id]
}

// scripted is an Executor for the pipeline tests: it answers by action name and counts runs. The real
// executors (process + direct enclave, containers) have their own end-to-end tests.
type scripted struct {
	mu   sync.Mutex
	runs map[string]int
	gate chan struct{} // when non-nil, "slow" waits for it
}

func (s *scripted) Run(ctx context.Context, job *activation.Job) activation.Outcome {
	s.mu.Lock()
	s.runs[job.Msg.ActivationID]++
	s.mu.Unlock()
	start := time.Now()
	out := activation.Outcome{Start: start, InitTime: time.Millisecond,
		Phases: map[string]time.Duration{"run": time.Millisecond}}
	switch job.Action.Name {
	case "slow":
		select {
		case <-s.gate:
		case <-ctx.Done():
		}
		out.Response = whisk.Success(json.RawMessage(`{"slow":true}`))
	case "big":
		out.Response = whisk.Success(json.RawMessage(`{"blob":"` + strings.Repeat("x", 1100000) + `"}`))
	default:
		out.Response = whisk.Success(job.Run.Value)
		out.Logs = []string{"2026-11-21T10:00:00.000000000Z stdout: hello from " + job.Action.Name}
	}
	out.End = time.Now()
	return out
}

func (s *scripted) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[id]
}

// env is one test's world: an embedded broker, a REST stand-in and observers on completed0 and health.
type env struct {
	t       *testing.T
	brokers []string
	api     *restAPI
	exec    *scripted
	prod    *kafka.Producer
	acks    chan []byte
	pings   chan []byte
	dataDir string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: dir + "/kafka", Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	e := &env{t: t, brokers: emb.Addrs(), api: newRestAPI(t), exec: &scripted{runs: map[string]int{}},
		acks: make(chan []byte, 100), pings: make(chan []byte, 100), dataDir: dir}
	cfg := kafka.Config{Brokers: e.brokers, ClientID: "test"}
	if e.prod, err = kafka.NewProducer(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.prod.Close() })
	for _, topic := range []string{"completed0", kafka.HealthTopic} {
		if err := kafka.EnsureTopic(context.Background(), cfg, topic, 1, kafka.MaxMessageBytes); err != nil {
			t.Fatal(err)
		}
		c, err := kafka.NewConsumer(cfg, "observer-"+topic, topic, kafka.ConsumerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := e.acks
		if topic == kafka.HealthTopic {
			out = e.pings
		}
		go func() {
			for m := range c.Messages() {
				out <- m.Value
				c.Done(m)
			}
		}()
		t.Cleanup(func() { _ = c.Close() })
	}
	return e
}

// startInvoker runs an invoker until the returned stop function is called; it returns the HTTP address.
func (e *env) startInvoker(mod func(*Config)) (httpAddr string, stop func()) {
	e.t.Helper()
	ready := make(chan Info, 1)
	cfg := Config{ID: 0, Kafka: strings.Join(e.brokers, ","), APIHost: e.api.srv.URL, Listen: "127.0.0.1:0",
		StateDir: e.dataDir + "/invoker", StoreToken: "tok", PingInterval: 200 * time.Millisecond,
		Executor: e.exec, Logger: zaptest.NewLogger(e.t, zaptest.Level(zap.WarnLevel)),
		Ready: func(i Info) { ready <- i }}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	select {
	case i := <-ready:
		httpAddr = i.HTTPAddr
	case err := <-done:
		e.t.Fatalf("invoker exited: %v", err)
	case <-time.After(15 * time.Second):
		e.t.Fatal("invoker did not start")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("invoker run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("invoker did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return httpAddr, stop
}

// message builds an ActivationMessage the way the Scala controller writes it.
func message(id, action string, blocking bool, transid string) []byte {
	if transid == "" {
		transid = fmt.Sprintf(`["tid-%s",%d]`, id[:6], time.Now().UnixMilli())
	}
	return []byte(fmt.Sprintf(`{"transid":%s,"action":{"path":"guest","name":%q,"version":"0.0.1"},
	 "revision":"1-abc","user":{"subject":"guest","namespace":{"name":"guest","uuid":"23bc46b1-71f6-4ed5-8c54-816aa4f8c502"},
	 "authkey":{"api_key":%q},"rights":["READ","PUT","DELETE","ACTIVATE"],"limits":{}},
	 "activationId":%q,"rootControllerIndex":{"asString":"0","instanceType":"controller"},
	 "blocking":%v,"content":{"name":"Bob"},"initArgs":[],"lockedArgs":{}}`, transid, action, guestKey, id, blocking))
}

func (e *env) send(v []byte) {
	e.t.Helper()
	if err := e.prod.Send(context.Background(), "invoker0", v); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

// nextAck waits for the next ack on completed0.
func (e *env) nextAck(within time.Duration) (whisk.Ack, []byte) {
	e.t.Helper()
	select {
	case v := <-e.acks:
		a, err := whisk.ParseAcknowledgement(v)
		if err != nil {
			e.t.Fatalf("ack does not parse: %v: %s", err, v)
		}
		return a, v
	case <-time.After(within):
		e.t.Fatal("no ack")
	}
	return nil, nil
}

func (e *env) noAck(within time.Duration) {
	e.t.Helper()
	select {
	case v := <-e.acks:
		e.t.Fatalf("unexpected ack: %s", v)
	case <-time.After(within):
	}
}

func id(n int) string { return fmt.Sprintf("%032x", n) }

func zapTest(t *testing.T) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)) }
