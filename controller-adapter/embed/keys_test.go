package embed

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/sealed"
)

// recorder is one invoker's way to the controller's API: a reverse proxy that keeps what the key
// relay carried (both ways) and the activations the invoker stored, and that can stop passing the
// key relay's calls (an invoker whose relay is gone while its pings still arrive).
type recorder struct {
	srv        *httptest.Server
	mu         sync.Mutex
	relayed    []byte
	stored     map[string]bool // activation ids
	blockRelay atomic.Bool
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{stored: map[string]bool{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasPrefix(resp.Request.URL.Path, "/internal/v1/keys/") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		r.relayed = append(append(r.relayed, b...), '\n')
		r.mu.Unlock()
		return nil
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.Path
		if strings.HasPrefix(p, "/internal/v1/keys/") {
			if r.blockRelay.Load() {
				http.Error(w, "relay blocked by the test", http.StatusServiceUnavailable)
				return
			}
			b, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(b))
			r.mu.Lock()
			r.relayed = append(append(r.relayed, b...), '\n')
			r.mu.Unlock()
		}
		if req.Method == http.MethodPut && strings.HasPrefix(p, "/internal/v1/activations/") {
			r.mu.Lock()
			r.stored[filepath.Base(p)] = true
			r.mu.Unlock()
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) served(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stored[id]
}

func (r *recorder) relayedBytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.relayed...)
}

// repoRoot is the repository root (bin/ with make build's binaries, enclave-runtime/).
func repoRoot(t *testing.T) string {
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

// sealedImageKey reads an invoker's sealed key of nodejs:20: the kid in its clear header and the
// raw private keys, opened with the invoker's sealing key (the host holds it in direct mode, which
// is why the evidence says simulated).
func sealedImageKey(t *testing.T, stateDir string) (kid string, private [][]byte) {
	t.Helper()
	keyDir := filepath.Join(stateDir, "enclave-keys")
	files, err := filepath.Glob(filepath.Join(keyDir, "images", "*", "image-key.sealed"))
	if err != nil || len(files) != 1 {
		t.Fatalf("sealed image keys in %s: %v %v", keyDir, files, err)
	}
	text, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Image, Type, Measurement, Kid, IV, CT string
	}
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatal(err)
	}
	skHex, err := os.ReadFile(filepath.Join(keyDir, "sealing.key"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := hex.DecodeString(strings.TrimSpace(string(skHex)))
	if err != nil {
		t.Fatal(err)
	}
	blk, err := aes.NewCipher(sk)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	iv, _ := hex.DecodeString(s.IV)                // a bad IV fails Open below
	ct, _ := base64.StdEncoding.DecodeString(s.CT) // likewise
	plain, err := gcm.Open(nil, iv, ct, []byte("teemate-image-key-v1\n"+s.Image+"\n"+s.Type+"\n"+s.Measurement+"\n"+s.Kid))
	if err != nil {
		t.Fatalf("open %s: %v", files[0], err)
	}
	var body struct {
		Key map[string]json.RawMessage `json:"key"`
	}
	if err := json.Unmarshal(plain, &body); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kem", "sig"} {
		var j struct{ D string }
		if err := json.Unmarshal(body.Key[name], &j); err != nil {
			t.Fatal(err)
		}
		d, err := base64.RawURLEncoding.DecodeString(j.D)
		if err != nil || len(d) != 32 {
			t.Fatalf("private %s key: %v", name, err)
		}
		private = append(private, d)
	}
	return s.Kid, private
}

// TestImageKeyAcrossInvokers runs the real controller and two in-process invokers (process
// sandbox, direct enclave, real Node owners), each with its own state dir and so its own sealing
// key. The second invoker's owner of nodejs:20 takes the key the first published, through the
// controller: both end with one kid, a sealed invocation made against the published evidence
// opens whichever invoker ran it, and the relayed bytes hold no private key. Then the first
// invoker goes away and the second's relay stops answering: a third invoker's owner falls back to
// a key of its own after the bound (logged), and the controller keeps serving the canonical kid
// (409 for the third's) while the second, which holds it, is healthy.
func TestImageKeyAcrossInvokers(t *testing.T) {
	repo := repoRoot(t)
	for _, f := range []string{"bin/teemate-shim", "enclave-runtime/trusted/keys.js"} {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			t.Fatalf("%s is missing: run make build first (%v)", f, err)
		}
	}
	log := zaptest.NewLogger(t)
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctl, err := Start(ctx, Config{DataDir: filepath.Join(t.TempDir(), "controller"), Kafka: kafka.Config{Brokers: emb.Addrs()},
		Logger: log.Named("controller"), HealthTick: 50 * time.Millisecond,
		Health: balancer.HealthConfig{PingTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctl.Close(); err != nil {
			t.Errorf("controller Close: %v", err)
		}
	})
	if err := ctl.AddNamespace(ctx, "tenant", tenantUUID, tenantKey); err != nil {
		t.Fatal(err)
	}

	type inv struct {
		run   *daemon.Running
		state string
		rec   *recorder
	}
	startInvoker := func(id int, logger *zap.Logger) *inv {
		t.Helper()
		i := &inv{state: filepath.Join(t.TempDir(), fmt.Sprintf("invoker%d", id)), rec: newRecorder(t, ctl.APIHost())}
		i.run, err = daemon.Start(daemon.Config{ID: id, Kafka: strings.Join(emb.Addrs(), ","), APIHost: i.rec.srv.URL,
			Listen: "-", StateDir: i.state, StoreToken: ctl.InvokerToken(), UserMemoryMB: 1024,
			PingInterval: 200 * time.Millisecond, DrainTimeout: 5 * time.Second, Logger: logger},
			daemon.Backends{Sandbox: "process", Enclave: "direct", Model: "teemate", RepoDir: repo, SlotsPerOwner: 4})
		if err != nil {
			t.Fatalf("invoker%d: %v", id, err)
		}
		t.Cleanup(func() {
			if err := i.run.Stop(); err != nil {
				t.Errorf("invoker%d Stop: %v", id, err)
			}
		})
		return i
	}
	up := func(n int) bool {
		invs := ctl.bal.Invokers()
		return n < len(invs) && invs[n].State == "up"
	}
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	c, err := client.New(client.Config{APIHost: ctl.APIHost(), Auth: tenantAuth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		t.Fatal(err)
	}
	published := func() *attest.Evidence {
		t.Helper()
		ev, _, err := c.AttestKind(ctx, "nodejs:20")
		if err != nil {
			t.Fatalf("published evidence: %v", err)
		}
		return ev
	}

	// Invoker 0 makes the key and publishes its evidence.
	inv0 := startInvoker(0, log.Named("invoker0"))
	waitFor("invoker0 up", time.Minute, func() bool { return up(0) })
	var ev *attest.Evidence
	waitFor("evidence of invoker0", 30*time.Second, func() bool {
		e, _, err := c.AttestKind(ctx, "nodejs:20")
		ev = e
		return err == nil
	})
	kid0, private := sealedImageKey(t, inv0.state)
	if ev.Kid != kid0 {
		t.Fatalf("published kid %s, invoker0 sealed %s", ev.Kid, kid0)
	}

	// Invoker 1's first owner takes that key through the controller.
	inv1 := startInvoker(1, log.Named("invoker1"))
	waitFor("invoker1 up", time.Minute, func() bool { return up(1) })
	waitFor("invoker1's owner sealed its key", 30*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(inv1.state, "enclave-keys", "images", "*", "image-key.sealed")) // no match: nil
		return len(files) == 1
	})
	if kid1, _ := sealedImageKey(t, inv1.state); kid1 != kid0 {
		t.Fatalf("invoker1's owner holds kid %s, invoker0's %s: the key was not transferred", kid1, kid0)
	}
	if got := published(); got.Kid != kid0 || !bytes.Equal(got.Raw, ev.Raw) {
		t.Fatalf("after invoker1 started, the published evidence is %s, want invoker0's %s byte for byte", got.Kid, kid0)
	}

	// Sealed invocations against the published evidence, on different actions (the balancer gives
	// each its home invoker), until both invokers have run one.
	ns, err := c.Namespace(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const code = `function main(p) { return { echo: p.secret + "-" + p.n } }`
	ran := map[int]bool{}
	for n := 0; len(ran) < 2; n++ {
		if n == 16 {
			t.Fatalf("16 actions ran on invokers %v only", ran)
		}
		name := fmt.Sprintf("sealed%d", n)
		q := "/" + ns + "/" + name
		env, err := sealed.SealCode(ev, ns, q, []byte(code))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutAction(ctx, name, client.Action{Exec: client.Exec{Kind: "nodejs:20", Code: env},
			Annotations: []client.KeyValue{{Key: client.SealedAnnotation, Value: json.RawMessage("true")}}}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		params, reply, err := sealed.SealParams(ev, ns, q, json.RawMessage(fmt.Sprintf(`{"secret":"canary","n":%d}`, n)))
		if err != nil {
			t.Fatal(err)
		}
		a, err := c.Invoke(ctx, name, params, true)
		if err != nil {
			t.Fatalf("invoke %s: %v", name, err)
		}
		o, err := client.Open(ev, reply, a)
		if err != nil {
			t.Fatalf("open %s's result: %v", name, err)
		}
		if want := fmt.Sprintf(`{"echo":"canary-%d"}`, n); string(o.Result) != want {
			t.Fatalf("%s: result %s, want %s", name, o.Result, want)
		}
		waitFor("the activation record stored", 10*time.Second, func() bool {
			return inv0.rec.served(a.ActivationID) || inv1.rec.served(a.ActivationID)
		})
		if inv0.rec.served(a.ActivationID) {
			ran[0] = true
		} else {
			ran[1] = true
		}
	}

	// What the host relayed: evidence, an ephemeral public key and ciphertext, never a private key.
	relayed := append(inv0.rec.relayedBytes(), inv1.rec.relayedBytes()...)
	if !bytes.Contains(relayed, []byte(`"ct"`)) || !bytes.Contains(relayed, []byte(`"evidence"`)) {
		t.Fatalf("the recorded relay holds no request and offer: %.400s", relayed)
	}
	for _, d := range private {
		for _, enc := range []string{string(d), hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d),
			base64.RawStdEncoding.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d)} {
			if bytes.Contains(relayed, []byte(enc)) {
				t.Fatalf("the relayed bytes hold a private key (%q)", enc)
			}
		}
	}

	// The publisher goes away, and invoker 1 (which holds the key too) stops answering the relay
	// while its pings still arrive: invoker 2's owner waits for the bound, then makes its own key,
	// and says so; the controller keeps the canonical kid while invoker 1 is healthy.
	if err := inv0.run.Stop(); err != nil {
		t.Errorf("invoker0 Stop: %v", err)
	}
	waitFor("invoker0 not up", 30*time.Second, func() bool { return !up(0) })
	inv1.rec.blockRelay.Store(true)
	obs, logs := observer.New(zap.InfoLevel)
	inv2 := startInvoker(2, zap.New(zapcore.NewTee(log.Named("invoker2").Core(), obs)))
	waitFor("invoker2 up", 90*time.Second, func() bool { return up(2) })
	fellBack := logs.FilterMessageSnippet("image key transfer from another invoker failed (bound 10s)")
	if fellBack.Len() == 0 {
		t.Fatal("invoker2 did not log the fallback to a key of its own")
	}
	if !strings.Contains(fmt.Sprint(fellBack.All()[0].ContextMap()["error"]), "invoker1") {
		t.Errorf("the fallback's log does not name the invoker that did not answer: %v", fellBack.All()[0].ContextMap())
	}
	// Published at an owner's ping after its fallback; on a machine busy enough to make invoker2's
	// own pings late (it flaps down and up) that can take a while.
	waitFor("invoker2's evidence refused", 60*time.Second, func() bool {
		return logs.FilterMessageSnippet("refused the owner's image key").Len() > 0
	})
	if kid2, _ := sealedImageKey(t, inv2.state); kid2 == kid0 {
		t.Fatalf("invoker2's owner holds kid %s, the canonical one, without a transfer", kid2)
	}
	if got := published(); got.Kid != kid0 {
		t.Fatalf("the published kid became %s while invoker1, which holds %s, is healthy", got.Kid, kid0)
	}
}
