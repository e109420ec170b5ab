// Command teemate is the users' command line for confidential invocations: verify an image's
// evidence, create actions with sealed code, invoke with sealed parameters and open the sealed
// results and their receipts (controller-adapter/internal/cli; `teemate help`).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/teemate/platform/controller-adapter/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
