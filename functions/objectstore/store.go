package objectstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default limits: large enough for SeBS's biggest uploader input (98 MB) plus headroom.
const (
	DefaultMaxObjectBytes = 256 << 20
	DefaultMaxTotalBytes  = 512 << 20
	maxKeyLen             = 1024
)

// ErrNotFound is returned when no object is stored under a bucket and key.
var ErrNotFound = errors.New("object not found")

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// Options bounds the store. Zero values take the defaults.
type Options struct {
	MaxObjectBytes int64 // largest single object accepted
	MaxTotalBytes  int64 // sum of all stored objects
}

type object struct {
	data   []byte
	sha256 string
}

// Store holds objects in memory. The zero value is not usable; call New or Start.
type Store struct {
	opts Options

	mu      sync.Mutex
	objects map[string]object
	used    int64

	srv *http.Server
	ln  net.Listener
	url string
}

// New returns an empty store that is not yet listening; serve it with its Handler or call Start.
func New(opts Options) *Store {
	if opts.MaxObjectBytes <= 0 {
		opts.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if opts.MaxTotalBytes <= 0 {
		opts.MaxTotalBytes = DefaultMaxTotalBytes
	}
	return &Store{opts: opts, objects: make(map[string]object)}
}

// Start creates a store listening on 127.0.0.1 with a kernel-chosen port.
func Start(opts Options) (*Store, error) {
	s := New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("objectstore: listen on loopback: %w", err)
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		// Serve returns ErrServerClosed after Close; any other error means the listener died, which the
		// next client request reports as a connection error.
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the base URL clients PUT to (http://127.0.0.1:port), empty if the store was not Started.
func (s *Store) URL() string { return s.url }

// Close stops the listener started by Start and drops all objects.
func (s *Store) Close() error {
	var err error
	if s.srv != nil {
		// A graceful shutdown waits for connections a client opened but never used (Go's transport
		// dials spares under concurrency); give in-flight requests a moment, then close the rest.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if e := s.srv.Shutdown(ctx); e != nil {
			if e := s.srv.Close(); e != nil {
				err = fmt.Errorf("objectstore: close: %w", e)
			}
		}
	}
	s.mu.Lock()
	s.objects = make(map[string]object)
	s.used = 0
	s.mu.Unlock()
	return err
}

func objectID(bucket, key string) string { return bucket + "/" + key }

// Digest returns the hex SHA-256 of the object stored under bucket and key.
func (s *Store) Digest(bucket, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[objectID(bucket, key)]
	if !ok {
		return "", fmt.Errorf("objectstore: %s/%s: %w", bucket, key, ErrNotFound)
	}
	return o.sha256, nil
}

// Get returns the bytes stored under bucket and key. The slice is shared with the store: callers must
// not modify it (objects are replaced, never changed in place, so reading it stays safe).
func (s *Store) Get(bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[objectID(bucket, key)]
	if !ok {
		return nil, fmt.Errorf("objectstore: %s/%s: %w", bucket, key, ErrNotFound)
	}
	return o.data, nil
}

// Delete removes an object and reports whether it existed.
func (s *Store) Delete(bucket, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := objectID(bucket, key)
	o, ok := s.objects[id]
	if ok {
		s.used -= int64(len(o.data))
		delete(s.objects, id)
	}
	return ok
}

// Used returns the bytes currently stored.
func (s *Store) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// put stores data, replacing any previous object, within the total bound.
func (s *Store) put(bucket, key string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	id := objectID(bucket, key)
	old := int64(len(s.objects[id].data))
	if s.used-old+int64(len(data)) > s.opts.MaxTotalBytes {
		return "", errStoreFull
	}
	s.used += int64(len(data)) - old
	s.objects[id] = object{data: data, sha256: digest}
	return digest, nil
}

var errStoreFull = errors.New("store is full")

// ParsePath splits "/<bucket>/<key>" and checks both parts.
func ParsePath(p string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return "", "", fmt.Errorf("path %q must start with /", p)
	}
	bucket, key, ok = strings.Cut(rest, "/")
	if !ok || key == "" {
		return "", "", fmt.Errorf("path %q must be /<bucket>/<key>", p)
	}
	if !bucketName.MatchString(bucket) {
		return "", "", fmt.Errorf("bucket %q must match %s", bucket, bucketName)
	}
	if len(key) > maxKeyLen {
		return "", "", fmt.Errorf("key is %d bytes, more than %d", len(key), maxKeyLen)
	}
	return bucket, key, nil
}

// ServeHTTP implements the PUT/GET/HEAD/DELETE protocol described in the package documentation.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, err := ParsePath(r.URL.Path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.servePut(w, r, bucket, key)
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		o, ok := s.objects[objectID(bucket, key)]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "no such object", http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", `"`+o.sha256+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(o.data)))
		if r.Method == http.MethodGet {
			// A write error means the client went away; there is no one left to tell.
			_, _ = w.Write(o.data)
		}
	case http.MethodDelete:
		if !s.Delete(bucket, key) {
			http.Error(w, "no such object", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "PUT, GET, HEAD, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Store) servePut(w http.ResponseWriter, r *http.Request, bucket, key string) {
	limit := s.opts.MaxObjectBytes
	if r.ContentLength > limit {
		http.Error(w, fmt.Sprintf("object is %d bytes, more than %d", r.ContentLength, limit), http.StatusRequestEntityTooLarge)
		return
	}
	// Read one byte past the limit so a body without Content-Length that is too big is detected.
	capHint := r.ContentLength
	if capHint < 0 {
		capHint = 0
	}
	buf := make([]byte, 0, capHint)
	data, err := readAllInto(buf, io.LimitReader(r.Body, limit+1))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if int64(len(data)) > limit {
		http.Error(w, fmt.Sprintf("object is more than %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	if r.ContentLength >= 0 && int64(len(data)) != r.ContentLength {
		http.Error(w, fmt.Sprintf("body is %d bytes, Content-Length said %d", len(data), r.ContentLength), http.StatusBadRequest)
		return
	}
	digest, err := s.put(bucket, key, data)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInsufficientStorage)
		return
	}
	w.Header().Set("ETag", `"`+digest+`"`)
	w.WriteHeader(http.StatusOK)
}

// readAllInto is io.ReadAll that starts from a caller-sized buffer, so a body with a known length is
// read without repeated growth.
func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
