package sealed

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// ReplyKey is the client's secret for one sealed invocation: the X25519 private key the result is
// sealed to, and what the receipt must match (the envelope's binding, its ciphertext's hash and the
// enclave key it was sealed to). Its JSON holds the private key: store it like one (0600).
type ReplyKey struct {
	key *ecdh.PrivateKey

	Namespace      string // the namespace the envelope is bound to
	Action         string // the fully qualified action the envelope is bound to
	Kid            string // the image key the envelope was sealed to
	Nonce          string // the envelope's nonce (hex)
	Iat            int64  // the envelope's time (unix ms)
	InputSHA256    string // hex SHA-256 of the envelope's ct bytes
	SigKey         []byte // the image's raw Ed25519 public key, which signs the receipt
	IdentitySHA256 string // the identity hash (attest.Evidence.IdentitySha256) of the evidence the envelope was sealed to
}

type replyKeyJSON struct {
	V              int    `json:"v"`
	Key            string `json:"key"`
	Namespace      string `json:"namespace"`
	Action         string `json:"action"`
	Kid            string `json:"kid"`
	Nonce          string `json:"nonce"`
	Iat            int64  `json:"iat"`
	InputSHA256    string `json:"inputSha256"`
	SigKey         string `json:"sigKey"`
	IdentitySHA256 string `json:"identitySha256"`
}

// MarshalJSON writes the reply key, private key included.
func (r *ReplyKey) MarshalJSON() ([]byte, error) {
	if r.key == nil {
		return nil, fmt.Errorf("%w: reply key without a private key", ErrMalformed)
	}
	return json.Marshal(replyKeyJSON{V: Version, Key: base64.StdEncoding.EncodeToString(r.key.Bytes()),
		Namespace: r.Namespace, Action: r.Action, Kid: r.Kid, Nonce: r.Nonce, Iat: r.Iat,
		InputSHA256: r.InputSHA256, SigKey: base64.StdEncoding.EncodeToString(r.SigKey),
		IdentitySHA256: r.IdentitySHA256})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (r *ReplyKey) UnmarshalJSON(b []byte) error {
	var j replyKeyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
	}
	if j.V != Version {
		return fmt.Errorf("%w: reply key version %d", ErrMalformed, j.V)
	}
	raw, err := base64.StdEncoding.DecodeString(j.Key)
	if err != nil {
		return fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
	}
	key, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
	}
	sig, err := base64.StdEncoding.DecodeString(j.SigKey)
	if err != nil {
		return fmt.Errorf("%w: reply key's signing key: %w", ErrMalformed, err)
	}
	*r = ReplyKey{key: key, Namespace: j.Namespace, Action: j.Action, Kid: j.Kid, Nonce: j.Nonce,
		Iat: j.Iat, InputSHA256: j.InputSHA256, SigKey: sig, IdentitySHA256: j.IdentitySHA256}
	return nil
}
