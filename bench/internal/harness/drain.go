package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/controller-adapter/embed"
	"github.com/teemate/platform/functions"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/sealed"
	"github.com/teemate/platform/invoker/whisk"
)

// DrainOptions configures the drain scenario (RunDrain).
type DrainOptions struct {
	RepoDir  string
	ShimPath string // the teemate model's shim (default RepoDir/bin/teemate-shim)
	// Sandbox, OCIRuntime, PoolSize, Slots and UnsafeOwnerAsRoot configure both invokers as in
	// DirectConfig.
	Sandbox           string
	OCIRuntime        string
	PoolSize          int
	Slots             int
	UnsafeOwnerAsRoot bool
	// Rate is the load's requests per second over all actions; Before and After the load's time
	// before and after the trigger; SwitchTail the switch window's tail (result.SwitchWindowEnd).
	Rate                      float64
	Before, After, SwitchTail time.Duration
	// RequestTimeout bounds each blocking invoke (an unanswered request is a failure).
	RequestTimeout time.Duration
	ActionMemoryMB int
	TimeoutMs      int
	// StateDir holds each phase's broker, controller and invoker state (removed by the caller).
	StateDir string
	Logger   *zap.Logger
	Progress func(string)
}

// DrainImage is the image of every action of the scenario: the enclave runtime serves nodejs:20
// only, so "per image" is this one.
const DrainImage = "nodejs:20"

// drainActions are the load's actions: two trivial ones, two of the bench functions and a sealed
// noop (its code sealed to the image key, its parameters sealed per request, its result opened by
// the bench), each named with a suffix that makes invoker0 its home. The sealed one gives the
// image's state a code cache to move: its opened code.
var drainActions = []string{result.NoopFunction, result.NoopFunction, "dynamic-html", "crypto-md5", SealedNoop}

// The two invokers of a phase: the source is drained or disabled, the destination takes over.
const (
	drainSource      = 0
	drainDestination = 1
	drainInvokers    = 2
)

// drainIdleTimeout is the destination's enclave idle timeout (daemon.Backends.EnclaveIdleTimeout):
// the owner the controller's health test action starts there when it joins is retired before the
// load, so the destination is cold at the trigger, as an invoker that has not served an image for
// a while is in a fleet. It is short to keep the run short, and long enough that the owner a drain
// prepares there gets its traffic before it would count as idle: the controller switches on the
// destination's next ping (every second) and the load's requests follow within milliseconds.
const drainIdleTimeout = 2 * time.Second

// RunDrain runs the scenario's two phases, each on a fresh in-process platform, and returns them
// analysed, with the scenario's settings.
func RunDrain(ctx context.Context, o DrainOptions) (drain, stop *result.DrainPhase, cfg *result.DrainConfig, err error) {
	if o.Rate <= 0 || o.Rate > 1000 || o.Before < time.Second || o.After < time.Second || o.SwitchTail < 0 {
		return nil, nil, nil, errors.New("drain: rate must be in (0, 1000] req/s, before and after at least 1 s, the switch tail not negative")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.ShimPath == "" {
		o.ShimPath = filepath.Join(o.RepoDir, "bin", "teemate-shim")
	}
	specs, names, err := drainSpecs(o)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg = &result.DrainConfig{RatePerSecond: o.Rate, BeforeS: o.Before.Seconds(), AfterS: o.After.Seconds(),
		SwitchTailS: o.SwitchTail.Seconds(), Actions: names, Image: DrainImage}
	if drain, err = runDrainPhase(ctx, o, result.PhaseDrain, specs); err != nil {
		return nil, nil, cfg, fmt.Errorf("drain phase: %w", err)
	}
	if stop, err = runDrainPhase(ctx, o, result.PhaseStopAndCopy, specs); err != nil {
		return drain, nil, cfg, fmt.Errorf("stop-and-copy phase: %w", err)
	}
	return drain, stop, cfg, nil
}

// drainAction is one deployed action of the load and its parameters.
type drainAction struct {
	spec   ActionSpec
	params json.RawMessage
}

// sealing is what a sealed action's requests need: the image's evidence (its key), and the
// action's namespace and qualified name the envelopes are bound to.
type sealing struct {
	ev    *attest.Evidence
	ns, q string
}

// drainSpecs names the actions so that invoker0 is the home of each.
func drainSpecs(o DrainOptions) ([]drainAction, []string, error) {
	var out []drainAction
	var names []string
	n := 0
	for _, fn := range drainActions {
		code, params := NoopCode, json.RawMessage(`{"n": 42}`)
		if fn != result.NoopFunction && fn != SealedNoop {
			f, err := functions.Get(fn)
			if err != nil {
				return nil, nil, err
			}
			if code = f.Code; f.NeedsNetwork {
				return nil, nil, fmt.Errorf("drain: %s needs the network, which the scenario does not give", fn)
			}
			if params, err = f.Input(functions.SizeTest); err != nil {
				return nil, nil, err
			}
		}
		for ; ; n++ {
			name := fmt.Sprintf("%s-%d", fn, n)
			if ActionHome(benchNamespace, name, drainInvokers) == drainSource {
				// The sealed noop's code is sealed once invoker0's owner has published the key.
				out = append(out, drainAction{spec: ActionSpec{Name: name, Code: code, Sealed: fn == SealedNoop, MemoryMB: o.ActionMemoryMB,
					TimeoutMs: o.TimeoutMs}, params: params})
				names = append(names, name)
				n++
				break
			}
		}
	}
	return out, names, nil
}

// ActionHome is the invoker the controller's scheduler tries first for action name of namespace
// (OpenWhisk's home invoker): the FNV-1a hash of the namespace and the action's path, modulo the
// invokers. It must agree with the controller's balancer.ActionHash (internal to the
// controller-adapter); the drain test checks that the actions start on invoker0.
func ActionHome(namespace, name string, invokers int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace + "\x00" + namespace + "/" + name)) // hash.Hash writes never fail
	return int(h.Sum32() % uint32(invokers))
}

// drainPlatform is one phase's platform: broker, controller and the two invokers, with the log
// entries the phase reads its events from.
type drainPlatform struct {
	emb      *kafka.Embedded
	ctl      *embed.Controller
	auth     string
	ctlLogs  *observer.ObservedLogs
	invs     [drainInvokers]*daemon.Running
	invLogs  [drainInvokers]*observer.ObservedLogs
	invAdmin [drainInvokers]string // the invokers' admin HTTP addresses
	invPass  string                // the invokers' admin password
	log      *zap.Logger
	o        DrainOptions
	dir      string
	// seal holds the sealed actions' sealing by name (set at deploy).
	seal map[string]sealing
}

func (p *drainPlatform) close() {
	for i := len(p.invs) - 1; i >= 0; i-- {
		if p.invs[i] != nil {
			if err := p.invs[i].Stop(); err != nil {
				p.log.Warn("stop the invoker", zap.Int("invoker", i), zap.Error(err))
			}
		}
	}
	if p.ctl != nil {
		if err := p.ctl.Close(); err != nil {
			p.log.Warn("close the controller", zap.Error(err))
		}
	}
	if p.emb != nil {
		p.emb.Close()
	}
}

// startDrainPlatform starts a fresh platform under dir: the broker, the controller and invoker0
// with the image prestarted (startInvoker adds invoker1).
func startDrainPlatform(ctx context.Context, o DrainOptions, dir string) (_ *drainPlatform, err error) {
	p := &drainPlatform{log: o.Logger, auth: benchUUID + ":" + rand.Text() + rand.Text(), invPass: rand.Text(), o: o, dir: dir,
		seal: map[string]sealing{}}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.emb, err = kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: filepath.Join(dir, "kafka"), Addr: "127.0.0.1:0", Logger: o.Logger}); err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	ctlLog, ctlLogs := p.tee("controller")
	p.ctlLogs = ctlLogs
	if p.ctl, err = embed.Start(ctx, embed.Config{DataDir: filepath.Join(dir, "controller"),
		Kafka: kafka.Config{Brokers: p.emb.Addrs(), Logger: o.Logger}, Logger: ctlLog}); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	uuid, key, _ := strings.Cut(p.auth, ":")
	if err := p.ctl.AddNamespace(ctx, benchNamespace, uuid, key); err != nil {
		return nil, fmt.Errorf("bench tenant: %w", err)
	}
	if err := p.startInvoker(ctx, drainSource); err != nil {
		return nil, err
	}
	return p, nil
}

// tee is the bench's logger for a component, with its entries observed.
func (p *drainPlatform) tee(name string) (*zap.Logger, *observer.ObservedLogs) {
	obs, logs := observer.New(zap.InfoLevel)
	return zap.New(zapcore.NewTee(p.o.Logger.Named(name).Core(), obs)), logs
}

// startInvoker starts invoker id and waits until it is up and keyed for the image: invoker0 with
// the image prestarted, invoker1 with none (nil would mean the default prestart).
func (p *drainPlatform) startInvoker(ctx context.Context, id int) error {
	o := p.o
	slots := o.Slots
	if slots <= 0 {
		slots = DefaultSlots(runtime.NumCPU())
	}
	log, logs := p.tee(fmt.Sprintf("invoker%d", id))
	p.invLogs[id] = logs
	var addr string
	cfg := daemon.Config{ID: id, Kafka: strings.Join(p.emb.Addrs(), ","), APIHost: p.ctl.APIHost(), Listen: "127.0.0.1:0",
		AdminPassword: p.invPass, StateDir: filepath.Join(p.dir, fmt.Sprintf("invoker%d", id)), StoreToken: p.ctl.InvokerToken(),
		UserMemoryMB: 66 * max(o.ActionMemoryMB, 128), Logger: log, Ready: func(i daemon.Info) { addr = i.HTTPAddr }}
	b := daemon.Backends{Sandbox: o.Sandbox, Enclave: "direct", Model: "teemate", RepoDir: o.RepoDir, ShimPath: o.ShimPath,
		SlotsPerOwner: slots, PoolSize: o.PoolSize, OCIRuntime: o.OCIRuntime, UnsafeOwnerAsRoot: o.UnsafeOwnerAsRoot}
	if id == drainDestination {
		// Not nil: nil means the default prestart (nodejs:20); empty means none.
		b.Prestart = []string{}
		b.EnclaveIdleTimeout = drainIdleTimeout
	}
	var err error
	if p.invs[id], err = daemon.Start(cfg, b); err != nil {
		return fmt.Errorf("invoker%d: %w", id, err)
	}
	p.invAdmin[id] = addr
	// One at a time, each up and keyed before the next starts, as an operator adds invokers:
	// the controller's health test action (nodejs:default) starts the image's owner on every
	// invoker that joins, and an owner that starts before the image's key is published makes
	// a key of its own, which a later drain to it cannot settle.
	if err := waitUntil(ctx, fmt.Sprintf("invoker%d up and keyed for %s", id, DrainImage), 2*time.Minute, func() (bool, error) {
		st, err := p.invokerStates(ctx)
		return st[id] == "up" && p.published(id), err
	}); err != nil {
		return err
	}
	return nil
}

// published says whether the controller took invoker id's evidence for the image: its owner is
// warm and holds the image's key.
func (p *drainPlatform) published(id int) bool {
	for _, e := range p.ctlLogs.FilterMessage("enclave evidence published").All() {
		f := e.ContextMap()
		if f["image"] == DrainImage && num(f["invoker"]) == int64(id) {
			return true
		}
	}
	return false
}

// owners is how many owners of the image invoker id runs, from its log: those ready less those
// retired or dropped.
func (p *drainPlatform) owners(id int) int {
	n := 0
	for msg, d := range map[string]int{"enclave owner ready": 1, "enclave owner retired": -1, "enclave owner dropped": -1} {
		for _, e := range p.invLogs[id].FilterMessage(msg).All() {
			if e.ContextMap()["image"] == DrainImage {
				n += d
			}
		}
	}
	return n
}

// admin calls the controller's operator routes (Basic auth, user admin).
func (p *drainPlatform) admin(ctx context.Context, method, path, body string) (int, []byte, error) {
	return basicCall(ctx, method, p.ctl.APIHost()+path, embedAdminUser, p.ctl.AdminPassword(), body)
}

// embedAdminUser is the controller's admin user (the controller-adapter's api.AdminUser).
const embedAdminUser = "admin"

func basicCall(ctx context.Context, method, url, user, password, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	req.SetBasicAuth(user, password)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read the answer: %w", method, url, err)
	}
	return resp.StatusCode, b, nil
}

// invokerStates is GET /invokers by instance: "up", "draining", "drained", "down", ...
func (p *drainPlatform) invokerStates(ctx context.Context) (map[int]string, error) {
	code, body, err := p.admin(ctx, http.MethodGet, "/invokers", "")
	if err != nil {
		return nil, err
	}
	var byName map[string]string
	if err := json.Unmarshal(body, &byName); code != http.StatusOK || err != nil {
		return nil, fmt.Errorf("GET /invokers: %d %s (%v)", code, body, err)
	}
	out := map[int]string{}
	for name, state := range byName {
		var id int
		if _, err := fmt.Sscanf(name, "invoker%d", &id); err == nil {
			out[id] = state
		}
	}
	return out, nil
}

// drainState is the drain status of invoker id (GET /invokers/{id}/drain): its state and the
// whole answer, which says what a drain waits for.
func (p *drainPlatform) drainState(ctx context.Context, id int) (string, string, error) {
	code, body, err := p.admin(ctx, http.MethodGet, fmt.Sprintf("/invokers/%d/drain", id), "")
	if err != nil {
		return "", "", err
	}
	var s struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(body, &s); code != http.StatusOK || err != nil {
		return "", "", fmt.Errorf("GET /invokers/%d/drain: %d %s (%v)", id, code, body, err)
	}
	return s.State, string(body), nil
}

// waitUntil polls cond every 20 ms until it holds, fails, or d or ctx ends.
func waitUntil(ctx context.Context, what string, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok && err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v (last error: %v)", what, d, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runDrainPhase starts a platform, deploys the actions, runs the load and takes invoker0 out of
// service at the trigger, by drain or by /disable.
func runDrainPhase(ctx context.Context, o DrainOptions, phase string, actions []drainAction) (*result.DrainPhase, error) {
	dir := filepath.Join(o.StateDir, phase)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	o.Progress(fmt.Sprintf("drain scenario, %s: starting the broker, the controller and two invokers", phase))
	p, err := startDrainPlatform(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if err := p.deploy(ctx, actions); err != nil {
		return nil, err
	}
	// One answer of each action on invoker0 before the load: the first of each pays its code's
	// fetch and first compilation (and the sealed one's opening), which is not what the scenario
	// measures. Then invoker1 joins: its owner, started by the health test action, takes the
	// image's state (the key and the opened sealed code) from invoker0's.
	for _, a := range actions {
		if _, err := invokeOnce(ctx, p, a, o.RequestTimeout); err != nil {
			return nil, fmt.Errorf("warm-up of %s: %w", a.spec.Name, err)
		}
	}
	if err := p.startInvoker(ctx, drainDestination); err != nil {
		return nil, err
	}
	// The destination's owner (the health test action's) retires after drainIdleTimeout: from
	// then on invoker1 has no enclave of the image, and the first activation there pays an owner
	// start and the image state's transfer, in the drain before the switch (its prepare), in
	// stop-and-copy on the first request routed there.
	o.Progress(fmt.Sprintf("drain scenario, %s: waiting for invoker%d's idle owner of %s to retire", phase, drainDestination, DrainImage))
	if err := waitUntil(ctx, fmt.Sprintf("invoker%d without an owner of %s", drainDestination, DrainImage), 2*time.Minute, func() (bool, error) {
		return p.owners(drainDestination) == 0, nil
	}); err != nil {
		return nil, err
	}

	out := &result.DrainPhase{}
	switch phase {
	case result.PhaseDrain:
		out.Trigger = fmt.Sprintf(`POST /invokers/%d/drain {"to": %d}`, drainSource, drainDestination)
	default:
		out.Trigger = fmt.Sprintf("POST invoker%d /disable", drainSource)
	}
	o.Progress(fmt.Sprintf("drain scenario, %s: %.0f req/s for %v, then %s, then %v", phase, o.Rate, o.Before, out.Trigger, o.After))

	t0 := time.Now()
	ms := func(t time.Time) float64 { return float64(t.Sub(t0).Microseconds()) / 1000 }
	total := o.Before + o.After
	n := int(total.Seconds() * o.Rate)
	var mu sync.Mutex
	var reqs []result.DrainRequest
	var load sync.WaitGroup
	trigger := make(chan error, 1)
	go func() { trigger <- drainTrigger(ctx, p, phase, t0.Add(o.Before), out, ms) }()
	for i := range n {
		due := t0.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
		select {
		case <-ctx.Done():
			load.Wait()
			<-trigger //nolint:errcheck // it ends with ctx too; ctx's error says why
			return nil, ctx.Err()
		case <-time.After(time.Until(due)):
		}
		a := actions[i%len(actions)]
		load.Go(func() {
			r := result.DrainRequest{Action: a.spec.Name, Image: DrainImage, StartMs: ms(due)}
			act, err := invokeOnce(ctx, p, a, o.RequestTimeout)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.OK = true
			}
			if act != nil {
				r.Phases = Timings(act)
				if w := annotationMs(act, whisk.AnnotationWaitTime); w != nil {
					if r.Phases == nil {
						r.Phases = map[string]float64{}
					}
					r.Phases["wait"] = *w
				}
			}
			r.EndMs = ms(time.Now())
			mu.Lock()
			reqs = append(reqs, r)
			mu.Unlock()
		})
	}
	out.EndMs = ms(t0.Add(total))
	load.Wait()
	if err := <-trigger; err != nil {
		return nil, err
	}
	o.Progress(fmt.Sprintf("drain scenario, %s: %d requests answered", phase, len(reqs)))

	out.Requests = reqs
	for _, e := range p.invLogs[drainDestination].FilterMessage("enclave owner ready").All() {
		if e.ContextMap()["image"] == DrainImage {
			out.DestinationOwnerStartsMs = append(out.DestinationOwnerStartsMs, ms(e.Time))
		}
	}
	if phase == result.PhaseDrain {
		out.SwitchMs = -1
		for _, e := range p.ctlLogs.FilterMessageSnippet("image moved").All() {
			if e.ContextMap()["image"] == DrainImage {
				out.SwitchMs = ms(e.Time)
				break
			}
		}
		if out.SwitchMs < 0 {
			return nil, errors.New(`the controller logged no "image moved" for ` + DrainImage)
		}
		out.Transfer = stateTransfer(p.invLogs[drainDestination], ms, out.TriggerMs)
	}
	out.Analyze(float64(o.SwitchTail.Milliseconds()))
	return out, nil
}

// deploy creates the actions through the REST API, the sealed ones with their code sealed to the
// image's key (invoker0's published evidence).
func (p *drainPlatform) deploy(ctx context.Context, actions []drainAction) error {
	c, err := client.New(client.Config{APIHost: p.ctl.APIHost(), Auth: p.auth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		return err
	}
	specs := make([]ActionSpec, len(actions))
	for i, a := range actions {
		specs[i] = a.spec
		if !a.spec.Sealed {
			continue
		}
		ev, _, err := c.AttestKind(ctx, DrainImage)
		if err != nil {
			return fmt.Errorf("attest %s: %w", DrainImage, err)
		}
		ns, q, err := c.QualifiedName(ctx, a.spec.Name)
		if err != nil {
			return err
		}
		if specs[i].Code, err = sealed.SealCode(ev, ns, q, []byte(NoopCode)); err != nil {
			return fmt.Errorf("seal %s: %w", a.spec.Name, err)
		}
		p.seal[a.spec.Name] = sealing{ev: ev, ns: ns, q: q}
	}
	rest, err := NewAPI(p.ctl.APIHost(), p.auth)
	if err != nil {
		return err
	}
	if err := rest.Deploy(ctx, specs); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	return nil
}

// drainTrigger waits until at, takes the source out of service and records when; it returns once
// the source is drained (the drain status) or no longer up (stop-and-copy).
func drainTrigger(ctx context.Context, p *drainPlatform, phase string, at time.Time, out *result.DrainPhase, ms func(time.Time) float64) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(at)):
	}
	start := time.Now()
	out.TriggerMs = ms(start)
	if phase == result.PhaseDrain {
		code, body, err := p.admin(ctx, http.MethodPost, fmt.Sprintf("/invokers/%d/drain", drainSource), fmt.Sprintf(`{"to": %d}`, drainDestination))
		if err != nil {
			return err
		}
		if code != http.StatusAccepted {
			return fmt.Errorf("drain invoker%d: %d %s", drainSource, code, body)
		}
		var status string
		if err := waitUntil(ctx, fmt.Sprintf("invoker%d drained", drainSource), 2*time.Minute, func() (bool, error) {
			s, body, err := p.drainState(ctx, drainSource)
			status = body
			return s == "drained", err
		}); err != nil {
			return fmt.Errorf("%w; the drain status: %s", err, status)
		}
	} else {
		// OpenWhisk's way: the operator disables the invoker on its host; its feed stops and its
		// ping tells the controller, which stops routing to it.
		code, body, err := basicCall(ctx, http.MethodPost, "http://"+p.invAdmin[drainSource]+"/disable", "admin", p.invPass, "")
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("disable invoker%d: %d %s", drainSource, code, body)
		}
		out.SwitchMs = out.TriggerMs
		if err := waitUntil(ctx, fmt.Sprintf("invoker%d out of service", drainSource), 2*time.Minute, func() (bool, error) {
			st, err := p.invokerStates(ctx)
			return err == nil && st[drainSource] != "up", err
		}); err != nil {
			return err
		}
	}
	out.DrainedMs = float64(time.Since(start).Microseconds()) / 1000
	return nil
}

// invokeOnce runs one blocking activation through the controller; an activation that is not a
// success is an error. A sealed action's parameters are sealed to the image key as the client
// attested it once (a drain must not make it attest again), and its result is opened and
// checked. The activation is returned whenever there was one, with or without an error about it.
func invokeOnce(ctx context.Context, p *drainPlatform, a drainAction, timeout time.Duration) (*whisk.WhiskActivation, error) {
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	params := a.params
	var reply *sealed.ReplyKey
	if a.spec.Sealed {
		s := p.seal[a.spec.Name]
		var err error
		if params, reply, err = sealed.SealParams(s.ev, s.ns, s.q, a.params); err != nil {
			return nil, fmt.Errorf("seal the parameters: %w", err)
		}
	}
	act, err := p.ctl.Invoke(ictx, p.auth, a.spec.Name, params)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		return nil, err
	}
	if !act.Response.IsSuccess() {
		return act, fmt.Errorf("activation %s: status %d: %.200s", act.ActivationID, act.Response.StatusCode, act.Response.Result)
	}
	if reply != nil {
		o, err := sealed.OpenResult(reply, act.ActivationID, act.Response.Result)
		if err != nil {
			return act, fmt.Errorf("activation %s: open the sealed result: %w", act.ActivationID, err)
		}
		if err := checkNoop(o.Result); err != nil {
			return act, fmt.Errorf("activation %s: %w", act.ActivationID, err)
		}
	}
	return act, nil
}

// stateTransfer reads the destination's "image state transferred" entry for the image from the
// trigger on (the first: the drain's prepare starting its owner), nil when there is none. The
// transfer into the owner the health test action started when the destination joined is not the
// drain's.
func stateTransfer(logs *observer.ObservedLogs, ms func(time.Time) float64, triggerMs float64) *result.DrainTransfer {
	for _, e := range logs.FilterMessage("image state transferred").All() {
		f := e.ContextMap()
		if f["image"] != DrainImage || ms(e.Time) < triggerMs {
			continue
		}
		t := &result.DrainTransfer{Image: DrainImage, AtMs: ms(e.Time), Bytes: num(f["bytes"]), Chunks: int(num(f["chunks"])), Resumes: int(num(f["resumes"])),
			SenderPeakBytes: num(f["senderPeakBytes"]), ReceiverPeakBytes: num(f["receiverPeakBytes"]), SenderRSSBytes: num(f["senderRSS"])}
		if d, ok := f["took"].(time.Duration); ok {
			t.TookMs = float64(d.Microseconds()) / 1000
		}
		t.PeakExtra()
		return t
	}
	return nil
}

// num reads an integer log field (zap keeps zap.Int and zap.Int64 as int64).
func num(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}
