package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
)

// verifyDCAP checks an sgx-dcap quote against the expected report data and the policy, and fills
// the identity's measurement fields. The order goes from cheap structure to the policy, so the
// error names the first link that does not hold.
func verifyDCAP(raw []byte, reportData [64]byte, p Policy, id *Identity) error {
	q, err := ParseQuote(raw)
	if err != nil {
		return err
	}
	if q.Report.ReportData != reportData {
		return fmt.Errorf("%w: the quote's report_data is not the evidence's reportData", ErrBinding)
	}
	attKey, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, q.AttestationKey[:]...))
	if err != nil {
		return fmt.Errorf("%w: attestation key is not a P-256 point: %w", ErrMalformed, err)
	}
	if !verifyRS(attKey, q.signed, q.Signature) {
		return fmt.Errorf("%w: quote signature does not verify with the attestation key", ErrBinding)
	}
	pck, err := verifyPCKChain(q, p.Roots)
	if err != nil {
		return err
	}
	if !verifyRS(pck, q.qeReportRaw, q.QEReportSignature) {
		return fmt.Errorf("%w: QE report signature does not verify with the PCK certificate's key", ErrBinding)
	}
	// The QE vouches for the attestation key by putting its hash (with the QE authentication
	// data) in its own report, which the PCK key signs.
	h := sha256.New()
	h.Write(q.AttestationKey[:])
	h.Write(q.QEAuthData)
	var want [64]byte
	copy(want[:], h.Sum(nil))
	if q.QEReport.ReportData != want {
		return fmt.Errorf("%w: QE report data does not bind the attestation key", ErrBinding)
	}
	id.MREnclave, id.MRSigner = q.Report.MREnclave, q.Report.MRSigner
	id.ProdID, id.SVN = q.Report.ISVProdID, q.Report.ISVSVN
	return checkPolicy(&q.Report, p)
}

// verifyRS verifies a raw r||s ECDSA signature over SHA-256(msg).
func verifyRS(pub *ecdsa.PublicKey, msg []byte, sig [64]byte) bool {
	digest := sha256.Sum256(msg)
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, digest[:], r, s)
}

// verifyPCKChain verifies the quote's PCK certificate chain (certification data type 5, PEM,
// leaf first) up to the pinned roots, and returns the leaf's P-256 key. Certificates after the
// leaf serve as intermediates only: a root inside the quote is never trusted by itself.
func verifyPCKChain(q *Quote, roots *x509.CertPool) (*ecdsa.PublicKey, error) {
	if q.CertDataType != certDataPCKChain {
		return nil, fmt.Errorf("%w: certification data type %d, want %d (PCK certificate chain)", ErrMalformed, q.CertDataType, certDataPCKChain)
	}
	if roots == nil {
		return nil, fmt.Errorf("%w: the policy pins no root certificate", ErrChain)
	}
	var certs []*x509.Certificate
	rest := bytes.TrimRight(q.CertData, "\x00") // the QE terminates the PEM with a NUL
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %q in the PCK chain", ErrMalformed, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PCK chain: %w", ErrMalformed, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: PCK chain has trailing data that is not PEM", ErrMalformed)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificate in the PCK chain", ErrMalformed)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter,
		// Intel's PCK certificates carry no extended key usage for this; the chain is what counts.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%w: PCK certificate: %w", ErrChain, err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: PCK certificate key is not ECDSA P-256", ErrChain)
	}
	return pub, nil
}

// checkPolicy decides whether the enclave's identity is one the policy accepts.
func checkPolicy(r *ReportBody, p Policy) error {
	if r.Debug() && !p.AllowDebug {
		return fmt.Errorf("%w: the enclave runs in debug mode (its memory is readable by the host)", ErrPolicy)
	}
	if len(p.MREnclave) == 0 && len(p.MRSigner) == 0 {
		return fmt.Errorf("%w: the policy names no MRENCLAVE or MRSIGNER (enclave has MRENCLAVE %x, MRSIGNER %x)", ErrPolicy, r.MREnclave, r.MRSigner)
	}
	if !slices.Contains(p.MREnclave, r.MREnclave) && !slices.Contains(p.MRSigner, r.MRSigner) {
		return fmt.Errorf("%w: MRENCLAVE %x / MRSIGNER %x not in the policy", ErrPolicy, r.MREnclave, r.MRSigner)
	}
	if p.ProdID != 0 && r.ISVProdID != p.ProdID {
		return fmt.Errorf("%w: ISVPRODID %d, policy wants %d", ErrPolicy, r.ISVProdID, p.ProdID)
	}
	if r.ISVSVN < p.MinSVN {
		return fmt.Errorf("%w: ISVSVN %d below the policy's minimum %d", ErrPolicy, r.ISVSVN, p.MinSVN)
	}
	return nil
}
