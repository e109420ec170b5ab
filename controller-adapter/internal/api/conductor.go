package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// A conductor action (annotation conductor truthy, not a sequence) drives a composition, OpenWhisk's
// dynamically computed sequence: the conductor runs on the input; a result {action, params,
// state} names the next component, which runs on params; the component's result, with state's
// fields on top, goes back to the conductor; a result without "action" ends the composition, its
// "params" (or the whole result) being the composition's result. The trace is
// conductor (component conductor)*, each a normal activation caused by the composition's.

// Fields of a conductor's result (WhiskActivation.actionField, paramsField, stateField, valueField).
const (
	fieldAction = "action"
	fieldParams = "params"
	fieldState  = "state"
	fieldValue  = "value"
)

func msgCompositionComponentInvalid(v json.RawMessage) string {
	return fmt.Sprintf("Failed to parse action name from json value %s during composition.", bytes.TrimSpace(v))
}

func msgCompositionComponentNotFound(name string) string {
	return fmt.Sprintf("Failed to resolve action with name '%s' during composition.", name)
}

func msgCompositionComponentNotAccessible(name string) string {
	return fmt.Sprintf("Failed entitlement check for action with name '%s' during composition.", name)
}

// compositionCount bounds a composition and the compositions nested in it, which share it
// (OpenWhisk's CompositionAccounting): at most SequenceLimit components (a nested sequence counts
// as one) and 2*SequenceLimit+1 conductor runs.
type compositionCount struct{ components, conductors int }

// session is one composition's state (OpenWhisk's Session).
type session struct {
	id        string
	start     time.Time
	conductor *whisk.Action
	binding   string
	cause     string
	duration  int64
	maxMemory int
	state     map[string]json.RawMessage // nil: no state
	count     *compositionCount
	logs      []string
}

// composition runs conductor action cond as composition id caused by cause ("" when topmost),
// stores its record and returns it.
func (r *composer) composition(ctx context.Context, cond *whisk.Action, binding, id string, input json.RawMessage, cause string,
	count *compositionCount) *whisk.WhiskActivation {
	s := &session{id: id, start: time.Now(), conductor: cond, binding: binding, cause: cause,
		maxMemory: cond.Limits.Memory, count: count}
	resp := r.conduct(ctx, s, input)
	act := r.record(cond, binding, id, cause, s.start, resp, s.logs, s.duration, s.maxMemory, true)
	r.store(ctx, act)
	return act
}

// finished counts a finished activation of the composition into the session: its id, duration
// and memory. A missing record (the wait expired) or a failure to run gives the response that
// ends the composition.
func (r *composer) finished(s *session, out outcome, err error) (*whisk.WhiskActivation, *whisk.ActivationResponse) {
	switch {
	case err != nil:
		r.h.log.Warn("composition step failed", zap.String("activation_id", s.id), zap.Error(err))
		resp := whisk.WhiskError(msgCompositionFailed)
		return nil, &resp
	case out.act == nil:
		s.logs = append(s.logs, out.id)
		resp := whisk.WhiskError(msgCompositionTimeout(out.id))
		return nil, &resp
	}
	act := out.act
	s.logs = append(s.logs, act.ActivationID)
	if act.Duration != nil {
		s.duration += *act.Duration
	} else {
		s.duration += act.End.Sub(act.Start).Milliseconds()
	}
	if m := memoryOf(act); m > s.maxMemory {
		s.maxMemory = m
	}
	return act, nil
}

// errorInput is the conductor's input {"error": msg} when the composition cannot go on as asked.
func errorInput(msg string) json.RawMessage {
	return json.RawMessage(`{"error":` + string(jsonString(msg)) + `}`)
}

// conduct runs the conductor on input and follows what it asks for, until the composition ends;
// it returns the composition's response (OpenWhisk's invokeConductor).
func (r *composer) conduct(ctx context.Context, s *session, input json.RawMessage) whisk.ActivationResponse {
	for {
		if s.count.conductors > 2*SequenceLimit {
			return whisk.ApplicationError(msgCompositionTooLong)
		}
		var params json.RawMessage
		if obj, ok := object(input); ok {
			for k, v := range s.state {
				obj[k] = v
			}
			b, err := marshal(obj)
			if err != nil {
				r.h.log.Error("composition: conductor input", zap.String("activation_id", s.id), zap.Error(err))
				return whisk.WhiskError(msgCompositionFailed)
			}
			params = b
		}
		s.count.conductors++
		out, err := r.primitive(ctx, s.conductor, s.binding, params, s.id)
		act, failed := r.finished(s, out, err)
		if failed != nil {
			return *failed
		}
		result, ok := object(act.Response.Result)
		if !ok {
			return whisk.WhiskError(msgCompositionFailed)
		}
		var next json.RawMessage
		if p, ok := result[fieldParams]; ok {
			next = boxed(p, fieldValue)
		}
		s.state = nil
		if st, ok := result[fieldState]; ok {
			s.state, _ = object(boxed(st, fieldState)) // boxed is always an object
		}
		name, ok := result[fieldAction]
		if !ok {
			final := act.Response.Result
			if next != nil {
				final = next
			}
			return whisk.ActivationResponse{StatusCode: act.Response.StatusCode, Result: final}
		}
		comp, valid := resolveNextName(name, r.user.Namespace.Name)
		switch {
		case !valid:
			input = errorInput(msgCompositionComponentInvalid(name))
		case s.count.components >= SequenceLimit:
			input = errorInput(msgCompositionTooLong)
		default:
			var failed *whisk.ActivationResponse
			input, failed = r.component(ctx, s, comp, next)
			if failed != nil {
				return *failed
			}
		}
	}
}

// component runs the component a conductor asked for (OpenWhisk's tryInvokeNext and
// invokeComponent) and returns what goes back to the conductor: the component's result, or an
// error object when it may not or cannot be run. failed ends the composition.
func (r *composer) component(ctx context.Context, s *session, comp component, params json.RawMessage) (json.RawMessage, *whisk.ActivationResponse) {
	allowed, err := r.h.componentAllowed(ctx, r.user.Namespace.Name, comp)
	if err != nil {
		r.h.log.Error("composition: entitlement", zap.String("activation_id", s.id), zap.Error(err))
		allowed = false
	}
	if !allowed {
		return errorInput(msgCompositionComponentNotAccessible(comp.String())), nil
	}
	a, binding, err := r.resolve(ctx, comp)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.h.log.Error("composition: resolve component", zap.String("activation_id", s.id), zap.Error(err))
		}
		return errorInput(msgCompositionComponentNotFound(comp.String())), nil
	}
	var out outcome
	switch {
	case a.Exec.Kind == whisk.KindSequence:
		s.count.components++
		out.act, _ = r.sequence(ctx, a, binding, whisk.ActivationIDNew(), params, s.id, 0)
	case a.Annotations.IsTruthy(annConductor, false):
		// A nested composition counts its own conductor runs and components, in the shared count.
		out.act = r.composition(ctx, a, binding, whisk.ActivationIDNew(), params, s.id, s.count)
	default:
		s.count.components++
		out, err = r.primitive(ctx, a, binding, params, s.id)
	}
	act, failed := r.finished(s, out, err)
	if failed != nil {
		return nil, failed
	}
	result := act.Response.Result
	if _, ok := object(result); !ok {
		resp := whisk.WhiskError(msgCompositionFailed)
		return nil, &resp
	}
	return result, nil
}

// object decodes v when it is a JSON object.
func object(v json.RawMessage) (map[string]json.RawMessage, bool) {
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil || m == nil {
		return nil, false
	}
	return m, true
}

// boxed is v when it is an object, else {key: v} (how OpenWhisk boxes params and state).
func boxed(v json.RawMessage, key string) json.RawMessage {
	if _, ok := object(v); ok {
		return bytes.TrimSpace(v)
	}
	return json.RawMessage(`{` + string(jsonString(key)) + `:` + string(bytes.TrimSpace(valueOrNull(v))) + `}`)
}

func valueOrNull(v json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(v)) == 0 {
		return json.RawMessage("null")
	}
	return v
}
