package executor

import (
	"bytes"
	"strings"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/sealed"
)

// Environment of a teemate sandbox that carries its one-time capability for its activation; the
// shims send the three in their gate hello (enclave-runtime/PROTOCOL.md, "Authentication").
const (
	envGateToken    = "TEEMATE_GATE_TOKEN"
	envActivationID = "TEEMATE_ACTIVATION_ID"
	envNamespace    = "TEEMATE_NAMESPACE"
	// envSealed ("1") tells the shim to say in its hello that the activation looks sealed: a hint
	// the owner ranks its slots by under --isolate-reuse tenant (a sealed activation shares no
	// isolate, so it should not take a slot kept for its namespace). It decides nothing: the owner
	// treats the activation by what its code and parameters are.
	envSealed = "TEEMATE_SEALED"
)

// The fields whose presence makes an activation sealed, as they appear in JSON.
var (
	sealedParamsKey = []byte(`"` + sealed.ParamsField + `"`)
	sealedCodeKey   = `"` + sealed.CodeField + `"`
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

// addSealedHint sets envSealed when job's parameters or code carry a sealed field. It only looks
// for the field's name (no parse of a parameters object of up to 1 MiB on every activation): a
// parameter that merely contains the name makes a wrong hint, which costs that activation a slot
// choice and nothing else.
func addSealedHint(env map[string]string, job *activation.Job) {
	code := ""
	if job.Action != nil {
		code = job.Action.Exec.Code
	}
	if bytes.Contains(job.Run.Value, sealedParamsKey) || strings.Contains(code, sealedCodeKey) {
		env[envSealed] = "1"
	}
}
