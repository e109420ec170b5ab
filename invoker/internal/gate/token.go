package gate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// KeySize is the size of an owner's gate key in bytes.
const KeySize = 32

// tokenDomain separates gate tokens from any other use of an owner's key.
const tokenDomain = "teemate-gate-v1\n"

// NewKey makes a random gate key for one owner. The backend that starts the owner hands it over
// (never in the owner's arguments or environment) and keeps it for the executor, which derives one
// Token per activation from it.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("gate key: %w", err)
	}
	return k, nil
}

// Token is the one-time capability that lets the sandbox of one activation attach to the owner
// holding key: hex(HMAC-SHA256(key, "teemate-gate-v1\n" + activationID + "\n" + namespace)). The
// owner computes the same (enclave-runtime/trusted/gateauth.js), accepts it for one TCS slot once,
// and checks that the run is for this activation and namespace.
func Token(key []byte, activationID, namespace string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenDomain + activationID + "\n" + namespace))
	return hex.EncodeToString(m.Sum(nil))
}

// Credentials are what a sandbox presents in its hello to an owner that requires a token; the zero
// value presents none (an owner started without a key).
type Credentials struct {
	Activation string `json:"activation,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Token      string `json:"token,omitempty"`
}

// KeyHolder is implemented by owners whose gate requires a token (enclave.Owner of the direct
// backend). GateKey is nil when the owner requires none: in sgx mode the caller is known by the TCS
// it entered and by attestation, not by a token.
type KeyHolder interface {
	GateKey() []byte
}
