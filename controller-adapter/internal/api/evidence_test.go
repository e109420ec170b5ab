package api

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/attest/attesttest"
)

// imageKey is a fresh image key's raw public halves.
func imageKey(t *testing.T) (kem, sig []byte) {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes(), pub
}

// simulatedEvidence is evidence as a direct-mode owner serves it, indented so that a test can tell
// re-encoded bytes from served ones.
func simulatedEvidence(t *testing.T, image string) []byte {
	t.Helper()
	kem, sig := imageKey(t)
	b, err := json.MarshalIndent(attest.NewSimulated(image, kem, sig, strings.Repeat("ab", 32)), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) publish(t *testing.T, image string, doc []byte, tok string) (*http.Response, []byte) {
	t.Helper()
	return e.do(t, http.MethodPut, "/internal/v1/evidence/"+image, "", "application/json", bytes.NewReader(doc),
		invokerTokenHeader, tok)
}

func TestEvidence_PublishAndServe(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:default","code":"function main(){return {}}"}}`)

	// Nothing published yet: a clear 404.
	resp, body := e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", guestAuth, "", nil)
	wantError(t, resp, body, http.StatusNotFound,
		"No enclave of image nodejs:20 has published evidence yet; an invoker publishes it once an enclave of the image has started.")

	doc := simulatedEvidence(t, "nodejs:20")
	resp, body = e.publish(t, "nodejs:20", doc, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for _, ref := range []string{"/guest/hello", "/_/hello", "hello"} {
		resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action="+ref, guestAuth, "", nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, doc) {
			t.Fatalf("%s: %d %s; want the published bytes", ref, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content type %q", ct)
		}
	}
	// The kind names the image: nodejs:default is nodejs:20's.
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?kind=nodejs:default", guestAuth, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, doc) {
		t.Fatalf("kind nodejs:default: %d %s; want the published bytes", resp.StatusCode, body)
	}

	// The latest wins (a rotated or transferred key).
	doc2 := simulatedEvidence(t, "nodejs:20")
	if resp, body := e.publish(t, "nodejs:20", doc2, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish again: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", guestAuth, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, doc2) {
		t.Fatalf("after republish: %d %s", resp.StatusCode, body)
	}
	ev, err := attest.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(doc2)
	if h, err := ev.Sha256(); err != nil || h != hex.EncodeToString(sum[:]) {
		t.Fatalf("hash of the served evidence %s, %v", h, err)
	}
}

func TestEvidence_Refused(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"}}`)
	good := simulatedEvidence(t, "nodejs:20")

	// Publishing needs the invoker token; reading needs a user's key.
	resp, body := e.publish(t, "nodejs:20", good, "")
	wantError(t, resp, body, http.StatusUnauthorized, msgBadCredentials)
	resp, body = e.publish(t, "nodejs:20", good, "wrong")
	wantError(t, resp, body, http.StatusUnauthorized, msgBadCredentials)
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", "", "", nil)
	wantError(t, resp, body, http.StatusUnauthorized, msgNoCredentials)

	var unbound map[string]any
	if err := json.Unmarshal(good, &unbound); err != nil {
		t.Fatal(err)
	}
	unbound["kid"] = strings.Repeat("0", 32)
	unboundDoc, err := json.Marshal(unbound)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		image string
		doc   []byte
	}{
		"not JSON":        {"nodejs:20", []byte("{")},
		"other image":     {"nodejs:18", good},
		"kid not bound":   {"nodejs:20", unboundDoc},
		"version 2":       {"nodejs:20", bytes.Replace(good, []byte(`"v": 1`), []byte(`"v": 2`), 1)},
		"oversize":        {"nodejs:20", bytes.Repeat([]byte(" "), maxEvidenceBytes+1)},
		"truncated quote": {"nodejs:20", []byte(`{"v":1,"type":"sgx-dcap","image":"nodejs:20","quote":"AwACAA=="}`)},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.publish(t, tc.image, tc.doc, token)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			t.Log(string(body))
		})
	}
	// None of them was stored.
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", guestAuth, "", nil)
	wantError(t, resp, body, http.StatusNotFound, "")

	// Bad references and other namespaces.
	if resp, body := e.publish(t, "nodejs:20", good, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for ref, status := range map[string]int{
		"":                    http.StatusBadRequest,
		"/guest":              http.StatusBadRequest,
		"/guest/pkg/hello":    http.StatusNotFound, // no package pkg
		"/guest/%24bad":       http.StatusBadRequest,
		"/guest/missing":      http.StatusNotFound,
		"/other/hello":        http.StatusForbidden,
		"/%24bad/hello":       http.StatusBadRequest,
		"/guest/hello/extra/": http.StatusBadRequest,
	} {
		resp, body := e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action="+ref, guestAuth, "", nil)
		if resp.StatusCode != status {
			t.Errorf("%q: %d %s, want %d", ref, resp.StatusCode, body, status)
		}
	}
}

// TestEvidence_Policy: with a policy, sgx-dcap evidence must verify under it before it is served.
func TestEvidence_Policy(t *testing.T) {
	ca, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := attesttest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	mr := sha256.Sum256([]byte("enclave"))
	policy := &attest.Policy{Roots: ca.Pool(), MREnclave: [][32]byte{mr}}
	e := newEnv(t, Config{EvidencePolicy: policy})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"}}`)

	kem, sig := imageKey(t)
	quoted := func(ca *attesttest.CA, mrenclave [32]byte) []byte {
		ev, err := ca.Evidence("nodejs:20", kem, sig, attest.ReportBody{MREnclave: mrenclave})
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	resp, body := e.publish(t, "nodejs:20", quoted(other, mr), token)
	wantError(t, resp, body, http.StatusBadRequest, "")
	if !strings.Contains(string(body), "certificate chain not trusted") {
		t.Fatalf("wrong root: %s", body)
	}
	resp, body = e.publish(t, "nodejs:20", quoted(ca, sha256.Sum256([]byte("other enclave"))), token)
	wantError(t, resp, body, http.StatusBadRequest, "")
	if !strings.Contains(string(body), "not allowed by policy") {
		t.Fatalf("wrong measurement: %s", body)
	}
	good := quoted(ca, mr)
	if resp, body := e.publish(t, "nodejs:20", good, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	// Simulated evidence is the client's call, not the controller's: it is served too.
	if resp, body := e.publish(t, "nodejs:18", simulatedEvidence(t, "nodejs:18"), token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish simulated: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", guestAuth, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, good) {
		t.Fatalf("served %d %s", resp.StatusCode, body)
	}
}

// TestEvidence_SurvivesRestart publishes over REST, stops the controller (API and store) and
// reads the evidence over REST from a new one on the same database file.
func TestEvidence_SurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	start := func() (*env, func()) {
		st, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.EnsureNamespace(t.Context(), "guest", guestUUID, guestKey); err != nil {
			t.Fatal(err)
		}
		inv := &fakeInvoker{t: t, st: st, behaviours: map[string]behaviour{}}
		srv := httptest.NewServer(New(Config{InvokerToken: token}, st, inv, zaptest.NewLogger(t)))
		return &env{srv: srv, st: st, inv: inv}, func() {
			srv.Close()
			if err := st.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	e, stop := start()
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"}}`)
	doc := simulatedEvidence(t, "nodejs:20")
	if resp, body := e.publish(t, "nodejs:20", doc, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	stop()
	e, stop = start()
	defer stop()
	resp, body := e.do(t, http.MethodGet, "/api/v1/teemate/evidence?action=/guest/hello", guestAuth, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, doc) {
		t.Fatalf("after restart: %d %s", resp.StatusCode, body)
	}
}

// TestEvidence_ByKind: ?kind= names the image directly, for code sealed before its action exists.
func TestEvidence_ByKind(t *testing.T) {
	e := newEnv(t, Config{})
	resp, body := e.do(t, http.MethodGet, "/api/v1/teemate/evidence?kind=nodejs:default", guestAuth, "", nil)
	wantError(t, resp, body, http.StatusNotFound,
		"No enclave of image nodejs:20 has published evidence yet; an invoker publishes it once an enclave of the image has started.")
	doc := simulatedEvidence(t, "nodejs:20")
	if resp, body := e.publish(t, "nodejs:20", doc, token); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?kind=nodejs:20", guestAuth, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, doc) {
		t.Fatalf("by kind: %d %s; want the published bytes", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?kind=cobol:1", guestAuth, "", nil)
	wantError(t, resp, body, http.StatusBadRequest, `The kind "cobol:1" runs in no enclave image.`)
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence?kind=nodejs:20", "", "", nil)
	wantError(t, resp, body, http.StatusUnauthorized, msgNoCredentials)
	resp, body = e.do(t, http.MethodGet, "/api/v1/teemate/evidence", guestAuth, "", nil)
	wantError(t, resp, body, http.StatusBadRequest,
		"The query parameter 'action' (/namespace/name, or name in your own namespace) or 'kind' is required.")
}
