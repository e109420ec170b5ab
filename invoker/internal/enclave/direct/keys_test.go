package direct

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/gate"
)

// keysBackend is a backend with a key dir, confined as the invoker runs it when the test is root.
func keysBackend(t *testing.T, log *zap.Logger) (*Backend, string) {
	t.Helper()
	testtool.Require(t, "node")
	wd, _ := os.Getwd()
	js, err := FindOwnerJS(wd)
	if err != nil {
		testtool.Missing(t, "enclave-runtime/trusted/owner.js: "+err.Error())
	}
	keyDir := t.TempDir()
	cfg := Config{OwnerJS: js, KeyDir: keyDir}
	if launcher != "" {
		cfg.Confine = confine.Config{Launcher: launcher}
	}
	b, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return b, keyDir
}

func startKeyOwner(t *testing.T, b *Backend, id, mode string) enclave.Owner {
	t.Helper()
	o, err := b.Start(context.Background(), enclave.StartSpec{ID: id, Image: "nodejs:20",
		Dir: filepath.Join(t.TempDir(), id), Slots: 2, KeyMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Stop(context.Background()); err != nil {
			t.Errorf("stop %s: %v", id, err)
		}
	})
	return o
}

func kidOf(t *testing.T, o enclave.Owner) string {
	t.Helper()
	p, err := gate.Ping(context.Background(), o.GateSocket())
	if err != nil {
		t.Fatal(err)
	}
	return p.Kid
}

// sealedFile is DIR/image-key.sealed as enclave-runtime/trusted/keys.js writes it.
type sealedFile struct {
	V           int    `json:"v"`
	Image       string `json:"image"`
	Type        string `json:"type"`
	Measurement string `json:"measurement"`
	Kid         string `json:"kid"`
	IV          string `json:"iv"`
	CT          string `json:"ct"`
}

// privateKeys opens the sealed image key with the backend's sealing key (the host holds it in
// direct mode, which is why the evidence says simulated) and returns the raw private keys.
func privateKeys(t *testing.T, keyDir, file string) [][]byte {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s sealedFile
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatal(err)
	}
	skHex, err := os.ReadFile(filepath.Join(keyDir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := hex.DecodeString(strings.TrimSpace(string(skHex)))
	blk, err := aes.NewCipher(sk)
	if err != nil {
		t.Fatal(err)
	}
	gcm, _ := cipher.NewGCM(blk)
	iv, _ := hex.DecodeString(s.IV)
	ct, _ := base64.StdEncoding.DecodeString(s.CT)
	aad := "teemate-image-key-v1\n" + s.Image + "\n" + s.Type + "\n" + s.Measurement + "\n" + s.Kid
	plain, err := gcm.Open(nil, iv, ct, []byte(aad))
	if err != nil {
		t.Fatalf("open the sealed key: %v", err)
	}
	// {"key":{"kid","kem":{"d","x"},"sig":{"d","x"}},"retired":[...]}; d is base64url.
	var raw struct {
		Key map[string]json.RawMessage `json:"key"`
	}
	if err := json.Unmarshal(plain, &raw); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, name := range []string{"kem", "sig"} {
		var j struct{ D string }
		if err := json.Unmarshal(raw.Key[name], &j); err != nil {
			t.Fatal(err)
		}
		d, err := base64.RawURLEncoding.DecodeString(j.D)
		if err != nil || len(d) != 32 {
			t.Fatalf("private %s key %q: %v", name, j.D, err)
		}
		out = append(out, d)
	}
	return out
}

// TestImageKeyRestartTransferTamper: a restarted owner of an image comes back with the same kid
// (the key sealed in its image's key dir); a second owner that awaits the key gets it by transfer,
// and what the host relayed holds no private key in any encoding; a tampered sealed key stops the
// next owner's start, and the file is not replaced.
func TestImageKeyRestartTransferTamper(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	b, keyDir := keysBackend(t, zap.New(core))
	st, err := os.Stat(filepath.Join(keyDir, "sealing.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sealing key file: %v %v", st, err)
	}

	first := startKeyOwner(t, b, "keys-1", "")
	kid := kidOf(t, first)
	if len(kid) != 32 {
		t.Fatalf("kid %q", kid)
	}
	imageDir := filepath.Join(keyDir, "images", imageDirName("nodejs:20"))
	file := filepath.Join(imageDir, "image-key.sealed")
	ds, err := os.Stat(imageDir)
	if err != nil || ds.Mode().Perm() != 0o700 {
		t.Fatalf("image key dir: %v %v", ds, err)
	}
	if launcher != "" {
		if sys := ds.Sys().(*syscall.Stat_t); sys.Uid != confine.DefaultUID {
			t.Errorf("image key dir owned by uid %d, want the owners' %d", sys.Uid, confine.DefaultUID)
		}
	}
	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := startKeyOwner(t, b, "keys-2", "")
	if got := kidOf(t, second); got != kid {
		t.Fatalf("restarted owner has kid %s, want %s", got, kid)
	}

	third := startKeyOwner(t, b, "keys-3", enclave.KeyAwait)
	if got := kidOf(t, third); got != "" {
		t.Fatalf("an awaiting owner has kid %q", got)
	}
	ep := func(o enclave.Owner) gate.KeyEndpoint {
		return gate.KeyEndpoint{Socket: o.GateSocket(), Key: o.(gate.KeyHolder).GateKey()}
	}
	// Without the invoker's proof an owner refuses key messages.
	if _, err := gate.TransferKey(context.Background(), gate.KeyEndpoint{Socket: third.GateSocket()}, ep(second)); !gate.IsClass(err, gate.ClassAuth) {
		t.Fatalf("transfer without the proof: %v", err)
	}
	tr, err := gate.TransferKey(context.Background(), ep(third), ep(second))
	if err != nil {
		t.Fatal(err)
	}
	if tr.Kid != kid || kidOf(t, third) != kid {
		t.Fatalf("transferred kid %s (owner says %s), want %s", tr.Kid, kidOf(t, third), kid)
	}
	relayed := append(append([]byte{}, tr.Request...), tr.Offer...)
	if !bytes.Contains(tr.Offer, []byte(`"ct"`)) || !bytes.Contains(tr.Request, []byte(`"evidence"`)) {
		t.Fatalf("unexpected relay: %s / %s", tr.Request, tr.Offer)
	}
	for _, d := range privateKeys(t, keyDir, file) {
		for _, enc := range []string{string(d), hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d),
			base64.RawStdEncoding.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d)} {
			if bytes.Contains(relayed, []byte(enc)) {
				t.Fatalf("the relayed messages hold a private key (%q)", enc)
			}
		}
	}

	// Tamper with the sealed key: the next owner refuses to start and the file stays as it is.
	for _, o := range []enclave.Owner{second, third} {
		if err := o.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s sealedFile
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(s.CT)
	ct[3] ^= 0x10
	var m map[string]any
	if err := json.Unmarshal(text, &m); err != nil {
		t.Fatal(err)
	}
	m["ct"] = base64.StdEncoding.EncodeToString(ct)
	tampered, _ := json.Marshal(m)
	if err := os.WriteFile(file, tampered, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = b.Start(context.Background(), enclave.StartSpec{ID: "keys-4", Image: "nodejs:20",
		Dir: filepath.Join(t.TempDir(), "keys-4"), Slots: 2})
	if err == nil || !strings.Contains(err.Error(), "integrity check failed") {
		t.Fatalf("start over a tampered sealed key: %v", err)
	}
	said := false
	for _, e := range logs.FilterField(zap.String("enclave", "keys-4")).All() {
		if line, ok := e.ContextMap()["line"].(string); ok && strings.Contains(line, "refuses to start rather than replace it") {
			said = true
		}
	}
	if !said {
		t.Error("the owner did not say why it refused to start")
	}
	if now, _ := os.ReadFile(file); !bytes.Equal(now, tampered) {
		t.Fatal("the tampered sealed key was replaced")
	}
}
