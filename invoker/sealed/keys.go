package sealed

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"

	"github.com/teemate/platform/invoker/attest"
)

// imageKey is what the package uses of an image's evidence.
type imageKey struct {
	kid            string
	kem, sig       []byte // raw X25519 and Ed25519 public keys
	identitySHA256 string // ev.IdentitySha256(): what receipts name the enclave by
}

// keysOf takes the image key out of evidence and checks that its kid is the one its keys give. It
// does not judge the evidence (attest.Verify does); it only refuses evidence it cannot use.
func keysOf(ev *attest.Evidence) (imageKey, error) {
	if ev == nil {
		return imageKey{}, fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	kem, sig := ev.Keys.KEM, ev.Keys.Sig
	if len(kem) != 32 || len(sig) != ed25519.PublicKeySize {
		return imageKey{}, fmt.Errorf("%w: evidence keys are not 32-byte raw keys", ErrMalformed)
	}
	if _, err := ecdh.X25519().NewPublicKey(kem); err != nil {
		return imageKey{}, fmt.Errorf("%w: evidence kem key: %w", ErrMalformed, err)
	}
	if kid := attest.Kid(kem, sig); kid != ev.Kid {
		return imageKey{}, fmt.Errorf("%w: evidence kid %q is not its keys' %q", ErrMalformed, ev.Kid, kid)
	}
	sum, err := ev.IdentitySha256()
	if err != nil {
		return imageKey{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return imageKey{kid: ev.Kid, kem: kem, sig: sig, identitySHA256: sum}, nil
}
