package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// IdentitySha256 names the enclave identity behind evidence in receipts: the hex SHA-256 of the
// canonical JSON (CanonicalJSON) of
//
//	{"image","kem","kid","measurement","reportData","sig","type","v"}
//
// where kem and sig are the image key's public halves in base64 and measurement is, for simulated
// evidence, simulated.measurement, and for sgx-dcap the quote's MRENCLAVE followed by its MRSIGNER
// (128 hex digits). Unlike the hash of the evidence as served, it is the same for every owner of
// the image that holds the same key in the same measured enclave: on sgx each owner's quote differs
// (its own signature, its own platform), so a receipt from any of them verifies against the
// evidence another one published. The enclave runtime computes the same (trusted/keys.js).
func (ev *Evidence) IdentitySha256() (string, error) {
	if ev == nil {
		return "", fmt.Errorf("%w: no evidence", ErrMalformed)
	}
	var measurement string
	switch {
	case ev.Type == TypeSimulated && ev.Simulated != nil:
		measurement = ev.Simulated.Measurement
	case ev.Type == TypeSGXDCAP:
		q, err := ParseQuote(ev.Quote)
		if err != nil {
			return "", err
		}
		measurement = hex.EncodeToString(q.Report.MREnclave[:]) + hex.EncodeToString(q.Report.MRSigner[:])
	default:
		return "", fmt.Errorf("%w: evidence of type %q has no measurement", ErrMalformed, ev.Type)
	}
	b, err := CanonicalJSON(map[string]string{
		"image": ev.Image, "kid": ev.Kid, "kem": base64.StdEncoding.EncodeToString(ev.Keys.KEM), "sig": base64.StdEncoding.EncodeToString(ev.Keys.Sig),
		"reportData": ev.ReportData, "type": ev.Type, "measurement": measurement,
	}, map[string]int{"v": ev.V})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// CanonicalJSON is the one canonical JSON rule of the sealed formats (receipts, the identity
// hash), for flat objects of strings and integers: keys sorted, no spaces, strings escaped as
// JavaScript's JSON.stringify does (the enclave runtime's trusted/sealed.js canonicalJSON).
// A key may appear in one of the maps only; a string must be UTF-8.
func CanonicalJSON(strs map[string]string, ints map[string]int) ([]byte, error) {
	names := make([]string, 0, len(strs)+len(ints))
	for k := range strs {
		names = append(names, k)
	}
	for k := range ints {
		if _, dup := strs[k]; dup {
			return nil, fmt.Errorf("%w: canonical JSON key %q given twice", ErrMalformed, k)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: canonical JSON key is not UTF-8", ErrMalformed)
		}
		writeJSString(&b, k)
		b.WriteByte(':')
		if n, ok := ints[k]; ok {
			b.WriteString(strconv.Itoa(n))
			continue
		}
		if !utf8.ValidString(strs[k]) {
			return nil, fmt.Errorf("%w: canonical JSON field %s is not UTF-8", ErrMalformed, k)
		}
		writeJSString(&b, strs[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeJSString writes s as JSON.stringify would: the two-character escapes, other control
// characters as \u00xx, everything else as it is.
func writeJSString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteRune(c)
			}
		}
	}
	b.WriteByte('"')
}
