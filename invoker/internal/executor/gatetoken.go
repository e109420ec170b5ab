package executor

import (
	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
)

// Environment of a teemate sandbox that carries its one-time capability for its activation; the
// shims send the three in their gate hello (enclave-runtime/PROTOCOL.md, "Authentication").
const (
	envGateToken    = "TEEMATE_GATE_TOKEN"
	envActivationID = "TEEMATE_ACTIVATION_ID"
	envNamespace    = "TEEMATE_NAMESPACE"
)

// addGateToken gives the sandbox of job the token for its activation when the owner it attaches to
// requires one (gate.KeyHolder with a key); only this sandbox's environment carries it.
func addGateToken(env map[string]string, owner enclave.Owner, job *activation.Job) {
	kh, ok := owner.(gate.KeyHolder)
	if !ok {
		return
	}
	key := kh.GateKey()
	if key == nil {
		return
	}
	env[envGateToken] = gate.Token(key, job.Run.ActivationID, job.Run.Namespace)
	env[envActivationID] = job.Run.ActivationID
	env[envNamespace] = job.Run.Namespace
}
