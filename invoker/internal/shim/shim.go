package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/whisk"
)

// OpenWhisk's action-proxy texts.
const (
	msgInitTwice      = "Cannot initialize the action more than once."
	msgNotInitialized = "System not initialized."
	msgMissingCode    = "Missing main/no code to execute."
	msgOneActivation  = "This sandbox serves exactly one activation."
)

// Gate run limits (PROTOCOL.md, "run → result"); the shim clamps into them rather than fail a run
// whose limits the invoker computed slightly outside (e.g. a deadline already close).
const (
	minTimeoutMs = 100
	maxTimeoutMs = 600000
	minMemoryMB  = 64
	maxMemoryMB  = 4096
	maxLogLimit  = 64 << 20
)

type state int

const (
	stateFresh state = iota
	stateInitializing
	stateReady
	stateRunning
	stateDone
)

// Server is the action proxy of one sandbox. It serves one /init and one /run, then Done closes.
type Server struct {
	cfg    Config
	stdout io.Writer
	stderr io.Writer
	log    *zap.Logger

	mu      sync.Mutex
	state   state
	gc      *gate.Client
	timings proxy.Timings
	runtime *strawman

	done     chan struct{}
	doneOnce sync.Once
}

// New makes a Server that prints activation logs on stdout and stderr. log receives the shim's
// own diagnostics; they are written only after the activation's sentinels, never among its logs.
func New(cfg Config, stdout, stderr io.Writer, log *zap.Logger) *Server {
	return &Server{cfg: cfg, stdout: stdout, stderr: stderr, log: log, done: make(chan struct{})}
}

// Done is closed once the sandbox's one activation is over (after /run, or after a failed /init).
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) finish() { s.doneOnce.Do(func() { close(s.done) }) }

// Handler serves POST /init and POST /run.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /init", s.handleInit)
	mux.HandleFunc("POST /run", s.handleRun)
	return mux
}

// Serve listens on the configured socket or address and serves until the activation is over or ctx
// ends; then it stops the strawman runtime, if any, and returns.
func Serve(ctx context.Context, cfg Config, stdout, stderr io.Writer, log *zap.Logger) error {
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	s := New(cfg, stdout, stderr, log)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-s.Done():
	case <-ctx.Done():
	case err := <-errc:
		s.close()
		return fmt.Errorf("serve action proxy: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown waits for the reply being written to finish.
	err = srv.Shutdown(sctx)
	s.close()
	if err != nil {
		return fmt.Errorf("shut down action proxy: %w", err)
	}
	return nil
}

func listen(cfg Config) (net.Listener, error) {
	if cfg.ProxyFD > 0 {
		f := os.NewFile(uintptr(cfg.ProxyFD), "proxy-listener")
		if f == nil {
			return nil, fmt.Errorf("TEEMATE_PROXY_FD=%d is not an open descriptor", cfg.ProxyFD)
		}
		ln, err := net.FileListener(f)
		// FileListener dups the descriptor; the inherited one is no longer needed.
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("TEEMATE_PROXY_FD=%d is not a listening socket: %w", cfg.ProxyFD, err)
		}
		return ln, nil
	}
	if cfg.ProxySocket == "" {
		ln, err := net.Listen("tcp", cfg.ProxyAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.ProxyAddr, err)
		}
		return ln, nil
	}
	if err := os.Remove(cfg.ProxySocket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale proxy socket: %w", err)
	}
	ln, err := net.Listen("unix", cfg.ProxySocket)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.ProxySocket, err)
	}
	// The invoker may run under another uid than the sandbox.
	if err := os.Chmod(cfg.ProxySocket, 0o666); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("chmod proxy socket: %w", err)
	}
	return ln, nil
}

// close drops the gate connection (the owner frees the slot) and stops a strawman runtime.
func (s *Server) close() {
	s.mu.Lock()
	gc, rt := s.gc, s.runtime
	s.gc, s.runtime = nil, nil
	s.mu.Unlock()
	if gc != nil {
		_ = gc.Close() // the owner sees the close and frees the slot; nothing to report
	}
	if rt != nil {
		rt.stop()
	}
}

// initRequest is OpenWhisk's /init body.
type initRequest struct {
	Value *struct {
		Name   string                     `json:"name"`
		Main   string                     `json:"main"`
		Code   string                     `json:"code"`
		Binary bool                       `json:"binary"`
		Env    map[string]json.RawMessage `json:"env"`
	} `json:"value"`
}

func (s *Server) handleInit(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.state != stateFresh {
		s.mu.Unlock()
		s.reply(w, http.StatusForbidden, "", false, errorBody(msgInitTwice))
		return
	}
	s.state = stateInitializing
	s.mu.Unlock()

	// Every failed /init ends with the sentinels, printed before the reply, and ends this sandbox
	// (OpenWhisk destroys a container whose init failed).
	w = &sentinelWriter{ResponseWriter: w, s: s}
	ok := false
	defer func() {
		if !ok {
			s.close()
			s.mu.Lock()
			s.state = stateDone
			s.mu.Unlock()
			s.finish()
		}
	}()

	var req initRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.reply(w, http.StatusBadRequest, "", true, errorBody("Malformed /init request: "+err.Error()))
		return
	}
	if req.Value == nil || req.Value.Code == "" {
		s.reply(w, http.StatusForbidden, "", true, errorBody(msgMissingCode))
		return
	}
	env, err := stringEnv(req.Value.Env)
	if err != nil {
		s.reply(w, http.StatusBadRequest, "", true, errorBody("Malformed /init request: "+err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(s.cfg.TimeoutMs)*time.Millisecond+s.cfg.Grace)
	defer cancel()

	if len(s.cfg.StrawmanCmd) > 0 {
		t0 := time.Now()
		rt, err := startStrawman(ctx, s.cfg.StrawmanCmd, s.cfg.Gate)
		s.timings.BootMs = ms(time.Since(t0))
		if err != nil {
			s.gateFailure(w, http.StatusBadGateway, "The enclave runtime did not start: "+err.Error())
			return
		}
		s.mu.Lock()
		s.runtime = rt
		s.mu.Unlock()
	}

	t0 := time.Now()
	gc, err := gate.Dial(ctx, s.cfg.Gate)
	if err != nil {
		s.gateFailure(w, http.StatusBadGateway, "The enclave is not reachable: "+err.Error())
		return
	}
	s.mu.Lock()
	s.gc = gc
	s.mu.Unlock()
	if _, err := gc.Hello(ctx, s.cfg.Sandbox, s.cfg.Credentials); err != nil {
		s.gateFailure(w, http.StatusBadGateway, "The enclave refused to attach: "+err.Error())
		return
	}
	t1 := time.Now()
	s.timings.AttachMs = ms(t1.Sub(t0)) + s.timings.BootMs
	if _, err := gc.Acquire(ctx); err != nil {
		status := http.StatusBadGateway
		if gate.IsClass(err, gate.ClassBusy) {
			status = http.StatusServiceUnavailable
		}
		s.gateFailure(w, status, "No enclave thread could be taken: "+err.Error())
		return
	}
	t2 := time.Now()
	s.timings.TCSMs = ms(t2.Sub(t1))
	err = gc.Init(ctx, gate.Init{Name: req.Value.Name, Main: req.Value.Main, Code: req.Value.Code,
		Binary: req.Value.Binary, Env: env})
	s.timings.InitMs = ms(time.Since(t2))
	var ge *gate.Error
	switch {
	case err == nil:
	case errors.As(err, &ge) && ge.Class == gate.ClassInit:
		s.reply(w, http.StatusBadGateway, proxy.OutcomeDeveloper, true, errorBody(ge.Message))
		return
	case errors.As(err, &ge):
		s.gateFailure(w, http.StatusBadGateway, "The enclave failed to initialize the action: "+err.Error())
		return
	default:
		// The connection broke: the owner went away while preparing the action.
		s.reply(w, http.StatusBadGateway, proxy.OutcomeDeveloper, true, errorBody(whisk.MsgAbnormalInitialization))
		s.log.Warn("gate connection lost during init", zap.Error(err))
		return
	}
	ok = true
	s.mu.Lock()
	s.state = stateReady
	s.mu.Unlock()
	s.reply(w, http.StatusOK, "", true, []byte(`{"OK":true}`))
}

// sentinelWriter prints the sentinels just before a failure status is written.
type sentinelWriter struct {
	http.ResponseWriter
	s *Server
}

func (sw *sentinelWriter) WriteHeader(status int) {
	if status != http.StatusOK {
		sw.s.sentinels()
	}
	sw.ResponseWriter.WriteHeader(status)
}

func (s *Server) gateFailure(w http.ResponseWriter, status int, msg string) {
	s.reply(w, status, proxy.OutcomeGate, true, errorBody(msg))
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	switch s.state {
	case stateReady:
	case stateFresh, stateInitializing:
		s.mu.Unlock()
		s.reply(w, http.StatusForbidden, "", false, errorBody(msgNotInitialized))
		return
	default:
		s.mu.Unlock()
		s.reply(w, http.StatusForbidden, "", false, errorBody(msgOneActivation))
		return
	}
	s.state = stateRunning
	gc := s.gc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.state = stateDone
		s.mu.Unlock()
		s.close()
		s.finish()
	}()

	run, err := s.runMessage(w, r)
	if err != nil {
		s.sentinels()
		s.reply(w, http.StatusBadRequest, "", true, errorBody("Malformed /run request: "+err.Error()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(run.TimeoutMs)*time.Millisecond+s.cfg.Grace)
	defer cancel()
	res, err := gc.Run(ctx, run)
	if err != nil {
		s.sentinels()
		var ge *gate.Error
		if errors.As(err, &ge) {
			s.gateFailure(w, http.StatusBadGateway, "The enclave failed to run the action: "+err.Error())
			return
		}
		// The owner went away (or stopped answering) while the action ran: OpenWhisk's answer for a
		// container that died mid-run.
		s.reply(w, http.StatusBadGateway, proxy.OutcomeDeveloper, true, errorBody(whisk.MsgAbnormalRun))
		s.log.Warn("gate connection lost during run", zap.Error(err))
		return
	}
	s.timings.IsolateMs = res.Timings["isolateMs"]
	s.timings.RunMs = res.Timings["runMs"]
	// The addon tears an isolate down after answering (off the request path), so it reports the
	// slot's previous teardown instead; the phase histogram measures teardown durations either way.
	s.timings.TeardownMs = res.Timings["teardownMs"]
	if s.timings.TeardownMs == 0 {
		s.timings.TeardownMs = res.Timings["lastTeardownMs"]
	}
	for _, l := range res.Logs {
		out := s.stdout
		if l.Stream == "stderr" {
			out = s.stderr
		}
		writeLine(out, l.Line)
	}
	s.sentinels()
	// The release goes out before the reply, so the slot is free by the time the invoker hands
	// it out again; its answer is read after the reply, off the activation's path. Closing the
	// connection frees the slot anyway; the release is only the fast path.
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	released := gc.SendRelease(rctx)
	defer func() {
		if released == nil {
			released = gc.AwaitReleased(rctx)
		}
		if released != nil {
			s.log.Warn("release of the enclave thread failed", zap.Error(released))
		}
	}()
	status := http.StatusOK
	if res.Outcome != gate.OutcomeSuccess && res.Outcome != gate.OutcomeApplication {
		status = http.StatusBadGateway
	}
	body := []byte(res.Result)
	if len(body) == 0 {
		body = []byte("{}")
	}
	s.reply(w, status, res.Outcome, true, body)
}

// runMessage builds the gate run from OpenWhisk's /run body.
func (s *Server) runMessage(w http.ResponseWriter, r *http.Request) (gate.Run, error) {
	var body map[string]json.RawMessage
	if err := decodeBody(w, r, &body); err != nil {
		return gate.Run{}, err
	}
	if body == nil {
		return gate.Run{}, errors.New("body must be a JSON object")
	}
	value := body["value"]
	if len(value) == 0 || string(value) == "null" {
		value = json.RawMessage("{}")
	}
	if c := firstNonSpace(value); c != '{' && c != '[' {
		return gate.Run{}, errors.New("value must be a JSON object or array")
	}
	env := map[string]string{}
	for k, v := range body {
		if k == "value" {
			continue
		}
		var str string
		if json.Unmarshal(v, &str) != nil {
			continue // OpenWhisk's proxies export string fields only
		}
		env["__OW_"+strings.ToUpper(k)] = str
	}
	// The time limit is the action's own, measured from the start of the run as OpenWhisk measures
	// it (its /run HTTP timeout); the deadline is the action's information, not a second clock, and
	// OpenWhisk's timeout message names the limit, not what was left of it.
	timeout := s.cfg.TimeoutMs
	if d, ok := env["__OW_DEADLINE"]; ok {
		if _, err := strconv.ParseInt(d, 10, 64); err != nil {
			return gate.Run{}, fmt.Errorf("deadline %q is not epoch milliseconds", d)
		}
	}
	return gate.Run{
		Value:         value,
		TimeoutMs:     clamp(timeout, minTimeoutMs, maxTimeoutMs),
		MemoryMB:      int(clamp(int64(s.cfg.MemoryMB), minMemoryMB, maxMemoryMB)),
		LogLimitBytes: clamp(s.cfg.LogLimitBytes, 0, maxLogLimit),
		Env:           env,
		Network:       s.cfg.Network,
	}, nil
}

func (s *Server) sentinels() {
	writeLine(s.stdout, whisk.LogSentinel)
	writeLine(s.stderr, whisk.LogSentinel)
}

func writeLine(w io.Writer, text string) {
	// A write error means the sandbox's output is gone; the reply still carries the result.
	_, _ = io.WriteString(w, text+"\n")
}

func (s *Server) reply(w http.ResponseWriter, status int, outcome string, timings bool, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if outcome != "" {
		h.Set(proxy.HeaderOutcome, outcome)
	}
	if timings {
		t, _ := json.Marshal(s.timings) // a struct of floats always encodes
		h.Set(proxy.HeaderTimings, string(t))
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the invoker went away; nothing left to tell it
	// Out now, not when the handler returns: what the handler does afterwards (reading the
	// release's answer) is not the invoker's business.
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	if err := dec.Decode(dst); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("body exceeds %d bytes", tooBig.Limit)
		}
		return fmt.Errorf("body is not valid JSON: %w", err)
	}
	return nil
}

// stringEnv turns /init's env into strings the way OpenWhisk does: strings as they are, other JSON
// values compact-printed, null as "".
func stringEnv(in map[string]json.RawMessage) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for k, v := range in {
		if k == "" {
			return nil, errors.New("env has an empty name")
		}
		var str string
		switch {
		case string(v) == "null":
		case json.Unmarshal(v, &str) == nil:
		default:
			str = string(v)
		}
		out[k] = str
	}
	return out, nil
}

func errorBody(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg}) // a string map always encodes
	return b
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
