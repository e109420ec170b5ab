package attest

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// RootsFromPEM reads the root certificates a policy pins (Intel's SGX Root CA in production)
// from PEM. Every block must be a certificate, and there must be at least one.
func RootsFromPEM(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("attest: roots: PEM block %q is not a certificate", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("attest: roots: %w", err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("attest: roots: no PEM certificate")
	}
	return pool, nil
}

// ParseMeasurements reads a comma-separated list of MRENCLAVE or MRSIGNER values, 64 hex digits
// each (as flags and configuration give them); the empty string is the empty list.
func ParseMeasurements(s string) ([][32]byte, error) {
	var out [][32]byte
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		b, err := hex.DecodeString(f)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("attest: measurement %q is not 64 hex digits", f)
		}
		out = append(out, [32]byte(b))
	}
	return out, nil
}
