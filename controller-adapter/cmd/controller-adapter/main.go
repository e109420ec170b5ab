// Command controller-adapter is the OpenWhisk front door: the REST API and web actions, invoker
// health and load balancing over Kafka, and the activation store. With --standalone it also runs
// an embedded Kafka broker and one invoker, so one command runs the whole platform.
//
//	controller-adapter --standalone --port 3233 --data-dir .state
//	controller-adapter --kafka kafka1:9092,kafka2:9092 --kafka-sasl-file /etc/teemate/controller0.sasl --data-dir /var/lib/teemate
//	controller-adapter namespace add NAME     # prints the new uuid:key
//	controller-adapter namespace list
//	controller-adapter namespace limits NAME --invocations-per-minute 600 --concurrent 100 --fires-per-minute default
//	controller-adapter invoker drain 1 [--to 2] [--force]   # waits until invoker1 is drained
//	controller-adapter invoker undrain 1
//	controller-adapter invoker status 1
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/controller-adapter/internal/api"
	"github.com/teemate/platform/controller-adapter/internal/app"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/daemon"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "controller-adapter:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "namespace" {
		return namespaceCommand(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "invoker" {
		return invokerCommand(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("controller-adapter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg app.Config
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address the REST API listens on")
	fs.IntVar(&cfg.Port, "port", 3233, "REST API port")
	fs.StringVar(&cfg.DataDir, "data-dir", ".state", "directory for the store (and, standalone, the broker and invoker state)")
	fs.StringVar(&cfg.Kafka, "kafka", "", "comma-separated Kafka brokers (default in standalone mode: an embedded broker)")
	fs.BoolVar(&cfg.Standalone, "standalone", false, "also run an embedded Kafka broker and one invoker in this process")
	fs.StringVar(&cfg.EmbeddedKafkaAddr, "embedded-kafka-addr", "", "standalone: where the embedded broker listens (default 127.0.0.1:9092; refuses to start when that port is taken; 127.0.0.1:0 picks a free one)")
	fs.StringVar(&cfg.Sandbox, "sandbox", "auto", "standalone invoker sandbox: auto, docker, oci, process or none")
	fs.StringVar(&cfg.Enclave, "enclave", "auto", "standalone invoker enclave: auto, sgx, direct or none")
	fs.StringVar(&cfg.Model, "model", "teemate", "standalone invoker model: teemate, native or strawman")
	fs.IntVar(&cfg.PoolSize, "pool-size", 0, "standalone invoker: created sandboxes kept ready by the oci and process backends (0: 2; negative: none)")
	fs.StringVar(&cfg.OCIRuntime, "oci-runtime", daemon.DefaultOCIRuntime, "standalone invoker: runtime of the oci sandbox: "+strings.Join(daemon.OCIRuntimes, ", ")+" or a path")
	fs.StringVar(&cfg.IsolateReuse, "isolate-reuse", "none", "standalone invoker: isolate reuse: none (a new isolate for every activation) or tenant (each enclave thread keeps its isolate for one namespace's unsealed activations, each in a new context; direct enclave only)")
	pagePool := fs.Int("page-pool-mb", -1, "standalone invoker: MiB of heap pages each enclave owner keeps, zeroed, for its next isolates (-1: the isolate addon's default, 16; 0: off; direct enclave only)")
	fs.BoolVar(&cfg.UnsafeOwnerAsRoot, "unsafe-owner-as-root", false, "standalone invoker: run enclave owners as root without confinement (an isolate escape is then host root)")
	fs.StringVar(&cfg.EgressAllow, "egress-allow", "", `standalone invoker: host-loopback endpoints owners may reach, "host:port,..." (the REST API's port is always added)`)
	fs.StringVar(&cfg.OwnerUser, "owner-user", "64000:64000", "standalone invoker: uid:gid the confined enclave owners run as")
	fs.StringVar(&cfg.RepoDir, "repo-dir", "", "repository root holding enclave-runtime/ (default: found from the executable)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", app.DefaultDrainTimeout,
		"on SIGTERM or SIGINT: new invocations answer 503 at once; blocking callers still waiting after 3/4 of this get 202 with their activation id, "+
			"the in-process invoker's activations still running then are abandoned (whisk errors), and the process exits within it (a second signal exits at once)")
	fs.DurationVar(&cfg.PrepareTimeout, "prepare-timeout", balancer.DefaultPrepareTimeout,
		"invoker drain: how long a destination may take to report an image warm and keyed before the drain gives that image up (the source keeps serving it)")
	fs.StringVar(&cfg.ControllerID, "controller-id", "0", "this controller's instance id (acks arrive on completed<ID>)")
	// --invoker-token shows in ps to every user of the host; it is kept only so existing command
	// lines keep working, and says so. The file (or the environment) is the way.
	deprecatedToken := fs.String("invoker-token", "", "DEPRECATED (visible in ps): use --invoker-token-file or env TEEMATE_INVOKER_TOKEN")
	fs.StringVar(&cfg.AdminPasswordFile, "admin-password-file", "",
		"file (0600) with the password of the operator's routes on invokers, drain and undrain, as user admin (default DATA-DIR/admin.password, generated; env "+app.EnvAdminPassword+" overrides)")
	fs.StringVar(&cfg.InvokerTokenFile, "invoker-token-file", "",
		"file (0600) with the token invokers present on /internal (default DATA-DIR/invoker.token, generated; env TEEMATE_INVOKER_TOKEN overrides)")
	var kopts credentials.KafkaOptions
	fs.StringVar(&kopts.SASLFile, "kafka-sasl-file", "", "file (0600) with the Kafka credentials for --kafka: mechanism=, username=, password= lines (env "+credentials.EnvKafkaSASLFile+" or "+credentials.EnvKafkaSASLUser+"/"+credentials.EnvKafkaSASLPassword+")")
	fs.BoolVar(&kopts.TLS, "kafka-tls", false, "connect to --kafka with TLS (env "+credentials.EnvKafkaTLS+")")
	fs.StringVar(&kopts.CAFile, "kafka-tls-ca", "", "PEM CA bundle to trust for the brokers' TLS (env "+credentials.EnvKafkaTLSCA+")")
	fs.IntVar(&cfg.Throttles.InvocationsPerMinute, "invocations-per-minute", api.DefaultInvocationsPerMinute,
		"action invocations a namespace may start per minute, unless its own limit says otherwise (namespace limits); 429 beyond")
	fs.IntVar(&cfg.Throttles.ConcurrentInvocations, "concurrent-invocations", api.DefaultConcurrentInvocations,
		"activations a namespace may have in flight, unless its own limit says otherwise; 429 beyond")
	fs.IntVar(&cfg.Throttles.FiresPerMinute, "fires-per-minute", api.DefaultFiresPerMinute,
		"trigger fires a namespace may make per minute, unless its own limit says otherwise; 429 beyond")
	logFormat := fs.String("log-format", "console", "log format: console or json")
	evRoots := fs.String("evidence-roots", "", "PEM file of the SGX root CA(s) (Intel's in production): sgx-dcap evidence invokers publish must chain to it and match --evidence-mrenclave/--evidence-mrsigner (default: checked for structure and key binding only; clients verify in any case)")
	evMREnclave := fs.String("evidence-mrenclave", "", "with --evidence-roots: accepted MRENCLAVE values, comma-separated hex")
	evMRSigner := fs.String("evidence-mrsigner", "", "with --evidence-roots: accepted MRSIGNER values, comma-separated hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pagePool != -1 {
		cfg.PagePoolMB = pagePool
	}
	policy, err := evidencePolicy(*evRoots, *evMREnclave, *evMRSigner)
	if err != nil {
		return err
	}
	cfg.EvidencePolicy = policy
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if t := cfg.Throttles; t.InvocationsPerMinute < 1 || t.ConcurrentInvocations < 1 || t.FiresPerMinute < 1 {
		return errors.New("--invocations-per-minute, --concurrent-invocations and --fires-per-minute must be at least 1 (block one namespace with `namespace limits NAME ... 0`)")
	}
	log, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	cfg.InvokerToken = os.Getenv("TEEMATE_INVOKER_TOKEN")
	if *deprecatedToken != "" {
		log.Warn("--invoker-token is deprecated: other users of the host see it in ps; use --invoker-token-file")
		cfg.InvokerToken = *deprecatedToken
	}
	if cfg.Kafka != "" {
		if cfg.KafkaSASL, cfg.KafkaTLS, err = credentials.KafkaClient(kopts, os.Getenv); err != nil {
			return err
		}
	}
	defer log.Sync() //nolint:errcheck // stderr sync fails on some terminals; nothing to do about it
	cfg.Logger = log
	cfg.Ready = func(info app.Info) {
		fmt.Fprintf(stdout, "OpenWhisk API ready at %s (kafka %v)\n", info.APIHost, info.Brokers)
		if info.GuestAuth != "" {
			fmt.Fprintf(stdout, "invoker0 runs in this process: sandbox %s, enclave %s, model %s\n", info.Sandbox, info.Enclave, info.Model)
			fmt.Fprintf(stdout, "guest key: %s\n", info.GuestAuth)
			fmt.Fprintf(stdout, "  wsk property set --apihost %s --auth %s\n", info.APIHost, info.GuestAuth)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// The first signal starts the graceful stop; with the handlers reset, a second one ends
		// the process at once, as an operator who presses Ctrl-C twice expects.
		<-ctx.Done()
		stop()
	}()
	// The error is returned, not logged: main prints it as the last line, whatever the log format.
	return app.Run(ctx, cfg)
}

func namespaceCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("controller-adapter namespace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", ".state", "directory holding controller.db")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: controller-adapter namespace [--data-dir DIR] add NAME | list |")
		fmt.Fprintln(stderr, "         limits NAME [--invocations-per-minute N] [--concurrent N] [--fires-per-minute N]")
		fmt.Fprintln(stderr, "  limits sets the namespace's own limits (N, or default for the system's) and prints them;")
		fmt.Fprintln(stderr, "  a running controller-adapter applies them from the namespace's next request")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	switch {
	case fs.NArg() == 2 && fs.Arg(0) == "add":
		key, err := app.AddNamespace(ctx, *dataDir, fs.Arg(1))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		return nil
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		names, err := app.ListNamespaces(ctx, *dataDir)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return nil
	case fs.NArg() >= 2 && fs.Arg(0) == "limits":
		change, err := limitsChange(fs.Args()[2:], stderr)
		if err != nil {
			return err
		}
		l, err := app.SetNamespaceLimits(ctx, *dataDir, fs.Arg(1), change)
		if err != nil {
			return err
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("namespace limits: %w", err)
		}
		fmt.Fprintln(stdout, string(b))
		return nil
	default:
		fs.Usage()
		return errors.New("namespace: expected `add NAME` or `list` (or `limits NAME [flags]`)")
	}
}

// limitsChange reads the flags of `namespace limits NAME`: each limit is a count (0 refuses
// everything) or "default" (the system's, the controller-adapter's flags).
func limitsChange(args []string, stderr io.Writer) (store.LimitsChange, error) {
	fs := flag.NewFlagSet("controller-adapter namespace limits", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var change store.LimitsChange
	limit := func(name, help string, set **int, reset *bool) {
		fs.Func(name, help+" (a count, or default)", func(v string) error {
			if v == "default" {
				*set, *reset = nil, true
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a count (0 or more) nor default", v)
			}
			*set, *reset = &n, false
			return nil
		})
	}
	limit("invocations-per-minute", "action invocations per minute", &change.Set.InvocationsPerMinute, &change.Reset.InvocationsPerMinute)
	limit("concurrent", "activations in flight", &change.Set.ConcurrentInvocations, &change.Reset.ConcurrentInvocations)
	limit("fires-per-minute", "trigger fires per minute", &change.Set.FiresPerMinute, &change.Reset.FiresPerMinute)
	if err := fs.Parse(args); err != nil {
		return store.LimitsChange{}, err
	}
	if fs.NArg() > 0 {
		return store.LimitsChange{}, fmt.Errorf("namespace limits: unexpected argument %q", fs.Arg(0))
	}
	return change, nil
}

func newLogger(format string) (*zap.Logger, error) {
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", format)
	}
	log, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("create logger: %w", err)
	}
	return log, nil
}

// evidencePolicy builds the controller's policy for published sgx-dcap evidence from its flags;
// nil without --evidence-roots.
func evidencePolicy(rootsFile, mrenclave, mrsigner string) (*attest.Policy, error) {
	if rootsFile == "" {
		if mrenclave != "" || mrsigner != "" {
			return nil, errors.New("--evidence-mrenclave and --evidence-mrsigner need --evidence-roots")
		}
		return nil, nil
	}
	pemData, err := os.ReadFile(rootsFile)
	if err != nil {
		return nil, fmt.Errorf("--evidence-roots: %w", err)
	}
	p := &attest.Policy{}
	if p.Roots, err = attest.RootsFromPEM(pemData); err != nil {
		return nil, fmt.Errorf("--evidence-roots %s: %w", rootsFile, err)
	}
	if p.MREnclave, err = attest.ParseMeasurements(mrenclave); err != nil {
		return nil, fmt.Errorf("--evidence-mrenclave: %w", err)
	}
	if p.MRSigner, err = attest.ParseMeasurements(mrsigner); err != nil {
		return nil, fmt.Errorf("--evidence-mrsigner: %w", err)
	}
	if len(p.MREnclave) == 0 && len(p.MRSigner) == 0 {
		return nil, errors.New("--evidence-roots needs --evidence-mrenclave or --evidence-mrsigner")
	}
	return p, nil
}
