package activation

import (
	"time"
)

// AckPlan is the set of acknowledgements one activation gets, in the order OpenWhisk's ContainerProxy
// sends them (openwhisk-protocol.md section 3).
type AckPlan int

const (
	// ResultThenCompletion: a blocking activation with log collection. The ResultMessage (activation
	// without logs) goes as soon as the run returns so the caller is answered early; the
	// CompletionMessage frees the slot after the logs are collected and the record is stored.
	ResultThenCompletion AckPlan = iota
	// Combined: one CombinedCompletionAndResultMessage with the full activation (blocking, logs off,
	// or a failure before the run).
	Combined
	// CombinedShrunk: one Combined message whose response is only the activation id (a non-blocking
	// activation that failed before the run; OpenWhisk shrinks every ack of a non-blocking activation).
	CombinedShrunk
	// CompletionOnly: a non-blocking activation: nobody waits for the result, the record goes to the
	// activation store and a CompletionMessage frees the slot.
	CompletionOnly
)

func (p AckPlan) String() string {
	switch p {
	case ResultThenCompletion:
		return "result+completion"
	case Combined:
		return "combined"
	case CombinedShrunk:
		return "combined-shrunk"
	case CompletionOnly:
		return "completion"
	}
	return "unknown"
}

// PlanAcks decides the acknowledgements for an activation. ranAction is false when the activation was
// answered without running (fetch failure, stale, no executor); logLimitMB is the action's log limit.
func PlanAcks(blocking, ranAction bool, logLimitMB int) AckPlan {
	switch {
	case !ranAction && blocking:
		return Combined
	case !ranAction:
		return CombinedShrunk
	case blocking && logLimitMB > 0:
		return ResultThenCompletion
	case blocking:
		return Combined
	default:
		return CompletionOnly
	}
}

// IsStale reports whether an activation whose transaction started at start is too old to run at now.
// A zero maxAge disables the check. A start in the future (clock skew between hosts) is never stale.
func IsStale(start, now time.Time, maxAge time.Duration) bool {
	if maxAge <= 0 || start.IsZero() {
		return false
	}
	return now.Sub(start) > maxAge
}

// WaitTime is OpenWhisk's waitTime annotation: from the transaction start to the start of the run,
// never negative.
func WaitTime(transStart, runStart time.Time) time.Duration {
	if transStart.IsZero() || runStart.Before(transStart) {
		return 0
	}
	return runStart.Sub(transStart)
}

// MaxPeek is how many activations the feed holds at once, as OpenWhisk's invoker computes it:
// userMemory/128 MB, at least 1. The memory semaphore then bounds what actually runs.
func MaxPeek(userMemoryMB int) int {
	n := userMemoryMB / 128
	if n < 1 {
		return 1
	}
	return n
}
