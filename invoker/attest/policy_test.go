package attest_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/attest/attesttest"
)

func TestRootsFromPEMAndMeasurements(t *testing.T) {
	f := newFixture(t)
	roots, err := attest.RootsFromPEM(f.ca.RootPEM())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := attest.ParseMeasurements(" " + strings.Repeat("00", 32) + "," + hex.EncodeToString(testMREnclave[:]) + ",")
	if err != nil || len(ms) != 2 || ms[1] != testMREnclave {
		t.Fatalf("measurements %x, %v", ms, err)
	}
	p := attest.Policy{Roots: roots, MREnclave: ms, ProdID: 7}
	ev, err := f.ca.Evidence("nodejs:20", f.kem, f.sig, f.report)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.Verify(ev, p); err != nil {
		t.Fatal(err)
	}
	other, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.RootsFromPEM(append(other.RootPEM(), f.ca.RootPEM()...)); err != nil {
		t.Fatalf("two roots: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("junk"), bytes.Replace(f.ca.RootPEM(), []byte("CERTIFICATE"), []byte("PRIVATE KEY"), 2)} {
		if _, err := attest.RootsFromPEM(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	for _, bad := range []string{"zz", strings.Repeat("0", 62), strings.Repeat("0", 66)} {
		if _, err := attest.ParseMeasurements(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	if ms, err := attest.ParseMeasurements(""); err != nil || len(ms) != 0 {
		t.Fatalf("empty: %v %v", ms, err)
	}
}
