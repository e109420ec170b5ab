// Command startstub is the first process of every pooled OCI container (see package oci). The
// container is created long before anyone knows which activation it will serve, so its real
// command and environment cannot be in config.json; when the container is finally started the
// stub reads them from the per-use file the invoker wrote into the container's slot directory,
// and replaces itself with the real command (execve, so the command keeps pid 1 and the stub
// leaves nothing behind). It runs inside the sandbox, on the untrusted host side.
//
// It is built statically into every function image at /sbin/teemate-start.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"
)

// defaultConfig is where the oci backend writes the per-use configuration.
const defaultConfig = "/run/teemate/start.json"

// startConfig mirrors oci.startConfig; the two must stay in step.
type startConfig struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
}

func main() {
	path := defaultConfig
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	if err := run(path); err != nil {
		fmt.Fprintln(os.Stderr, "teemate-start:", err)
		os.Exit(127)
	}
}

func run(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the start configuration: %w", err)
	}
	var c startConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("start configuration %s: %w", path, err)
	}
	if len(c.Args) == 0 || c.Args[0] == "" {
		return fmt.Errorf("start configuration %s: no command", path)
	}
	if c.Cwd != "" {
		if err := os.Chdir(c.Cwd); err != nil {
			return fmt.Errorf("start configuration: %w", err)
		}
	}
	if err := syscall.Exec(c.Args[0], c.Args, c.Env); err != nil {
		return fmt.Errorf("exec %s: %w", c.Args[0], err)
	}
	return nil
}
