package shim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/teemate/platform/invoker/internal/gate"
)

// MaxBody caps /init and /run request bodies, as OpenWhisk's Node runtime does (48 MiB).
const MaxBody = 48 << 20

// Config is the shim's configuration, read from the sandbox environment.
type Config struct {
	// ProxySocket is the unix socket to serve the action-proxy protocol on; ProxyAddr a TCP address
	// (":8080") used when ProxySocket is empty.
	ProxySocket string
	ProxyAddr   string
	// ProxyFD, when positive, is an already-listening socket inherited from the sandbox backend
	// (TEEMATE_PROXY_FD): the shim accepts on it and binds nothing. The backend bound it before
	// the sandbox started, so the invoker's connect never has to wait for the shim to listen.
	ProxyFD int
	// Gate is the enclave owner's gate socket.
	Gate string
	// Sandbox is this sandbox's name (informational, sent in hello).
	Sandbox string
	// Credentials (TEEMATE_GATE_TOKEN, TEEMATE_ACTIVATION_ID, TEEMATE_NAMESPACE) are this
	// sandbox's one-time capability for its activation, sent in hello when a token is set; the
	// invoker sets them when the owner requires a token.
	Credentials gate.Credentials
	// MemoryMB, LogLimitBytes and TimeoutMs are the action's limits, passed to the enclave's run.
	MemoryMB      int
	LogLimitBytes int64
	TimeoutMs     int64
	// Network (TEEMATE_NETWORK=1) says the action was given network access; the shim passes it
	// in the gate run, and the enclave runtime lets the action open client sockets.
	Network bool
	// StrawmanCmd, when set, is a command that starts a fresh enclave runtime inside this sandbox
	// (the "one enclave per container" model); the shim starts it at /init and waits for Gate.
	StrawmanCmd []string
	// Grace is added to the run's time limit before the shim stops waiting for the enclave.
	Grace time.Duration
}

// Defaults for limits the environment leaves out (OpenWhisk's standard action limits).
const (
	DefaultMemoryMB      = 256
	DefaultLogLimitBytes = 10 << 20
	DefaultTimeoutMs     = 60000
)

// ConfigFromEnv reads TEEMATE_* variables through getenv.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		ProxySocket:   getenv("TEEMATE_PROXY_SOCKET"),
		ProxyAddr:     getenv("TEEMATE_PROXY_ADDR"),
		Gate:          getenv("TEEMATE_GATE"),
		Sandbox:       getenv("TEEMATE_SANDBOX"),
		MemoryMB:      DefaultMemoryMB,
		LogLimitBytes: DefaultLogLimitBytes,
		TimeoutMs:     DefaultTimeoutMs,
		Grace:         5 * time.Second,
	}
	if tok := getenv("TEEMATE_GATE_TOKEN"); tok != "" {
		c.Credentials = gate.Credentials{Activation: getenv("TEEMATE_ACTIVATION_ID"),
			Namespace: getenv("TEEMATE_NAMESPACE"), Token: tok}
	}
	var errs []error
	if v := getenv("TEEMATE_PROXY_FD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 || n > 1<<20 {
			errs = append(errs, fmt.Errorf("TEEMATE_PROXY_FD=%q: want a descriptor number from 3 to %d", v, 1<<20))
		} else {
			c.ProxyFD = n
		}
	}
	if c.ProxySocket == "" && c.ProxyAddr == "" && c.ProxyFD == 0 {
		errs = append(errs, errors.New("TEEMATE_PROXY_FD, TEEMATE_PROXY_SOCKET or TEEMATE_PROXY_ADDR must be set"))
	}
	if c.Gate == "" {
		errs = append(errs, errors.New("TEEMATE_GATE must be set"))
	}
	intVar := func(name string, dst *int64, lo, hi int64) {
		v := getenv(name)
		if v == "" {
			return
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer from %d to %d", name, v, lo, hi))
			return
		}
		*dst = n
	}
	mem := int64(c.MemoryMB)
	intVar("TEEMATE_MEMORY_MB", &mem, 1, 1<<20)
	c.MemoryMB = int(mem)
	intVar("TEEMATE_LOG_LIMIT_BYTES", &c.LogLimitBytes, 0, 1<<40)
	intVar("TEEMATE_TIMEOUT_MS", &c.TimeoutMs, 1, 24*3600*1000)
	switch v := getenv("TEEMATE_NETWORK"); v {
	case "", "0":
	case "1":
		c.Network = true
	default:
		errs = append(errs, fmt.Errorf("TEEMATE_NETWORK=%q: want 1 or 0", v))
	}
	if s := strings.TrimSpace(getenv("TEEMATE_STRAWMAN_CMD")); s != "" {
		// Split on white space only: the command is written by the operator, not by users.
		c.StrawmanCmd = strings.Fields(s)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("shim configuration: %w", err)
	}
	return c, nil
}
