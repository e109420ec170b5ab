// Package server is the invoker's small HTTP surface, the one OpenWhisk's DefaultInvokerServer offers:
// GET /ping, GET /metrics, POST /enable, POST /disable, GET /isEnabled. It runs on the untrusted host.
package server

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Switch is what /enable, /disable and /isEnabled act on.
type Switch interface {
	Enable()
	Disable()
	Enabled() bool
}

// Config for the handler.
type Config struct {
	// User and Password guard /enable, /disable and /isEnabled with Basic auth when both are set
	// (OpenWhisk's invoker.user / invoker.pass). Empty means no auth: bind the port to loopback then.
	User, Password string
}

// Handler builds the invoker's HTTP handler.
func Handler(cfg Config, sw Switch, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		_, _ = w.Write([]byte("pong"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if cfg.User != "" || cfg.Password != "" {
				u, p, ok := r.BasicAuth()
				if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(cfg.User)) != 1 ||
					subtle.ConstantTimeCompare([]byte(p), []byte(cfg.Password)) != 1 {
					w.Header().Set("WWW-Authenticate", `Basic realm="invoker"`)
					http.Error(w, "The supplied authentication is invalid", http.StatusUnauthorized)
					return
				}
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /enable", guard(func(w http.ResponseWriter, _ *http.Request) {
		sw.Enable()
		_, _ = w.Write([]byte("Invoker enabled"))
	}))
	mux.HandleFunc("POST /disable", guard(func(w http.ResponseWriter, _ *http.Request) {
		sw.Disable()
		_, _ = w.Write([]byte("Invoker disabled"))
	}))
	mux.HandleFunc("GET /isEnabled", guard(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]bool{"enabled": sw.Enabled()})
	}))
	return mux
}
