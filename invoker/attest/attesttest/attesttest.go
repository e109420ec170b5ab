// Package attesttest builds test SGX DCAP evidence with Go's crypto: a test CA chain (root,
// intermediate, PCK leaf) standing in for Intel's, a quoting enclave's attestation key, and
// version 3 quotes signed by both, so that the verifier in invoker/attest and everything that
// calls it (controller, CLI, client package) can be tested without SGX hardware.
//
// Nothing here is trusted by anything but tests: its root is pinned only by a test's Policy.
// It is a public package (like net/http/httptest) because tests of other modules' parts use it.
package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/teemate/platform/invoker/attest"
)

// CA is a test PCK chain and a quoting enclave: root → intermediate → PCK leaf, and the QE's
// attestation key.
type CA struct {
	Root, Intermediate, PCK *x509.Certificate
	rootKey, interKey       *ecdsa.PrivateKey
	PCKKey                  *ecdsa.PrivateKey
	// AttestationKey is the QE's key that signs quotes.
	AttestationKey *ecdsa.PrivateKey
	// Chain is the PCK chain as a quote carries it (PEM, leaf first, NUL-terminated).
	Chain []byte
}

// NewCA builds a fresh test chain and attestation key.
func NewCA() (*CA, error) {
	ca := &CA{}
	var err error
	if ca.rootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("attesttest: root key: %w", err)
	}
	if ca.interKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("attesttest: intermediate key: %w", err)
	}
	if ca.PCKKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("attesttest: PCK key: %w", err)
	}
	if ca.AttestationKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("attesttest: attestation key: %w", err)
	}
	now := time.Now()
	tmpl := func(serial int64, cn string, isCA bool) *x509.Certificate {
		c := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"TeeMate test"}},
			NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			BasicConstraintsValid: true, IsCA: isCA,
		}
		if isCA {
			c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			c.KeyUsage = x509.KeyUsageDigitalSignature
		}
		return c
	}
	issue := func(t, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
		der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, signer)
		if err != nil {
			return nil, nil, fmt.Errorf("attesttest: certificate %s: %w", t.Subject.CommonName, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("attesttest: certificate %s: %w", t.Subject.CommonName, err)
		}
		return c, der, nil
	}
	rootT := tmpl(1, "TeeMate Test SGX Root CA", true)
	root, rootDER, err := issue(rootT, rootT, &ca.rootKey.PublicKey, ca.rootKey)
	if err != nil {
		return nil, err
	}
	inter, interDER, err := issue(tmpl(2, "TeeMate Test SGX PCK Platform CA", true), root, &ca.interKey.PublicKey, ca.rootKey)
	if err != nil {
		return nil, err
	}
	pck, pckDER, err := issue(tmpl(3, "TeeMate Test SGX PCK Certificate", false), inter, &ca.PCKKey.PublicKey, ca.interKey)
	if err != nil {
		return nil, err
	}
	ca.Root, ca.Intermediate, ca.PCK = root, inter, pck
	for _, der := range [][]byte{pckDER, interDER, rootDER} {
		ca.Chain = append(ca.Chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	ca.Chain = append(ca.Chain, 0)
	return ca, nil
}

// Pool is a pool holding only the test root: the Policy.Roots that trusts this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// RootPEM is the test root certificate in PEM (what a controller or CLI flag would pin).
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})
}

// Spec says what quote to build. The zero values of the test hooks build a correct quote.
type Spec struct {
	// Report is the ISV enclave's report body (MRENCLAVE, MRSIGNER, ISVPRODID, ISVSVN,
	// ReportData, attributes).
	Report attest.ReportBody
	// QEAuthData is the QE authentication data (any bytes; 32 by default).
	QEAuthData []byte

	// Test hooks, each breaking one link of the chain of trust.
	// QuoteSigner signs the quote instead of the attestation key the quote carries.
	QuoteSigner *ecdsa.PrivateKey
	// QEReportData replaces the QE report's binding of the attestation key.
	QEReportData *[64]byte
	// QESigner signs the QE report instead of the PCK key.
	QESigner *ecdsa.PrivateKey
	// CertData replaces the PCK chain; CertDataType the type 5.
	CertData     []byte
	CertDataType uint16
}

// Quote builds and signs a DCAP version 3 quote.
func (ca *CA) Quote(s Spec) ([]byte, error) {
	att := ca.AttestationKey
	q := &attest.Quote{
		Header: attest.QuoteHeader{Version: 3, AttKeyType: 2, QESVN: 8, PCESVN: 13,
			// Intel's QE vendor id; the verifier does not check it (that is QE identity).
			QEVendorID: [16]byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}},
		Report:       s.Report,
		QEAuthData:   s.QEAuthData,
		CertDataType: 5,
		CertData:     ca.Chain,
	}
	if q.QEAuthData == nil {
		q.QEAuthData = make([]byte, 32)
		for i := range q.QEAuthData {
			q.QEAuthData[i] = byte(i)
		}
	}
	if s.CertData != nil {
		q.CertData = s.CertData
	}
	if s.CertDataType != 0 {
		q.CertDataType = s.CertDataType
	}
	pub, err := att.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, fmt.Errorf("attesttest: attestation key: %w", err)
	}
	copy(q.AttestationKey[:], pub[1:])
	h := sha256.New()
	h.Write(q.AttestationKey[:])
	h.Write(q.QEAuthData)
	copy(q.QEReport.ReportData[:], h.Sum(nil))
	if s.QEReportData != nil {
		q.QEReport.ReportData = *s.QEReportData
	}
	q.QEReport.MRSigner = sha256.Sum256([]byte("TeeMate test QE signer"))
	q.QEReport.ISVProdID = 1
	qeSigner := ca.PCKKey
	if s.QESigner != nil {
		qeSigner = s.QESigner
	}
	if q.QEReportSignature, err = signRS(qeSigner, q.QEReport.Marshal()); err != nil {
		return nil, err
	}
	signed := append(q.Header.Marshal(), q.Report.Marshal()...)
	quoteSigner := att
	if s.QuoteSigner != nil {
		quoteSigner = s.QuoteSigner
	}
	if q.Signature, err = signRS(quoteSigner, signed); err != nil {
		return nil, err
	}
	return q.Marshal(), nil
}

// Evidence builds sgx-dcap evidence for an image key: the report's ReportData is set to the
// key's binding and the quote signed.
func (ca *CA) Evidence(image string, kemPub, sigPub []byte, report attest.ReportBody) (*attest.Evidence, error) {
	report.ReportData = attest.ReportData(kemPub, sigPub)
	quote, err := ca.Quote(Spec{Report: report})
	if err != nil {
		return nil, err
	}
	return &attest.Evidence{
		V: attest.Version, Type: attest.TypeSGXDCAP, Image: image,
		Kid:        attest.Kid(kemPub, sigPub),
		Keys:       attest.Keys{KEM: append([]byte(nil), kemPub...), Sig: append([]byte(nil), sigPub...)},
		ReportData: hex.EncodeToString(report.ReportData[:]),
		Quote:      quote,
	}, nil
}

// signRS signs SHA-256(msg) and returns r||s, 32 bytes each, as quotes carry signatures.
func signRS(key *ecdsa.PrivateKey, msg []byte) ([64]byte, error) {
	var out [64]byte
	digest := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return out, fmt.Errorf("attesttest: sign: %w", err)
	}
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}
