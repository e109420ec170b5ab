package attest_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/attest/attesttest"
)

var (
	testMREnclave = sha256.Sum256([]byte("test enclave"))
	testMRSigner  = sha256.Sum256([]byte("test signer"))
)

// fixture is one image key, a test CA and the good evidence and policy built from them.
type fixture struct {
	ca       *attesttest.CA
	kem, sig []byte
	report   attest.ReportBody
	policy   attest.Policy
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, kem: k.PublicKey().Bytes(), sig: sig}
	f.report = attest.ReportBody{MREnclave: testMREnclave, MRSigner: testMRSigner, ISVProdID: 7, ISVSVN: 3}
	f.report.ReportData = attest.ReportData(f.kem, f.sig)
	f.policy = attest.Policy{Roots: ca.Pool(), MREnclave: [][32]byte{testMREnclave}, ProdID: 7, MinSVN: 3}
	return f
}

// evidence wraps a quote built from spec (its Report defaulting to the fixture's) in evidence.
func (f *fixture) evidence(t *testing.T, spec attesttest.Spec) *attest.Evidence {
	t.Helper()
	if spec.Report == (attest.ReportBody{}) {
		spec.Report = f.report
	}
	q, err := f.ca.Quote(spec)
	if err != nil {
		t.Fatal(err)
	}
	return f.wrap(q)
}

func (f *fixture) wrap(quote []byte) *attest.Evidence {
	rd := attest.ReportData(f.kem, f.sig)
	return &attest.Evidence{V: 1, Type: attest.TypeSGXDCAP, Image: "nodejs:20", Kid: attest.Kid(f.kem, f.sig),
		Keys: attest.Keys{KEM: f.kem, Sig: f.sig}, ReportData: hex.EncodeToString(rd[:]), Quote: quote}
}

func TestVerifyDCAP_Good(t *testing.T) {
	f := newFixture(t)
	ev, err := f.ca.Evidence("nodejs:20", f.kem, f.sig, f.report)
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as a client receives it.
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := attest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	id, err := attest.Verify(parsed, f.policy)
	if err != nil {
		t.Fatal(err)
	}
	if id.Type != attest.TypeSGXDCAP || id.MREnclave != testMREnclave || id.MRSigner != testMRSigner ||
		id.ProdID != 7 || id.SVN != 3 || !bytes.Equal(id.KEM, f.kem) || id.Kid != ev.Kid {
		t.Fatalf("identity %+v", id)
	}
	// By signer instead of measurement.
	bySigner := attest.Policy{Roots: f.ca.Pool(), MRSigner: [][32]byte{testMRSigner}}
	if _, err := attest.Verify(parsed, bySigner); err != nil {
		t.Fatalf("by MRSIGNER: %v", err)
	}
	// Simulated acceptance does not matter for a hardware quote.
	bySigner.AllowSimulated = true
	if _, err := attest.Verify(parsed, bySigner); err != nil {
		t.Fatalf("with AllowSimulated: %v", err)
	}
}

func TestVerifyDCAP_Refuses(t *testing.T) {
	f := newFixture(t)
	other, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	strayKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good, err := f.ca.Quote(attesttest.Spec{Report: f.report})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int) []byte {
		q := bytes.Clone(good)
		q[off] ^= 0x01
		return q
	}
	var zero64 [64]byte
	otherRD := f.report
	otherRD.ReportData = attest.ReportData(bytes.Repeat([]byte{9}, 32), f.sig)
	debug := f.report
	debug.Attributes[0] = 0x02

	cases := []struct {
		name   string
		ev     func() *attest.Evidence
		policy func(p *attest.Policy)
		want   error
	}{
		{"quote signature broken", func() *attest.Evidence { return f.wrap(flip(436 + 5)) }, nil, attest.ErrBinding},
		{"report body changed after signing", func() *attest.Evidence { return f.wrap(flip(48 + 64)) }, nil, attest.ErrBinding},
		{"header changed after signing", func() *attest.Evidence { return f.wrap(flip(8)) }, nil, attest.ErrBinding},
		{"quote signed by another key", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{QuoteSigner: strayKey})
		}, nil, attest.ErrBinding},
		{"QE report signature broken", func() *attest.Evidence { return f.wrap(flip(436 + 64 + 64 + 384 + 3)) }, nil, attest.ErrBinding},
		{"QE report signed by another key", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{QESigner: strayKey})
		}, nil, attest.ErrBinding},
		{"QE report body changed after signing", func() *attest.Evidence { return f.wrap(flip(436 + 64 + 64 + 100)) }, nil, attest.ErrBinding},
		{"QE report data does not bind the attestation key", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{QEReportData: &zero64})
		}, nil, attest.ErrBinding},
		{"QE auth data changed", func() *attest.Evidence { return f.wrap(flip(436 + 64 + 64 + 384 + 64 + 2)) }, nil, attest.ErrBinding},
		{"attestation key changed", func() *attest.Evidence { return f.wrap(flip(436 + 64 + 10)) }, nil, attest.ErrMalformed},
		{"report data not bound to the key", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{Report: otherRD})
		}, nil, attest.ErrBinding},
		{"chain of another CA (PCK key does not sign the QE report)", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertData: other.Chain})
		}, func(p *attest.Policy) { p.Roots = other.Pool() }, attest.ErrBinding},
		{"wrong root pinned", nil, func(p *attest.Policy) { p.Roots = other.Pool() }, attest.ErrChain},
		{"no root pinned", nil, func(p *attest.Policy) { p.Roots = nil }, attest.ErrChain},
		{"chain without the intermediate", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertData: pemOf(f.ca.PCK.Raw)})
		}, nil, attest.ErrChain},
		{"leaf of another CA under our intermediate", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertData: pemOf(other.PCK.Raw, f.ca.Intermediate.Raw)})
		}, nil, attest.ErrChain},
		{"certification data type 3", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertDataType: 3})
		}, nil, attest.ErrMalformed},
		{"certification data not PEM", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertData: []byte("not a certificate")})
		}, nil, attest.ErrMalformed},
		{"certification data with a broken certificate", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{CertData: pemOf([]byte("garbage"))})
		}, nil, attest.ErrMalformed},
		{"MRENCLAVE not in policy", nil, func(p *attest.Policy) { p.MREnclave = [][32]byte{sha256.Sum256(nil)} }, attest.ErrPolicy},
		{"MRSIGNER not in policy", nil, func(p *attest.Policy) {
			p.MREnclave = nil
			p.MRSigner = [][32]byte{sha256.Sum256(nil)}
		}, attest.ErrPolicy},
		{"policy names no measurement", nil, func(p *attest.Policy) { p.MREnclave = nil }, attest.ErrPolicy},
		{"ISVPRODID", nil, func(p *attest.Policy) { p.ProdID = 8 }, attest.ErrPolicy},
		{"ISVSVN below minimum", nil, func(p *attest.Policy) { p.MinSVN = 4 }, attest.ErrPolicy},
		{"debug enclave", func() *attest.Evidence {
			return f.evidence(t, attesttest.Spec{Report: debug})
		}, nil, attest.ErrPolicy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := f.wrap(good)
			if tc.ev != nil {
				ev = tc.ev()
			}
			p := f.policy
			if tc.policy != nil {
				tc.policy(&p)
			}
			_, err := attest.Verify(ev, p)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
	// The debug enclave passes once the policy allows debug: the refusal above was the flag's.
	p := f.policy
	p.AllowDebug = true
	if _, err := attest.Verify(f.evidence(t, attesttest.Spec{Report: debug}), p); err != nil {
		t.Fatalf("debug allowed: %v", err)
	}
}

func pemOf(ders ...[]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

func TestParseQuote_Structure(t *testing.T) {
	f := newFixture(t)
	good, err := f.ca.Quote(attesttest.Spec{Report: f.report})
	if err != nil {
		t.Fatal(err)
	}
	q, err := attest.ParseQuote(good)
	if err != nil {
		t.Fatal(err)
	}
	if q.Report.MREnclave != testMREnclave || q.Report.ISVProdID != 7 || q.CertDataType != 5 || len(q.QEAuthData) != 32 {
		t.Fatalf("parsed %+v", q.Report)
	}
	if !bytes.Equal(q.Marshal(), good) {
		t.Fatal("Marshal(ParseQuote(q)) != q")
	}
	// Every prefix is refused as malformed, never a panic.
	for n := range len(good) {
		if _, err := attest.ParseQuote(good[:n]); !errors.Is(err, attest.ErrMalformed) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	setU16 := func(off int, v uint16) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	setU32 := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for name, b := range map[string][]byte{
		"trailing byte":            append(bytes.Clone(good), 0),
		"oversize":                 make([]byte, 64<<10),
		"version 4":                setU16(0, 4),
		"attestation key type 3":   setU16(2, 3),
		"TEE type TDX":             setU32(4, 0x81),
		"signature length short":   setU32(432, uint32(len(good)-436-1)),
		"signature length long":    setU32(432, uint32(len(good)-436+1)),
		"signature length huge":    setU32(432, 0xffffffff),
		"QE auth data size huge":   setU16(436+64+64+384+64, 0xffff),
		"cert data size one short": setU32(len(good)-len(f.ca.Chain)-4, uint32(len(f.ca.Chain)-1)),
		"empty":                    nil,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := attest.ParseQuote(b); !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
			if _, err := attest.Verify(f.wrap(b), f.policy); !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("Verify: got %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParseQuote(f *testing.F) {
	fx, err := attesttest.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	good, err := fx.Quote(attesttest.Spec{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:600])
	f.Add([]byte{3, 0, 2, 0})
	pool := fx.Pool()
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := attest.ParseQuote(b)
		if err != nil {
			if !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		// What parses re-encodes to a quote that parses the same.
		again, err := attest.ParseQuote(q.Marshal())
		if err != nil || again.Report != q.Report || again.QEReport != q.QEReport || !bytes.Equal(again.CertData, q.CertData) {
			t.Fatalf("re-parse: %v", err)
		}
		// Verification of anything fuzzed never panics and never succeeds without a policy match.
		var rd [64]byte
		ev := &attest.Evidence{V: 1, Type: attest.TypeSGXDCAP, Kid: attest.Kid(nil, nil), ReportData: hex.EncodeToString(rd[:]),
			Keys: attest.Keys{KEM: make([]byte, 32), Sig: make([]byte, 32)}, Quote: b}
		if _, err := attest.Verify(ev, attest.Policy{Roots: pool}); err == nil {
			t.Fatal("verified without a policy measurement")
		}
	})
}

func FuzzParseEvidence(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"simulated","image":"x","kid":"00000000000000000000000000000000","keys":{"kem":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"reportData":"00","simulated":{"note":"n","measurement":"m"}}`))
	f.Add([]byte(`{"v":1,"type":"sgx-dcap","quote":"AwACAA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := attest.Parse(b)
		if err != nil {
			if !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		if _, err := attest.Verify(ev, attest.Policy{}); err == nil {
			t.Fatal("the zero policy accepted evidence")
		}
	})
}

func TestCheckBinding(t *testing.T) {
	f := newFixture(t)
	ev, err := f.ca.Evidence("nodejs:20", f.kem, f.sig, f.report)
	if err != nil {
		t.Fatal(err)
	}
	// No policy is needed: nothing is trusted, only the binding checked.
	if err := attest.CheckBinding(ev); err != nil {
		t.Fatal(err)
	}
	otherRD := f.report
	otherRD.ReportData = attest.ReportData(bytes.Repeat([]byte{9}, 32), f.sig)
	if err := attest.CheckBinding(f.evidence(t, attesttest.Spec{Report: otherRD})); !errors.Is(err, attest.ErrBinding) {
		t.Fatalf("unbound quote: %v", err)
	}
	if err := attest.CheckBinding(f.wrap([]byte{3, 0})); !errors.Is(err, attest.ErrMalformed) {
		t.Fatalf("truncated quote: %v", err)
	}
	sim := attest.NewSimulated("nodejs:20", f.kem, f.sig, "00")
	if err := attest.CheckBinding(sim); err != nil {
		t.Fatalf("simulated: %v", err)
	}
	sim.Kid = attest.Kid(f.sig, f.kem)
	if err := attest.CheckBinding(sim); !errors.Is(err, attest.ErrBinding) {
		t.Fatalf("simulated, wrong kid: %v", err)
	}
}
