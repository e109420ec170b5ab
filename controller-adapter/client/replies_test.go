package client

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/teemate/platform/invoker/sealed"
)

// TestReplies_PrivateRoundTrip: a reply key is kept 0600 in a 0700 directory (also when the
// directory existed with a wider mode), reads back, and an unknown or malformed id is refused.
func TestReplies_PrivateRoundTrip(t *testing.T) {
	k := newImageKey(t)
	_, reply, err := sealed.SealParams(k.ev, "guest", "/guest/hello", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	r := RepliesIn(home)
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Reply{ActivationID: "abc123", Action: "/guest/hello", Key: reply, Evidence: k.ev.Raw}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{r.Dir: 0o700, filepath.Join(r.Dir, "abc123.json"): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, st.Mode().Perm(), want, err)
		}
	}
	got, ev, err := r.Get("abc123")
	if err != nil || got.Key.Nonce != reply.Nonce || ev.Kid != k.ev.Kid || got.Action != "/guest/hello" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if _, _, err := r.Get("nosuch"); !errors.Is(err, ErrNoReply) {
		t.Errorf("unknown id: %v, want ErrNoReply", err)
	}
	if _, _, err := r.Get("../x"); err == nil || errors.Is(err, ErrNoReply) {
		t.Errorf("a path as id: %v, want a refusal", err)
	}
	if h, err := Home(func(string) string { return "/x" }); err != nil || h != "/x" {
		t.Errorf("Home with TEEMATE_HOME: %q %v", h, err)
	}
}
