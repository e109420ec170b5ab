package sealed

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"sync"

	"github.com/teemate/platform/invoker/attest"
)

// imageKey is what the package uses of an image's evidence.
type imageKey struct {
	kid            string
	kem, sig       []byte // raw X25519 and Ed25519 public keys
	identitySHA256 string // ev.IdentitySha256(): what receipts name the enclave by
}

// keyMemo remembers what keysOf derived from the evidences it saw last, by address: a client
// seals many envelopes to one image's evidence, and the derivation (the key checks, the identity
// hash, for sgx evidence a parse of the quote) is the same each time. An entry serves only while
// the evidence at that address still equals the copy taken with it, so changing an evidence's
// fields derives again. At most keyMemoMax entries; a full memo starts over.
var keyMemo = struct {
	sync.Mutex
	m map[*attest.Evidence]keyMemoEntry
}{m: map[*attest.Evidence]keyMemoEntry{}}

const keyMemoMax = 32

type keyMemoEntry struct {
	was *attest.Evidence // a copy of the evidence when key was derived from it
	key imageKey
}

// keysOf takes the image key out of evidence and checks that its kid is the one its keys give. It
// does not judge the evidence (attest.Verify does); it only refuses evidence it cannot use.
func keysOf(ev *attest.Evidence) (imageKey, error) {
	if ev == nil {
		return imageKey{}, fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	keyMemo.Lock()
	e, ok := keyMemo.m[ev]
	keyMemo.Unlock()
	if ok && e.was.Equal(ev) {
		return e.key, nil
	}
	key, err := deriveKeys(ev)
	if err != nil {
		return imageKey{}, err
	}
	keyMemo.Lock()
	if len(keyMemo.m) >= keyMemoMax {
		clear(keyMemo.m)
	}
	was := ev.Clone()
	key.kem, key.sig = was.Keys.KEM, was.Keys.Sig // not the caller's slices, which may change
	keyMemo.m[ev] = keyMemoEntry{was: was, key: key}
	keyMemo.Unlock()
	return key, nil
}

func deriveKeys(ev *attest.Evidence) (imageKey, error) {
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
