package credentials

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/kafka"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestPrivateDirFixesWhatItFinds: a pre-existing 0755 directory with a 0644 file, an owned 0755
// subdirectory and an executable 0755 file is made private; a subtree it does not own (the
// function images) is left alone.
func TestPrivateDirFixesWhatItFinds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "other"), 0o755))
	for p, m := range map[string]os.FileMode{"controller.db": 0o644, "sub/x": 0o666, "tool": 0o755, "other/y": 0o644, "ok": 0o600} {
		must(os.WriteFile(filepath.Join(dir, p), []byte("x"), m))
		must(os.Chmod(filepath.Join(dir, p), m))
	}
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(dir, "other")} {
		must(os.Chmod(d, 0o755))
	}
	fixed, err := PrivateDir(dir, "sub")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{".": 0o700, "sub": 0o700, "controller.db": 0o600, "sub/x": 0o600, "tool": 0o700,
		"ok": 0o600, "other": 0o755, "other/y": 0o644}
	for p, m := range want {
		if got := mode(t, filepath.Join(dir, p)); got != m {
			t.Errorf("%s: %04o, want %04o", p, got, m)
		}
	}
	if len(fixed) != 5 {
		t.Errorf("fixed %d paths, want 5: %+v", len(fixed), fixed)
	}
	// Second start: nothing to fix, nothing to warn about.
	if fixed, err := PrivateDir(dir, "sub"); err != nil || len(fixed) != 0 {
		t.Fatalf("second pass: %+v, %v", fixed, err)
	}
	// A new directory is created private.
	fresh := filepath.Join(t.TempDir(), "a", "b")
	if _, err := PrivateDir(fresh); err != nil || mode(t, fresh) != 0o700 {
		t.Fatalf("new dir: %v %04o", err, mode(t, fresh))
	}
}

func TestSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d", "invoker.token")
	v, created, err := Secret(p)
	if err != nil || !created || len(v) != 64 {
		t.Fatalf("first: %q %v %v", v, created, err)
	}
	if m := mode(t, p); m != 0o600 {
		t.Fatalf("mode %04o", m)
	}
	v2, created, err := Secret(p)
	if err != nil || created || v2 != v {
		t.Fatalf("second start: %q %v %v, want the same secret reused", v2, created, err)
	}
	// A secret others could read is refused, not reused.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Secret(p); err == nil || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("world-readable secret: %v", err)
	}
	if _, err := ReadSecret(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestKafkaSettings(t *testing.T) {
	dir := t.TempDir()
	s, err := KafkaUser(dir, "invoker3")
	if err != nil || s.User != "invoker3" || s.Mechanism != kafka.MechanismSCRAMSHA512 || len(s.Password) < 32 {
		t.Fatalf("KafkaUser: %+v %v", s, err)
	}
	again, err := KafkaUser(dir, "invoker3")
	if err != nil || again != s {
		t.Fatalf("reused: %+v %v", again, err)
	}
	if strings.Contains(s.String(), s.Password) {
		t.Fatal("SASL.String shows the password")
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	// A file given by flag.
	got, tc, err := KafkaClient(KafkaOptions{SASLFile: KafkaUserFile(dir, "invoker3")}, getenv)
	if err != nil || got != s || tc != nil {
		t.Fatalf("from file: %+v %v %v", got, tc, err)
	}
	// The environment.
	env[EnvKafkaSASLUser], env[EnvKafkaSASLPassword], env[EnvKafkaTLS] = "ctl", "pw", "true"
	got, tc, err = KafkaClient(KafkaOptions{}, getenv)
	if err != nil || got.User != "ctl" || got.Password != "pw" || tc == nil {
		t.Fatalf("from env: %+v %v %v", got, tc, err)
	}
	// A mistyped TLS switch is an error, not "no TLS".
	env[EnvKafkaTLS] = "ture"
	if _, _, err := KafkaClient(KafkaOptions{}, getenv); err == nil || !strings.Contains(err.Error(), EnvKafkaTLS) {
		t.Fatalf("%s=ture: %v", EnvKafkaTLS, err)
	}
	env[EnvKafkaTLS] = "true"
	env[EnvKafkaSASLPassword] = ""
	if _, _, err := KafkaClient(KafkaOptions{}, getenv); err == nil {
		t.Fatal("a user without a password was accepted")
	}
	for _, bad := range []string{"username=x", "password=y", "username=x\npassword=y\nmechanism=GSSAPI", "user x"} {
		if _, err := ParseSASL(bad); err == nil {
			t.Errorf("ParseSASL(%q) accepted", bad)
		}
	}
	if p, err := ParseSASL("# comment\nusername = a\npassword= b=c\n"); err != nil || p.User != "a" || p.Password != "b=c" {
		t.Errorf("ParseSASL: %+v %v", p, err)
	}
}
