// Command invoker is the TeeMate invoker: it consumes ActivationMessages from Kafka topic invoker{N},
// runs each activation in a fresh sandbox attached to the warm enclave of its image, and answers on
// completed{C} exactly as OpenWhisk's invoker does. See invoker/daemon for what it assembles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
)

func main() {
	var cfg daemon.Config
	var port int
	var backends daemon.Backends
	flag.IntVar(&cfg.ID, "id", 0, "invoker instance number N (consumes topic invoker{N})")
	flag.StringVar(&cfg.Kafka, "kafka", "embedded", `Kafka brokers "host:port,..." or "embedded"`)
	flag.StringVar(&cfg.EmbeddedKafkaAddr, "embedded-kafka-addr", "127.0.0.1:9092", "listen address of the embedded broker")
	flag.StringVar(&cfg.APIHost, "api-host", "http://127.0.0.1:3233", "OpenWhisk REST endpoint to fetch actions from")
	flag.IntVar(&cfg.UserMemoryMB, "user-memory", 2048, "user memory for activations, in MB")
	flag.IntVar(&port, "port", 8081, "HTTP port for /ping, /metrics, /enable, /disable, /isEnabled (0: none)")
	flag.StringVar(&cfg.StateDir, "state-dir", ".state/invoker", "directory for broker data, enclave sockets and sandboxes")
	flag.DurationVar(&cfg.StaleAge, "stale-age", 10*time.Minute, "answer activations older than this without running them (negative: never)")
	flag.DurationVar(&cfg.DrainTimeout, "drain-timeout", 60*time.Second, "on SIGTERM or SIGINT: how long in-flight activations may finish before they are abandoned (answered as whisk errors, with their records and acks); best at least the longest action time limit in use")
	flag.BoolVar(&cfg.AtMostOnce, "at-most-once", false, "commit offsets before running (OpenWhisk's behaviour) instead of after the ack")
	flag.StringVar(&backends.Sandbox, "sandbox", "process", "sandbox backend: "+strings.Join(daemon.SandboxNames(), ", "))
	flag.StringVar(&backends.Enclave, "enclave", "direct", "enclave backend: "+strings.Join(daemon.EnclaveNames(), ", "))
	flag.StringVar(&backends.Model, "model", "teemate", "execution model: "+strings.Join(daemon.ModelNames(), ", "))
	flag.StringVar(&backends.RepoDir, "repo", ".", "repository root (enclave-runtime, node-isolate-patch, bin)")
	flag.IntVar(&backends.PoolSize, "pool-size", 0, "created sandboxes kept ready by the oci and process backends (0: 2; negative: none)")
	flag.StringVar(&backends.OCIRuntime, "oci-runtime", daemon.DefaultOCIRuntime, "runtime of the oci sandbox backend: "+strings.Join(daemon.OCIRuntimes, ", ")+" or a path")
	flag.DurationVar(&backends.EnclaveIdleTimeout, "enclave-idle-timeout", daemon.DefaultEnclaveIdleTimeout, "stop a warm enclave of an image not prestarted after this long without an activation (negative: never)")
	flag.StringVar(&backends.IsolateReuse, "isolate-reuse", "none", "isolate reuse: none (a new isolate for every activation) or tenant (each enclave thread keeps its isolate for one namespace's unsealed activations, each in a new context; direct enclave only)")
	pagePool := flag.Int("page-pool-mb", -1, "MiB of heap pages each enclave owner keeps, zeroed, for its next isolates (-1: the isolate addon's default, 16; 0: off, fresh heap addresses for every isolate; direct enclave only)")
	flag.BoolVar(&backends.UnsafeOwnerAsRoot, "unsafe-owner-as-root", false, "run enclave owners as root without confinement (direct backend; an isolate escape is then host root)")
	flag.StringVar(&backends.EgressAllow, "egress-allow", "", `host-loopback endpoints owners may reach, "host:port,..." (the --api-host port is added when on loopback)`)
	flag.StringVar(&backends.OwnerUser, "owner-user", "64000:64000", "uid:gid the confined enclave owners run as")
	adminHost := flag.String("admin-host", "127.0.0.1", "address the HTTP port listens on (the admin endpoints are for the host's operator)")
	flag.StringVar(&cfg.AdminPasswordFile, "admin-password-file", "", "file (0600) with the Basic auth password of /metrics, /enable, /disable, /isEnabled (default STATE-DIR/admin.password, generated; env TEEMATE_INVOKER_PASSWORD overrides)")
	tokenFile := flag.String("invoker-token-file", "", "file (0600) with the token for the controller-adapter's /internal endpoints (its DATA-DIR/invoker.token; env TEEMATE_INVOKER_TOKEN otherwise)")
	var kopts credentials.KafkaOptions
	flag.StringVar(&kopts.SASLFile, "kafka-sasl-file", "", "file (0600) with this invoker's Kafka credentials: mechanism=, username=, password= lines (env "+credentials.EnvKafkaSASLFile+" or "+credentials.EnvKafkaSASLUser+"/"+credentials.EnvKafkaSASLPassword+")")
	flag.BoolVar(&kopts.TLS, "kafka-tls", false, "connect to the brokers with TLS (env "+credentials.EnvKafkaTLS+")")
	flag.StringVar(&kopts.CAFile, "kafka-tls-ca", "", "PEM CA bundle to trust for the brokers' TLS (env "+credentials.EnvKafkaTLSCA+")")
	preflight := flag.Bool("preflight", false, "check this host for the chosen enclave backend (sgx), print the report and exit 0 or 1")
	flag.Parse()
	if *pagePool != -1 {
		backends.PagePoolMB = pagePool
	}
	if *preflight {
		report, err := daemon.SGXPreflight(backends.RepoDir)
		fmt.Print(report)
		if err != nil {
			fmt.Fprintln(os.Stderr, "invoker:", err)
			os.Exit(1)
		}
		return
	}
	cfg.StoreToken = os.Getenv("TEEMATE_INVOKER_TOKEN")
	if *tokenFile != "" {
		tok, err := credentials.ReadSecret(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "invoker: --invoker-token-file:", err)
			os.Exit(2)
		}
		cfg.StoreToken = tok
	}
	if cfg.Kafka != "embedded" {
		var err error
		if cfg.KafkaSASL, cfg.KafkaTLS, err = credentials.KafkaClient(kopts, os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "invoker:", err)
			os.Exit(2)
		}
	}
	cfg.AdminUser, cfg.AdminPassword = os.Getenv("TEEMATE_INVOKER_USER"), os.Getenv("TEEMATE_INVOKER_PASSWORD")
	cfg.Listen = net.JoinHostPort(*adminHost, strconv.Itoa(port))
	if port == 0 {
		cfg.Listen = "-"
	}

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "invoker: create logger:", err)
		os.Exit(1)
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal drains (--drain-timeout); a second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	if err := daemon.RunWithBackends(ctx, cfg, backends); err != nil {
		if errors.Is(err, kafka.ErrAddrInUse) {
			err = fmt.Errorf("%w: choose another address with --embedded-kafka-addr (port 0 picks a free one), or run against brokers with --kafka HOST:PORT", err)
		}
		log.Error("invoker failed", zap.Error(err))
		_ = log.Sync() // best effort: stderr may be a closed pipe, and the process exits either way
		os.Exit(1)
	}
	_ = log.Sync() // as above
}
