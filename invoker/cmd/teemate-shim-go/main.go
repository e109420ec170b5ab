// Command teemate-shim-go is the Go implementation of the action proxy inside every sandbox of the
// teemate and strawman models (see invoker/internal/shim). It is configured through TEEMATE_*
// environment variables and serves one activation, then exits. It runs on the untrusted host side.
//
// The teemate model runs the C shim (shim/, bin/teemate-shim), which starts several times faster and
// behaves the same (invoker/internal/shim/conformance checks both against one table); this one is
// the reference implementation, and the strawman model's shim, since it also boots a fresh enclave
// runtime inside its sandbox (TEEMATE_STRAWMAN_CMD), which the C shim refuses.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/invoker/internal/shim"
)

func main() {
	cfg, err := shim.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "teemate-shim:", err)
		os.Exit(2)
	}
	// Diagnostics go to stderr as JSON at warn level only: stderr is also the activation's log
	// stream, and the shim writes its warnings only after the sentinels.
	enc := zap.NewProductionEncoderConfig()
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), zapcore.WarnLevel)).
		With(zap.String("sandbox", cfg.Sandbox))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := shim.Serve(ctx, cfg, os.Stdout, os.Stderr, log); err != nil {
		log.Error("teemate-shim failed", zap.Error(err))
		os.Exit(1)
	}
}
