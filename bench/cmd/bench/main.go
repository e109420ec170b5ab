// Command bench reproduces the TeeMate evaluation on this platform: latency, per-phase breakdown,
// throughput and peak memory of the nine functions under the teemate, native and strawman models.
// See bench/README.md.
package main

import (
	"os"

	"github.com/teemate/platform/bench/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
