package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// Sequences and conductor actions (compositions) run in the controller, as OpenWhisk's do: no
// invoker ever sees a sequence. Each component is an ordinary activation, published and awaited
// through the same balancer path as any invoke, blocking, with the enclosing activation's id as
// its cause (the invoker then annotates its record causedBy "sequence"). The controller builds
// the enclosing activation's record from the components' and is its only writer: its id never
// goes to an invoker, so "one writer per record" holds (see ARCHITECTURE.md).

// SequenceLimit is OpenWhisk's actionSequenceLimit (whisk.action.sequence.max-length, default
// 50): the most atomic actions a sequence may hold once nested sequences are inlined, and the
// most components a composition may run (its conductor at most 2n+1 times).
const SequenceLimit = 50

// OpenWhisk's texts for sequences and compositions (Messages in ErrorResponse.scala).
const (
	msgSequenceTooLong           = "Too many actions in the sequence."
	msgSequenceNoComponent       = "No component specified for the sequence."
	msgSequenceCyclic            = "Sequence may not refer to itself."
	msgSequenceComponentNotFound = "Sequence component does not exist."
	msgSequenceFailed            = "Sequence failed."
	msgCompositionTooLong        = "Too many actions in the composition."
	msgCompositionFailed         = "Activation failure during composition."
	msgMalformedQualifiedName    = "The fully qualified name of the entity must contain at least the namespace and the name of the entity."
	// paramActions is the parameter a sequence carries instead of its own: its components, as
	// OpenWhisk writes it.
	paramActions = "_actions"
	annConductor = whisk.AnnotationConductor
)

func msgSequenceComponentTimeout(id string) string {
	return fmt.Sprintf("Timeout reached when retrieving activation %s for sequence component.", id)
}

func msgCompositionTimeout(id string) string {
	return fmt.Sprintf("Timeout reached when retrieving activation %s during composition.", id)
}

// componentWaitExtra is what a component's wait adds to its time limit (OpenWhisk: timeout + 1
// minute). A variable for the tests of an expired wait.
var componentWaitExtra = time.Minute

// component is a sequence or composition component's fully qualified name: ns/name or
// ns/pkg/name.
type component struct{ ns, pkg, name string }

// String is the name without a leading slash, as OpenWhisk's entitlement texts print it.
func (c component) String() string {
	if c.pkg == "" {
		return c.ns + "/" + c.name
	}
	return c.ns + "/" + c.pkg + "/" + c.name
}

// parseComponent reads a sequence component, "/ns/name" or "/ns/pkg/name" (the leading slash is
// optional), "_" standing for the caller's namespace userNS.
func parseComponent(s, userNS string) (component, error) {
	parts := strings.Split(strings.TrimPrefix(strings.TrimSpace(s), "/"), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return component{}, badRequest("The request content was malformed: " + msgMalformedQualifiedName)
	}
	for _, p := range parts {
		if !whisk.ValidEntityName(p) {
			return component{}, badRequest(msgNameIllegal)
		}
	}
	c := component{ns: parts[0], name: parts[len(parts)-1]}
	if len(parts) == 3 {
		c.pkg = parts[1]
	}
	if c.ns == "_" {
		c.ns = userNS
	}
	return c, nil
}

// resolveNextName is OpenWhisk's FullyQualifiedEntityName.resolveName, how a conductor names the
// next action: "name" and "pkg/name" are in the caller's namespace, "/ns/name", "/ns/pkg/name"
// and "ns/pkg/name" are fully qualified. ok is false for anything else.
func resolveNextName(v json.RawMessage, userNS string) (component, bool) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return component{}, false
	}
	lead := strings.HasPrefix(s, "/")
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	for _, p := range parts {
		if !whisk.ValidEntityName(p) {
			return component{}, false
		}
	}
	n := len(parts)
	switch {
	case n < 1 || n > 3 || lead && n == 1:
		return component{}, false
	case !lead && n < 3:
		parts = append([]string{userNS}, parts...)
	}
	c := component{ns: parts[0], name: parts[len(parts)-1]}
	if len(parts) == 3 {
		c.pkg = parts[1]
	}
	if c.ns == "_" {
		c.ns = userNS
	}
	return c, true
}

// isComposed reports whether the controller runs a itself: a sequence, or a conductor action
// (the annotation has no effect on a sequence).
func isComposed(a *whisk.Action) bool {
	return a.Exec.Kind == whisk.KindSequence || a.Annotations.IsTruthy(annConductor, false)
}

// sequenceExec checks a sequence exec of a PUT: components given as names; they are resolved,
// entitled and checked against the limits by checkSequencePut, which has the store.
func sequenceExec(e *execRequest) (whisk.Exec, error) {
	if e.Components == nil {
		return whisk.Exec{}, badRequest("The request content was malformed: 'components' must be defined for sequence kind.")
	}
	for _, s := range e.Components {
		if _, err := parseComponent(s, "_"); err != nil {
			return whisk.Exec{}, err
		}
	}
	return whisk.Exec{Kind: whisk.KindSequence, Components: append([]string{}, e.Components...)}, nil
}

// checkSequencePut completes the document of an action PUT that is or was a sequence, the way
// OpenWhisk's does, answering 400/403/500 itself (false). A sequence's components are resolved
// ("_" is the caller's namespace callerNS), must be readable by the caller (403, OpenWhisk's
// entitlement on the referenced entities), exist, hold at most SequenceLimit atomic actions once
// nested sequences are inlined, and never reach the sequence itself; its parameters are
// "_actions", the components (parameters given with it are dropped). An update that keeps the
// sequence keeps its parameters; one that makes a sequence an action drops them unless given.
func (h *handler) checkSequencePut(c *gin.Context, callerNS string, doc, old *whisk.Action, req *putRequest) bool {
	wasSeq := old != nil && old.Exec.Kind == whisk.KindSequence
	if doc.Exec.Kind != whisk.KindSequence {
		if wasSeq && req.Parameters == nil {
			doc.Parameters = whisk.Parameters{}
		}
		return true
	}
	if req.Exec == nil {
		// The stored sequence unchanged: its components were checked when written.
		doc.Parameters = old.Parameters
		return true
	}
	comps := make([]component, len(doc.Exec.Components))
	for i, s := range doc.Exec.Components {
		comp, err := parseComponent(s, callerNS)
		if err != nil {
			h.fail(c, http.StatusBadRequest, err.Error())
			return false
		}
		comps[i] = comp
		doc.Exec.Components[i] = "/" + comp.String()
	}
	ctx := c.Request.Context()
	denied, err := h.deniedComponents(ctx, callerNS, comps)
	switch {
	case err != nil:
		h.internalError(c, "sequence entitlement", err)
		return false
	case len(denied) > 0:
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(strings.Join(denied, ", ")))
		return false
	}
	self := component{ns: doc.Namespace, name: doc.Name}
	if ns, pkg, ok := strings.Cut(doc.Namespace, "/"); ok {
		self = component{ns: ns, pkg: pkg, name: doc.Name}
	}
	err = h.checkSequenceLimits(ctx, self, comps)
	var br badRequest
	switch {
	case errors.As(err, &br):
		h.fail(c, http.StatusBadRequest, err.Error())
		return false
	case err != nil:
		h.internalError(c, "check sequence", err)
		return false
	}
	names, err := marshal(doc.Exec.Components)
	if err != nil {
		h.internalError(c, "sequence parameters", err)
		return false
	}
	doc.Parameters = whisk.Parameters{{Key: paramActions, Value: names}}
	return true
}

// deniedComponents are the components callerNS may not read or activate (sorted): another
// namespace's default package is its own; a package's actions follow the package's entitlement.
// A package missing from the caller's own namespace is not denied: the component then does not
// exist, which the caller hears about as such.
func (h *handler) deniedComponents(ctx context.Context, callerNS string, comps []component) ([]string, error) {
	seen := map[string]bool{}
	var denied []string
	for _, comp := range comps {
		if seen[comp.String()] {
			continue
		}
		seen[comp.String()] = true
		ok, err := h.componentAllowed(ctx, callerNS, comp)
		if err != nil {
			return nil, err
		}
		if !ok {
			denied = append(denied, comp.String())
		}
	}
	sort.Strings(denied)
	return denied, nil
}

func (h *handler) componentAllowed(ctx context.Context, callerNS string, comp component) (bool, error) {
	if comp.pkg == "" {
		return comp.ns == callerNS, nil
	}
	acc, err := h.packageReadable(ctx, callerNS, comp.ns, comp.pkg)
	if err != nil {
		return false, err
	}
	return acc != accessDenied, nil
}

// resolvedName is where comp's action document lives once a binding is followed: "ns/name" or
// "ns/pkg/name" of the package that holds it (OpenWhisk's WhiskAction.resolveAction).
func (h *handler) resolvedName(ctx context.Context, comp component) (component, error) {
	if comp.pkg == "" {
		return comp, nil
	}
	p, _, _, err := h.resolvePackage(ctx, comp.ns, comp.pkg)
	if err != nil {
		return component{}, err
	}
	return component{ns: p.Namespace, pkg: p.Name, name: comp.name}, nil
}

// checkSequenceLimits is OpenWhisk's checkSequenceActionLimits: at least one and at most
// SequenceLimit components, every one existing, no path back to self, and at most SequenceLimit
// atomic actions with nested sequences inlined. Each nested sequence is counted once (memo), and
// a cycle among other sequences (only concurrent writes could make one) is refused too, so the
// walk always ends.
func (h *handler) checkSequenceLimits(ctx context.Context, self component, comps []component) error {
	switch {
	case len(comps) == 0:
		return badRequest(msgSequenceNoComponent)
	case len(comps) > SequenceLimit:
		return badRequest(msgSequenceTooLong)
	}
	self, err := h.resolvedName(ctx, self)
	if err != nil {
		return fmt.Errorf("resolve the sequence's own name: %w", err)
	}
	w := &sequenceWalk{h: h, self: self, counts: map[component]int{}, onPath: map[component]bool{}}
	n, err := w.count(ctx, comps)
	if err != nil {
		return err
	}
	if n > SequenceLimit {
		return badRequest(msgSequenceTooLong)
	}
	return nil
}

type sequenceWalk struct {
	h      *handler
	self   component
	counts map[component]int  // atomic actions of a nested sequence, by resolved name
	onPath map[component]bool // the nested sequences being counted
}

func (w *sequenceWalk) count(ctx context.Context, comps []component) (int, error) {
	if len(comps) > SequenceLimit {
		return 0, badRequest(msgSequenceTooLong)
	}
	total := 0
	for _, comp := range comps {
		r, err := w.h.resolvedName(ctx, comp)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return 0, badRequest(msgSequenceComponentNotFound)
		case err != nil:
			return 0, err
		case r == w.self || w.onPath[r]:
			return 0, badRequest(msgSequenceCyclic)
		}
		if n, ok := w.counts[r]; ok {
			total += n
			continue
		}
		a, err := w.h.store.GetAction(ctx, r.ns, strings.TrimPrefix(r.pkg+"/"+r.name, "/"))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return 0, badRequest(msgSequenceComponentNotFound)
		case err != nil:
			return 0, err
		}
		n := 1
		if a.Exec.Kind == whisk.KindSequence {
			inner := make([]component, 0, len(a.Exec.Components))
			for _, s := range a.Exec.Components {
				c, err := parseComponent(s, r.ns)
				if err != nil {
					return 0, fmt.Errorf("stored sequence %s: component %q: %w", r, s, err)
				}
				inner = append(inner, c)
			}
			w.onPath[r] = true
			n, err = w.count(ctx, inner)
			delete(w.onPath, r)
			if err != nil {
				return 0, err
			}
		}
		w.counts[r] = n
		total += n
		if total > SequenceLimit {
			return 0, badRequest(msgSequenceTooLong)
		}
	}
	return total, nil
}

// invokeComposed answers POST .../actions/{name} for an action the controller runs (isComposed):
// the enclosing activation's id at once (non-blocking, or when the wait expires), or its record
// as an ordinary blocking invoke answers.
func (h *handler) invokeComposed(c *gin.Context, a *whisk.Action, binding string, payload map[string]json.RawMessage,
	blocking, resultOnly bool, wait time.Duration) {
	act, id, ready, ok := h.runComposed(c, a, binding, identityOf(c), payload, blocking, wait)
	if !ok {
		return
	}
	if !blocking || !ready {
		writeJSON(c, http.StatusAccepted, map[string]string{"activationId": id})
		return
	}
	status, reply, err := invokeReply(act, resultOnly)
	if err != nil {
		h.internalError(c, "invoke reply", err)
		return
	}
	c.Data(status, "application/json", reply)
}

// runComposed starts a sequence or composition as user with payload and, when blocking, waits up
// to wait for its record. It answers 403 itself (ok false) when the user may not activate a
// sequence's components, and sets the activation id header. The run goes on after the wait, and
// after the caller leaves: the controller finishes it and stores its record.
func (h *handler) runComposed(c *gin.Context, a *whisk.Action, binding string, user whisk.Identity,
	payload map[string]json.RawMessage, blocking bool, wait time.Duration) (act *whisk.WhiskActivation, id string, ready, ok bool) {
	ctx := c.Request.Context()
	if a.Exec.Kind == whisk.KindSequence {
		comps := make([]component, 0, len(a.Exec.Components))
		for _, s := range a.Exec.Components {
			comp, err := parseComponent(s, user.Namespace.Name)
			if err != nil {
				h.internalError(c, "stored sequence", fmt.Errorf("component %q: %w", s, err))
				return nil, "", false, false
			}
			comps = append(comps, comp)
		}
		denied, err := h.deniedComponents(ctx, user.Namespace.Name, comps)
		switch {
		case err != nil:
			h.internalError(c, "sequence entitlement", err)
			return nil, "", false, false
		case len(denied) > 0:
			h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(strings.Join(denied, ", ")))
			return nil, "", false, false
		}
	}
	var input json.RawMessage
	if payload != nil {
		b, err := marshal(payload)
		if err != nil {
			h.internalError(c, "encode payload", err)
			return nil, "", false, false
		}
		input = b
	}
	r := &composer{h: h, user: user, tid: tid(c)}
	id = whisk.ActivationIDNew()
	done := make(chan *whisk.WhiskActivation, 1)
	// The run belongs to the controller, not to the request: it outlives both.
	bg := context.WithoutCancel(ctx)
	go func() { done <- r.top(bg, a, binding, id, input) }()
	c.Header(HeaderActivationID, id)
	h.log.Debug("composed activation started", zap.String("transid", r.tid.ID), zap.String("activation_id", id),
		zap.String("action", a.Namespace+"/"+a.Name), zap.Bool("blocking", blocking))
	if !blocking {
		return nil, id, false, true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case act = <-done:
		return act, id, true, true
	case <-timer.C:
		return nil, id, false, true
	case <-ctx.Done():
		// The caller went away; the run goes on and is recorded.
		c.Abort()
		return nil, id, false, false
	}
}

// composer runs one top-level sequence or composition for user.
type composer struct {
	h    *handler
	user whisk.Identity
	tid  whisk.TransactionID // the request's: waitTime counts from its start
}

// top runs a (a sequence or a conductor action) as the topmost activation id.
func (r *composer) top(ctx context.Context, a *whisk.Action, binding, id string, input json.RawMessage) *whisk.WhiskActivation {
	if a.Exec.Kind == whisk.KindSequence {
		act, _ := r.sequence(ctx, a, binding, id, input, "", 0)
		return act
	}
	return r.composition(ctx, a, binding, id, input, "", &compositionCount{})
}

// outcome is a finished component: its record (logs left out), and the id it ran under (all
// that is known when its record did not come within the wait).
type outcome struct {
	act *whisk.WhiskActivation
	id  string
}

// primitive runs one action through the invoker path, blocking, caused by cause, and waits up to
// its time limit plus a minute. Without a record in time, outcome.act is nil and outcome.id is
// the activation's; a publish failure gives the error.
func (r *composer) primitive(ctx context.Context, a *whisk.Action, binding string, input json.RawMessage, cause string) (outcome, error) {
	var payload map[string]json.RawMessage
	var array json.RawMessage
	switch t := bytes.TrimSpace(input); {
	case len(t) > 0 && t[0] == '{':
		if err := json.Unmarshal(t, &payload); err != nil {
			return outcome{}, fmt.Errorf("component input: %w", err)
		}
	case len(t) > 0 && t[0] == '[':
		array = t
	}
	msg, err := buildMessage(r.h.ctrl, whisk.NewTransactionID(r.tid.ID, time.Now()), a, r.user, payload, true)
	if err != nil {
		return outcome{}, err
	}
	if array != nil {
		// An array result is passed on as it is, without the action's parameters (OpenWhisk's rule).
		msg.Content = array
	}
	msg.Cause = cause
	msg.Action.Binding = binding
	ch, err := r.h.inv.Publish(ctx, a, msg)
	if err != nil {
		return outcome{}, fmt.Errorf("publish %s: %w", msg.Action, err)
	}
	wait := time.Duration(a.Limits.Timeout)*time.Millisecond + componentWaitExtra
	act, err := await(ctx, ch, wait)
	if err != nil {
		return outcome{}, fmt.Errorf("await %s: %w", msg.ActivationID, err)
	}
	return outcome{act: act, id: msg.ActivationID}, nil
}

// resolve reads comp's action with the parameters it runs with and the binding it is reached
// through.
func (r *composer) resolve(ctx context.Context, comp component) (*whisk.Action, string, error) {
	return r.h.resolveAction(ctx, comp.ns, comp.pkg, comp.name)
}

// sequenceTally is what a sequence has run so far (OpenWhisk's SequenceAccounting).
type sequenceTally struct {
	atomic    int // atomic actions since the topmost sequence began
	last      whisk.ActivationResponse
	logs      []string
	duration  int64
	maxMemory int // 0: no component reported its memory
}

// add counts a finished component's record into the tally.
func (t *sequenceTally) add(act *whisk.WhiskActivation) {
	t.logs = append(t.logs, act.ActivationID)
	t.last = act.Response
	if act.Duration != nil {
		t.duration += *act.Duration
	} else {
		t.duration += act.End.Sub(act.Start).Milliseconds()
	}
	if m := memoryOf(act); m > t.maxMemory {
		t.maxMemory = m
	}
}

// memoryOf is the memory in a record's limits annotation, 0 when it has none.
func memoryOf(act *whisk.WhiskActivation) int {
	v, ok := act.Annotations.Get(whisk.AnnotationLimits)
	if !ok {
		return 0
	}
	var l struct {
		Memory int `json:"memory"`
	}
	if err := json.Unmarshal(v, &l); err != nil {
		return 0
	}
	return l.Memory
}

// hasErrorField reports whether a result is an object with an "error" field: what ends a
// sequence early.
func hasErrorField(result json.RawMessage) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(result, &m); err != nil {
		return false
	}
	_, ok := m["error"]
	return ok
}

// passOn is what a component's result gives the next component: an object or an array; anything
// else gives nothing (the next one gets its own parameters only).
func passOn(result json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(result)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return t
	}
	return nil
}

// sequence runs sequence seq as activation id (OpenWhisk's invokeSequence): each component in
// turn, blocking, the result of one the input of the next, atomic the count of atomic actions
// run since the topmost sequence began. A result with an "error" field ends it with that
// component's response, as does a failure to run one. It stores the sequence's record and returns
// it with the new count.
func (r *composer) sequence(ctx context.Context, seq *whisk.Action, binding, id string, input json.RawMessage, cause string,
	atomic int) (*whisk.WhiskActivation, int) {
	start := time.Now()
	t := &sequenceTally{atomic: atomic, last: whisk.Success(input)}
	next := input
	for _, s := range seq.Exec.Components {
		if t.atomic >= SequenceLimit {
			t.last = whisk.ApplicationError(msgSequenceTooLong)
			break
		}
		stop := r.sequenceStep(ctx, s, id, next, t)
		if stop {
			break
		}
		next = passOn(t.last.Result)
	}
	act := r.record(seq, binding, id, cause, start, t.last, t.logs, t.duration, t.maxMemory, false)
	r.store(ctx, act)
	return act, t.atomic
}

// sequenceStep runs one component of sequence id into the tally; stop ends the sequence.
func (r *composer) sequenceStep(ctx context.Context, name, id string, input json.RawMessage, t *sequenceTally) (stop bool) {
	comp, err := parseComponent(name, r.user.Namespace.Name)
	if err != nil {
		t.last = whisk.ApplicationError(msgSequenceComponentNotFound)
		return true
	}
	a, binding, err := r.resolve(ctx, comp)
	switch {
	case errors.Is(err, store.ErrNotFound):
		t.last = whisk.ApplicationError(msgSequenceComponentNotFound)
		return true
	case err != nil:
		r.h.log.Error("sequence component", zap.String("activation_id", id), zap.String("component", name), zap.Error(err))
		t.last = whisk.WhiskError(msgSequenceFailed)
		return true
	}
	var out outcome
	switch {
	case a.Exec.Kind == whisk.KindSequence:
		var act *whisk.WhiskActivation
		act, t.atomic = r.sequence(ctx, a, binding, whisk.ActivationIDNew(), input, id, t.atomic)
		out.act = act
	case a.Annotations.IsTruthy(annConductor, false):
		t.atomic++
		out.act = r.composition(ctx, a, binding, whisk.ActivationIDNew(), input, id, &compositionCount{})
	default:
		t.atomic++
		out, err = r.primitive(ctx, a, binding, input, id)
	}
	switch {
	case err != nil:
		r.h.log.Warn("sequence component failed", zap.String("activation_id", id), zap.String("component", name), zap.Error(err))
		t.last = whisk.WhiskError(msgSequenceFailed)
		return true
	case out.act == nil:
		t.logs = append(t.logs, out.id)
		t.last = whisk.WhiskError(msgSequenceComponentTimeout(out.id))
		return true
	}
	t.add(out.act)
	if t.atomic > SequenceLimit {
		t.last = whisk.ApplicationError(msgSequenceTooLong)
		return true
	}
	return hasErrorField(out.act.Response.Result)
}

// record builds the record of a sequence or composition a (OpenWhisk's makeSequenceActivation and
// completeActivation): annotations topmost, path, kind "sequence", conductor for a composition,
// causedBy when nested, waitTime, binding, and limits with the largest memory of its components.
func (r *composer) record(a *whisk.Action, binding, id, cause string, start time.Time, resp whisk.ActivationResponse,
	logs []string, duration int64, maxMemory int, conductor bool) *whisk.WhiskActivation {
	if logs == nil {
		logs = []string{}
	}
	version := a.Version
	if version == "" {
		version = whisk.DefaultVersion
	}
	d := duration
	act := &whisk.WhiskActivation{
		Namespace: r.user.Namespace.Name, Name: a.Name, Subject: r.user.Subject, ActivationID: id,
		Start: start, End: time.Now(), Cause: cause, Response: resp, Logs: logs, Version: version,
		Annotations: whisk.Parameters{}, Duration: &d,
	}
	set := func(k string, v any) {
		if err := act.Annotations.Set(k, v); err != nil {
			// Only strings, numbers, booleans and maps of them: a failure is a bug.
			r.h.log.Error("composed record: annotation not set", zap.String("annotation", k), zap.Error(err))
		}
	}
	set(whisk.AnnotationTopmost, cause == "")
	set(whisk.AnnotationPath, a.Namespace+"/"+a.Name)
	set(whisk.AnnotationKind, whisk.KindSequence)
	if conductor {
		set(whisk.AnnotationConductor, true)
	}
	if cause != "" {
		set(whisk.AnnotationCausedBy, whisk.KindSequence)
	}
	set(whisk.AnnotationWaitTime, max(start.Sub(r.tid.Start).Milliseconds(), 0))
	if binding != "" {
		set(whisk.AnnotationBinding, binding)
	}
	if maxMemory > 0 {
		set(whisk.AnnotationLimits, map[string]int{"timeout": a.Limits.Timeout, "memory": maxMemory,
			"logs": a.Limits.Logs, "concurrency": a.Limits.Concurrency})
	}
	return act
}

// store writes a sequence's or composition's record: the controller is its only writer.
func (r *composer) store(ctx context.Context, act *whisk.WhiskActivation) {
	r.h.log.Info("composed activation finished", zap.String("transid", r.tid.ID), zap.String("activation_id", act.ActivationID),
		zap.String("action", act.Name), zap.String("status", whisk.StatusMessage(act.Response.StatusCode)),
		zap.Int("components", len(act.Logs)))
	if err := r.h.store.PutActivation(ctx, act); err != nil {
		r.h.log.Error("store composed activation record", zap.String("activation_id", act.ActivationID), zap.Error(err))
	}
}
