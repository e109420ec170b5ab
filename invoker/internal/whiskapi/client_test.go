package whiskapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/teemate/platform/invoker/whisk"
)

// TestStore: the record goes as a PUT of its internal form to /internal/v1/activations/{ns}/{id}
// with the invoker token; a refusal is an error, and without a token nothing is sent and Store says
// so (ErrNoToken), so the handler can tell the operator. The real endpoint is exercised end to end
// in controller-adapter/embed and bench/internal/harness (TestLargeRecords).
func TestStore(t *testing.T) {
	var got struct {
		method, path, token string
		rec                 whisk.WhiskActivation
	}
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.token = r.Method, r.URL.Path, r.Header.Get(TokenHeader)
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(b, &got.rec)
		}
		if err != nil {
			t.Errorf("body: %v", err)
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	act := &whisk.WhiskActivation{Namespace: "guest", Name: "a", ActivationID: whisk.ActivationIDNew(),
		Response: whisk.Success(json.RawMessage(`{"ok":true}`)), Logs: []string{"l"}}

	c, err := New(Config{APIHost: srv.URL, StoreToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(context.Background(), act); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPut || got.path != "/internal/v1/activations/guest/"+act.ActivationID || got.token != "tok" ||
		len(got.rec.Logs) != 1 || string(got.rec.Response.Result) != `{"ok":true}` {
		t.Fatalf("request %s %s token %q record %+v", got.method, got.path, got.token, got.rec)
	}
	status = http.StatusInternalServerError
	if err := c.Store(context.Background(), act); err == nil {
		t.Fatal("a refused store reported success")
	}

	got.method = ""
	c, err = New(Config{APIHost: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(context.Background(), act); !errors.Is(err, ErrNoToken) || got.method != "" {
		t.Fatalf("without a token: %v (request %q)", err, got.method)
	}
}
