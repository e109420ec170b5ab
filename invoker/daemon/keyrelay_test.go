package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/whiskapi"
)

// A state transfer asks the preferred invoker (a drain's source) for its offer, and any holder
// only when the controller says the preferred one holds no key. The controller here holds the
// image's key on invoker 1 (and so on "any"), not on invoker 2; its answer to every request is
// that the holder has no offer, which is all this test needs to see whom it was asked of.
func TestStateSourcePrefersTheDrainsSource(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/internal/v1/keys/requests":
			var in struct {
				Invoker *int `json:"invoker"`
			}
			_ = json.NewDecoder(r.Body).Decode(&in) // a malformed body shows as "any" below
			who := "any"
			if in.Invoker != nil {
				who = string(rune('0' + *in.Invoker))
			}
			mu.Lock()
			asked = append(asked, who)
			mu.Unlock()
			if who == "2" {
				http.Error(w, `{"error":"No other healthy invoker holds the key."}`, http.StatusNotFound)
				return
			}
			_, _ = w.Write([]byte(`{"id":"req-` + who + `","invoker":1}`))
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/internal/v1/keys/requests/"):
			_, _ = w.Write([]byte(`{"error":"no owner of the image here"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	api, err := whiskapi.New(whiskapi.Config{APIHost: srv.URL, StoreToken: "t", Invoker: 0})
	if err != nil {
		t.Fatal(err)
	}
	k := keyRelay{api: api, self: 0}
	for _, c := range []struct {
		prefer int
		want   []string
	}{
		{1, []string{"1"}},        // the source holds the key: only it is asked
		{2, []string{"2", "any"}}, // it does not: any holder
		{-1, []string{"any"}},     // no source: any holder
	} {
		mu.Lock()
		asked = nil
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := k.StateSource("nodejs:20", c.prefer).Offer(ctx, json.RawMessage(`{}`))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "no key offer") {
			t.Fatalf("prefer %d: err %v, want the holder's refusal", c.prefer, err)
		}
		mu.Lock()
		got := slices.Clone(asked)
		mu.Unlock()
		if !slices.Equal(got, c.want) {
			t.Errorf("prefer %d: asked %v, want %v", c.prefer, got, c.want)
		}
	}
}
