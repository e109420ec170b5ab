package harness

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/teemate/platform/invoker/whisk"
)

// ActionSpec is one action to deploy.
type ActionSpec struct {
	Name      string
	Code      string
	Network   bool // annotation "network": true (the uploader)
	Sealed    bool // annotation "teemate-sealed": true (Code is sealed code)
	MemoryMB  int
	TimeoutMs int
}

// Reply is one finished invocation as the client saw it.
type Reply struct {
	// ClientMs is from just before the request left to the moment its result arrived.
	ClientMs   float64
	Activation *whisk.WhiskActivation
}

// Platform is what the runner measures.
type Platform interface {
	// Deploy makes the actions invocable.
	Deploy(ctx context.Context, actions []ActionSpec) error
	// UseModel switches to an execution model; the returned stop ends it. An error means the model
	// cannot run here (the runner records it as unavailable).
	UseModel(ctx context.Context, model string) (stop func(), err error)
	// Invoke runs one blocking activation.
	Invoke(ctx context.Context, action string, params json.RawMessage) (Reply, error)
	// MemoryRoot is the pid whose descendants hold the model's processes, or 0 when memory cannot be
	// measured from here.
	MemoryRoot() int
	Close()
}

// Timings reads the invoker's per-phase "timings" annotation (milliseconds).
func Timings(a *whisk.WhiskActivation) map[string]float64 {
	raw, ok := a.Annotations.Get("timings")
	if !ok {
		return nil
	}
	var m map[string]float64
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// annotationMs reads a numeric annotation such as "initTime" or "waitTime".
func annotationMs(a *whisk.WhiskActivation, key string) *float64 {
	raw, ok := a.Annotations.Get(key)
	if !ok {
		return nil
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil
	}
	return &v
}

// ErrUnavailable wraps the reason a model cannot run.
var ErrUnavailable = errors.New("model unavailable")
