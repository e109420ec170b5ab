package wire

import "encoding/json"

// Init is the "value" of OpenWhisk's POST /init; the gate's init frame carries the same fields.
type Init struct {
	Name   string            `json:"name"`
	Main   string            `json:"main"`
	Code   string            `json:"code"`
	Binary bool              `json:"binary"`
	Env    map[string]string `json:"env"`
}

// Run is the body of OpenWhisk's POST /run.
type Run struct {
	Value         json.RawMessage `json:"value"`
	Namespace     string          `json:"namespace"`
	ActionName    string          `json:"action_name"`
	ActionVersion string          `json:"action_version"`
	ActivationID  string          `json:"activation_id"`
	TransactionID string          `json:"transaction_id"`
	Deadline      string          `json:"deadline"`
	APIKey        string          `json:"api_key,omitempty"`
}

// Outcome is how an activation ended, as the enclave reports it in the gate's result
// (PROTOCOL.md, "run → result") and the shim passes it on in HeaderOutcome, plus OutcomeGate for a
// failure between the shim and the enclave. A standard action proxy sends none ("").
type Outcome string

// Outcomes.
const (
	OutcomeSuccess     Outcome = "success"
	OutcomeApplication Outcome = "application"
	OutcomeDeveloper   Outcome = "developer"
	OutcomeTimeout     Outcome = "timeout"
	OutcomeMemory      Outcome = "memory"
	// OutcomeGate: the shim could not reach or use the enclave (owner gone, no free TCS, the
	// strawman's runtime did not start). No user code ran; it is the platform's failure.
	OutcomeGate Outcome = "gate"
)

// Enclave reports whether the enclave may report o in a result (every outcome but OutcomeGate).
func (o Outcome) Enclave() bool {
	switch o {
	case OutcomeSuccess, OutcomeApplication, OutcomeDeveloper, OutcomeTimeout, OutcomeMemory:
		return true
	}
	return false
}

// Response headers set by the teemate shim.
const (
	HeaderOutcome = "X-Teemate-Outcome"
	HeaderTimings = "X-Teemate-Timings"
)

// Timings is the shim's HeaderTimings: milliseconds per phase inside the sandbox.
type Timings struct {
	// BootMs is the strawman's runtime boot (already included in AttachMs).
	BootMs     float64 `json:"bootMs,omitempty"`
	AttachMs   float64 `json:"attachMs"`
	TCSMs      float64 `json:"tcsMs"`
	InitMs     float64 `json:"initMs"`
	IsolateMs  float64 `json:"isolateMs"`
	RunMs      float64 `json:"runMs"`
	TeardownMs float64 `json:"teardownMs"`
}

// LogSentinel ends each /init's and /run's output on stdout and stderr (OpenWhisk's marker).
const LogSentinel = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

// LogLine is one console line of an activation in the gate's result.
type LogLine struct {
	Stream string `json:"stream"` // "stdout" or "stderr"
	Time   string `json:"time"`   // RFC 3339 with fractional seconds, the enclave's clock
	Line   string `json:"line"`
}

// GateVersion is the gate protocol version.
const GateVersion = 1

// Frame size limits of the gate, the same on both sides (PROTOCOL.md, "Framing").
const (
	MaxInitFrame  = 64 << 20 // an init may carry a zipped action
	MaxOtherFrame = 2 << 20  // parameters are at most 1 MiB in OpenWhisk
	// MaxReplyFrame bounds what the host reads back: a result (1 MiB of result plus logs up to the
	// log limit) with headroom.
	MaxReplyFrame = 80 << 20
)

// MaxBody caps /init and /run request bodies, as OpenWhisk's Node runtime does (48 MiB).
const MaxBody = 48 << 20

// Run limits of the gate (PROTOCOL.md, "run → result"), inclusive.
const (
	MinTimeoutMs = 100
	MaxTimeoutMs = 600000
	MinMemoryMB  = 64
	MaxMemoryMB  = 4096
	MaxLogLimit  = 64 << 20
)
