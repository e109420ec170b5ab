package daemon

import (
	"context"
	"fmt"
)

// Backends selects how activations run.
type Backends struct {
	// Sandbox is "process", "docker", "oci" or "none".
	Sandbox string
	// Enclave is "direct", "sgx" or "none".
	Enclave string
	// Model is "teemate" (fresh sandbox + warm shared enclave), "native" (OpenWhisk's way: a fresh
	// container with its own Node action proxy) or "strawman" (a fresh enclave runtime per container).
	Model string
	// RepoDir is the repository root: the enclave runtime, the isolate addon and bin/ are found there.
	RepoDir string
}

// RunWithBackends builds the executor the backends name and runs the invoker.
func RunWithBackends(ctx context.Context, cfg Config, b Backends) error {
	if b.Sandbox == "none" || b.Enclave == "none" {
		return Run(ctx, cfg)
	}
	return fmt.Errorf("sandbox %q with enclave %q: not built into this invoker yet", b.Sandbox, b.Enclave)
}
