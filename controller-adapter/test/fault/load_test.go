package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// starts is the test's HTTP server the action reports each start of its code to.
type starts struct {
	mu   sync.Mutex
	runs map[string][]time.Time
	srv  *http.Server
	port int
}

func newStarts() (*starts, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &starts{runs: map[string][]time.Time{}, port: l.Addr().(*net.TCPAddr).Port}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/start/")
		if !ok || id == "" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.runs[id] = append(s.runs[id], time.Now())
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = s.srv.Serve(l) }() // returns ErrServerClosed when the suite closes it
	return s, nil
}

func (s *starts) of(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.runs[id]...)
}

// outcome of one request.
const (
	classOK      = "ok"
	classFailed  = "failed"
	classBroken  = "broken"
	classRefused = "refused"
	classPending = "pending" // an id without a result yet: decided by the record
)

// call is one invocation the load sent.
type call struct {
	blocking       bool
	sent, answered time.Time
	class          string
	status         string // the record's status, or "HTTP nnn", or the transport error's kind
	id             string
	result         bool // the answer carried the activation's result (not only its id)
	// recordAt is when the record of a call answered with an id only was first seen readable
	// (the activation was answered then at the latest).
	recordAt time.Time
}

// record is the part of an activation record the suite reads.
type record struct {
	ActivationID string `json:"activationId"`
	Response     struct {
		Status string `json:"status"`
	} `json:"response"`
}

// load drives invocations of action at p from workers goroutines until stop is closed.
type load struct {
	p       *platform
	action  string
	runMs   int
	pause   time.Duration
	client  *http.Client
	mu      sync.Mutex
	calls   []*call
	wg      sync.WaitGroup
	stopped chan struct{}

	// clearedAt is set when the harness has undone the fault (restarted what it killed, freed
	// the disk, put the clock back); recovered is closed by the first successful blocking call
	// sent after it.
	clearedAt time.Time
	recovered chan struct{}
	once      sync.Once
}

// newLoad makes the load without starting it (invoke sends one call).
func newLoad(p *platform, action string, runMs int, pause, timeout time.Duration) *load {
	return &load{p: p, action: action, runMs: runMs, pause: pause, stopped: make(chan struct{}), recovered: make(chan struct{}),
		// One connection per request: a kept-alive connection to a killed process would fail a
		// request that never reached the platform, and count it as broken.
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}}
}

func startLoad(p *platform, action string, workers, runMs int, pause, timeout time.Duration) *load {
	l := newLoad(p, action, runMs, pause, timeout)
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i++ {
				select {
				case <-l.stopped:
					return
				default:
				}
				c := l.invoke(i%2 == 0)
				l.add(c)
				pause := l.pause
				if c.class != classOK && c.class != classPending {
					pause = 250 * time.Millisecond // the platform is down or refuses: do not spin
				}
				select {
				case <-l.stopped:
					return
				case <-time.After(pause):
				}
			}
		}()
	}
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.watchRecords() }()
	go func() { defer l.wg.Done(); l.probe() }()
	return l
}

// add records a finished call; the first successful blocking call sent after the fault is the
// recovery.
func (l *load) add(c *call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
	if c.blocking && c.class == classOK && !l.clearedAt.IsZero() && !c.sent.Before(l.clearedAt) {
		l.once.Do(func() { close(l.recovered) })
	}
}

// probe sends a blocking invocation every probeEvery once the fault is undone until one
// succeeds, each
// without waiting for the others: callers stuck on a platform that does not answer would
// otherwise hold back the calls that show it has recovered. Probes count like every call.
func (l *load) probe() {
	const probeEvery, maxProbes = 500 * time.Millisecond, 40
	inFlight := make(chan struct{}, maxProbes)
	var probes sync.WaitGroup
	defer probes.Wait()
	for {
		select {
		case <-l.stopped:
			return
		case <-l.recovered:
			return
		case <-time.After(probeEvery):
		}
		l.mu.Lock()
		armed := !l.clearedAt.IsZero()
		l.mu.Unlock()
		if !armed {
			continue
		}
		select {
		case inFlight <- struct{}{}:
		default:
			continue // maxProbes are waiting already
		}
		probes.Add(1)
		go func() {
			defer probes.Done()
			l.add(l.invoke(true))
			<-inFlight
		}()
	}
}

// markCleared says the harness has undone the fault now.
func (l *load) markCleared() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clearedAt = time.Now()
	return l.clearedAt
}

// watchRecords polls the records of the calls answered with an id only, so that a run that
// starts after the record was stored counts as a re-run after the answer.
func (l *load) watchRecords() {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-l.stopped:
			return
		case <-time.After(300 * time.Millisecond):
		}
		var todo []*call
		l.mu.Lock()
		for _, c := range l.calls {
			if c.class == classPending && c.recordAt.IsZero() && len(todo) < 50 {
				todo = append(todo, c)
			}
		}
		l.mu.Unlock()
		for _, c := range todo {
			code, b, err := get(client, l.p.api+"/api/v1/namespaces/_/activations/"+c.id, l.p.key)
			var r record
			if err == nil && code == http.StatusOK && json.Unmarshal(b, &r) == nil && r.Response.Status != "" {
				l.mu.Lock()
				c.recordAt = time.Now()
				l.mu.Unlock()
			}
		}
	}
}

// stop ends the load and waits for the calls in flight.
func (l *load) stop() []*call {
	close(l.stopped)
	l.wg.Wait()
	return l.calls
}

func (l *load) invoke(blocking bool) *call {
	c := &call{blocking: blocking, sent: time.Now()}
	body := []byte(`{"ms":` + strconv.Itoa(l.runMs) + `}`)
	req, err := http.NewRequest(http.MethodPost, l.p.api+"/api/v1/namespaces/_/actions/"+l.action+"?blocking="+strconv.FormatBool(blocking), bytes.NewReader(body))
	if err != nil {
		panic(err) // a constant URL and body: cannot fail
	}
	req.SetBasicAuth(l.p.key[0], l.p.key[1])
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	c.answered = time.Now()
	if err != nil {
		c.class, c.status = transportClass(err)
		return c
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		c.class, c.status = classBroken, "body cut: "+errKind(err)
		return c
	}
	var r record
	_ = json.Unmarshal(buf.Bytes(), &r) // an error answer need not be a record; the status code decides
	c.id = r.ActivationID
	switch {
	case resp.StatusCode == http.StatusAccepted && c.id != "":
		c.class, c.status = classPending, ""
	case (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusBadGateway) && r.Response.Status != "":
		c.status, c.result = r.Response.Status, true
		c.class = classFailed
		if r.Response.Status == "success" {
			c.class = classOK
		}
	default:
		c.class, c.status = classFailed, "HTTP "+strconv.Itoa(resp.StatusCode)
	}
	return c
}

// transportClass: no connection at all is "refused" (nothing listened); anything else after the
// request may have reached the platform is "broken".
func transportClass(err error) (string, string) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return classRefused, "connection refused"
	}
	return classBroken, errKind(err)
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer (client timeout)"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "connection closed (EOF)"
	default:
		return "transport error"
	}
}

// resolve reads the record of every call that has an activation id, retrying until window
// passes, and returns the ids whose record never became readable. Pending calls take their
// class from the record.
func (l *load) resolve(calls []*call, window time.Duration) map[string]bool {
	missing := map[string]bool{}
	for _, c := range calls {
		if c.id != "" {
			missing[c.id] = true
		}
	}
	got := map[string]string{}
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(window)
	for len(missing) > 0 {
		for id := range missing {
			code, b, err := get(client, l.p.api+"/api/v1/namespaces/_/activations/"+id, l.p.key)
			var r record
			if err == nil && code == http.StatusOK && json.Unmarshal(b, &r) == nil && r.Response.Status != "" {
				got[id] = r.Response.Status
				delete(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, c := range calls {
		if c.class != classPending {
			continue
		}
		if st, ok := got[c.id]; ok {
			if c.recordAt.IsZero() {
				c.recordAt = time.Now() // later than the store: counts fewer re-runs, never more
			}
			c.status, c.class = st, classFailed
			if st == "success" {
				c.class = classOK
			}
		}
	}
	return missing
}

// count turns the calls and the starts the action reported into r's figures; faultAt is when
// the fault was injected, clearedAt when the harness had undone it.
func count(r *Result, calls []*call, missing map[string]bool, s *starts, faultAt, clearedAt time.Time) {
	r.Statuses = map[string]int{}
	r.RecoverySeconds = -1
	seen := map[string]bool{}
	for _, c := range calls {
		if c.class == classRefused {
			r.Refused++
			continue
		}
		r.Sent++
		switch {
		case c.id != "" && missing[c.id]:
			r.Lost++
			r.Statuses["lost"]++
		case c.class == classOK:
			r.OK++
		case c.class == classBroken:
			r.Broken++
		default:
			r.Failed++
		}
		if c.status != "" && !(c.id != "" && missing[c.id]) {
			r.Statuses[c.status]++
		}
		if c.status == "action developer error" {
			r.Blamed++
		}
		if c.blocking && c.class == classOK && !c.sent.Before(clearedAt) {
			if d := c.answered.Sub(faultAt).Seconds(); r.RecoverySeconds < 0 || d < r.RecoverySeconds {
				r.RecoverySeconds = d
			}
		}
		if c.id == "" || seen[c.id] {
			continue
		}
		seen[c.id] = true
		runs := s.of(c.id)
		r.MaxStarts = max(r.MaxStarts, len(runs))
		if len(runs) > 1 {
			r.Duplicated++
		}
		answered := c.recordAt
		if c.result {
			answered = c.answered
		}
		if !answered.IsZero() {
			for _, at := range runs {
				if at.After(answered) {
					r.RerunAfterAnswer++
					break
				}
			}
		}
	}
	if r.RecoverySeconds >= 0 {
		r.RecoverySeconds = float64(int(r.RecoverySeconds*10+0.5)) / 10
	}
}

// summary is a short line for the test's log.
func summary(r Result) string {
	return fmt.Sprintf("%s: sent %d ok %d failed %d broken %d lost %d dup %d rerun-after-answer %d blamed %d left %d recovery %.1fs refused %d statuses %v",
		r.Scenario, r.Sent, r.OK, r.Failed, r.Broken, r.Lost, r.Duplicated, r.RerunAfterAnswer, r.Blamed, r.LeftBehind, r.RecoverySeconds, r.Refused, r.Statuses)
}
