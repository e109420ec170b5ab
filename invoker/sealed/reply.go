package sealed

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// ReplyKey is the client's secret for one sealed invocation: the AES-256 key the result is sealed
// with (a v2 envelope; the X25519 private key it was sealed to for v1), and what the receipt must
// match (the envelope's binding, its ciphertext's hash and the enclave key it was sealed to). Its
// JSON holds the key: store it like a private key (0600).
type ReplyKey struct {
	secret []byte           // v2
	key    *ecdh.PrivateKey // v1

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

// version is the envelope version the reply key was made for.
func (r *ReplyKey) version() int {
	if r.key != nil {
		return 1
	}
	return EnvelopeVersion
}

// MarshalJSON writes the reply key, its secret included; "v" is the envelope's version.
func (r *ReplyKey) MarshalJSON() ([]byte, error) {
	var key []byte
	switch {
	case r.key != nil:
		key = r.key.Bytes()
	case len(r.secret) == 32:
		key = r.secret
	default:
		return nil, fmt.Errorf("%w: reply key without its secret", ErrMalformed)
	}
	return json.Marshal(replyKeyJSON{V: r.version(), Key: base64.StdEncoding.EncodeToString(key),
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
	raw, err := base64.StdEncoding.DecodeString(j.Key)
	if err != nil {
		return fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
	}
	var key *ecdh.PrivateKey
	var secret []byte
	switch j.V {
	case 1:
		if key, err = ecdh.X25519().NewPrivateKey(raw); err != nil {
			return fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
		}
	case EnvelopeVersion:
		if len(raw) != 32 {
			return fmt.Errorf("%w: reply key is not 32 bytes", ErrMalformed)
		}
		secret = raw
	default:
		return fmt.Errorf("%w: reply key version %d", ErrMalformed, j.V)
	}
	sig, err := base64.StdEncoding.DecodeString(j.SigKey)
	if err != nil {
		return fmt.Errorf("%w: reply key's signing key: %w", ErrMalformed, err)
	}
	*r = ReplyKey{key: key, secret: secret, Namespace: j.Namespace, Action: j.Action, Kid: j.Kid, Nonce: j.Nonce,
		Iat: j.Iat, InputSHA256: j.InputSHA256, SigKey: sig, IdentitySHA256: j.IdentitySHA256}
	return nil
}
