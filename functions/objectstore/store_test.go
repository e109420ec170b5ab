package objectstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func start(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func do(t *testing.T, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPutGetDigestDelete(t *testing.T) {
	s := start(t, Options{})
	body := []byte("hello, enclave")
	sum := sha256.Sum256(body)
	want := hex.EncodeToString(sum[:])

	resp, _ := do(t, http.MethodPut, s.URL()+"/bench/dir/a.bin", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("ETag"); got != `"`+want+`"` {
		t.Fatalf("ETag %s, want %q", got, want)
	}
	if d, err := s.Digest("bench", "dir/a.bin"); err != nil || d != want {
		t.Fatalf("Digest = %q, %v; want %q", d, err, want)
	}
	resp, got := do(t, http.MethodGet, s.URL()+"/bench/dir/a.bin", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("GET status %d body %q", resp.StatusCode, got)
	}
	if s.Used() != int64(len(body)) {
		t.Fatalf("Used = %d", s.Used())
	}
	// Replacing an object accounts for the old size.
	do(t, http.MethodPut, s.URL()+"/bench/dir/a.bin", []byte("x"))
	if s.Used() != 1 {
		t.Fatalf("Used after replace = %d, want 1", s.Used())
	}
	resp, _ = do(t, http.MethodDelete, s.URL()+"/bench/dir/a.bin", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE status %d", resp.StatusCode)
	}
	if _, err := s.Digest("bench", "dir/a.bin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Digest after delete: %v, want ErrNotFound", err)
	}
	resp, _ = do(t, http.MethodGet, s.URL()+"/bench/dir/a.bin", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after delete status %d", resp.StatusCode)
	}
}

func TestRejectsBadRequests(t *testing.T) {
	s := start(t, Options{MaxObjectBytes: 100, MaxTotalBytes: 150})
	tests := []struct {
		name, method, path string
		body               []byte
		want               int
	}{
		{"no key", http.MethodPut, "/bench", []byte("x"), http.StatusBadRequest},
		{"empty key", http.MethodPut, "/bench/", []byte("x"), http.StatusBadRequest},
		{"bad bucket", http.MethodPut, "/Bench/k", []byte("x"), http.StatusBadRequest},
		{"long key", http.MethodPut, "/bench/" + strings.Repeat("k", 1025), []byte("x"), http.StatusBadRequest},
		{"too big", http.MethodPut, "/bench/big", make([]byte, 101), http.StatusRequestEntityTooLarge},
		{"method", http.MethodPost, "/bench/k", []byte("x"), http.StatusMethodNotAllowed},
		{"fits", http.MethodPut, "/bench/a", make([]byte, 100), http.StatusOK},
		{"store full", http.MethodPut, "/bench/b", make([]byte, 60), http.StatusInsufficientStorage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := do(t, tc.method, s.URL()+tc.path, tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if s.Used() != 100 {
		t.Fatalf("Used = %d, want 100", s.Used())
	}
}

func TestRejectsOversizeChunkedBody(t *testing.T) {
	s := start(t, Options{MaxObjectBytes: 1000})
	// An io.Reader without a length makes the client use chunked encoding (no Content-Length).
	req, err := http.NewRequest(http.MethodPut, s.URL()+"/bench/chunked", io.MultiReader(bytes.NewReader(make([]byte, 2000))))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
	if s.Used() != 0 {
		t.Fatalf("Used = %d, want 0", s.Used())
	}
}

func TestConcurrentPuts(t *testing.T) {
	s := start(t, Options{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{byte(i)}, 1000+i)
			// t.Fatal must not be called off the test goroutine, so errors are reported with t.Error.
			req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/bench/k%d", s.URL(), i), bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("PUT %d status %d", i, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	var want int64
	for i := range 16 {
		want += int64(1000 + i)
		got, err := s.Get("bench", fmt.Sprintf("k%d", i))
		if err != nil || len(got) != 1000+i || got[0] != byte(i) {
			t.Fatalf("object %d: len %d err %v", i, len(got), err)
		}
	}
	if s.Used() != want {
		t.Fatalf("Used = %d, want %d", s.Used(), want)
	}
}
