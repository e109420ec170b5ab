package gate

import (
	"encoding/json"

	"github.com/teemate/platform/invoker/internal/wire"
)

// Hello opens an attachment; Sandbox is informational only. An owner started with a gate key
// requires the Credentials of one activation (token.go); without a key it ignores them.
type Hello struct {
	Type    string `json:"type"` // "hello"
	Version int    `json:"version"`
	Sandbox string `json:"sandbox,omitempty"`
	Credentials
}

// Welcome answers Hello.
type Welcome struct {
	Enclave     string          `json:"enclave"`
	Image       string          `json:"image"`
	Mode        string          `json:"mode"`    // "direct" or "sgx"
	Isolate     string          `json:"isolate"` // "addon" or "worker"
	Slots       int             `json:"slots"`
	Free        int             `json:"free"`
	Attestation json.RawMessage `json:"attestation,omitempty"`
}

// Init carries OpenWhisk's /init value.
type Init struct {
	Type string `json:"type"` // "init"
	wire.Init
}

// Run asks for one run of the initialised action in a new isolate.
type Run struct {
	Type          string            `json:"type"` // "run"
	Value         json.RawMessage   `json:"value"`
	TimeoutMs     int64             `json:"timeoutMs"`
	MemoryMB      int               `json:"memoryMB"`
	LogLimitBytes int64             `json:"logLimitBytes"`
	Env           map[string]string `json:"env"`
	// Network says the action may open client sockets (OpenWhisk's per-action network); the
	// enclave runtime enforces it per activation. Left out when false.
	Network bool `json:"network,omitempty"`
}

// Result answers Run.
type Result struct {
	Outcome wire.Outcome       `json:"outcome"`
	Result  json.RawMessage    `json:"result"`
	Logs    []wire.LogLine     `json:"logs"`
	Timings map[string]float64 `json:"timings"`
}

// Pong answers a ping.
type Pong struct {
	Slots       int    `json:"slots"`
	Free        int    `json:"free"`
	Quarantined int    `json:"quarantined"`
	Isolate     string `json:"isolate"`
	// Auth says the owner requires a token to attach; AuthRefused counts the callers it refused
	// (class auth) since it started.
	Auth        bool  `json:"auth"`
	AuthRefused int64 `json:"authRefused"`
	// Kid names the owner's image key; empty while it awaits one by transfer (keys.go).
	Kid string `json:"kid"`
}

// Error classes (PROTOCOL.md, "error").
const (
	ClassProtocol = "protocol"
	ClassVersion  = "version"
	ClassState    = "state"
	ClassBusy     = "busy"
	ClassInit     = "init"
	ClassInternal = "internal"
	// ClassAuth: the caller did not present a valid, unused token for the activation it runs
	// (token.go); the owner closes the connection.
	ClassAuth = "auth"
	// ClassKey: a key message was refused (a transfer's evidence did not match, a sealed offer did
	// not open); the connection stays open.
	ClassKey = "key"
	// ClassUnavailable: the owner cannot answer yet (evidence before it holds an image key).
	ClassUnavailable = "unavailable"
)

// Error is an error reply from the owner.
type Error struct {
	Class   string `json:"class"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "gate " + e.Class + " error: " + e.Message }

type envelope struct {
	Type string `json:"type"`
}
