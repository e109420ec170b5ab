package balancer

import (
	"errors"
	"hash/fnv"
	"time"
)

// ErrNoInvokers means no invoker is Healthy. Its text is OpenWhisk's, which the REST API returns
// with HTTP 503.
var ErrNoInvokers = errors.New("No invokers available.") //nolint:staticcheck // OpenWhisk's client-facing text

// Candidate is what the scheduler knows of one invoker.
type Candidate struct {
	Healthy bool
	// FreeMB is the memory not reserved by this controller's activations in flight; it can be
	// negative after forced placements.
	FreeMB int
}

// Placement is the scheduler's decision.
type Placement struct {
	// Invoker is the index (instance number) chosen.
	Invoker int
	// Forced is true when no healthy invoker had room and a random healthy one was taken; its
	// slots are then overcommitted until activations finish.
	Forced bool
}

// ActionHash spreads actions over invokers: the same namespace and action always hash the same,
// so an action keeps landing on the invoker that has its runtime warm.
func ActionHash(namespace, action string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(namespace + "\x00" + action)) // hash.Hash writes never fail
	return h.Sum32()
}

// StepSizes returns, for n invokers, the step sizes the scheduler may probe with: numbers in
// [1, n] that are coprime with n and with each other. Stepping by a number coprime with n from
// any home visits every invoker exactly once in n steps; having several keeps the probe order of
// two actions with the same home from being identical.
func StepSizes(n int) []int {
	if n <= 0 {
		return nil
	}
	var out []int
	for c := 1; c <= n; c++ {
		if gcd(c, n) != 1 {
			continue
		}
		ok := true
		for _, s := range out {
			if gcd(c, s) != 1 {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Schedule picks an invoker for an activation needing memoryMB, the way OpenWhisk's
// ShardingContainerPoolBalancer does: start at the home invoker (hash % n), then step through all
// invokers with a coprime step chosen by the hash, taking the first healthy one with room. If none
// has room, take a random healthy one (random is any non-negative number the caller drew). With no
// healthy invoker the result is ErrNoInvokers.
//
// TODO: OpenWhisk splits invokers into managed (first 90%) and blackbox (last 10%) sets by the
// action's kind; with no blackbox actions supported yet every invoker is in one set.
func Schedule(invokers []Candidate, hash uint32, memoryMB int, random int) (Placement, error) {
	n := len(invokers)
	if n == 0 {
		return Placement{}, ErrNoInvokers
	}
	steps := StepSizes(n)
	home := int(hash % uint32(n))
	step := steps[int(hash%uint32(len(steps)))]
	healthy := make([]int, 0, n)
	for i := 0; i < n; i++ {
		idx := (home + i*step) % n
		c := invokers[idx]
		if !c.Healthy {
			continue
		}
		if c.FreeMB >= memoryMB {
			return Placement{Invoker: idx}, nil
		}
		healthy = append(healthy, idx)
	}
	if len(healthy) == 0 {
		return Placement{}, ErrNoInvokers
	}
	if random < 0 {
		random = -random
	}
	return Placement{Invoker: healthy[random%len(healthy)], Forced: true}, nil
}

// Ack timeout defaults (OpenWhisk's CommonLoadBalancer).
const (
	DefaultMinAckTimeout    = 60 * time.Second
	DefaultAckTimeoutFactor = 2
	DefaultAckTimeoutAddon  = 60 * time.Second
)

// AckTimeout is how long the balancer waits for an activation's slot-freeing ack before forcing
// its completion: max(actionTimeout, minTimeout) * factor + addon (3 min for a default action).
func AckTimeout(actionTimeout, minTimeout time.Duration, factor float64, addon time.Duration) time.Duration {
	return time.Duration(float64(max(actionTimeout, minTimeout))*factor) + addon
}
