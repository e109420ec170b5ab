package app

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/attest"
)

// TestStandaloneEvidence runs the platform (process sandbox, direct enclave): the invoker fetches
// the evidence of the nodejs:20 owner over the gate and publishes it, and the REST API serves it
// for an action of that kind, byte for byte on every read. While the runtime holds no image key
// (trusted/keys.js not in this tree), the owner answers unavailable and the API's answer is the
// clear 404.
func TestStandaloneEvidence(t *testing.T) {
	buildOwnerConfinement(t)
	p, err := startStandalone(t, t.TempDir(), "process", "direct")
	if err != nil {
		t.Fatalf("standalone: %v", err)
	}
	defer func() {
		if err := p.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	eventually(t, "invoker0 healthy", func() bool { return p.invokerState(t) == "up" })
	if code, b := p.call(t, http.MethodPut, "/api/v1/namespaces/guest/actions/hello", guestAuth, helloAction); code != http.StatusOK {
		t.Fatalf("create action: %d %s", code, b)
	}
	const path = "/api/v1/teemate/evidence?action=/guest/hello"
	if code, b := p.call(t, http.MethodGet, path, [2]string{}, ""); code != http.StatusUnauthorized {
		t.Fatalf("without a key: %d %s", code, b)
	}
	_, statErr := os.Stat(filepath.Join(repoDirForTest(t), "enclave-runtime", "trusted", "keys.js"))
	if errors.Is(statErr, os.ErrNotExist) {
		// No image key in this runtime: nothing is published, and the answer says why.
		time.Sleep(time.Second)
		code, b := p.call(t, http.MethodGet, path, guestAuth, "")
		if code != http.StatusNotFound || !strings.Contains(string(b), "No enclave of image nodejs:20 has published evidence yet") {
			t.Fatalf("without keys.js: %d %s", code, b)
		}
		t.Log("trusted/keys.js absent: the owner holds no image key; the 404 was checked")
		return
	}
	var served []byte
	eventually(t, "evidence published", func() bool {
		code, b := p.call(t, http.MethodGet, path, guestAuth, "")
		served = b
		return code == http.StatusOK
	})
	ev, err := attest.Parse(served)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Image != "nodejs:20" || ev.Type != attest.TypeSimulated {
		t.Fatalf("evidence of %q, type %q", ev.Image, ev.Type)
	}
	if _, err := attest.Verify(ev, attest.Policy{}); !errors.Is(err, attest.ErrSimulated) {
		t.Fatalf("direct-mode evidence without AllowSimulated: %v", err)
	}
	if _, err := attest.Verify(ev, attest.Policy{AllowSimulated: true}); err != nil {
		t.Fatal(err)
	}
	if _, again := p.call(t, http.MethodGet, path, guestAuth, ""); !bytes.Equal(again, served) {
		t.Fatal("the evidence is not served byte for byte")
	}
}

// repoDirForTest is the repository root, found from the test's working directory.
func repoDirForTest(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatal("repository root not found")
	return ""
}
