package app

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/kafka"
)

// saramaConfig is a bare client that gives up fast (an attacker's tool would be no kinder).
func saramaConfig(s kafka.SASL) *sarama.Config {
	sc := kafka.NewSaramaConfig(kafka.Config{SASL: s})
	sc.Metadata.Retry.Max = 0
	sc.Net.DialTimeout = 2 * time.Second
	sc.Net.ReadTimeout = 2 * time.Second
	sc.Producer.Retry.Max = 0
	sc.Metadata.AllowAutoTopicCreation = false
	return sc
}

// readTopic returns every record of partition 0 of topic, or the error that stopped it.
func readTopic(brokers []string, s kafka.SASL, topic string) ([]string, error) {
	c, err := sarama.NewConsumer(brokers, saramaConfig(s))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	var out []string
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, string(m.Value))
		case err := <-pc.Errors():
			return out, err
		case <-time.After(time.Second):
			return out, nil
		}
	}
}

func produceOne(brokers []string, s kafka.SASL, topic, value string) error {
	p, err := sarama.NewSyncProducer(brokers, saramaConfig(s))
	if err != nil {
		return err
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value)})
	return err
}

func modeOf(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestStandaloneChannels replays the attacks of issue #15 against `make run`'s platform: a data
// directory left world-readable, an unauthenticated consumer of invoker0 and producer of forged
// acks, an invoker's user writing activations, the /internal endpoints without the token, and a
// grep of the store for a tenant's key. Each is refused, and the platform still works end to end.
func TestStandaloneChannels(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The function images of `make images` live in the same .state; containers' users read them.
	images := filepath.Join(dir, "images", "teemate")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "image.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Join(dir, "images"), 0o755)
	_ = os.Chmod(images, 0o755)
	_ = os.Chmod(filepath.Join(images, "image.json"), 0o644)
	aliceAuth, err := AddNamespace(context.Background(), dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	aliceUUID, aliceKey, _ := strings.Cut(aliceAuth, ":")
	alice := [2]string{aliceUUID, aliceKey}

	p, err := startStandalone(t, dir, "process", "direct")
	if err != nil {
		t.Fatalf("standalone: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = p.stop()
		}
	}()
	// The data directory and its files are private whatever they were.
	for path, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "notes"): 0o600, filepath.Join(dir, "invoker.token"): 0o600,
		filepath.Join(dir, "kafka-users", "controller0.sasl"): 0o600, filepath.Join(dir, "kafka-users", "invoker0.sasl"): 0o600,
		filepath.Join(dir, "invoker", "admin.password"): 0o600, filepath.Join(dir, "invoker"): 0o700,
		filepath.Join(dir, "controller.db"): 0o600, filepath.Join(dir, "kafka"): 0o700,
		images: 0o755, filepath.Join(images, "image.json"): 0o644, // not the platform's: left alone
	} {
		if got := modeOf(t, path); got != want {
			t.Errorf("%s: mode %04o, want %04o", path, got, want)
		}
	}
	// The health test action is read with the invoker token (its message carries no key), so a
	// healthy invoker shows that path works; then alice's actions run end to end.
	eventually(t, "invoker0 healthy", func() bool { return p.invokerState(t) == "up" })
	withKey := `{"exec":{"kind":"nodejs:20","code":"function main() { return {ok: true}; }"},"annotations":[{"key":"provide-api-key","value":true}]}`
	noKey := `{"exec":{"kind":"nodejs:20","code":"function main() { return {ok: true}; }"}}`
	for name, doc := range map[string]string{"withkey": withKey, "nokey": noKey} {
		if code, b := p.call(t, http.MethodPut, "/api/v1/namespaces/_/actions/"+name, alice, doc); code != http.StatusOK {
			t.Fatalf("create %s: %d %s", name, code, b)
		}
		code, b := p.call(t, http.MethodPost, "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", alice, `{"secret":"param-value"}`)
		if code != http.StatusOK || !bytes.Contains(b, []byte(`"ok":true`)) {
			t.Fatalf("invoke %s: %d %s", name, code, b)
		}
	}
	// The guest key still authenticates (it is hashed like any other).
	if code, b := p.call(t, http.MethodGet, "/api/v1/namespaces", guestAuth, ""); code != http.StatusOK {
		t.Fatalf("guest: %d %s", code, b)
	}

	brokers := p.info.Brokers
	ctrl, err := credentials.ReadSASLFile(filepath.Join(dir, "kafka-users", "controller0.sasl"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := credentials.ReadSASLFile(filepath.Join(dir, "kafka-users", "invoker0.sasl"))
	if err != nil {
		t.Fatal(err)
	}
	// Attack: consume invoker0 (every activation) without credentials or with wrong ones.
	for _, s := range []kafka.SASL{{}, {User: ctrl.User, Password: "guess"}, {User: "admin", Password: "admin"}} {
		if recs, err := readTopic(brokers, s, "invoker0"); err == nil || len(recs) > 0 {
			t.Errorf("consumed invoker0 as %q: %d records, err %v", s.User, len(recs), err)
		}
	}
	// Attack: forge an ack on completed0, and an activation on invoker0 with the invoker's user.
	forged := `{"response":"` + strings.Repeat("0", 32) + `","transid":["x",1],"isSystemError":false,"invoker":{"instance":0,"instanceType":"invoker"}}`
	if err := produceOne(brokers, kafka.SASL{}, "completed0", forged); err == nil {
		t.Error("an unauthenticated client produced a forged ack on completed0")
	}
	if err := produceOne(brokers, inv, "invoker0", `{}`); err == nil {
		t.Error("the invoker's user produced an activation on invoker0")
	}
	if recs, err := readTopic(brokers, inv, "completed0"); err == nil || len(recs) > 0 {
		t.Errorf("the invoker's user read completed0: %d records, %v", len(recs), err)
	}
	// The invoker's own user reads its topic: alice's key is in the message of the action that
	// asked for it only.
	recs, err := readTopic(brokers, inv, "invoker0")
	if err != nil {
		t.Fatalf("invoker0 reads its topic: %v", err)
	}
	var sawWith, sawWithout bool
	for _, r := range recs {
		switch {
		case strings.Contains(r, `"name":"withkey"`):
			sawWith = strings.Contains(r, aliceKey)
		case strings.Contains(r, `"name":"nokey"`):
			sawWithout = true
			if strings.Contains(r, aliceKey) || !strings.Contains(r, `"authkey":{}`) {
				t.Errorf("the message of an action without provide-api-key carries a key: %s", r)
			}
		}
	}
	if !sawWith || !sawWithout {
		t.Errorf("messages on invoker0: with key %v, without %v (of %d)", sawWith, sawWithout, len(recs))
	}
	// Attack: the invokers' endpoints without the token.
	if code, _ := p.call(t, http.MethodGet, "/internal/v1/actions/alice/nokey", [2]string{}, ""); code != http.StatusUnauthorized {
		t.Errorf("GET /internal/v1/actions without the token: %d", code)
	}
	if code, _ := p.call(t, http.MethodGet, "/internal/v1/actions/alice/nokey", alice, ""); code != http.StatusUnauthorized {
		t.Errorf("GET /internal/v1/actions with a tenant key: %d", code)
	}

	// Attack: grep the store (and its WAL) and the whole data directory for alice's key, while it
	// runs and after it stopped.
	grepKey := func(when string) {
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(aliceKey)) && !strings.Contains(path, string(filepath.Separator)+"kafka"+string(filepath.Separator)) {
				t.Errorf("%s: alice's key is in plaintext in %s", when, path)
			}
			return nil
		})
		for _, f := range []string{"controller.db", "controller.db-wal"} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && bytes.Contains(b, []byte(aliceKey)) {
				t.Errorf("%s: alice's key is in %s", when, f)
			}
		}
	}
	grepKey("running")
	if err := p.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	stopped = true
	grepKey("stopped")

	// Credentials are reused after a restart, and the platform comes back.
	before, _ := os.ReadFile(filepath.Join(dir, "kafka-users", "invoker0.sasl"))
	tokBefore, _ := os.ReadFile(filepath.Join(dir, "invoker.token"))
	p2, err := startStandalone(t, dir, "process", "direct")
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer func() { _ = p2.stop() }()
	eventually(t, "invoker0 healthy after restart", func() bool { return p2.invokerState(t) == "up" })
	after, _ := os.ReadFile(filepath.Join(dir, "kafka-users", "invoker0.sasl"))
	tokAfter, _ := os.ReadFile(filepath.Join(dir, "invoker.token"))
	if !bytes.Equal(before, after) || !bytes.Equal(tokBefore, tokAfter) {
		t.Error("credentials changed across a restart")
	}
	if code, b := p2.call(t, http.MethodPost, "/api/v1/namespaces/_/actions/nokey?blocking=true&result=true", alice, `{}`); code != http.StatusOK {
		t.Fatalf("invoke after restart: %d %s", code, b)
	}
}
