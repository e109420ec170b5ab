// Package server is the invoker's small HTTP surface, the one OpenWhisk's DefaultInvokerServer offers:
// GET /ping, GET /metrics, POST /enable, POST /disable, GET /isEnabled, and ours: POST
// /keys/rotate?image=IMAGE (a new image key for the image's warm enclaves). It runs on the untrusted
// host.
//
// Everything but /ping needs Basic auth (OpenWhisk's invoker.username/password): /disable takes the
// invoker out of service, and /metrics tells when and how often activations run and are fetched,
// which is other tenants' activity. /ping stays open for health checks; it says "pong" and nothing
// else.
package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/teemate/platform/invoker/internal/enclave"
)

// Switch is what /enable, /disable and /isEnabled act on.
type Switch interface {
	Enable()
	Disable()
	Enabled() bool
}

// Config for the handler.
type Config struct {
	// User and Password guard /metrics, /enable, /disable and /isEnabled with Basic auth
	// (OpenWhisk's invoker.username / invoker.password). An empty Password accepts nobody: the
	// daemon always configures one (generated in its state directory on first start).
	User, Password string
	// Keys serves POST /keys/rotate; nil answers 501.
	Keys KeyRotator
}

// KeyRotator rotates an image's key in its warm enclaves (*executor.Executor implements it). An
// error wrapping enclave.ErrNoOwner is a 404: no owner of the image runs here.
type KeyRotator interface {
	RotateKey(ctx context.Context, image string) (kid, previous string, err error)
}

// Handler builds the invoker's HTTP handler.
func Handler(cfg Config, sw Switch, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		_, _ = w.Write([]byte("pong")) // a failed write means the caller went away
	})
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// Both comparisons always run, and the answer is the same whichever part was wrong,
			// so a caller learns nothing about the user name or the password.
			u, p, ok := r.BasicAuth()
			userOK := subtle.ConstantTimeCompare([]byte(u), []byte(cfg.User))
			passOK := subtle.ConstantTimeCompare([]byte(p), []byte(cfg.Password))
			if !ok || cfg.Password == "" || userOK&passOK != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="invoker"`)
				http.Error(w, "The supplied authentication is invalid", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
	mux.HandleFunc("GET /metrics", guard(metrics.ServeHTTP))
	mux.HandleFunc("POST /enable", guard(func(w http.ResponseWriter, _ *http.Request) {
		sw.Enable()
		_, _ = w.Write([]byte("Invoker enabled")) // as above
	}))
	mux.HandleFunc("POST /disable", guard(func(w http.ResponseWriter, _ *http.Request) {
		sw.Disable()
		_, _ = w.Write([]byte("Invoker disabled")) // as above
	}))
	mux.HandleFunc("GET /isEnabled", guard(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"enabled": sw.Enabled()}) // as above
	}))
	mux.HandleFunc("POST /keys/rotate", guard(func(w http.ResponseWriter, r *http.Request) {
		image := r.URL.Query().Get("image")
		switch {
		case cfg.Keys == nil:
			http.Error(w, "this invoker keeps no image keys", http.StatusNotImplemented)
			return
		case image == "":
			http.Error(w, "the image to rotate the key of is missing: POST /keys/rotate?image=IMAGE", http.StatusBadRequest)
			return
		}
		kid, previous, err := cfg.Keys.RotateKey(r.Context(), image)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, enclave.ErrNoOwner) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"image": image, "kid": kid, "previous": previous}) // as above
	}))
	return mux
}
