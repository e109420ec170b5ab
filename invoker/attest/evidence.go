package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// Evidence types, as in Evidence.Type.
const (
	TypeSimulated = "simulated"
	TypeSGXDCAP   = "sgx-dcap"
)

// Version is the evidence format this package reads and writes (Evidence.V).
const Version = 1

// reportDataLabel prefixes the image key's public halves in ReportData, so that the hash cannot be
// mistaken for any other SHA-256 an enclave might put in its report data.
const reportDataLabel = "teemate-evidence-v1\n"

// Sentinel errors; every error Verify and Parse return wraps exactly one of them.
var (
	// ErrMalformed: the evidence or its quote does not parse, or a field has the wrong size.
	ErrMalformed = errors.New("attest: malformed evidence")
	// ErrSimulated: the evidence is simulated (no hardware root of trust) and the policy does not
	// allow simulated evidence.
	ErrSimulated = errors.New("attest: evidence is simulated (no hardware root of trust)")
	// ErrBinding: the keys, the kid, the report data or the quote's signatures do not bind
	// together.
	ErrBinding = errors.New("attest: evidence does not bind the key")
	// ErrChain: the PCK certificate chain does not verify up to the pinned roots.
	ErrChain = errors.New("attest: certificate chain not trusted")
	// ErrPolicy: the enclave's identity (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN) is not what the
	// policy accepts.
	ErrPolicy = errors.New("attest: enclave identity not allowed by policy")
)

// Keys are the image key's public halves, raw and base64 in JSON.
type Keys struct {
	// KEM is the raw X25519 public key clients encrypt to (HPKE recipient), 32 bytes.
	KEM []byte `json:"kem"`
	// Sig is the raw Ed25519 public key that signs receipts, 32 bytes.
	Sig []byte `json:"sig"`
}

// Simulated is the part of simulated evidence that says so in its own fields.
type Simulated struct {
	Note string `json:"note"`
	// Measurement is the hex SHA-256 of the code the owner runs (its trusted sources, the native
	// addons it loaded, Node's version): what MRENCLAVE would measure, computed by the
	// (untrusted) host-side process itself, so it proves nothing.
	Measurement string `json:"measurement"`
}

// Evidence is what an image's enclave serves to say which key it holds. Its JSON form is the
// contract between the enclave, the platform and clients (design: "Evidence (v1)").
type Evidence struct {
	V     int    `json:"v"`
	Type  string `json:"type"`
	Image string `json:"image"`
	// Kid names the image key: the first 16 bytes of SHA-256(KEM || Sig), hex.
	Kid  string `json:"kid"`
	Keys Keys   `json:"keys"`
	// ReportData is ReportData(KEM, Sig), hex (64 bytes).
	ReportData string `json:"reportData"`
	// Quote is the raw DCAP quote (sgx-dcap only), base64 in JSON.
	Quote     []byte     `json:"quote,omitempty"`
	Simulated *Simulated `json:"simulated,omitempty"`

	// Raw is the JSON this evidence was parsed from, byte for byte: receipts name the evidence by
	// the SHA-256 of what the enclave served, so it is kept rather than re-encoded.
	Raw []byte `json:"-"`
}

// maxEvidenceBytes bounds what Parse reads: a DCAP quote with its PCK chain is a few KiB.
const maxEvidenceBytes = 64 << 10

// Parse reads evidence JSON and keeps the bytes in Raw. It checks the shape only (version, type,
// field sizes); Verify decides whether to trust it.
func Parse(data []byte) (*Evidence, error) {
	if len(data) > maxEvidenceBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), maxEvidenceBytes)
	}
	var ev Evidence
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := ev.checkShape(); err != nil {
		return nil, err
	}
	ev.Raw = append([]byte(nil), data...)
	return &ev, nil
}

// checkShape checks what every well-formed evidence has, whatever its type.
func (ev *Evidence) checkShape() error {
	if ev.V != Version {
		return fmt.Errorf("%w: version %d, want %d", ErrMalformed, ev.V, Version)
	}
	switch ev.Type {
	case TypeSimulated:
		if ev.Simulated == nil {
			return fmt.Errorf("%w: simulated evidence without its \"simulated\" object", ErrMalformed)
		}
	case TypeSGXDCAP:
		if len(ev.Quote) == 0 {
			return fmt.Errorf("%w: sgx-dcap evidence without a quote", ErrMalformed)
		}
		if ev.Simulated != nil {
			return fmt.Errorf("%w: sgx-dcap evidence with a \"simulated\" object", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown evidence type %q", ErrMalformed, ev.Type)
	}
	if len(ev.Keys.KEM) != 32 || len(ev.Keys.Sig) != 32 {
		return fmt.Errorf("%w: keys must be 32 bytes each (kem %d, sig %d)", ErrMalformed, len(ev.Keys.KEM), len(ev.Keys.Sig))
	}
	if b, err := hex.DecodeString(ev.Kid); err != nil || len(b) != 16 {
		return fmt.Errorf("%w: kid must be 32 hex digits", ErrMalformed)
	}
	if b, err := hex.DecodeString(ev.ReportData); err != nil || len(b) != 64 {
		return fmt.Errorf("%w: reportData must be 128 hex digits", ErrMalformed)
	}
	return nil
}

// ReportData is the 64-byte report data that binds an image key to an enclave's report:
// SHA-256("teemate-evidence-v1\n" || kemPub || sigPub) followed by 32 zero bytes.
func ReportData(kemPub, sigPub []byte) [64]byte {
	h := sha256.New()
	h.Write([]byte(reportDataLabel))
	h.Write(kemPub)
	h.Write(sigPub)
	var rd [64]byte
	copy(rd[:], h.Sum(nil))
	return rd
}

// Kid names an image key: the first 16 bytes of SHA-256(kemPub || sigPub), 32 hex digits.
func Kid(kemPub, sigPub []byte) string {
	h := sha256.New()
	h.Write(kemPub)
	h.Write(sigPub)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Sha256 is the hex SHA-256 of the evidence as it was served (Raw): the name receipts use for it.
// Evidence built in memory (Raw empty) is hashed as it marshals.
func (ev *Evidence) Sha256() (string, error) {
	raw := ev.Raw
	if len(raw) == 0 {
		b, err := json.Marshal(ev)
		if err != nil {
			return "", fmt.Errorf("attest: marshal evidence: %w", err)
		}
		raw = b
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

// Clone returns a copy of ev that shares no memory with it.
func (ev *Evidence) Clone() *Evidence {
	c := *ev
	c.Keys.KEM = bytes.Clone(ev.Keys.KEM)
	c.Keys.Sig = bytes.Clone(ev.Keys.Sig)
	c.Quote = bytes.Clone(ev.Quote)
	c.Raw = bytes.Clone(ev.Raw)
	if ev.Simulated != nil {
		s := *ev.Simulated
		c.Simulated = &s
	}
	return &c
}

// Equal reports whether ev and o hold the same fields, Raw included.
func (ev *Evidence) Equal(o *Evidence) bool {
	if ev == nil || o == nil {
		return ev == o
	}
	if (ev.Simulated == nil) != (o.Simulated == nil) || (ev.Simulated != nil && *ev.Simulated != *o.Simulated) {
		return false
	}
	return ev.V == o.V && ev.Type == o.Type && ev.Image == o.Image && ev.Kid == o.Kid &&
		ev.ReportData == o.ReportData && bytes.Equal(ev.Keys.KEM, o.Keys.KEM) &&
		bytes.Equal(ev.Keys.Sig, o.Keys.Sig) && bytes.Equal(ev.Quote, o.Quote) && bytes.Equal(ev.Raw, o.Raw)
}
