package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
)

// SimulatedNote is the note simulated evidence carries, so that a human reading it sees what it is.
const SimulatedNote = "simulated: no hardware root of trust"

// Policy is what a client accepts. The zero Policy accepts nothing: simulated evidence needs
// AllowSimulated, and sgx-dcap evidence needs Roots and at least one MREnclave or MRSigner.
type Policy struct {
	// AllowSimulated accepts simulated evidence (direct mode: no confidentiality from the host).
	AllowSimulated bool
	// Roots are the pinned root certificates the PCK chain must end in (Intel's SGX Root CA in
	// production).
	Roots *x509.CertPool
	// MREnclave lists accepted enclave measurements; MRSigner accepted enclave signers. An
	// enclave is accepted if its MRENCLAVE is in MREnclave or its MRSIGNER is in MRSigner.
	MREnclave, MRSigner [][32]byte
	// ProdID, when not zero, is the ISVPRODID the enclave must have.
	ProdID uint16
	// MinSVN is the lowest ISVSVN accepted.
	MinSVN uint16
	// AllowDebug accepts enclaves in debug mode (their memory is readable by the host; for
	// development on SGX hardware only).
	AllowDebug bool
}

// Identity is what Verify established about the enclave behind the evidence.
type Identity struct {
	Type string
	Kid  string
	// KEM and Sig are the image key's raw public halves (X25519 and Ed25519).
	KEM, Sig []byte
	// MREnclave and MRSigner are the quote's (zero for simulated evidence).
	MREnclave, MRSigner [32]byte
	ProdID, SVN         uint16
}

// NewSimulated builds the simulated evidence a direct-mode owner serves for an image key. The
// measurement is the hex SHA-256 of the code the owner runs; it proves nothing by itself.
func NewSimulated(image string, kemPub, sigPub []byte, measurement string) *Evidence {
	rd := ReportData(kemPub, sigPub)
	return &Evidence{
		V: Version, Type: TypeSimulated, Image: image,
		Kid:        Kid(kemPub, sigPub),
		Keys:       Keys{KEM: append([]byte(nil), kemPub...), Sig: append([]byte(nil), sigPub...)},
		ReportData: hex.EncodeToString(rd[:]),
		Simulated:  &Simulated{Note: SimulatedNote, Measurement: measurement},
	}
}

// Verify decides whether the evidence's key may be trusted under the policy, and returns what it
// established. Every error wraps one of ErrMalformed, ErrSimulated, ErrBinding, ErrChain, ErrPolicy.
func Verify(ev *Evidence, p Policy) (*Identity, error) {
	if err := checkKeys(ev); err != nil {
		return nil, err
	}
	want := ReportData(ev.Keys.KEM, ev.Keys.Sig)
	id := &Identity{
		Type: ev.Type, Kid: ev.Kid,
		KEM: append([]byte(nil), ev.Keys.KEM...), Sig: append([]byte(nil), ev.Keys.Sig...),
	}
	switch ev.Type {
	case TypeSimulated:
		if !p.AllowSimulated {
			return nil, fmt.Errorf("%w: image %q (%s); allow simulated evidence explicitly to accept it", ErrSimulated, ev.Image, ev.Simulated.Note)
		}
		return id, nil
	case TypeSGXDCAP:
		if err := verifyDCAP(ev.Quote, want, p, id); err != nil {
			return nil, err
		}
		return id, nil
	}
	// checkShape has refused every other type.
	return nil, fmt.Errorf("%w: unknown evidence type %q", ErrMalformed, ev.Type)
}

// CheckBinding checks what holds without trusting anything: the evidence is well formed, its kid
// names its keys, its reportData binds them, and for sgx-dcap the quote parses and its report
// carries that reportData. It checks no signature, chain or policy; the platform uses it to refuse
// garbage before storing what an invoker publishes, and Verify remains the client's decision.
func CheckBinding(ev *Evidence) error {
	if err := checkKeys(ev); err != nil {
		return err
	}
	if ev.Type != TypeSGXDCAP {
		return nil
	}
	q, err := ParseQuote(ev.Quote)
	if err != nil {
		return err
	}
	if q.Report.ReportData != ReportData(ev.Keys.KEM, ev.Keys.Sig) {
		return fmt.Errorf("%w: the quote's report_data is not the evidence's reportData", ErrBinding)
	}
	return nil
}

// checkKeys checks the evidence's shape and that its kid and reportData bind its keys.
func checkKeys(ev *Evidence) error {
	if ev == nil {
		return fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	if err := ev.checkShape(); err != nil {
		return err
	}
	if kid := Kid(ev.Keys.KEM, ev.Keys.Sig); kid != ev.Kid {
		return fmt.Errorf("%w: kid %s does not name the keys (want %s)", ErrBinding, ev.Kid, kid)
	}
	want := ReportData(ev.Keys.KEM, ev.Keys.Sig)
	got, err := hex.DecodeString(ev.ReportData)
	if err != nil || !bytes.Equal(got, want[:]) {
		return fmt.Errorf("%w: reportData is not the binding of the keys", ErrBinding)
	}
	return nil
}
