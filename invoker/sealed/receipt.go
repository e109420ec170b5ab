package sealed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/teemate/platform/invoker/attest"
)

// receiptDomain prefixes the bytes an enclave signs for a receipt.
const receiptDomain = "teemate-receipt-v1\n"

// Receipt is the enclave's signed statement about one sealed activation: which enclave key ran which
// code on which sealed input for which activation, and what sealed output it produced.
type Receipt struct {
	V              int    `json:"v"`
	ActivationID   string `json:"activationId"`
	Namespace      string `json:"namespace"`
	Action         string `json:"action"`
	Nonce          string `json:"nonce"`
	Kid            string `json:"kid"`
	IdentitySHA256 string `json:"identitySha256"` // attest.Evidence.IdentitySha256 of the enclave's evidence
	CodeSHA256     string `json:"codeSha256"`     // hex SHA-256 of the plaintext code it ran
	InputSHA256    string `json:"inputSha256"`    // hex SHA-256 of the envelope's ct bytes
	OutputSHA256   string `json:"outputSha256"`   // hex SHA-256 of the sealed result's ct bytes
	Sig            string `json:"sig"`            // base64 Ed25519 signature over SignedBytes
}

// SignedBytes is what the signature covers: receiptDomain followed by the canonical JSON of the
// receipt without sig (keys sorted, no spaces, strings escaped as JavaScript's JSON.stringify does).
func (r Receipt) SignedBytes() ([]byte, error) {
	body, err := attest.CanonicalJSON(map[string]string{
		"activationId": r.ActivationID, "namespace": r.Namespace, "action": r.Action,
		"nonce": r.Nonce, "kid": r.Kid, "identitySha256": r.IdentitySHA256, "codeSha256": r.CodeSHA256,
		"inputSha256": r.InputSHA256, "outputSha256": r.OutputSHA256,
	}, map[string]int{"v": r.V})
	if err != nil {
		return nil, fmt.Errorf("%w: receipt: %w", ErrMalformed, err)
	}
	return append([]byte(receiptDomain), body...), nil
}

// VerifyReceipt checks a receipt against the evidence of the image key, the reply key of the
// invocation and the sealed result's ciphertext: the signature by the evidence's Ed25519 key, the
// evidence hash, the key id, the envelope's binding (namespace, action, nonce, input hash) and the
// output hash. The activation id is OpenResult's to check (it opens the result with it).
func VerifyReceipt(r Receipt, ev *attest.Evidence, reply *ReplyKey, sealedResultCT []byte) error {
	keys, err := keysOf(ev)
	if err != nil {
		return err
	}
	if reply == nil {
		return fmt.Errorf("%w: no reply key", ErrMalformed)
	}
	return verifyReceipt(r, keys.kid, keys.sig, keys.identitySHA256, reply, sealedResultCT)
}

func verifyReceipt(r Receipt, kid string, sigKey []byte, identitySHA256 string, reply *ReplyKey, ct []byte) error {
	if r.V != Version {
		return fmt.Errorf("%w: receipt version %d", ErrMalformed, r.V)
	}
	if len(sigKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: no Ed25519 key to verify the receipt with", ErrMalformed)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Sig)
	if err != nil {
		return fmt.Errorf("%w: receipt signature: %w", ErrMalformed, err)
	}
	msg, err := r.SignedBytes()
	if err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(sigKey), msg, sig) {
		return fmt.Errorf("%w: receipt signature does not verify", ErrIntegrity)
	}
	out := sha256.Sum256(ct)
	for _, c := range []struct{ what, got, want string }{
		{"kid", r.Kid, kid},
		{"kid of the envelope", r.Kid, reply.Kid},
		{"identity hash", r.IdentitySHA256, identitySHA256},
		{"namespace", r.Namespace, reply.Namespace},
		{"action", r.Action, reply.Action},
		{"nonce", r.Nonce, reply.Nonce},
		{"input hash", r.InputSHA256, reply.InputSHA256},
		{"output hash", r.OutputSHA256, hex.EncodeToString(out[:])},
	} {
		if c.got != c.want {
			return fmt.Errorf("%w: receipt %s is %q, want %q", ErrIntegrity, c.what, c.got, c.want)
		}
	}
	return nil
}
