package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

const (
	tenantUUID = "0b0e3f4c-1111-4222-8333-944455556666"
	tenantKey  = "k3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk3yk"
	tenantAuth = tenantUUID + ":" + tenantKey
)

func start(t *testing.T) *Controller {
	t.Helper()
	log := zaptest.NewLogger(t)
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{DataDir: t.TempDir() + "/controller", Kafka: kafka.Config{Brokers: emb.Addrs()}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := c.AddNamespace(ctx, "tenant", tenantUUID, tenantKey); err != nil {
		t.Fatal(err)
	}
	return c
}

func call(t *testing.T, method, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Teemate-Invoker-Token", token)
	} else {
		req.SetBasicAuth(tenantUUID, tenantKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestControllerServesTheRealAPI: the embedded controller is the controller-adapter's: the REST API
// deploys for the tenant, the internal API serves the action to the invoker token only and takes
// the invoker's records, the health test action is seeded, and Invoke refuses without a healthy
// invoker exactly as the REST invoke does (503 there, ErrNoInvokers here).
func TestControllerServesTheRealAPI(t *testing.T) {
	c := start(t)
	code, b := call(t, http.MethodPut, c.APIHost()+"/api/v1/namespaces/_/actions/hello?overwrite=true", "",
		[]byte(`{"exec":{"kind":"nodejs:20","code":"function main(p){return p}"},"limits":{"memory":256}}`))
	if code != http.StatusOK {
		t.Fatalf("deploy: %d %s", code, b)
	}
	if code, b := call(t, http.MethodGet, c.APIHost()+"/internal/v1/actions/tenant/hello?code=true", "wrong", nil); code != http.StatusUnauthorized {
		t.Fatalf("internal read with a wrong token: %d %s", code, b)
	}
	code, b = call(t, http.MethodGet, c.APIHost()+"/internal/v1/actions/tenant/hello?code=true", c.InvokerToken(), nil)
	var a whisk.Action
	if code != http.StatusOK || json.Unmarshal(b, &a) != nil || a.Exec.Code == "" || a.Revision == "" {
		t.Fatalf("internal read: %d %s", code, b)
	}
	code, b = call(t, http.MethodGet, c.APIHost()+"/internal/v1/actions/whisk.system/"+balancer.HealthTestActionDoc(c.ctrl).Name, c.InvokerToken(), nil)
	if code != http.StatusOK {
		t.Fatalf("health test action not seeded: %d %s", code, b)
	}
	id := whisk.ActivationIDNew()
	rec := `{"namespace":"tenant","name":"hello","subject":"tenant","activationId":"` + id + `","start":1,"end":2,` +
		`"response":{"statusCode":0,"result":{"ok":true}},"logs":["l"],"version":"0.0.1","publish":false,"annotations":[]}`
	if code, b := call(t, http.MethodPut, c.APIHost()+"/internal/v1/activations/tenant/"+id, c.InvokerToken(), []byte(rec)); code != http.StatusOK {
		t.Fatalf("store a record: %d %s", code, b)
	}
	if code, b := call(t, http.MethodGet, c.APIHost()+"/api/v1/namespaces/_/activations/"+id+"/logs", "", nil); code != http.StatusOK || string(b) != `{"logs":["l"]}` {
		t.Fatalf("read the record: %d %s", code, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Invoke(ctx, tenantAuth, "hello", nil); !errors.Is(err, balancer.ErrNoInvokers) {
		t.Fatalf("Invoke without invokers: %v, want ErrNoInvokers", err)
	}
	if _, err := c.Invoke(ctx, tenantUUID+":wrong", "hello", nil); err == nil {
		t.Fatal("Invoke with a wrong key succeeded")
	}
	if _, err := c.Invoke(ctx, tenantAuth, "nosuch", nil); err == nil {
		t.Fatal("Invoke of a missing action succeeded")
	}
	if _, err := c.Invoke(ctx, tenantAuth, "hello", json.RawMessage(`[1]`)); err == nil {
		t.Fatal("Invoke with a non-object payload succeeded")
	}
	wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer wcancel()
	if err := c.WaitInvoker(wctx, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitInvoker without invokers: %v", err)
	}
}

func TestStartNeedsBrokersAndDataDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{DataDir: t.TempDir()}); err == nil {
		t.Fatal("Start without brokers succeeded")
	}
	if _, err := Start(context.Background(), Config{Kafka: kafka.Config{Brokers: []string{"127.0.0.1:1"}}}); err == nil {
		t.Fatal("Start without a data directory succeeded")
	}
}

// TestCloseDoesNotWaitForAnIdleNewConnection: a connection that never sends a request (a client's
// transport dials ahead and then has nothing to send) does not hold Close, which the HTTP
// server's Shutdown would wait 5 s for.
func TestCloseDoesNotWaitForAnIdleNewConnection(t *testing.T) {
	c := start(t) // its cleanup closes again: Close is idempotent
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.APIHost(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server has accepted it when a request on another connection got through.
	if code, _ := call(t, http.MethodGet, c.APIHost()+"/ping", "", nil); code != http.StatusOK {
		t.Fatalf("ping: %d", code)
	}
	t0 := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Close took %v with an idle new connection open", d)
	}
}
