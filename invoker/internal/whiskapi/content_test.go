package whiskapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/whisk"
)

// TestLoadContent: content by reference is read from /internal/v1/activations/{ns}/{id}/content
// with the invoker token and must be what the reference names; anything else leaves the message
// unrun (ErrContentUnavailable). The real endpoint is exercised end to end in
// bench/internal/harness (TestLargeParameters).
func TestLoadContent(t *testing.T) {
	content := []byte(`{"p":"` + strings.Repeat("p", 1200<<10) + `"}`)
	serve := content
	status := http.StatusOK
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path+" "+r.Header.Get(TokenHeader))
		w.WriteHeader(status)
		if _, err := w.Write(serve); err != nil {
			t.Errorf("write: %v", err)
		}
	}))
	defer srv.Close()
	c, err := New(Config{APIHost: srv.URL, StoreToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	msg := func() *whisk.ActivationMessage {
		return &whisk.ActivationMessage{ActivationID: whisk.ActivationIDNew(), User: whisk.Identity{Namespace: whisk.Namespace{Name: "guest"}},
			ContentRef: whisk.NewContentRef(content)}
	}
	ctx := context.Background()

	m := msg()
	if err := LoadContent(ctx, c, m); err != nil {
		t.Fatal(err)
	}
	if string(m.Content) != string(content) || m.ContentRef != nil {
		t.Fatalf("content %d bytes, ref %+v", len(m.Content), m.ContentRef)
	}
	if want := "GET /internal/v1/activations/guest/" + m.ActivationID + "/content tok"; len(paths) != 1 || paths[0] != want {
		t.Fatalf("requests %q, want %q", paths, want)
	}

	inline := &whisk.ActivationMessage{Content: []byte(`{"a":1}`)}
	if err := LoadContent(ctx, c, inline); err != nil || string(inline.Content) != `{"a":1}` || len(paths) != 1 {
		t.Fatalf("a message without a reference: %v, %s, %d requests", err, inline.Content, len(paths))
	}

	tampered := append([]byte{}, content...)
	tampered[10] = 'q'
	for name, f := range map[string]func(){
		"other bytes":  func() { serve = tampered },
		"longer":       func() { serve = append(append([]byte{}, content...), ' ') },
		"not found":    func() { serve, status = []byte(`{"error":"x"}`), http.StatusNotFound },
		"server error": func() { serve, status = content, http.StatusInternalServerError },
	} {
		serve, status = content, http.StatusOK
		f()
		m := msg()
		if err := LoadContent(ctx, c, m); !errors.Is(err, ErrContentUnavailable) || m.Content != nil {
			t.Errorf("%s: %v, content %d bytes", name, err, len(m.Content))
		}
	}
	noToken, err := New(Config{APIHost: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []any{noToken, nil} {
		if err := LoadContent(ctx, src, msg()); !errors.Is(err, ErrContentUnavailable) {
			t.Errorf("without a token (%T): %v", src, err)
		}
	}
}
